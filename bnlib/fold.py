"""Folding an eval-mode BatchNorm into the linear or convolution layer before it.

At inference BatchNorm uses frozen statistics, so it is a fixed per-channel affine
map ``y = a x + b``. A linear or convolution layer followed by such a map is again a
linear or convolution layer, with rescaled weights and a new bias. The numpy
functions here compute those; :func:`bnlib.torch.fold_bn_module` and
:func:`bnlib.torch.fold_sequential` apply them to PyTorch layers. The book's chapter
:ref:`normalization` derives the folding and checks it against PyTorch's fusion
utilities.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bnlib._checks import affine_or_default, as_channel_vector, check_eps

__all__ = ["bn_affine", "fold_batch_norm"]


def _floating(v: Any, name: str, min_ndim: int) -> np.ndarray:
    """``v`` as a floating ndarray of rank ``min_ndim`` (1) or at least it (2)."""
    arr = np.asarray(v)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"{name} must have a floating dtype, got dtype {arr.dtype}")
    if arr.ndim < min_ndim or (min_ndim == 1 and arr.ndim != 1):
        want = "shape (C,)" if min_ndim == 1 else "at least 2 dimensions (C_out, ...)"
        raise ValueError(f"{name} must have {want}, got shape {arr.shape}")
    return arr


def bn_affine(
    running_mean: ArrayLike,
    running_var: ArrayLike,
    weight: ArrayLike | None = None,
    bias: ArrayLike | None = None,
    eps: float = 1e-5,
) -> tuple[NDArray[Any], NDArray[Any]]:
    """The eval-mode BatchNorm of one layer as the per-channel map ``y = a x + b``.

    Parameters
    ----------
    running_mean, running_var : array_like, shape ``(C,)``
        The frozen statistics; floating dtype. The result has their dtype.
    weight, bias : array_like, shape ``(C,)``, optional
        gamma and beta (default 1 and 0).
    eps : float
        The layer's epsilon; ``running_var + eps`` must be positive.

    Returns
    -------
    a, b : ndarray, shape ``(C,)``

    Notes
    -----
    .. math::

        a = \\frac{\\gamma}{\\sqrt{\\sigma^2_{run} + \\epsilon}}, \\qquad
        b = \\beta - a\\,\\mu_{run}.

    See Also
    --------
    fold_batch_norm : pushes ``a`` and ``b`` into the layer before.
    """
    mean = _floating(running_mean, "running_mean", 1)
    c, dt = mean.shape[0], mean.dtype
    var = as_channel_vector(running_var, "running_var", c, dt)
    eps = check_eps(eps)
    if np.any(~(var + eps > 0)):
        raise ValueError(
            f"running_var + eps must be positive in every channel, got {var + eps}"
        )
    gamma = affine_or_default(weight, "weight", c, dt, 1)
    beta = affine_or_default(bias, "bias", c, dt, 0)
    a = gamma / np.sqrt(var + dt.type(eps))
    return a, beta - a * mean


def fold_batch_norm(
    layer_weight: ArrayLike, layer_bias: ArrayLike | None,
    running_mean: ArrayLike, running_var: ArrayLike,
    bn_weight: ArrayLike | None = None, bn_bias: ArrayLike | None = None,
    eps: float = 1e-5,
) -> tuple[NDArray[Any], NDArray[Any]]:  # fmt: skip
    """Weights and bias of ``BN(layer(x))`` as one linear or convolution layer.

    Parameters
    ----------
    layer_weight : ndarray, shape ``(C_out, C_in)`` or ``(C_out, C_in / groups, *k)``
        A linear or convolution weight; output channels on axis 0.
    layer_bias : ndarray, shape ``(C_out,)``, or None
        The layer's bias (None for a layer without one).
    running_mean, running_var, bn_weight, bn_bias, eps
        The BatchNorm's statistics, gamma, beta and epsilon; see :func:`bn_affine`.

    Returns
    -------
    weight : ndarray, same shape as ``layer_weight``
    bias : ndarray, shape ``(C_out,)``
        In ``layer_weight``'s dtype.

    Notes
    -----
    With ``a, b`` from :func:`bn_affine`, ``a (W x + c) + b = (a W) x + (a c + b)``:
    row ``o`` of ``W`` (output channel ``o``) is scaled by ``a_o``.

    See Also
    --------
    bnlib.torch.fold_bn_module : the same on PyTorch modules.
    """
    w = _floating(layer_weight, "layer_weight", 2)
    c, dt = w.shape[0], w.dtype
    mean = as_channel_vector(running_mean, "running_mean", c, dt)
    var = as_channel_vector(running_var, "running_var", c, dt)
    c_bias = affine_or_default(layer_bias, "layer_bias", c, dt, 0)
    a, b = bn_affine(mean, var, bn_weight, bn_bias, eps)
    return w * a.reshape(-1, *([1] * (w.ndim - 1))), a * c_bias + b
