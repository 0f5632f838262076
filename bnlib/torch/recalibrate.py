"""Running statistics after the fact, and BatchNorm layers that stay frozen.

:func:`recalibrate_bn` replaces every BatchNorm layer's running averages by plain
averages over a pass of data, PreciseBN-style (Wu & Johnson, 2021): the population
statistics of Ioffe & Szegedy's Algorithm 2 instead of an exponential moving average
that lags behind the weights. :func:`freeze_bn` puts the BatchNorm layers of a model
into evaluation mode with fixed parameters, for fine-tuning. The book's chapter
:ref:`pitfalls` uses both.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

__all__ = ["batchnorm_layers", "freeze_bn", "recalibrate_bn"]

_BN = nn.modules.batchnorm._BatchNorm


def batchnorm_layers(model: nn.Module) -> list[Any]:
    """The BatchNorm layers of ``model`` (itself included) that track statistics."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return [m for m in model.modules() if isinstance(m, _BN) and m.track_running_stats]


def _first_tensor(batch: Any) -> torch.Tensor:
    """A batch as the model's input: a tensor, or the first item of a tuple/list."""
    if isinstance(batch, (tuple, list)) and batch:
        batch = batch[0]
    if not isinstance(batch, torch.Tensor):
        raise TypeError(
            "each batch must be a tensor or a (tensor, ...) tuple or list, got "
            f"{type(batch).__name__}"
        )
    return batch


def _buffers(bn: Any) -> list[torch.Tensor]:
    return [bn.running_mean, bn.running_var, bn.num_batches_tracked]


def _check_num_batches(num_batches: Any) -> None:
    if num_batches is None:
        return
    if isinstance(num_batches, bool) or not isinstance(num_batches, int):
        raise TypeError(f"num_batches must be an int, got {type(num_batches).__name__}")
    if num_batches < 1:
        raise ValueError(f"num_batches must be at least 1, got {num_batches}")


def recalibrate_bn(
    model: nn.Module, batches: Iterable[Any], num_batches: int | None = None
) -> int:
    """Set every BatchNorm's running statistics to plain averages over ``batches``.

    Parameters
    ----------
    model : torch.nn.Module
        With at least one BatchNorm layer that tracks running statistics.
    batches : iterable
        Tensors of shape ``(N, C, *)`` as ``model`` takes them, or tuples/lists whose
        first item is such a tensor (a ``DataLoader`` of ``(x, y)`` pairs); at least
        one batch.
    num_batches : int, optional
        Use only the first ``num_batches`` batches (default: all of them).

    Returns
    -------
    int
        The number of batches used.

    Notes
    -----
    Each layer's statistics are reset and its momentum set to None, which makes
    PyTorch keep cumulative averages over the :math:`K` batches:

    .. math::

        \\mu_{run} = \\frac{1}{K}\\sum_k \\mu_{\\mathcal{B}_k}, \\qquad
        \\sigma^2_{run} = \\frac{1}{K}\\sum_k \\frac{m}{m-1}\\,
        \\sigma^2_{\\mathcal{B}_k} .

    Only the BatchNorm layers run in training mode; every other module runs in
    evaluation mode (no dropout), under ``torch.no_grad()``, so no parameter changes.
    Afterwards every module's mode and every layer's momentum are restored; if
    anything fails (or ``batches`` is empty) the running statistics are restored too.

    See Also
    --------
    torch.optim.swa_utils.update_bn : the same with dropout left in training mode.
    """
    layers = batchnorm_layers(model)
    if not layers:
        raise ValueError("model has no BatchNorm layer with running statistics")
    _check_num_batches(num_batches)
    modes = [(m, m.training) for m in model.modules()]
    momenta = [bn.momentum for bn in layers]
    saved = [[b.clone() for b in _buffers(bn)] for bn in layers]
    count = 0
    try:
        model.eval()
        for bn in layers:
            bn.reset_running_stats()
            bn.momentum = None
            bn.train()
        with torch.no_grad():
            for batch in batches:
                if num_batches is not None and count == num_batches:
                    break
                model(_first_tensor(batch))
                count += 1
        if count == 0:
            raise ValueError("batches is empty: no statistics to average")
    except BaseException:
        with torch.no_grad():
            for bn, state in zip(layers, saved, strict=True):
                for buffer, old in zip(_buffers(bn), state, strict=True):
                    buffer.copy_(old)
        raise
    finally:
        for bn, momentum in zip(layers, momenta, strict=True):
            bn.momentum = momentum
        for m, training in modes:
            m.training = training
    return count


def freeze_bn(model: nn.Module) -> list[nn.Module]:
    """Put every BatchNorm layer of ``model`` in eval mode and fix its parameters.

    Parameters
    ----------
    model : torch.nn.Module
        With at least one BatchNorm layer that tracks running statistics.

    Returns
    -------
    list of torch.nn.Module
        The frozen layers. Their running statistics no longer change and their
        ``weight`` and ``bias`` get ``requires_grad=False``.

    Notes
    -----
    ``model.train()`` puts the layers back into training mode: call ``freeze_bn``
    again after it, at the start of every epoch.
    """
    layers = batchnorm_layers(model)
    if not layers:
        raise ValueError("model has no BatchNorm layer with running statistics")
    for bn in layers:
        bn.eval()
        for p in bn.parameters():
            p.requires_grad_(False)
    return layers
