"""bnbook.lab.seedstats: intervals over seeds, NLL and calibration error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from bnbook.lab import seedstats as ss


def test_seed_interval_t_matches_scipy():
    v = np.array([0.91, 0.93, 0.90, 0.95, 0.92, 0.94, 0.89, 0.93])
    mean, lo, hi = ss.seed_interval(v, 0.9)
    ref = stats.t.interval(0.9, v.size - 1, loc=v.mean(), scale=stats.sem(v))
    assert mean == pytest.approx(v.mean())
    assert (lo, hi) == pytest.approx(ref, rel=1e-12)


def test_seed_interval_bootstrap_resamples_seeds():
    v = np.arange(10.0)
    mean, lo, hi = ss.seed_interval(v, method="bootstrap")
    # Bootstrap means of 10 values have sd close to sd(v, ddof=0) / sqrt(10).
    se = v.std() / np.sqrt(v.size)
    assert lo < mean < hi
    assert (hi - lo) / (2 * 1.96 * se) == pytest.approx(1.0, abs=0.1)
    assert ss.seed_interval(v, method="bootstrap") == (mean, lo, hi)  # repeatable


def test_seed_interval_rejects_bad_input():
    with pytest.raises(ValueError, match=">= 2 seeds"):
        ss.seed_interval([1.0])
    with pytest.raises(ValueError, match="confidence"):
        ss.seed_interval([1.0, 2.0], 1.5)
    with pytest.raises(ValueError, match="method"):
        ss.seed_interval([1.0, 2.0], method="z")


def test_seed_difference_paired_matches_scipy():
    a, b = np.array([1.0, 2.0, 4.0, 3.0]), np.array([0.5, 1.0, 3.0, 3.2])
    d, lo, hi = ss.seed_difference(a, b, paired=True)
    ref = stats.t.interval(0.95, 3, loc=(a - b).mean(), scale=stats.sem(a - b))
    assert d == pytest.approx((a - b).mean())
    assert (lo, hi) == pytest.approx(ref, rel=1e-12)


def test_fmt_interval_scales():
    assert ss.fmt_interval((0.5, 0.25, 0.75), 100) == "50.0 (25.0 to 75.0)"


def test_nll_matches_loop():
    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(2, 5, 3, generator=gen, dtype=torch.float64), -1)
    y = torch.tensor([0, 2, 1, 1, 0])
    expected = [
        -np.mean([np.log(probs[k, i, y[i]].item()) for i in range(5)]) for k in range(2)
    ]
    np.testing.assert_allclose(ss.nll(probs, y).numpy(), expected, rtol=1e-12)


def test_expected_calibration_error_by_hand():
    # Confidences 0.95, 0.95 (one right), 0.55 (right): bins 9 and 5.
    probs = torch.tensor(
        [[[0.95, 0.05], [0.95, 0.05], [0.45, 0.55]]], dtype=torch.float64
    )
    y = torch.tensor([0, 1, 1])
    expected = 2 / 3 * abs(0.5 - 0.95) + 1 / 3 * abs(1.0 - 0.55)
    assert ss.expected_calibration_error(probs, y).item() == pytest.approx(expected)


def test_expected_calibration_error_zero_when_calibrated():
    probs = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    assert ss.expected_calibration_error(probs, torch.tensor([0, 1])).item() == 0.0


def test_calibration_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"probs \(K, N, C\)"):
        ss.nll(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="n_bins"):
        ss.expected_calibration_error(torch.ones(1, 2, 1), torch.zeros(2).long(), 0)
