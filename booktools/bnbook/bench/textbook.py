"""The benchmark's baseline: BatchNorm as a textbook writes it, in plain numpy.

Correct (tests compare it with bnlib and PyTorch), but every expression allocates an
array the size of ``x`` and every reduction is its own pass. Also here: the one-pass
variance ``E[x**2] - E[x]**2``, the formula bnlib avoids.

See Also
--------
bnbook.bench.runner : times these against bnlib and PyTorch.
The chapter "How fast is bnlib?" (``chapters/speed.md``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["one_pass_variance", "textbook_backward", "textbook_forward"]


def _axes_and_shape(x: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return (0, *range(2, x.ndim)), (1, -1) + (1,) * (x.ndim - 2)


def textbook_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5
) -> tuple[np.ndarray, tuple[Any, ...]]:
    """The baseline: training-mode batch norm as a textbook writes it.

    Parameters
    ----------
    x : ndarray, shape ``(N, C, *)``
    gamma, beta : ndarray, shape ``(C,)``
    eps : float

    Returns
    -------
    y : ndarray, shape ``(N, C, *)``
    cache : tuple
        ``(x_hat, var, gamma, eps)`` for :func:`textbook_backward`.
    """
    axes, shape = _axes_and_shape(x)
    mu = x.mean(axis=axes)
    var = ((x - mu.reshape(shape)) ** 2).mean(axis=axes)
    x_hat = (x - mu.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    y = gamma.reshape(shape) * x_hat + beta.reshape(shape)
    return y, (x_hat, var, gamma, eps)


def textbook_backward(
    dy: np.ndarray, cache: tuple[Any, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The baseline's backward pass, from the cache of :func:`textbook_forward`.

    Parameters
    ----------
    dy : ndarray, shape ``(N, C, *)``
    cache : tuple
        As returned by :func:`textbook_forward`.

    Returns
    -------
    dx : ndarray, shape ``(N, C, *)``
    dgamma, dbeta : ndarray, shape ``(C,)``
    """
    x_hat, var, gamma, eps = cache
    axes, shape = _axes_and_shape(dy)
    m = dy.size // dy.shape[1]
    dbeta = dy.sum(axis=axes)
    dgamma = (dy * x_hat).sum(axis=axes)
    dx_hat = dy * gamma.reshape(shape)
    dx = (
        m * dx_hat
        - dx_hat.sum(axis=axes, keepdims=True)
        - x_hat * (dx_hat * x_hat).sum(axis=axes, keepdims=True)
    ) / (m * np.sqrt(var.reshape(shape) + eps))
    return dx, dgamma, dbeta


def one_pass_variance(x: np.ndarray) -> np.ndarray:
    """Per-channel variance as ``mean(x**2) - mean(x)**2``, in the dtype of ``x``.

    Parameters
    ----------
    x : ndarray, shape ``(N, C, *)``

    Returns
    -------
    ndarray, shape ``(C,)``
        Clipped at zero. For data far from zero, both terms are large and nearly
        equal, and their difference loses the digits float32 has: do not use.
    """
    axes, _ = _axes_and_shape(x)
    mean_sq = (x * x).mean(axis=axes)
    return np.maximum(mean_sq - x.mean(axis=axes) ** 2, 0)
