"""Batch Renormalization (Ioffe, 2017): BatchNorm corrected towards its running stats.

In training, BatchNorm's ``x_hat`` becomes ``r * x_hat + d`` with

    r = clip(sigma_B / sigma, 1/r_max, r_max)
    d = clip((mu_B - mu) / sigma, -d_max, d_max)

where ``mu_B, sigma_B`` are the batch's statistics and ``mu, sigma`` the running ones
(``sigma = sqrt(running_var + eps)``). Unclipped, ``r * x_hat + d`` is exactly the
input normalized with the running statistics, as in evaluation. ``r`` and ``d`` are
treated as constants in the backward pass. With ``r_max = 1`` and ``d_max = 0`` the
layer is BatchNorm. torch has no equivalent.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bnlib._checks import (
    affine_or_default,
    as_float_input,
    check_momentum,
    check_running_buffer,
    check_same_shape,
    check_stats_pair,
)
from bnlib.batchnorm import batch_norm
from bnlib.modules import _BatchNorm
from bnlib.zscore import check_eps, standardized_backward

_F64 = np.dtype(np.float64)

__all__ = [
    "BatchRenorm1d",
    "BatchRenorm2d",
    "batch_renorm",
    "batch_renorm_backward",
]


def _check_limits(r_max: Any, d_max: Any) -> tuple[float, float]:
    for name, v in (("r_max", r_max), ("d_max", d_max)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)):
            raise TypeError(f"{name} must be a real number, got {type(v).__name__}")
    if not r_max >= 1:
        raise ValueError(f"r_max must be at least 1, got {r_max}")
    if not d_max >= 0:
        raise ValueError(f"d_max must be non-negative, got {d_max}")
    return float(r_max), float(d_max)


def _channel(v: np.ndarray, ndim: int) -> np.ndarray:
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _batch_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Per-channel mean and biased variance in float64: mean first, then deviations."""
    axes = (0,) + tuple(range(2, x.ndim))
    x64 = x.astype(np.float64)
    mu = x64.mean(axis=axes)
    dev = x64 - _channel(mu, x.ndim)
    return mu, np.mean(dev * dev, axis=axes), axes


def _factors(
    mu: np.ndarray,
    var: np.ndarray,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    eps: float,
    r_max: float,
    d_max: float,
) -> tuple[np.ndarray, np.ndarray]:
    """``r`` and ``d`` per channel; 1 and 0 without running statistics."""
    if running_mean is None or running_var is None:
        return np.ones_like(mu), np.zeros_like(mu)
    sigma = np.sqrt(running_var.astype(np.float64) + eps)
    r = np.clip(np.sqrt(var + eps) / sigma, 1 / r_max, r_max)
    d = np.clip((mu - running_mean) / sigma, -d_max, d_max)
    return r, d


