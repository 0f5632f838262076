"""Between-seed intervals and calibration numbers for the batched-seed experiments.

Each trained network gives one number per seed (a final accuracy, a step count, a
calibration error). These helpers put an interval around the mean over seeds, or
around a difference between two arms, treating the *seed* as the unit: never the
measurements inside one run.

- :func:`seed_interval`: mean over seeds and a t-interval (or a bootstrap over
  seeds).
- :func:`seed_difference`: difference of two arms' means, paired when the arms
  share their seeds (the same initial weights and batch order).
- :func:`nll` and :func:`expected_calibration_error`: how well predicted
  probabilities match what happens, for Monte Carlo BatchNorm.

Importing this module needs scipy and torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy import stats

from bnbook.lab.regularization import mean_difference

__all__ = [
    "expected_calibration_error",
    "fmt_interval",
    "nll",
    "seed_difference",
    "seed_interval",
]


def seed_interval(
    values: Any, confidence: float = 0.95, method: str = "t", n_resamples: int = 4000
) -> tuple[float, float, float]:
    """Mean over seeds and a two-sided interval for it.

    Parameters
    ----------
    values : array_like, shape ``(n_seeds,)``
        One number per seed (``n_seeds >= 2``).
    confidence : float
    method : {"t", "bootstrap"}
        Student's t-interval, or a percentile bootstrap that resamples the seeds
        (fixed generator, so repeated calls agree).

    Returns
    -------
    mean, low, high : float

    Notes
    -----
    The t-interval is :math:`\\bar v \\pm t_{n-1,(1+c)/2}\\, s/\\sqrt n`.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size < 2:
        raise ValueError(f"values must be 1-D with >= 2 seeds, got shape {v.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if method == "t":
        half = stats.t.ppf((1 + confidence) / 2, v.size - 1) * v.std(ddof=1)
        half /= np.sqrt(v.size)
        return float(v.mean()), float(v.mean() - half), float(v.mean() + half)
    if method == "bootstrap":
        rng = np.random.default_rng(0)
        means = v[rng.integers(0, v.size, (n_resamples, v.size))].mean(axis=1)
        lo, hi = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
        return float(v.mean()), float(lo), float(hi)
    raise ValueError(f"method must be 't' or 'bootstrap', got {method!r}")


def seed_difference(
    a: Any, b: Any, paired: bool, confidence: float = 0.95
) -> tuple[float, float, float]:
    """Difference of the seed means ``a - b`` with its t-interval.

    Paired when the two arms ran on the same seeds (seed ``i`` of both), Welch's
    otherwise; see :func:`bnbook.lab.regularization.mean_difference`.
    """
    return mean_difference(a, b, paired=paired, confidence=confidence)


def fmt_interval(triple: tuple[float, float, float], scale: float = 1.0, fmt=".1f"):
    """``"m (lo to hi)"`` for ``(mean, low, high)`` times ``scale``."""
    m, lo, hi = (scale * t for t in triple)
    return f"{m:{fmt}} ({lo:{fmt}} to {hi:{fmt}})"


def nll(probs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of the labels, per slot.

    Parameters
    ----------
    probs : Tensor, shape ``(K, N, C)``
        Predicted class probabilities (rows sum to 1).
    y : Tensor of ints, shape ``(N,)``

    Returns
    -------
    Tensor, shape ``(K,)``
    """
    _check_probs(probs, y)
    picked = probs.gather(2, y.expand(probs.shape[0], -1)[..., None])[..., 0]
    return -torch.log(picked.clamp_min(1e-12)).mean(1)


def expected_calibration_error(
    probs: torch.Tensor, y: torch.Tensor, n_bins: int = 10
) -> torch.Tensor:
    """Expected calibration error of the top-class confidence, per slot.

    Notes
    -----
    With the examples binned by their confidence :math:`c_i = \\max_k p_{ik}` into
    ``n_bins`` equal-width bins :math:`B_b`,
    :math:`\\mathrm{ECE} = \\sum_b \\frac{|B_b|}{N}\\,|\\mathrm{acc}(B_b) -
    \\mathrm{conf}(B_b)|` (Guo et al. 2017).

    Returns
    -------
    Tensor, shape ``(K,)``
    """
    _check_probs(probs, y)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    conf, pred = probs.max(dim=2)
    correct = (pred == y).to(probs.dtype)
    bins = torch.clamp((conf * n_bins).long(), max=n_bins - 1)
    out = torch.zeros(probs.shape[0], dtype=probs.dtype)
    for b in range(n_bins):
        inside = (bins == b).to(probs.dtype)
        gap = ((correct - conf) * inside).sum(1).abs()
        out += gap / probs.shape[1]
    return out


def _check_probs(probs: torch.Tensor, y: torch.Tensor) -> None:
    if probs.ndim != 3 or y.ndim != 1 or probs.shape[1] != y.shape[0]:
        raise ValueError(
            f"need probs (K, N, C) and y (N,), got {tuple(probs.shape)} and "
            f"{tuple(y.shape)}"
        )
