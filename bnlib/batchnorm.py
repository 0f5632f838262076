"""Batch normalization in numpy: the forward pass and its closed-form gradients.

The functions here mirror :func:`torch.nn.functional.batch_norm` on numpy arrays.
The channel axis is 1; statistics are taken per channel over every other axis,
so the same code serves ``(N, C)``, ``(N, C, L)``, ``(N, C, H, W)`` and
``(N, C, D, H, W)`` inputs. Internally every input is viewed as ``(N, C, L)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bnlib._checks import (
    as_channel_vector,
    as_float_input,
    check_running_buffer,
    check_same_shape,
)

__all__ = [
    "batch_norm",
    "batch_norm_backward",
    "batch_norm_eval_backward",
    "batch_stats",
]


def _as_ncl(x: np.ndarray) -> np.ndarray:
    """View an ``(N, C, *)`` array as ``(N, C, L)``; a copy only if it must be."""
    return x.reshape(x.shape[0], x.shape[1], -1)


def _channel_sum(a3: np.ndarray) -> np.ndarray:
    """Sum an ``(N, C, L)`` array over N and L, the contiguous axis first."""
    return a3.sum(axis=2).sum(axis=0)


def _working(x: np.ndarray) -> np.ndarray:
    """float16 is computed in float32, as PyTorch does; other dtypes as they are."""
    return x.astype(np.float32) if x.dtype == np.float16 else x


def _per_channel(v: np.ndarray) -> np.ndarray:
    """Reshape a ``(C,)`` vector so that it broadcasts against ``(N, C, L)``."""
    return v.reshape(1, -1, 1)


def _count_per_channel(x: np.ndarray) -> int:
    """Number of values each channel's statistics are taken over: N * L."""
    return x.size // x.shape[1] if x.shape[1] else 0


