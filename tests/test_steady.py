"""bnbook.bench.steady: its statistics and report from known call times (no timing
is asserted; the benchmark prints its measurements)."""

from __future__ import annotations

import pytest

from bnbook.bench import steady


def _run(first: float, later: list[float]) -> steady.Run:
    return steady.Run(wall=[first, *later], cpu=[first / 2, *later])


def test_run_stats_are_first_call_median_and_worst_ratio():
    run = _run(1.0, [0.02, 0.03, 0.02, 0.04, 0.02])
    first, median, worst = run.stats("wall")
    assert (first, median, worst) == (1.0, 0.02, 2.0)
    assert run.stats("cpu")[0] == 0.5


def test_format_steady_gives_each_run_the_medians_and_the_verdict():
    runs = [_run(1.0, [0.02, 0.02, 0.02]), _run(1.2, [0.02, 0.05, 0.02])]
    text = steady.format_steady(runs, (4, 3))
    assert "(4, 3)" in text
    assert text.count("median") == 2  # one line per clock
    assert "target <= 1.5: met" in text or "NOT met" in text
    wall_median = [line for line in text.splitlines() if "median  wall" in line][0]
    assert "1100.0" in wall_median and "1.75" in wall_median  # medians over runs


def test_measure_rejects_too_few_calls():
    with pytest.raises(ValueError, match="calls >= 3"):
        steady.measure((4, 3), calls=2)
