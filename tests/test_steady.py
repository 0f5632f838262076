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


def test_per_call_medians_take_each_call_over_the_runs():
    runs = [
        _run(1.0, [0.02, 0.02, 0.02]),
        _run(1.2, [0.02, 0.05, 0.02]),
        _run(1.1, [0.03, 0.02, 0.06]),
    ]
    # call by call: median(1.0, 1.2, 1.1), median(0.02, 0.02, 0.03), ...
    assert steady.per_call_medians(runs, "wall") == [1.1, 0.02, 0.02, 0.02]
    assert steady.per_call_medians(runs, "cpu") == [0.55, 0.02, 0.02, 0.02]


def test_format_steady_judges_the_per_call_medians():
    # Each run has one slow call, at a different place: a pause of another process.
    paused = [
        _run(1.0, [0.02, 0.02, 0.02]),
        _run(1.2, [0.02, 0.05, 0.02]),
        _run(1.1, [0.02, 0.02, 0.06]),
    ]
    text = steady.format_steady(paused, (4, 3))
    assert "(4, 3)" in text
    assert "  2.50" in text and "  3.00" in text  # the runs' own worst ratios
    per_call = [line for line in text.splitlines() if "per-call  wall" in line]
    assert len(per_call) == 1
    assert "1100.0" in per_call[0] and "1.00" in per_call[0]
    assert per_call[0].endswith("(target <= 1.5: met)")


def test_format_steady_fails_a_slow_call_that_repeats():
    # The second call is slow in two runs of three: bnlib's own, not a pause.
    runs = [
        _run(1.0, [0.1, 0.02, 0.02]),
        _run(1.0, [0.1, 0.02, 0.02]),
        _run(1.0, [0.02, 0.02, 0.02]),
    ]
    text = steady.format_steady(runs, (4, 3))
    per_call = [line for line in text.splitlines() if "per-call" in line][:2]
    assert all("5.00" in line and "NOT met" in line for line in per_call)


def test_per_call_medians_reject_runs_of_different_lengths():
    with pytest.raises(ValueError, match="same number of calls"):
        steady.per_call_medians([_run(1.0, [0.02, 0.02]), _run(1.0, [0.02])], "wall")


def test_run_times_rejects_an_unknown_clock():
    with pytest.raises(ValueError, match="clock must be 'wall' or 'cpu'"):
        _run(1.0, [0.02, 0.02]).times("gpu")


def test_measure_rejects_too_few_calls():
    with pytest.raises(ValueError, match="calls >= 3"):
        steady.measure((4, 3), calls=2)
