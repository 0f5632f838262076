"""One idea behind the whole normalization family: a z-score over a set of axes.

BatchNorm, LayerNorm, InstanceNorm and GroupNorm all compute

    x_hat = (x - mean_S(x)) / sqrt(var_S(x) + eps)

where ``S`` is a set of axes of (a reshaped view of) the input; they differ only in
``S``. RMSNorm drops the mean. :func:`normalize` is that forward pass and
:func:`normalize_backward` its gradient; the family in :mod:`bnlib.family` and
:mod:`bnlib.instance` is a few lines on top of them.

The statistics are taken in float64: the mean first, then the variance of the
deviations from it, so float32 inputs far from zero keep their digits
(``E[x**2] - E[x]**2`` is never formed).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["check_eps", "normalize", "normalize_backward"]


def check_eps(eps: Any) -> float:
    """Return ``eps`` as a float; it must be a real number greater than 0."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating)):
        raise TypeError(f"eps must be a real number, got {type(eps).__name__}")
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")
    return float(eps)


def _check_axes(axes: Any, ndim: int) -> tuple[int, ...]:
    """Distinct axes in ``[-ndim, ndim)``, as non-negative ints."""
    if isinstance(axes, (int, np.integer)) and not isinstance(axes, bool):
        axes = (axes,)
    try:
        items = tuple(axes)
    except TypeError:
        msg = f"axes must be an int or a tuple of ints, got {axes!r}"
        raise TypeError(msg) from None
    out = []
    for a in items:
        if isinstance(a, bool) or not isinstance(a, (int, np.integer)):
            raise TypeError(f"axes must be ints, got {a!r} in {items}")
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of range for a {ndim}D input")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"axes must be distinct, got {items}")
    return tuple(out)


def _float(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"{name} must have a floating dtype, got dtype {arr.dtype}")
    return arr


def standardized(
    x: np.ndarray, axes: tuple[int, ...], eps: float, center: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """``x_hat`` and ``1 / sqrt(var + eps)`` (kept dims), both float64; no checks."""
    x64 = x.astype(np.float64, copy=False)
    if center:
        x64 = x64 - x64.mean(axis=axes, keepdims=True)
    rstd = 1 / np.sqrt(np.mean(x64 * x64, axis=axes, keepdims=True) + eps)
    return x64 * rstd, rstd


def standardized_backward(
    h: np.ndarray,
    x_hat: np.ndarray,
    rstd: np.ndarray,
    axes: tuple[int, ...],
    center: bool = True,
) -> np.ndarray:
    """``dl/dx`` from ``h = dl/dx_hat`` (float64); see :func:`normalize_backward`."""
    h = h.astype(np.float64, copy=False)
    proj = np.mean(h * x_hat, axis=axes, keepdims=True)
    if center:
        h = h - h.mean(axis=axes, keepdims=True)
    dx: np.ndarray = rstd * (h - x_hat * proj)
    return dx


def normalize(
    input: Any, axes: Any, eps: float = 1e-5, center: bool = True
) -> np.ndarray:
    """Standardize ``input`` over ``axes``: the family's common forward pass.

    Parameters
    ----------
    input : ndarray, any shape
        Floating-point input; never modified.
    axes : int or tuple of ints
        The set ``S`` of axes the statistics are taken over; one mean and one
        variance per position on the other axes.
    eps : float
        Added to the variance, > 0.
    center : bool
        Subtract the mean (True, a z-score) or not (False, RMS normalization).

    Returns
    -------
    ndarray, same shape and dtype as ``input``
        ``x_hat``.

    Notes
    -----
    With ``m`` values in each set ``S``,

    .. math::

        \\mu = \\frac{1}{m}\\sum_{i\\in S} x_i, \\quad
        \\sigma^2 = \\frac{1}{m}\\sum_{i\\in S} (x_i - \\mu)^2, \\quad
        \\hat{x}_i = \\frac{x_i - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}};

    with ``center=False``, ``mu = 0`` and ``sigma**2`` is the mean square.

    See Also
    --------
    normalize_backward : its gradient.
    """
    x = _float(input, "input")
    ax = _check_axes(axes, x.ndim)
    x_hat, _ = standardized(x, ax, check_eps(eps), bool(center))
    return x_hat.astype(x.dtype)


def normalize_backward(
    grad_output: Any, input: Any, axes: Any, eps: float = 1e-5, center: bool = True
) -> np.ndarray:
    """Gradient of :func:`normalize`: ``dl/dx`` from ``dl/dx_hat``.

    Parameters
    ----------
    grad_output : ndarray, same shape as ``input``
        ``dl/dx_hat``.
    input, axes, eps, center
        As for :func:`normalize`; the statistics are recomputed.

    Returns
    -------
    ndarray, same shape and dtype as ``input``

    Notes
    -----
    With ``h = dl/dx_hat`` and means over each set of ``m`` values,

    .. math::

        \\frac{\\partial l}{\\partial x_i} = \\frac{1}{\\sqrt{\\sigma^2+\\epsilon}}
        \\Big(h_i - \\overline{h} - \\hat{x}_i\\, \\overline{h \\hat{x}}\\Big);

    without centring the term ``mean(h)`` is dropped.
    """
    x = _float(input, "input")
    h = _float(grad_output, "grad_output")
    if h.shape != x.shape:
        raise ValueError(
            f"grad_output must have the same shape as input {x.shape}, got {h.shape}"
        )
    ax = _check_axes(axes, x.ndim)
    x_hat, rstd = standardized(x, ax, check_eps(eps), bool(center))
    return standardized_backward(h, x_hat, rstd, ax, bool(center)).astype(x.dtype)
