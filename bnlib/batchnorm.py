"""Batch normalization in numpy: the forward pass and its closed-form gradients.

The functions here mirror :func:`torch.nn.functional.batch_norm` on numpy arrays.
The channel axis is 1; statistics are taken per channel over every other axis,
so the same code serves ``(N, C)``, ``(N, C, L)``, ``(N, C, H, W)`` and
``(N, C, D, H, W)`` inputs. Internally every input is viewed as ``(N, C, L)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bnlib._apply import apply_affine, input_grad
from bnlib._checks import (
    affine_or_default,
    as_channel_vector,
    as_float_input,
    check_bool,
    check_eps,
    check_momentum,
    check_not_narrower,
    check_running_buffer,
    check_same_shape,
    check_stats_pair,
    quiet_non_finite,
)
from bnlib._kernels.blocked import per_channel
from bnlib.backend import kernels

__all__ = [
    "batch_norm",
    "batch_norm_backward",
    "batch_norm_eval_backward",
    "batch_stats",
]


_NAMES = ("running_mean", "running_var", "weight", "bias")


def _as_ncl(x: np.ndarray) -> np.ndarray:
    """View an ``(N, C, *)`` array as ``(N, C, L)``; a copy only if it must be."""
    return x.reshape(x.shape[0], x.shape[1], -1)


def _working(x: np.ndarray) -> np.ndarray:
    """float16 is computed in float32, as PyTorch does; other dtypes as they are."""
    return x.astype(np.float32) if x.dtype == np.float16 else x


def _count_per_channel(x: np.ndarray) -> int:
    """Number of values each channel's statistics are taken over: N * L."""
    return x.size // x.shape[1] if x.shape[1] else 0


