"""Swap every BatchNorm of a PyTorch model for bnlib's, and back.

:func:`bnlib.torch.convert` replaces each ``torch.nn.BatchNorm1d/2d/3d`` of a model
by the ``bnlib.torch`` layer of the same rank; :func:`bnlib.torch.revert` undoes
it. The new layer takes over the old one's settings, mode, parameters and buffers:
the very same tensors, so an optimizer built before the swap keeps working, and the
model computes the same numbers (bnlib's forward and backward instead of PyTorch's
kernel).

Only layers of exactly these classes are swapped; subclasses (``SyncBatchNorm``,
lazy layers, :class:`bnlib.torch.GhostBatchNorm1d`) are left as they are. Hooks
registered on a swapped layer are not carried over.
"""

from __future__ import annotations

from torch import nn

from bnlib.torch._inputs import bias_kwargs
from bnlib.torch.batchnorm import BatchNorm1d, BatchNorm2d, BatchNorm3d

__all__ = ["convert", "revert"]

_TO_BNLIB: dict[type[nn.Module], type[nn.Module]] = {
    nn.BatchNorm1d: BatchNorm1d,
    nn.BatchNorm2d: BatchNorm2d,
    nn.BatchNorm3d: BatchNorm3d,
}
_TO_TORCH = {ours: theirs for theirs, ours in _TO_BNLIB.items()}
_STATE = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def convert(module: nn.Module) -> nn.Module:
    """Put ``bnlib.torch`` layers in place of every ``torch.nn.BatchNorm*d``.

    Parameters
    ----------
    module : torch.nn.Module
        A model; changed in place.

    Returns
    -------
    torch.nn.Module
        ``module``, or its replacement when ``module`` is itself a BatchNorm layer.

    See Also
    --------
    revert : the way back.
    """
    return _swap(module, _TO_BNLIB)


def revert(module: nn.Module) -> nn.Module:
    """Put ``torch.nn.BatchNorm*d`` layers back in place of bnlib's.

    The inverse of :func:`convert`, with the same parameters and returns.
    """
    return _swap(module, _TO_TORCH)


def _swap(
    module: nn.Module, table: dict[type[nn.Module], type[nn.Module]]
) -> nn.Module:
    if type(module) in table:
        return _replacement(module, table[type(module)])
    for name, child in module.named_children():
        new = _swap(child, table)
        if new is not child:
            setattr(module, name, new)
    return module


def _replacement(old: nn.Module, cls: type[nn.Module]) -> nn.Module:
    """A layer of class ``cls`` with ``old``'s settings, mode and tensors."""
    new = cls(
        old.num_features,
        old.eps,
        old.momentum,
        old.affine,
        old.track_running_stats,
        device="meta",  # nothing allocated: old's tensors are moved in below
        **bias_kwargs(old.bias is not None or not old.affine),
    )
    for name in _STATE:
        setattr(new, name, getattr(old, name))
    return new.train(old.training)
