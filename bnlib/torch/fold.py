"""Folding an eval-mode BatchNorm into the PyTorch layer before it.

The weights come from :func:`bnlib.fold_batch_norm`; these wrappers read them off
``torch.nn`` layers and build the folded copy.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from bnlib.fold import fold_batch_norm

__all__ = ["fold_bn", "fold_bn_module", "fold_sequential"]


def _numpy(t: Any) -> Any:
    return None if t is None else t.detach().cpu().numpy()


_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_KINDS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, *_TRANSPOSED)


def _outputs_first(w: np.ndarray, groups: int) -> np.ndarray:
    """A transposed convolution's weight ``(C_in, C_out / g, *k)`` laid out as a
    convolution's, ``(C_out, C_in / g, *k)``: output channels on axis 0."""
    c_in, per_group, k = w.shape[0], w.shape[1], w.shape[2:]
    w = w.reshape(groups, c_in // groups, per_group, *k).swapaxes(1, 2)
    return w.reshape(groups * per_group, c_in // groups, *k)


def _outputs_second(w: np.ndarray, groups: int) -> np.ndarray:
    """The inverse of :func:`_outputs_first`."""
    c_out, per_group, k = w.shape[0], w.shape[1], w.shape[2:]
    w = w.reshape(groups, c_out // groups, per_group, *k).swapaxes(1, 2)
    return w.reshape(groups * per_group, c_out // groups, *k)


def _check_module_pair(layer: Any, bn: Any) -> None:
    if not isinstance(layer, _KINDS):
        raise TypeError(
            "layer must be a torch.nn.Linear, Conv1d/2d/3d or ConvTranspose1d/2d/3d, "
            f"got {type(layer).__name__}"
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


def fold_bn_module(layer: Any, bn: Any) -> nn.Module:
    """A copy of ``layer`` that computes ``bn(layer(x))`` of an eval-mode ``bn``.

    Parameters
    ----------
    layer : torch.nn.Linear, Conv1d/2d/3d or ConvTranspose1d/2d/3d
        The layer before ``bn``; with or without a bias, any ``groups``.
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
        (``transpose=True`` for transposed convolutions, ``groups=1`` only).
    """
    _check_module_pair(layer, bn)
    transposed = isinstance(layer, _TRANSPOSED)
    weight = _numpy(layer.weight)
    if transposed:
        weight = _outputs_first(weight, layer.groups)
    w, b = fold_batch_norm(
        weight,
        _numpy(layer.bias),
        _numpy(bn.running_mean),
        _numpy(bn.running_var),
        _numpy(bn.weight),
        _numpy(bn.bias),
        bn.eps,
    )
    if transposed:
        w = _outputs_second(w, layer.groups)
    fused: nn.Module = copy.deepcopy(layer)
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
        ``Linear``, ``Conv*d`` or ``ConvTranspose*d``. Nested containers are
        copied, not searched.

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


_BN = nn.modules.batchnorm._BatchNorm


class _LeafTracer(fx.Tracer):
    """torch.fx's tracer, with every BatchNorm and foldable layer kept whole."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, (_BN, *_KINDS)) or super().is_leaf_module(
            m, module_qualified_name
        )


def _trace(model: nn.Module) -> fx.Graph:
    try:
        return _LeafTracer().trace(model)
    except Exception as err:  # torch.fx raises TraceError, TypeError, ...
        raise TypeError(
            "fold_bn follows model.forward with torch.fx, which could not trace it "
            f"({type(err).__name__}: {err}); fold each pair with fold_bn_module "
            "instead"
        ) from err


def _pairs(model: nn.Module, strict: bool) -> list[tuple[str, str]]:
    """``(layer name, bn name)`` for every BatchNorm fed only by a foldable layer."""
    graph = _trace(model)
    calls = [n for n in graph.nodes if n.op == "call_module"]
    uses: dict[str, int] = {}
    for n in calls:
        uses[str(n.target)] = uses.get(str(n.target), 0) + 1
    pairs: list[tuple[str, str]] = []
    refused: list[str] = []
    for node in calls:
        name = str(node.target)
        if not isinstance(model.get_submodule(name), _BN):
            continue
        prev = node.args[0] if node.args else None
        if not isinstance(prev, fx.Node):
            refused.append(f"{name!r} (input from {prev!r})")
            continue
        source = str(prev.target) if prev.op == "call_module" else prev.name
        ok = (
            prev.op == "call_module"
            and isinstance(model.get_submodule(source), _KINDS)
            and len(prev.users) == 1
            and uses[source] == 1
            and uses[name] == 1
        )
        if ok:
            pairs.append((source, name))
        else:
            refused.append(f"{name!r} (input from {source!r})")
    if refused and strict:
        raise ValueError(
            "fold_bn folds a BatchNorm only into a Linear/Conv*d/ConvTranspose*d "
            "layer whose output feeds nothing else, each called once; these do not "
            f"qualify: {', '.join(refused)}. Pass strict=False to keep them as they "
            "are"
        )
    return pairs


def _replace(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)


def fold_bn(model: nn.Module, strict: bool = True) -> nn.Module:
    """A copy of any model with each BatchNorm folded into the layer that feeds it.

    Parameters
    ----------
    model : torch.nn.Module
        Any module tree whose ``forward`` torch.fx can trace (a torchvision-style
        ResNet, with its blocks and downsample branches, for instance). Every
        BatchNorm to fold must be in eval mode.
    strict : bool, default True
        Raise a ValueError, naming the layers, for a BatchNorm that cannot be folded
        (it follows an activation, a layer's output also goes elsewhere, or a module
        is called twice). With False such layers stay as they are.

    Returns
    -------
    torch.nn.Module
        A deep copy in eval mode, with the same structure and names: each folded
        layer replaced by :func:`fold_bn_module`'s copy and its BatchNorm by
        ``torch.nn.Identity``. ``model`` itself is never changed, even on error.

    See Also
    --------
    torch.fx.experimental.optimization.fuse : the same folding, returning a
        ``GraphModule`` instead of the original structure.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    pairs = _pairs(model, strict)
    for layer_name, bn_name in pairs:  # all checks before any copy is changed
        _check_module_pair(
            model.get_submodule(layer_name), model.get_submodule(bn_name)
        )
    folded = copy.deepcopy(model)
    for layer_name, bn_name in pairs:
        layer, bn = folded.get_submodule(layer_name), folded.get_submodule(bn_name)
        _replace(folded, layer_name, fold_bn_module(layer, bn))
        _replace(folded, bn_name, nn.Identity())
    return folded.eval()
