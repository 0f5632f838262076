"""bnbook.bench.runner: the textbook baseline is correct, the report has its structure.

No timing is asserted here: speed targets are checked by running the benchmark
(``python -m bnbook.bench``), whose numbers depend on the machine and its load.
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import bnlib
from bnbook.bench import compile as compile_times_module
from bnbook.bench import runner as bench
from bnbook.bench.report import verdict

NO_NUMBA = "numba is not installed (the fast extra: bnlib-batchnorm[fast])"
TOL = 1e-10
TINY = ((6, 3), (4, 3, 2, 5))


def _case(rng, shape):
    x = rng.normal(1.5, 2.0, size=shape)
    return (
        x,
        rng.normal(size=shape),
        rng.normal(size=shape[1]),
        rng.normal(size=shape[1]),
    )


@pytest.mark.parametrize("shape", [(8, 3), (5, 4, 7), (4, 3, 5, 6)])
def test_textbook_forward_matches_bnlib_and_torch(rng, shape):
    x, _, gamma, beta = _case(rng, shape)
    y, _ = bench.textbook_forward(x, gamma, beta)
    ours = bnlib.batch_norm(x, None, None, gamma, beta, training=True)
    ref = F.batch_norm(
        torch.tensor(x), None, None, torch.tensor(gamma), torch.tensor(beta), True
    )
    np.testing.assert_allclose(y, ours, rtol=0, atol=TOL)
    np.testing.assert_allclose(y, ref.numpy(), rtol=0, atol=TOL)


@pytest.mark.parametrize("shape", [(8, 3), (5, 4, 7), (4, 3, 5, 6)])
def test_textbook_backward_matches_bnlib_and_torch(rng, shape):
    x, dy, gamma, beta = _case(rng, shape)
    _, cache = bench.textbook_forward(x, gamma, beta)
    grads = bench.textbook_backward(dy, cache)
    ours = bnlib.batch_norm_backward(dy, x, gamma)
    xt, gt = (
        torch.tensor(x, requires_grad=True),
        torch.tensor(gamma, requires_grad=True),
    )
    bt = torch.tensor(beta, requires_grad=True)
    y = F.batch_norm(xt, None, None, gt, bt, True)
    refs = torch.autograd.grad(y, (xt, gt, bt), torch.tensor(dy))
    for got, mine, ref in zip(grads, ours, refs, strict=True):
        np.testing.assert_allclose(got, mine, rtol=0, atol=TOL)
        np.testing.assert_allclose(got, ref.numpy(), rtol=0, atol=TOL)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_textbook_keeps_dtype(rng, dtype):
    x, dy, gamma, beta = (a.astype(dtype) for a in _case(rng, (4, 3, 5)))
    y, cache = bench.textbook_forward(x, gamma, beta)
    assert y.dtype == dtype
    assert all(g.dtype == dtype for g in bench.textbook_backward(dy, cache))


@pytest.fixture(scope="module")
def report():
    return bench.run(TINY, repeats=1, warmup=0, bandwidth=1e10)


def test_run_times_every_implementation_and_phase(report):
    assert [(c.shape, c.dtype) for c in report.cases] == [
        (s, d) for s in TINY for d in bench.DTYPES
    ]
    for c in report.cases:
        assert set(c.seconds) == set(bench.implementations())
        for phases in c.seconds.values():
            assert set(phases) == set(bench.PHASES)
            assert all(math.isfinite(t) and t > 0 for t in phases.values())
        assert c.peak_bytes["torch"] is None
        assert c.peak_bytes["bnlib"] >= c.nbytes  # y alone is as big as x
        assert c.limit_seconds == pytest.approx(
            bench.PASSES * c.nbytes / report.bandwidth
        )


def test_run_reports_a_target_for_each_backend_run(report):
    targets = report.targets()
    assert len(targets) == (5 if "numba" in bench.implementations() else 2)
    for t in targets:
        assert math.isfinite(t.value) and t.value > 0
        assert t.met == (
            t.value <= t.threshold if t.at_most else t.value >= t.threshold
        )


def test_format_report_lists_cases_machine_and_targets(report):
    text = bench.format_report(report)
    for c in report.cases:
        assert str(c.shape) in text
    for key in ("cpu", "numpy threads", "bnlib threads", "torch threads", "peak/x"):
        assert key in text
    assert text.count(" met") + text.count("NOT met") >= 2


def test_main_quick_prints_the_table(capsys, monkeypatch):
    monkeypatch.setattr(bench, "QUICK_CASES", ((4, 2, 3),))
    monkeypatch.setattr(bench, "BANDWIDTH_BYTES", 1 << 20)
    args = ["--quick", "--repeats", "1", "--warmup", "0", "--no-compile"]
    assert bench.main(args) == 0
    out = capsys.readouterr().out
    assert "(4, 2, 3)" in out and "geometric mean" in out


@pytest.mark.parametrize(
    ("shape", "dtype"), [((4,), "float32"), ((4, 0, 2), "float64"), ((4, 2), "int32")]
)
def test_run_case_rejects_bad_cases(shape, dtype):
    with pytest.raises(ValueError, match="expected a float32 or float64 dtype"):
        bench.run_case(shape, dtype, bandwidth=1e10)


def test_run_rejects_bad_repeats():
    with pytest.raises(ValueError, match="repeats >= 1"):
        bench.run(TINY, repeats=0)


def test_implementations_lists_numba_when_installed():
    has = importlib.util.find_spec("numba") is not None
    assert ("numba" in bench.implementations()) is has
    assert bench.implementations()[0] == "bnlib"


def test_compile_times_reports_a_cold_and_a_cached_start(tmp_path):
    pytest.importorskip("numba", reason=NO_NUMBA)
    seconds = bench.compile_times(str(tmp_path))
    assert set(seconds) == {"cold", "cached"}
    assert all(math.isfinite(s) and s > 0 for s in seconds.values())
    assert any(tmp_path.rglob("*.nbi"))  # the cold start filled the cache
    again = compile_times_module.first_call_seconds(str(tmp_path))
    assert math.isfinite(again) and again > 0


def test_compile_times_without_numba_names_the_extra(monkeypatch):
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "numba" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ImportError, match=r"bnlib-batchnorm\[fast\]"):
        bench.compile_times()


def test_run_case_times_only_the_phases_asked_for():
    case = bench.run_case((6, 3), "float64", 1e10, 1, 0, peaks=False, phases=("both",))
    assert all(set(p) == {"both"} for p in case.seconds.values())
    assert all(p is None for p in case.peak_bytes.values())
    text = bench.format_report(bench.Report({}, 1e10, [case]))
    assert "      n/a" in text and "(6, 3)" in text


def test_run_case_rejects_unknown_phases():
    with pytest.raises(ValueError, match="expected phases among"):
        bench.run_case((6, 3), "float64", 1e10, phases=("sideways",))


def test_run_without_numba_times_the_others_and_reports_it(monkeypatch):
    # As on a machine without the fast extra: the speed pages read this report.
    monkeypatch.setattr(bench, "have_numba", lambda: False)
    assert bench.implementations() == ("bnlib", "textbook", "torch")
    report = bench.run(
        ((6, 3),), ["float32"], 1, 0, 1e10, peaks=False, phases=("both",)
    )
    (case,) = report.cases
    assert set(case.seconds) == {"bnlib", "textbook", "torch"}
    assert len(report.targets()) == 2  # the numpy backend's only
    text = bench.format_report(report)
    assert "numba compilation: not measured (numba not installed" in text


@pytest.mark.parametrize(
    ("mine", "theirs", "words"),
    [
        (1.0, 1.0, "about as fast as"),
        (0.9, 1.0, "about as fast as"),
        (1.1, 1.0, "about as fast as"),
        (0.89, 1.0, "faster than"),
        (1.12, 1.0, "slower than"),
        (3.0, 6.0, "faster than"),
    ],
)
def test_verdict_words_follow_the_ratio_with_a_ten_percent_band(mine, theirs, words):
    assert verdict(mine, theirs) == words


def test_verdict_rejects_a_time_that_is_not_positive():
    with pytest.raises(ValueError, match="positive"):
        verdict(0.0, 1.0)
