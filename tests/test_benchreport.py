"""bnbook.bench.report: ratios, fractions and targets from known timings.

The timings are made up, so every expected value is worked out by hand here.
"""

from __future__ import annotations

import pytest

from bnbook.bench.report import CaseResult, Report, Target, format_report


def _case(shape, dtype, limit, **times):
    seconds = {
        name: {"forward": t / 2, "backward": t / 2, "both": t}
        for name, t in times.items()
    }
    peaks = {"bnlib": 200, "textbook": 400, "torch": None}
    return CaseResult(shape, dtype, 100, seconds, peaks, limit)


@pytest.fixture
def report():
    cases = [
        _case((4, 2), "float32", 0.5, bnlib=1.0, numba=1.0, textbook=4.0, torch=2.0),
        _case((8, 2), "float32", 0.5, bnlib=2.0, numba=2.0, textbook=1.0, torch=1.0),
        _case((4, 2), "float64", 0.2, bnlib=2.0, numba=9.0, textbook=4.0, torch=1.0),
    ]
    return Report({"cpu": "test"}, 1e9, cases, {"cold": 9.0, "cached": 2.5})


def test_case_result_ratio_and_fraction(report):
    c = report.cases[0]
    assert c.ratio("bnlib", "torch") == 0.5
    assert c.ratio("textbook", "bnlib", "forward") == 4.0
    # times 1.0 (bnlib) and 2.0 (torch) over the floor of 0.5 s
    assert c.floors() == 2.0
    assert c.floors("torch") == 4.0


def test_report_targets_from_known_timings(report):
    got = {t.name: t for t in report.targets()}
    # textbook/bnlib is 4, 0.5 and 2: worst 0.5, geometric mean 4 ** (1/3).
    worst = got["numpy: textbook time / time, worst case"]
    assert worst.value == 0.5 and not worst.met
    mean = got["numpy: textbook time / time, geometric mean"]
    assert mean.value == pytest.approx(4 ** (1 / 3)) and not mean.met
    # numba/torch on the float32 cases only: 0.5 and 2.0, geometric mean 1.0.
    vs_torch = got["numba: time / torch time, float32 geometric mean"]
    assert vs_torch.value == pytest.approx(1.0) and not vs_torch.met
    assert got["numba: time / torch time, float32 worst case"].value == 2.0
    # numba time / floor on the float32 cases: 1.0 / 0.5 and 2.0 / 0.5.
    floors = got["numba: time in floors, worst float32"]
    assert floors.value == 4.0 and not floors.met
    cached = got["numba: cached import + first call (s)"]
    assert cached.value == 2.5 and cached.met


def test_report_without_numba_has_only_the_numpy_targets(report):
    for c in report.cases:
        del c.seconds["numba"]
    report.compile_seconds = None
    assert [t.name for t in report.targets()] == [
        "numpy: textbook time / time, worst case",
        "numpy: textbook time / time, geometric mean",
    ]
    assert "not measured" in format_report(report)


@pytest.mark.parametrize(
    ("value", "at_most", "met"),
    [(1.0, True, True), (1.1, True, False), (1.0, False, True), (0.9, False, False)],
)
def test_target_met_is_inclusive(value, at_most, met):
    assert Target("t", value, 1.0, at_most).met is met


def test_format_report_shows_times_ratios_and_verdicts(report):
    text = format_report(report)
    assert "cpu: test" in text
    assert "1.0 GB/s" in text
    assert "1000.00" in text  # bnlib's 1.0 s in ms
    assert "NOT met" in text and "met" in text
    assert "      n/a" in text  # torch's peak memory is not traced
    assert "cold (empty cache, compiles the kernels): 9.00 s" in text
    assert "floor = 8 x bytes(x) / bandwidth" in text
    # the (4, 2) float32 case: floor 500 ms, bnlib 2, numba 2 and torch 4 floors
    rows = [ln.split() for ln in text.splitlines() if ln.startswith("(4, 2)")]
    ratios = [r for r in rows if r[2] == "float32" and r[3] == "0.50"]
    assert ratios and ratios[0][-4:] == ["500.00", "2.00", "2.00", "4.00"]
