"""BatchNorm's backward pass staged as in the paper, on numpy arrays.

:func:`bnlib.batch_norm_backward` uses the compact closed form. This module follows
Ioffe & Szegedy (2015, section 3) step by step instead, through ``dl/dx_hat``,
``dl/dvar`` and ``dl/dmu``, so that the two can be compared for agreement and for
speed. It is written plainly, one array expression per equation, as a reader would
first write it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bnlib._checks import as_channel_vector, as_float_input, check_same_shape

__all__ = ["batch_norm_backward_staged"]


def _reduce_axes(x: np.ndarray) -> tuple[int, ...]:
    """Every axis but the channel axis 1."""
    return (0, *range(2, x.ndim))


def _channel_shape(x: np.ndarray) -> tuple[int, ...]:
    """``(1, C, 1, ...)``: a ``(C,)`` vector broadcast against ``x``."""
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def _count_per_channel(x: np.ndarray) -> int:
    """``m = N * prod(*)``, the number of values in each channel's statistics."""
    return x.shape[0] * int(np.prod(x.shape[2:]))


def _check(dy: Any, x: Any, weight: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated ``dy``, ``x`` and ``gamma`` (ones when ``weight`` is None)."""
    x = as_float_input(x)
    dy = as_float_input(dy, "grad_output")
    check_same_shape(dy, x, "grad_output", "input")
    if _count_per_channel(x) < 2:
        raise ValueError(
            f"Expected more than 1 value per channel when training, got input of "
            f"shape {x.shape}"
        )
    c = x.shape[1]
    gamma = np.ones(c, x.dtype) if weight is None else weight
    gamma = as_channel_vector(gamma, "weight", c, x.dtype)
    return dy.astype(x.dtype, copy=False), x, gamma


def batch_norm_backward_staged(
    grad_output: Any, input: Any, weight: Any = None, eps: float = 1e-5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Gradients of training-mode batch norm, through the paper's stages.

    Takes and returns what :func:`bnlib.batch_norm_backward` does: ``grad_output``
    and ``input`` of shape ``(N, C, *)``, an optional ``weight`` ``(C,)`` and the
    forward pass's ``eps``; returns ``(grad_input, grad_weight, grad_bias)``.

    Notes
    -----
    Per channel, over its ``m`` values, writing :math:`\bar{v}` for
    :math:`\partial l / \partial v`:

    .. math::

        \begin{aligned}
        \bar{\hat{x}}_i &= \bar{y}_i\,\gamma, \\
        \bar{\sigma^2} &= -\tfrac{1}{2}(\sigma^2+\epsilon)^{-3/2}
            \textstyle\sum_i \bar{\hat{x}}_i (x_i-\mu), \\
        \bar{\mu} &= -\frac{\sum_i \bar{\hat{x}}_i}{\sqrt{\sigma^2+\epsilon}}
            + \bar{\sigma^2}\,\frac{\sum_i -2(x_i-\mu)}{m}, \\
        \bar{x}_i &= \frac{\bar{\hat{x}}_i}{\sqrt{\sigma^2+\epsilon}}
            + \bar{\sigma^2}\,\frac{2(x_i-\mu)}{m} + \frac{\bar{\mu}}{m}.
        \end{aligned}

    See Also
    --------
    bnlib.batch_norm_backward : the compact closed form, the same numbers faster.
    """
    dy, x, gamma = _check(grad_output, input, weight)
    axes, m = _reduce_axes(x), _count_per_channel(x)
    xc = x - x.mean(axis=axes, keepdims=True)  # x - mu
    inv_std = 1 / np.sqrt((xc**2).mean(axis=axes, keepdims=True) + eps)
    dx_hat = dy * gamma.reshape(_channel_shape(x))
    dvar = (dx_hat * xc).sum(axis=axes, keepdims=True) * -0.5 * inv_std**3
    dmu = (dx_hat * -inv_std).sum(axis=axes, keepdims=True)
    dmu += dvar * (-2 * xc).sum(axis=axes, keepdims=True) / m
    dx = dx_hat * inv_std + dvar * 2 * xc / m + dmu / m
    dgamma = (dy * xc * inv_std).sum(axis=axes)
    return dx, dgamma, dy.sum(axis=axes)
