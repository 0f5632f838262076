"""Folding an eval-mode BatchNorm into the PyTorch layer before it.

The weights come from :func:`bnlib.fold_batch_norm`; these wrappers read them off
``torch.nn`` layers and build the folded copy.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from bnlib.fold import fold_batch_norm

__all__ = ["fold_bn_module", "fold_sequential"]


def _numpy(t: Any) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy()


def _check_module_pair(layer: Any, bn: Any) -> None:
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
    bn : torch.nn.BatchNorm1d/2d/3d (or bnlib.torch's), in eval mode
        With running statistics and ``num_features`` equal to the layer's outputs.

    Returns
    -------
    torch.nn.Module
        A deep copy of ``layer`` whose weight and bias come from
        :func:`bnlib.fold.fold_batch_norm`; it always has a bias. Neither input is
        changed.

    See Also
    --------
    torch.nn.utils.fusion.fuse_linear_bn_eval, torch.nn.utils.fusion.fuse_conv_bn_eval
    """
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