def _moments(
    x3: np.ndarray, dy3: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean and biased variance of ``x3`` ``(N, C, L)``, and ``sum(dy)``,
    ``sum(dy * (x - mean))`` when ``dy3`` is given (else zeros); all float64 ``(C,)``.

    The shifted-data algorithm: with a shift ``K``, ``d = x - K`` and ``n`` values
    per channel, ``mean = K + sum(d)/n`` and ``var = sum(d**2)/n - (sum(d)/n)**2``,
    and ``sum(dy * (x - mean)) = sum(dy * d) - (mean - K) * sum(dy)``. The rounding
    error grows with ``(mean - K)**2 / var``; ``K`` is the mean of a part of the
    batch (the backend's ``shift``: numpy's is the first block), so
    ``(mean - K)**2 / var`` is at most ``n`` over the part's count.
    ``E[x**2] - E[x]**2`` on raw data, which loses every digit for float32 data far
    from zero, is never formed.
    """
    n = x3.shape[0] * x3.shape[2]
    backend = kernels()
    shift = backend.shift(x3)
    s_d, s_dd, s_dy, s_dyd = backend.channel_sums(x3, shift, dy3)
    delta = s_d / n
    var = np.maximum(s_dd / n - delta * delta, 0)
    return shift + delta, var, s_dy, s_dyd - delta * s_dy


@quiet_non_finite
def batch_stats(input: ArrayLike) -> tuple[NDArray[Any], NDArray[Any]]:
    """Per-channel mean and biased variance of a batch.

    Parameters
    ----------
    input : ndarray, shape ``(N, C, *)``
        A batch with channels on axis 1 and a floating dtype.

    Returns
    -------
    mean, var : ndarray, shape ``(C,)``
        ``mean_c = (1/m) sum x`` and ``var_c = (1/m) sum (x - mean_c)**2`` over the
        ``m = N * prod(*)`` values of channel ``c``, in the input's dtype.

    See Also
    --------
    batch_norm : normalizes with these statistics in training mode.
    """
    x = as_float_input(input)
    if _count_per_channel(x) < 1:
        raise ValueError(f"cannot take statistics of an empty batch of shape {x.shape}")
    mu, var, _, _ = _moments(_as_ncl(_working(x)))
    return mu.astype(x.dtype), var.astype(x.dtype)


def _update_running(
    running_mean: np.ndarray,
    running_var: np.ndarray,
    mu: np.ndarray,
    var: np.ndarray,
    n: int,
    momentum: float,
) -> None:
    """Exponential moving averages, in place; the variance is made unbiased."""
    unbiased = var * (n / (n - 1))
    running_mean *= 1 - momentum
    running_mean += momentum * mu
    running_var *= 1 - momentum
    running_var += momentum * unbiased


@quiet_non_finite
def batch_norm(
    input: ArrayLike,
    running_mean: NDArray[Any] | None,
    running_var: NDArray[Any] | None,
    weight: ArrayLike | None = None,
    bias: ArrayLike | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> NDArray[Any]:
    """Batch normalization, with the semantics of ``torch.nn.functional.batch_norm``.

    Parameters
    ----------
    input : ndarray, shape ``(N, C, *)``
        Floating-point batch; channels on axis 1. Never modified.
    running_mean, running_var : ndarray, shape ``(C,)``, or None
        Running statistics. Used for normalization when ``training`` is False;
        updated **in place** when ``training`` is True.
    weight, bias : array_like, shape ``(C,)``, optional
        The affine parameters gamma and beta (default 1 and 0).
    training : bool
        Normalize with the batch statistics (True) or the running ones (False).
    momentum : float
        Weight of the new batch in the running averages.
    eps : float
        Added to the variance for numerical stability; must be positive in
        training (as in PyTorch), non-negative otherwise.

    Returns
    -------
    ndarray, shape ``(N, C, *)``
        ``y``, in the input's dtype.

    Notes
    -----
    With ``m = N * prod(*)`` values per channel,

    .. math::

        \\mu = \\frac{1}{m}\\sum_i x_i, \\quad
        \\sigma^2 = \\frac{1}{m}\\sum_i (x_i - \\mu)^2, \\quad
        y_i = \\gamma \\frac{x_i - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}} + \\beta .

    In training the running statistics move as
    ``r <- (1 - momentum) r + momentum * s`` with ``s = mu`` and
    ``s = sigma**2 * m / (m - 1)`` (the unbiased variance).

    See Also
    --------
    batch_norm_backward : the gradients of the training-mode output.
    """
    x_in = as_float_input(input)
    x, num_channels = _working(x_in), x_in.shape[1]
    training = check_bool(training, "training")
    check_stats_pair(running_mean, running_var, training)
    if running_mean is not None:
        check_running_buffer(running_mean, "running_mean", num_channels, training)
        check_running_buffer(running_var, "running_var", num_channels, training)
    for v, name in zip((running_mean, running_var, weight, bias), _NAMES, strict=True):
        check_not_narrower(v, name, x_in.dtype)
    gamma = affine_or_default(weight, "weight", num_channels, x.dtype, 1)
    beta = affine_or_default(bias, "bias", num_channels, x.dtype, 0)
    eps = check_eps(eps)
    if training and eps == 0:
        raise ValueError("eps must be positive in training, got 0.0")
    if not training and running_mean is not None and running_var is not None:
        if x.size == 0:
            return np.empty_like(x_in)
        y = _normalize_with(x, running_mean, running_var, gamma, beta, eps)
        return y.astype(x_in.dtype, copy=False)
    momentum = check_momentum(momentum)
    n = _count_per_channel(x)
    if n == 1:
        raise ValueError(
            "Expected more than 1 value per channel when training, "
            f"got input of shape {x.shape}"
        )
    if x.size == 0:
        return np.empty_like(x_in)
    x3 = _as_ncl(x)
    mu, var, _, _ = _moments(x3)
    if running_mean is not None and running_var is not None:
        _update_running(running_mean, running_var, mu, var, n, momentum)
    y3 = apply_affine(x3, mu, gamma / np.sqrt(var + eps), beta)
    return y3.reshape(x.shape).astype(x_in.dtype, copy=False)


def _normalize_with(
    x: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    eps: float,
) -> np.ndarray:
    """``gamma * (x - mean) / sqrt(var + eps) + beta`` with given statistics."""
    mean, var = (np.asarray(v, dtype=np.float64) for v in (mean, var))
    y3 = apply_affine(_as_ncl(x), mean, gamma / np.sqrt(var + eps), beta)
    return y3.reshape(x.shape)


def _grads_from_x_hat(
    dy3: np.ndarray, x3: np.ndarray, gamma: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closed-form backward through the batch statistics of ``x3`` ``(N, C, L)``.

    With ``m`` values per channel and ``k = gamma / sqrt(var + eps)``,
    ``dx = k * (dy - mean(dy) - x_hat * mean(dy * x_hat))``. One pass over ``x3``
    and ``dy3`` gives the statistics and both sums; a second writes ``dx``.
    ``x_hat = (x - mu) * inv_std`` is never stored: ``input_grad`` forms
    ``x_hat * mean(dy * x_hat)`` as ``(x - mu) * a`` with ``a`` below.
    """
    m = x3.shape[0] * x3.shape[2]
    mu, var, dbeta, dy_centred = _moments(x3, dy3)
    inv_std = 1 / np.sqrt(var + eps)
    dgamma = dy_centred * inv_std  # sum(dy * x_hat)
    a = dgamma / m * inv_std
    dx3 = input_grad(dy3, x3, mu, (gamma * inv_std, dbeta / m, a))
    return dx3, dgamma, dbeta


