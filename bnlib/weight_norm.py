"""Weight normalization (Salimans and Kingma, 2016): w = g * v / ||v||.

Instead of normalizing activations, reparametrize each weight tensor by a
direction ``v`` and a length ``g``. The norm is taken over every axis except
``dim``, as in ``torch.nn.utils.parametrizations.weight_norm``: ``dim=0`` gives one
length per output unit; ``dim=None`` (or ``-1``, as in torch) one length for the
whole tensor. ``g`` has the shape of the norm with kept dimensions, as torch's
``original0``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["weight_norm", "weight_norm_backward", "weight_norm_init"]


def _float(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"{name} must have a floating dtype, got dtype {arr.dtype}")
    if arr.ndim < 1:
        raise ValueError(f"{name} must have at least one dimension, got a scalar")
    return arr


def _axes(v: np.ndarray, dim: Any) -> tuple[int, ...]:
    """The axes the norm is taken over: all but ``dim`` (all for None or -1)."""
    if dim is None or (not isinstance(dim, bool) and dim == -1):
        return tuple(range(v.ndim))
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"dim must be an int or None, got {type(dim).__name__}")
    if not -v.ndim <= dim < v.ndim:
        raise ValueError(f"dim {dim} is out of range for a {v.ndim}D weight")
    keep = int(dim) % v.ndim
    return tuple(a for a in range(v.ndim) if a != keep)


def _norm(v64: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    norm: np.ndarray = np.sqrt(np.sum(v64 * v64, axis=axes, keepdims=True))
    return norm


def _g(g: Any, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(g)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"g must have a floating dtype, got dtype {arr.dtype}")
    flat_ok = arr.ndim <= 1 and arr.size == int(np.prod(shape))
    if arr.shape != shape and not flat_ok:
        raise ValueError(
            f"g must have shape {shape} (or be a vector of {int(np.prod(shape))} "
            f"values), got shape {arr.shape}"
        )
    return arr.reshape(shape).astype(np.float64)


def weight_norm_init(weight: Any, dim: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split ``weight`` into ``(g, v) = (||weight||, weight)``, as torch does.

    Returns
    -------
    g : ndarray, the norm's shape with kept dimensions
    v : ndarray, a copy of ``weight``
    """
    w = _float(weight, "weight")
    g = _norm(w.astype(np.float64), _axes(w, dim))
    return g.astype(w.dtype), w.copy()


def weight_norm(v: Any, g: Any, dim: int | None = 0) -> np.ndarray:
    """The weight ``w = g * v / ||v||``.

    Parameters
    ----------
    v : ndarray
        The direction, of the weight's shape.
    g : ndarray
        The length: shape of ``v`` with 1 on every axis but ``dim`` (e.g.
        ``(out, 1)`` for a ``(out, in)`` weight and ``dim=0``), as torch's
        ``original0``; a flat vector of as many values is accepted too.
    dim : int or None
        The axis that keeps one length per index; None or -1: one length.

    Returns
    -------
    ndarray, shape and dtype of ``v``

    Notes
    -----
    .. math::

        w = g\\,\\frac{v}{\\lVert v \\rVert},

    the norm over every axis except ``dim``.

    See Also
    --------
    weight_norm_backward, torch.nn.utils.parametrizations.weight_norm
    """
    v = _float(v, "v")
    axes = _axes(v, dim)
    v64 = v.astype(np.float64)
    norm = _norm(v64, axes)
    w: np.ndarray = (_g(g, norm.shape) * v64 / norm).astype(v.dtype)
    return w


def weight_norm_backward(
    grad_weight: Any, v: Any, g: Any, dim: int | None = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of :func:`weight_norm`: ``(grad_v, grad_g)``.

    Notes
    -----
    With ``u = v / ||v||`` and ``G = dl/dw``:

    .. math::

        \\frac{\\partial l}{\\partial g} = \\sum G \\odot u, \\qquad
        \\frac{\\partial l}{\\partial v} = \\frac{g}{\\lVert v \\rVert}
        \\Big(G - u\\, \\frac{\\partial l}{\\partial g}\\Big),

    the sums over every axis except ``dim``: ``dl/dv`` is orthogonal to ``v``.
    """
    v = _float(v, "v")
    grad = _float(grad_weight, "grad_weight")
    if grad.shape != v.shape:
        raise ValueError(
            f"grad_weight must have the shape of v {v.shape}, got {grad.shape}"
        )
    axes = _axes(v, dim)
    v64, g64 = v.astype(np.float64), grad.astype(np.float64)
    norm = _norm(v64, axes)
    gg = _g(g, norm.shape)
    u = v64 / norm
    grad_g = np.sum(g64 * u, axis=axes, keepdims=True)
    grad_v = gg / norm * (g64 - u * grad_g)
    g_dtype = np.asarray(g).dtype
    return grad_v.astype(v.dtype), grad_g.reshape(np.shape(g)).astype(g_dtype)
