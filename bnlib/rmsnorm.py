"""RMSNorm (Zhang and Sennrich, 2019): LayerNorm without the mean.

``y = gamma * x / sqrt(mean(x**2) + eps)`` over the trailing ``normalized_shape``
axes: :func:`bnlib.normalize` with ``center=False``. The functions mirror
``torch.nn.functional.rms_norm``, including its default ``eps``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bnlib.family import affine, float_input, lead_sums, same_shape, trailing_setup
from bnlib.zscore import check_eps, standardized, standardized_backward

__all__ = ["rms_eps", "rms_norm", "rms_norm_backward"]


def rms_eps(eps: float | None, dtype: np.dtype) -> float:
    """torch's default for ``eps=None``: the machine epsilon of the dtype torch
    computes in (float32 for float16 input, else ``dtype`` itself)."""
    if eps is not None:
        return check_eps(eps)
    return float(np.finfo(np.float32 if dtype == np.float16 else dtype).eps)


def rms_norm(
    input: Any, normalized_shape: Any, weight: Any = None, eps: float | None = None
) -> np.ndarray:
    """Root-mean-square normalization, as ``torch.nn.functional.rms_norm``.

    Parameters
    ----------
    input : ndarray, shape ``(*, *normalized_shape)``
    normalized_shape : int or tuple of ints
    weight : array_like, shape ``normalized_shape``, optional
    eps : float or None
        Added to the mean square; None means torch's default, the machine epsilon
        of the dtype it computes in: ``numpy.finfo(input.dtype).eps``, float32's
        for float16 input.

    Returns
    -------
    ndarray, shape and dtype of ``input``

    Notes
    -----
    LayerNorm without the mean: ``y = gamma * x / sqrt(mean(x**2) + eps)`` over the
    trailing axes (Zhang and Sennrich, 2019). No bias.

    See Also
    --------
    rms_norm_backward, bnlib.RMSNorm
    """
    x, _, axes, w = trailing_setup(input, normalized_shape, weight)
    x_hat, _ = standardized(x, axes, rms_eps(eps, x.dtype), center=False)
    return affine(x_hat, w, None, x.dtype)


def rms_norm_backward(
    grad_output: Any,
    input: Any,
    normalized_shape: Any,
    weight: Any = None,
    eps: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of :func:`rms_norm`: ``(grad_input, grad_weight)``.

    Notes
    -----
    With ``g = gamma * dy`` and ``r = 1 / sqrt(mean(x**2) + eps)``,
    ``dx = r * (g - x_hat * mean(g * x_hat))``: the LayerNorm gradient without the
    ``mean(g)`` term. ``grad_weight = sum(dy * x_hat)`` over the leading axes.
    """
    x, shape, axes, w = trailing_setup(input, normalized_shape, weight)
    dy = float_input(grad_output, "grad_output")
    same_shape(dy, x)
    x_hat, rstd = standardized(x, axes, rms_eps(eps, x.dtype), center=False)
    dy64 = dy.astype(np.float64)
    g = dy64 if w is None else dy64 * w
    dx = standardized_backward(g, x_hat, rstd, axes, center=False)
    dw, _ = lead_sums(dy64, x_hat, len(shape))
    return dx.astype(x.dtype), dw.astype(x.dtype)
