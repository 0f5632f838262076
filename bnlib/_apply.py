"""The two per-channel applies of BatchNorm, exact about a float32 mean.

The forward pass applies ``(x - mean) * scale + beta`` and the backward pass
``k * (dy - c - a * (x - mean))``, each through the backend's kernels, which compute
in the input's dtype. For float32 data far from zero, the mean rounded to float32 is
off by up to half an ulp of the offset (5e-4 at 1e4), the same for every value of a
channel. So the mean is split (:func:`split_mean`) into a part exact in the input's
dtype, which the kernels subtract, and a float64 remainder folded into the
per-channel constant: the output keeps the digits of ``x - mean``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bnlib.backend import kernels

__all__ = ["apply_affine", "input_grad", "split_mean"]


def split_mean(mean: np.ndarray, dtype: np.dtype[Any]) -> tuple[np.ndarray, np.ndarray]:
    """``mean`` as ``hi + lo`` (float64), ``hi`` exactly representable in ``dtype``.

    The kernels form ``x - hi`` in the input's dtype, exactly for ``x`` near the
    mean; ``lo`` goes into a per-channel constant in float64. So rounding the mean
    to float32 (up to half an ulp of an offset such as 1e4, 5e-4) never reaches
    the output.
    """
    mean = np.asarray(mean, dtype=np.float64)
    hi = mean.astype(dtype).astype(np.float64)
    return hi, mean - hi


def apply_affine(x3: np.ndarray, mean: Any, scale: Any, beta: Any) -> np.ndarray:
    """``(x - mean) * scale + beta`` per channel, as ``(x - hi) * scale + beta'``
    with ``beta' = beta - lo * scale`` (see :func:`split_mean`)."""
    hi, lo = split_mean(mean, x3.dtype)
    scale = np.asarray(scale, dtype=np.float64)
    return kernels().normalized(x3, hi, scale, beta - lo * scale)


def input_grad(
    dy3: np.ndarray, x3: np.ndarray, mean: Any, coef: tuple[Any, Any, Any]
) -> np.ndarray:
    """``k * (dy - c - a * (x - mean))`` per channel, ``coef = (k, c, a)``, as
    ``k * (dy - c' - a * (x - hi))`` with ``c' = c - a * lo`` (see
    :func:`split_mean`)."""
    hi, lo = split_mean(mean, x3.dtype)
    k, c, a = (np.asarray(v, dtype=np.float64) for v in coef)
    return kernels().input_grad(dy3, x3, hi, (k, c - a * lo, a))
