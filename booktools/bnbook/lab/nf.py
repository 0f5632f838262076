"""Normalizer-free pieces: scaled weight standardization and adaptive gradient clipping.

Brock et al. (2021) train deep residual networks without BatchNorm. Two of their
tools, written for weights whose first axis (or first two axes, with a leading
*slot* axis) indexes the output units:

- :func:`scaled_ws`: each output unit's weights standardized to mean 0 and
  variance ``1 / fan_in``, then scaled by a gain.
- :func:`agc_`: adaptive gradient clipping, unit by unit, in place.

The chapter :ref:`deep-networks` uses them in its normalizer-free residual net.
Importing this module needs torch.
"""

from __future__ import annotations

import math

import torch

__all__ = ["RELU_GAIN", "agc_", "scaled_ws", "unit_norms"]

#: ``sqrt(2 / (1 - 1/pi))``: ``RELU_GAIN * relu(z)`` has variance 1 for z ~ N(0, 1).
RELU_GAIN = math.sqrt(2.0 / (1.0 - 1.0 / math.pi))


def scaled_ws(
    w: torch.Tensor, gain: torch.Tensor | float = 1.0, unit_dims: int = 1, eps=1e-4
) -> torch.Tensor:
    """Scaled weight standardization of a weight tensor.

    Parameters
    ----------
    w : Tensor, shape ``(*units, *fan_in_shape)``
        The first ``unit_dims`` axes index output units (for example ``(C_out,)``
        or ``(K, C_out)`` with K slots); the rest are one unit's fan-in.
    gain : Tensor of shape ``units`` or float
        Learned gain per output unit (1 at initialization).
    unit_dims : int
    eps : float
        Added to the variance before the square root.

    Returns
    -------
    Tensor, the shape of ``w``

    Notes
    -----
    With :math:`N` the fan-in, :math:`\\hat W_{ij} = g_i\\,(W_{ij} - \\mu_i) /
    (\\sigma_i \\sqrt N)`, where :math:`\\mu_i, \\sigma_i^2` are the mean and the
    (biased) variance of unit :math:`i`'s weights. Used in :ref:`deep-networks`.
    """
    if not 1 <= unit_dims < w.ndim:
        raise ValueError(f"unit_dims must be in 1..{w.ndim - 1}, got {unit_dims}")
    dims = tuple(range(unit_dims, w.ndim))
    fan_in = math.prod(w.shape[unit_dims:])
    var, mean = torch.var_mean(w, dim=dims, correction=0, keepdim=True)
    w_hat = (w - mean) * torch.rsqrt(var * fan_in + eps)
    if isinstance(gain, torch.Tensor):
        gain = gain.reshape(*gain.shape, *(1,) * len(dims))
    return w_hat * gain


def unit_norms(t: torch.Tensor, unit_dims: int = 1) -> torch.Tensor:
    """Frobenius norm of each unit's slice, shaped to broadcast against ``t``."""
    if not 0 <= unit_dims < t.ndim:
        raise ValueError(f"unit_dims must be in 0..{t.ndim - 1}, got {unit_dims}")
    dims = tuple(range(unit_dims, t.ndim))
    return torch.linalg.vector_norm(t, dim=dims, keepdim=True)


@torch.no_grad()
def agc_(
    w: torch.Tensor, grad: torch.Tensor, clip: float, unit_dims: int = 1, eps=1e-3
) -> torch.Tensor:
    """Adaptive gradient clipping of ``grad``, unit by unit, in place.

    Parameters
    ----------
    w, grad : Tensor, same shape ``(*units, *fan_in_shape)``
        A weight and its gradient; the first ``unit_dims`` axes index units.
    clip : float
        The largest allowed ratio :math:`\\lambda` of gradient norm to weight norm.
    eps : float
        Weights with a norm below ``eps`` count as norm ``eps``.

    Returns
    -------
    Tensor
        ``grad``, clipped in place.

    Notes
    -----
    For each unit :math:`i`, with :math:`\\|W_i\\|^\\star = \\max(\\|W_i\\|,
    \\epsilon)`: if :math:`\\|G_i\\| / \\|W_i\\|^\\star > \\lambda`, then
    :math:`G_i \\leftarrow \\lambda \\|W_i\\|^\\star G_i / \\|G_i\\|`.
    """
    if w.shape != grad.shape:
        raise ValueError(f"w and grad must share a shape, got {w.shape}, {grad.shape}")
    if not clip > 0:
        raise ValueError(f"clip must be > 0, got {clip}")
    w_norm = unit_norms(w, unit_dims).clamp_min(eps)
    g_norm = unit_norms(grad, unit_dims)
    limit = clip * w_norm
    scale = torch.where(g_norm > limit, limit / g_norm.clamp_min(1e-30), 1.0)
    return grad.mul_(scale)
