"""Folding an eval-mode BatchNorm into the linear or convolution layer before it.

At inference BatchNorm uses frozen statistics, so it is a fixed per-channel affine
map ``y = a x + b``. A linear or convolution layer followed by such a map is again a
linear or convolution layer, with rescaled weights and a new bias. The numpy
functions here compute those; the ``*_module`` wrappers apply them to PyTorch layers
(they import torch only when called). The book's chapter :ref:`normalization`
derives the folding and checks it against PyTorch's fusion utilities.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import numpy as np

from bnlib._checks import as_channel_vector

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = ["bn_affine", "fold_batch_norm", "fold_bn_module", "fold_sequential"]


def _check_eps(eps: Any) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating)):
        raise TypeError(f"eps must be a real number, got {type(eps).__name__}")
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    return float(eps)


def _floating(v: Any, name: str, min_ndim: int) -> np.ndarray:
    """``v`` as a floating ndarray of rank ``min_ndim`` (1) or at least it (2)."""
    arr = np.asarray(v)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"{name} must have a floating dtype, got dtype {arr.dtype}")
    if arr.ndim < min_ndim or (min_ndim == 1 and arr.ndim != 1):
        want = "shape (C,)" if min_ndim == 1 else "at least 2 dimensions (C_out, ...)"
        raise ValueError(f"{name} must have {want}, got shape {arr.shape}")
    return arr


def _vector_or(v: Any, name: str, c: int, dt: np.dtype, default: float) -> np.ndarray:
    """A ``(C,)`` parameter in ``dt``, or ``default`` everywhere when ``v`` is None."""
    if v is None:
        return np.full(c, default, dtype=dt)
    return as_channel_vector(v, name, c, dt)


def bn_affine(
    running_mean: Any,
    running_var: Any,
    weight: Any = None,
    bias: Any = None,
    eps: float = 1e-5,
) -> tuple[np.ndarray, np.ndarray]:
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
    eps = _check_eps(eps)
    if np.any(~(var + eps > 0)):
        raise ValueError(
            f"running_var + eps must be positive in every channel, got {var + eps}"
        )
    gamma = _vector_or(weight, "weight", c, dt, 1)
    beta = _vector_or(bias, "bias", c, dt, 0)
    a = gamma / np.sqrt(var + dt.type(eps))
    return a, beta - a * mean


def fold_batch_norm(
    layer_weight: Any,
    layer_bias: Any,
    running_mean: Any,
    running_var: Any,
    bn_weight: Any = None,
    bn_bias: Any = None,
    eps: float = 1e-5,
) -> tuple[np.ndarray, np.ndarray]:
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
    fold_bn_module : the same on PyTorch modules.
    """
    w = _floating(layer_weight, "layer_weight", 2)
    c, dt = w.shape[0], w.dtype
    mean = as_channel_vector(running_mean, "running_mean", c, dt)
    var = as_channel_vector(running_var, "running_var", c, dt)
    c_bias = _vector_or(layer_bias, "layer_bias", c, dt, 0)
    a, b = bn_affine(mean, var, bn_weight, bn_bias, eps)
    return w * a.reshape(-1, *([1] * (w.ndim - 1))), a * c_bias + b


def _numpy(t: Any) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy()


def _check_module_pair(layer: Any, bn: Any) -> None:
    from torch import nn

    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    if not isinstance(layer, kinds):
        raise TypeError(
            "layer must be a torch.nn.Linear or Conv1d/2d/3d (transposed "
            f"convolutions are not supported), got {type(layer).__name__}"
        )
    if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
        raise TypeError(f"bn must be a torch BatchNorm layer, got {type(bn).__name__}")
    out = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
    if bn.num_features != out:
        raise ValueError(
            f"bn has {bn.num_features} features but layer has {out} outputs"
        )
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("bn has no running statistics (track_running_stats=False)")
    if bn.training:
        raise ValueError(
            "bn is in training mode, which normalizes with batch statistics; "
            "folding reproduces eval mode only: call .eval() first"
        )


def fold_bn_module(layer: nn.Module, bn: nn.Module) -> nn.Module:
    """A copy of ``layer`` that computes ``bn(layer(x))`` of an eval-mode ``bn``.

    Parameters
    ----------
    layer : torch.nn.Linear or torch.nn.Conv1d/2d/3d
        The layer before ``bn``; with or without a bias.
    bn : torch.nn.BatchNorm1d/2d/3d (or bnlib.torch_bn's), in eval mode
        With running statistics and ``num_features`` equal to the layer's outputs.

    Returns
    -------
    torch.nn.Module
        A deep copy of ``layer`` whose weight and bias come from
        :func:`fold_batch_norm`; it always has a bias. Neither input is changed.

    See Also
    --------
    torch.nn.utils.fusion.fuse_linear_bn_eval, torch.nn.utils.fusion.fuse_conv_bn_eval
    """
    import torch

    _check_module_pair(layer, bn)
    w, b = fold_batch_norm(
        _numpy(layer.weight),
        _numpy(layer.bias),
        _numpy(bn.running_mean),
        _numpy(bn.running_var),
        _numpy(bn.weight),
        _numpy(bn.bias),
        bn.eps,
    )
    fused = copy.deepcopy(layer)
    like = layer.weight
    fused.weight = torch.nn.Parameter(torch.from_numpy(w).to(like))
    fused.bias = torch.nn.Parameter(torch.from_numpy(b).to(like))
    return fused


def fold_sequential(model: nn.Sequential) -> nn.Sequential:
    """A copy of ``model`` with every BatchNorm folded into the layer before it.

    Parameters
    ----------
    model : torch.nn.Sequential
        Its BatchNorm layers must be in eval mode and each must directly follow a
        ``Linear`` or ``Conv*d``. Nested containers are copied, not searched.

    Returns
    -------
    torch.nn.Sequential
        One BatchNorm fewer per fold, in eval mode; ``model`` is unchanged.
    """
    from torch import nn

    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be a torch.nn.Sequential, got {type(model)}")
    layers = list(model)
    folded: list[nn.Module] = []
    for i, m in enumerate(layers):
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if i == 0:
                raise ValueError("a BatchNorm at position 0 has no layer to fold into")
            folded[-1] = fold_bn_module(layers[i - 1], m)
        else:
            folded.append(copy.deepcopy(m))
    return nn.Sequential(*folded).eval()
