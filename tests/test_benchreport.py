"""bnlib.bench.report: ratios, fractions and targets from known timings.

The timings are made up, so every expected value is worked out by hand here.
"""

from __future__ import annotations

import pytest

from bnlib.bench.report import CaseResult, Report, Target, format_report


def _case(shape, dtype, bnlib, textbook, torch, limit):
    seconds = {
        name: {"forward": t / 2, "backward": t / 2, "both": t}
        for name, t in (("bnlib", bnlib), ("textbook", textbook), ("torch", torch))
    }
    peaks = {"bnlib": 200, "textbook": 400, "torch": None}
    return CaseResult(shape, dtype, 100, seconds, peaks, limit)


@pytest.fixture
def report():
    cases = [
        _case((4, 2), "float32", bnlib=1.0, textbook=4.0, torch=2.0, limit=0.5),
        _case((4, 2), "float64", bnlib=2.0, textbook=4.0, torch=1.0, limit=0.2),
    ]
    return Report({"cpu": "test"}, 1e9, cases)


def test_case_result_ratio_and_fraction(report):
    c = report.cases[0]
    assert c.ratio("bnlib", "torch") == 0.5
    assert c.ratio("textbook", "bnlib", "forward") == 4.0
    assert c.fraction_of_limit() == 0.5
    assert c.fraction_of_limit("torch") == 0.25


def test_report_targets_from_known_timings(report):
    got = {t.name: t for t in report.targets()}
    # bnlib/torch is 0.5 and 2.0: geometric mean 1.0, worst 2.0.
    assert got["time / torch time, geometric mean"].value == pytest.approx(1.0)
    assert got["time / torch time, geometric mean"].met
    assert got["time / torch time, worst case"].value == 2.0
    assert not got["time / torch time, worst case"].met
    # textbook/bnlib is 4 and 2: geometric mean sqrt(8).
    assert got["speed-up over textbook, geometric mean"].value == pytest.approx(8**0.5)
    assert not got["speed-up over textbook, geometric mean"].met
    # Only the float32 case counts for the bandwidth target.
    assert got["fraction of bandwidth limit, worst float32"].value == 0.5
    assert got["fraction of bandwidth limit, worst float32"].met


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