@quiet_non_finite
def batch_norm_backward(
    grad_output: ArrayLike,
    input: ArrayLike,
    weight: ArrayLike | None = None,
    eps: float = 1e-5,
) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any]]:
    """Gradients of training-mode :func:`batch_norm`, in closed form.

    Parameters
    ----------
    grad_output : ndarray, shape ``(N, C, *)``
        Upstream gradient ``dl/dy``.
    input : ndarray, shape ``(N, C, *)``
        The input of the forward pass; its batch statistics are recomputed.
    weight : array_like, shape ``(C,)``, optional
        gamma (default 1).
    eps : float
        The forward pass's epsilon.

    Returns
    -------
    grad_input : ndarray, shape ``(N, C, *)``
    grad_weight, grad_bias : ndarray, shape ``(C,)``
        ``dl/dgamma`` and ``dl/dbeta``; returned even when ``weight`` is None, as the
        gradients an affine layer at ``gamma = 1`` would receive.

    Notes
    -----
    With ``m`` values per channel and ``x_hat = (x - mu) / sqrt(var + eps)``:

    .. math::

        \\begin{aligned}
        \\frac{\\partial l}{\\partial \\beta} &= \\sum_i dy_i, \\qquad
        \\frac{\\partial l}{\\partial \\gamma} = \\sum_i dy_i \\hat{x}_i, \\\\
        dx_i &= \\frac{\\gamma}{m\\sqrt{\\sigma^2+\\epsilon}}
        \\Big(m\\, dy_i - \\sum_j dy_j - \\hat{x}_i \\sum_j dy_j \\hat{x}_j\\Big).
        \\end{aligned}

    See Also
    --------
    batch_norm_eval_backward : the gradients when running statistics are used.
    """
    x_in = as_float_input(input)
    dy = as_float_input(grad_output, "grad_output")
    check_same_shape(dy, x_in, "grad_output", "input")
    x = _working(x_in)
    gamma = affine_or_default(weight, "weight", x.shape[1], x.dtype, 1)
    if x.size == 0:
        zeros = np.zeros(x.shape[1], dtype=x.dtype)
        return np.zeros_like(x_in), zeros, zeros.copy()
    if _count_per_channel(x) == 1:
        raise ValueError(
            "Expected more than 1 value per channel when training, "
            f"got input of shape {x.shape}"
        )
    x3, dy3 = _as_ncl(x), _as_ncl(dy.astype(x.dtype, copy=False))
    dx3, dgamma, dbeta = _grads_from_x_hat(dy3, x3, gamma, eps)
    out = dx3.reshape(x.shape).astype(x_in.dtype, copy=False)
    return out, dgamma.astype(x_in.dtype), dbeta.astype(x_in.dtype)


@quiet_non_finite
def batch_norm_eval_backward(
    grad_output: ArrayLike, input: ArrayLike,
    running_mean: ArrayLike, running_var: ArrayLike,
    weight: ArrayLike | None = None, eps: float = 1e-5,
) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any]]:  # fmt: skip
    """Gradients of eval-mode :func:`batch_norm`, a fixed per-channel affine map.

    Parameters
    ----------
    grad_output, input : ndarray, shape ``(N, C, *)``
    running_mean, running_var : array_like, shape ``(C,)``
    weight : array_like, shape ``(C,)``, optional
    eps : float

    Returns
    -------
    grad_input : ndarray, shape ``(N, C, *)``
    grad_weight, grad_bias : ndarray, shape ``(C,)``

    Notes
    -----
    The statistics are constants, so ``y = a x + b`` with
    ``a = gamma / sqrt(running_var + eps)``: ``dx = a dy``,
    ``dgamma = sum(dy * (x - running_mean) / sqrt(running_var + eps))`` and
    ``dbeta = sum(dy)``.
    """
    x_in = as_float_input(input)
    dy = as_float_input(grad_output, "grad_output")
    check_same_shape(dy, x_in, "grad_output", "input")
    x = _working(x_in)
    c, dt = x.shape[1], x.dtype
    mean = as_channel_vector(running_mean, "running_mean", c, dt)
    var = as_channel_vector(running_var, "running_var", c, dt)
    gamma = affine_or_default(weight, "weight", c, dt, 1)
    if x.size == 0:
        return np.zeros_like(x_in), np.zeros(c, x_in.dtype), np.zeros(c, x_in.dtype)
    inv_std = 1 / np.sqrt(var.astype(np.float64) + eps)
    x3, dy3 = _as_ncl(x), _as_ncl(dy.astype(dt, copy=False))
    _, _, dbeta, dy_centred = kernels().channel_sums(x3, mean, dy3)
    dx3 = dy3 * per_channel(gamma * inv_std, x3)
    dt_in = x_in.dtype
    dgamma = dy_centred * inv_std
    return dx3.reshape(x.shape).astype(dt_in), dgamma.astype(dt_in), dbeta.astype(dt_in)