def renorm_train(
    x: np.ndarray,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    gamma: np.ndarray,
    beta: np.ndarray,
    momentum: float,
    eps: float,
    r_max: float,
    d_max: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training forward pass on checked input: ``(y, r, d)``; updates the buffers."""
    mu, var, _ = _batch_moments(x)
    r, d = _factors(mu, var, running_mean, running_var, eps, r_max, d_max)
    if running_mean is not None and running_var is not None:
        n = x.size // x.shape[1]
        running_mean *= 1 - momentum
        running_mean += momentum * mu
        running_var *= 1 - momentum
        running_var += momentum * var * (n / (n - 1))
    scale = gamma * r / np.sqrt(var + eps)
    shift = beta + gamma * d - mu * scale
    y: np.ndarray = x.astype(np.float64) * _channel(scale, x.ndim)
    y += _channel(shift, x.ndim)
    return y.astype(x.dtype), r, d


def batch_renorm(
    input: Any,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    weight: Any = None,
    bias: Any = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    r_max: float = 3.0,
    d_max: float = 5.0,
) -> np.ndarray:
    """Batch Renormalization, with :func:`bnlib.batch_norm`'s arguments and semantics.

    Parameters
    ----------
    input : ndarray, shape ``(N, C, *)``
    running_mean, running_var : ndarray, shape ``(C,)``, or None
        Give ``r`` and ``d`` in training (then updated **in place**, as in
        BatchNorm); used for the normalization in evaluation.
    weight, bias : array_like, shape ``(C,)``, optional
    training, momentum, eps
        As for :func:`bnlib.batch_norm`; ``eps > 0``.
    r_max, d_max : float
        The clipping limits, ``r_max >= 1`` and ``d_max >= 0``.

    Returns
    -------
    ndarray, shape and dtype of ``input``

    Notes
    -----
    .. math::

        \\begin{gathered}
        y = \\gamma \\Big(r\\,\\frac{x - \\mu_B}{\\sigma_B} + d\\Big) + \\beta, \\\\
        r = \\mathrm{clip}_{[1/r_{max}, r_{max}]}\\frac{\\sigma_B}{\\sigma},
        \\quad d = \\mathrm{clip}_{[-d_{max}, d_{max}]}\\frac{\\mu_B - \\mu}{\\sigma}.
        \\end{gathered}

    Without running statistics ``r = 1`` and ``d = 0``: BatchNorm.

    See Also
    --------
    batch_renorm_backward, BatchRenorm1d
    """
    x = as_float_input(input)
    c = x.shape[1]
    check_stats_pair(running_mean, running_var, bool(training))
    if running_mean is not None:
        check_running_buffer(running_mean, "running_mean", c)
        check_running_buffer(running_var, "running_var", c)
    gamma = affine_or_default(weight, "weight", c, _F64, 1)
    beta = affine_or_default(bias, "bias", c, _F64, 0)
    eps = check_eps(eps)
    r_max, d_max = _check_limits(r_max, d_max)
    if not training:
        return batch_norm(x, running_mean, running_var, gamma, beta, False, 0.0, eps)
    momentum = check_momentum(momentum)
    if x.size // c <= 1:
        raise ValueError(
            f"Expected more than 1 value per channel when training, got {x.shape}"
        )
    args = (running_mean, running_var, gamma, beta, momentum, eps, r_max, d_max)
    y: np.ndarray = renorm_train(x, *args)[0]
    return y


def batch_renorm_backward(
    grad_output: Any,
    input: Any,
    r: Any,
    d: Any,
    weight: Any = None,
    eps: float = 1e-5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of training-mode :func:`batch_renorm`, ``r`` and ``d`` held fixed.

    Parameters
    ----------
    grad_output, input : ndarray, shape ``(N, C, *)``
    r, d : array_like, shape ``(C,)``
        The factors of the forward pass (computed from the running statistics
        *before* that pass updated them).
    weight : array_like, shape ``(C,)``, optional
        ``gamma``; None means 1.
    eps : float
        As in the forward pass, > 0.

    Returns
    -------
    grad_input : ndarray, shape of ``input``
    grad_weight, grad_bias : ndarray, shape ``(C,)``

    Notes
    -----
    BatchNorm's backward with ``gamma`` replaced by ``gamma * r``;
    ``dgamma = sum(dy * (r * x_hat + d))`` and ``dbeta = sum(dy)``.
    """
    x = as_float_input(input)
    dy = as_float_input(grad_output, "grad_output")
    check_same_shape(dy, x, "grad_output", "input")
    c = x.shape[1]
    gamma = affine_or_default(weight, "weight", c, _F64, 1)
    r = affine_or_default(r, "r", c, _F64, 1)
    d = affine_or_default(d, "d", c, _F64, 0)
    mu, var, axes = _batch_moments(x)
    rstd = 1 / np.sqrt(var + check_eps(eps))
    x_hat = (x.astype(np.float64) - _channel(mu, x.ndim)) * _channel(rstd, x.ndim)
    dy64 = dy.astype(np.float64)
    g = dy64 * _channel(gamma * r, x.ndim)
    dx = standardized_backward(g, x_hat, _channel(rstd, x.ndim), axes)
    dw = r * (dy64 * x_hat).sum(axis=axes) + d * dy64.sum(axis=axes)
    return dx.astype(x.dtype), dw.astype(x.dtype), dy64.sum(axis=axes).astype(x.dtype)


class _BatchRenorm(_BatchNorm):
    """Common code of the Batch Renormalization layers; see :class:`BatchRenorm1d`."""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        r_max: float = 3.0,
        d_max: float = 5.0,
        affine: bool = True,
        track_running_stats: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        check_eps(eps)
        self.r_max, self.d_max = _check_limits(r_max, d_max)
        super().__init__(
            num_features,
            eps,
            momentum,
            affine,
            track_running_stats,
            device=device,
            dtype=dtype,
        )
        self.r: np.ndarray | None = None
        self.d: np.ndarray | None = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.num_features}, eps={self.eps}, "
            f"momentum={self.momentum}, r_max={self.r_max}, d_max={self.d_max}, "
            f"affine={self.affine}, track_running_stats={self.track_running_stats})"
        )

    def forward(self, input: Any) -> np.ndarray:
        """Batch Renormalization in training mode, BatchNorm with running
        statistics in eval mode; ``r`` and ``d`` of the step are kept in ``self.r``
        and ``self.d``."""
        x = self._check_input(input)
        if not self.training:
            return super().forward(x)
        c, dt = self.num_features, _F64
        gamma = affine_or_default(self.weight, "weight", c, dt, 1)
        beta = affine_or_default(self.bias, "bias", c, dt, 0)
        with self._lock():
            y, self.r, self.d = renorm_train(
                x, self.running_mean, self.running_var, gamma, beta,
                self._momentum_for_step(), self.eps, self.r_max, self.d_max,
            )  # fmt: skip
            self._count_batch()
            self._keep({"input": x, "weight": gamma, "r": self.r, "d": self.d})
        return y

    def backward(self, grad_output: Any) -> np.ndarray:
        """``dl/dx`` of this thread's last forward pass: in training mode with
        ``r``, ``d`` constant, in eval mode as :class:`bnlib.BatchNorm1d`; adds into
        ``weight_grad`` and ``bias_grad``."""
        s = self._saved
        if s is None or "r" not in s:  # eval mode, or no forward: BatchNorm's
            return super().backward(grad_output)
        dy = as_float_input(grad_output, "grad_output")
        check_same_shape(dy, s["input"], "grad_output", "the last forward input")
        dx, dw, db = batch_renorm_backward(
            dy, s["input"], s["r"], s["d"], s["weight"], self.eps
        )
        self._saved = None
        return self._add_grads(dx, dw, db)


class BatchRenorm1d(_BatchRenorm):
    """Batch Renormalization over ``(N, C)`` or ``(N, C, L)`` input.

    Parameters
    ----------
    num_features, eps, momentum, affine, track_running_stats, dtype
        As for :class:`bnlib.BatchNorm1d` (``eps > 0``).
    r_max, d_max : float
        Clipping limits of ``r`` and ``d``; ``r_max = 1, d_max = 0`` is BatchNorm.

    See Also
    --------
    batch_renorm
    """

    _ranks = (2, 3)
    _rank_text = "2D or 3D"


class BatchRenorm2d(_BatchRenorm):
    """Batch Renormalization over ``(N, C, H, W)`` input; see :class:`BatchRenorm1d`."""

    _ranks = (4,)
    _rank_text = "4D"