def _centred_stats(x3: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, biased variance and centred copy ``x - mean`` of an ``(N, C, L)`` array.

    A plain two-pass algorithm loses digits when the data sit far from zero in
    float32 (the first mean is already rounded). We therefore centre on a first
    estimate ``m0`` and correct it with the mean of the residuals, the corrected
    two-pass algorithm: ``var = mean(d**2) - mean(d)**2`` with ``d = x - m0``.
    Nothing of the form ``E[x**2] - E[x]**2`` is ever formed on raw data.
    """
    n = x3.shape[0] * x3.shape[2]
    m0 = _channel_sum(x3) / n
    d = x3 - _per_channel(m0)
    delta = _channel_sum(d) / n
    sq = np.einsum("ncl,ncl->c", d, d) / n
    var = np.maximum(sq - delta * delta, 0).astype(x3.dtype, copy=False)
    d -= _per_channel(delta)
    return m0 + delta, var, d


def batch_stats(input: Any) -> tuple[np.ndarray, np.ndarray]:
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
    mu, var, _ = _centred_stats(_as_ncl(x))
    return mu, var


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


def _check_stats_pair(running_mean: Any, running_var: Any, training: bool) -> None:
    """Both running buffers or neither; eval mode needs both."""
    missing = [
        name
        for name, buf in (("running_mean", running_mean), ("running_var", running_var))
        if buf is None
    ]
    if not training and missing:
        raise ValueError(
            f"{' and '.join(missing)} must be given in evaluation mode "
            "(training=False normalizes with the running statistics)"
        )
    if len(missing) == 1:
        raise ValueError(
            f"running_mean and running_var must be given together, got only "
            f"{'running_var' if missing[0] == 'running_mean' else 'running_mean'}"
        )


def _check_momentum(momentum: Any) -> float:
    if isinstance(momentum, bool) or not isinstance(
        momentum, (int, float, np.floating)
    ):
        raise TypeError(
            f"momentum must be a real number, got {type(momentum).__name__}"
        )
    return float(momentum)


def batch_norm(
    input: Any,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    weight: Any = None,
    bias: Any = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> np.ndarray:
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
        Added to the variance for numerical stability.

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
    _check_stats_pair(running_mean, running_var, training)
    if running_mean is not None:
        check_running_buffer(running_mean, "running_mean", num_channels)
        check_running_buffer(running_var, "running_var", num_channels)
    gamma = _affine(weight, "weight", num_channels, x.dtype, 1)
    beta = _affine(bias, "bias", num_channels, x.dtype, 0)
    eps = float(eps)
    if not training:
        y = _normalize_with(x, running_mean, running_var, gamma, beta, eps)
        return y.astype(x_in.dtype, copy=False)
    momentum = _check_momentum(momentum)
    n = _count_per_channel(x)
    if n == 1:
        raise ValueError(
            "Expected more than 1 value per channel when training, "
            f"got input of shape {x.shape}"
        )
    if x.size == 0:
        return np.empty_like(x_in)
    mu, var, d = _centred_stats(_as_ncl(x))
    if running_mean is not None:
        _update_running(running_mean, running_var, mu, var, n, momentum)
    inv_std = 1 / np.sqrt(var + x.dtype.type(eps))
    d *= _per_channel(gamma * inv_std)
    d += _per_channel(beta)
    return d.reshape(x.shape).astype(x_in.dtype, copy=False)


def _affine(v: Any, name: str, c: int, dtype: np.dtype, default: float) -> np.ndarray:
    """gamma or beta as a ``(C,)`` vector, ``default`` everywhere when ``v`` is None."""
    if v is None:
        return np.full(c, default, dtype=dtype)
    return as_channel_vector(v, name, c, dtype)


def _normalize_with(
    x: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    eps: float,
) -> np.ndarray:
    """``gamma * (x - mean) / sqrt(var + eps) + beta`` with given statistics."""
    dt = x.dtype
    scale = gamma / np.sqrt(var.astype(dt) + dt.type(eps))
    y = _as_ncl(x) - _per_channel(mean.astype(dt))
    y *= _per_channel(scale)
    y += _per_channel(beta)
    return y.reshape(x.shape)


def _grads_from_x_hat(
    dy3: np.ndarray, x_hat3: np.ndarray, k: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closed-form backward through batch statistics; overwrites ``x_hat3``.

    ``k = gamma / sqrt(var + eps)``. With ``m`` values per channel,
    ``dx = k * (dy - mean(dy) - x_hat * mean(dy * x_hat))``.
    """
    m = x_hat3.shape[0] * x_hat3.shape[2]
    dbeta = _channel_sum(dy3)
    dgamma = np.einsum("ncl,ncl->c", dy3, x_hat3)
    dx3 = x_hat3
    dx3 *= _per_channel(-dgamma / m)
    dx3 += dy3
    dx3 -= _per_channel(dbeta / m)
    dx3 *= _per_channel(k)
    return dx3, dgamma, dbeta


def batch_norm_backward(
    grad_output: Any, input: Any, weight: Any = None, eps: float = 1e-5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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

        \\frac{\\partial l}{\\partial \\beta} = \\sum_i dy_i, \\quad
        \\frac{\\partial l}{\\partial \\gamma} = \\sum_i dy_i \\hat{x}_i, \\quad
        dx_i = \\frac{\\gamma}{m\\sqrt{\\sigma^2+\\epsilon}}
        \\Big(m\\, dy_i - \\sum_j dy_j - \\hat{x}_i \\sum_j dy_j \\hat{x}_j\\Big).

    See Also
    --------
    batch_norm_eval_backward : the gradients when running statistics are used.
    """
    x_in = as_float_input(input)
    dy = as_float_input(grad_output, "grad_output")
    check_same_shape(dy, x_in, "grad_output", "input")
    x = _working(x_in)
    gamma = _affine(weight, "weight", x.shape[1], x.dtype, 1)
    if x.size == 0:
        zeros = np.zeros(x.shape[1], dtype=x.dtype)
        return np.zeros_like(x_in), zeros, zeros.copy()
    if _count_per_channel(x) == 1:
        raise ValueError(
            "Expected more than 1 value per channel when training, "
            f"got input of shape {x.shape}"
        )
    _, var, x_hat3 = _centred_stats(_as_ncl(x))
    inv_std = 1 / np.sqrt(var + x.dtype.type(eps))
    x_hat3 *= _per_channel(inv_std)
    dy3 = _as_ncl(dy.astype(x.dtype, copy=False))
    dx3, dgamma, dbeta = _grads_from_x_hat(dy3, x_hat3, gamma * inv_std)
    out = dx3.reshape(x.shape).astype(x_in.dtype, copy=False)
    return out, dgamma.astype(x_in.dtype), dbeta.astype(x_in.dtype)


def batch_norm_eval_backward(
    grad_output: Any,
    input: Any,
    running_mean: Any,
    running_var: Any,
    weight: Any = None,
    eps: float = 1e-5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    gamma = _affine(weight, "weight", c, dt, 1)
    inv_std = 1 / np.sqrt(var + dt.type(eps))
    dy3 = _as_ncl(dy.astype(dt, copy=False))
    x_hat3 = (_as_ncl(x) - _per_channel(mean)) * _per_channel(inv_std)
    dgamma = np.einsum("ncl,ncl->c", dy3, x_hat3)
    dx3 = dy3 * _per_channel(gamma * inv_std)
    dt_in = x_in.dtype
    dbeta = _channel_sum(dy3)
    return dx3.reshape(x.shape).astype(dt_in), dgamma.astype(dt_in), dbeta.astype(dt_in)
