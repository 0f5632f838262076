"""bnlib's BatchNorm inside PyTorch: an autograd Function and drop-in layers.

The forward pass is :func:`bnlib.batch_norm` and the backward pass is bnlib's closed
form (:func:`bnlib.batch_norm_backward`), so a network built with these layers trains
on our own derivation rather than on PyTorch's kernel. The layers subclass
``torch.nn.BatchNorm*d`` and keep their constructor, parameters, buffers, state dict
and train/eval behaviour; only ``forward`` is replaced.

CPU tensors of dtype float32 or float64 only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from bnlib import batchnorm as F

__all__ = [
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "BatchNormFunction",
    "batch_norm",
]


def _numpy(t: torch.Tensor | None) -> np.ndarray | None:
    """A numpy view of a CPU tensor (shares memory), or None."""
    return None if t is None else t.detach().numpy()


def _check_tensor(input: Any) -> None:
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
    if input.device.type != "cpu":
        raise TypeError(f"input must be on the CPU, got device {input.device}")
    if input.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"input must be float32 or float64, got {input.dtype}")


class BatchNormFunction(torch.autograd.Function):
    """``y = batch_norm(x)`` with bnlib's forward and closed-form backward."""

    @staticmethod
    def forward(
        ctx: Any,
        input: torch.Tensor,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        running_mean: torch.Tensor | None,
        running_var: torch.Tensor | None,
        training: bool,
        momentum: float,
        eps: float,
    ) -> torch.Tensor:
        x = _numpy(input)
        rm, rv = _numpy(running_mean), _numpy(running_var)
        y = F.batch_norm(
            x, rm, rv, _numpy(weight), _numpy(bias), training, momentum, eps
        )
        ctx.training, ctx.eps = training, eps
        saved = (input, weight) if training else (input, weight, *_stats(rm, rv))
        ctx.save_for_backward(*[t for t in saved if t is not None])
        ctx.has_weight = weight is not None
        return torch.from_numpy(y)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[Any, ...]:
        saved = list(ctx.saved_tensors)
        x = _numpy(saved.pop(0))
        w = _numpy(saved.pop(0)) if ctx.has_weight else None
        dy = _numpy(grad_output.contiguous())
        if ctx.training:
            dx, dw, db = F.batch_norm_backward(dy, x, w, ctx.eps)
        else:
            mean, var = (_numpy(t) for t in saved)
            dx, dw, db = F.batch_norm_eval_backward(dy, x, mean, var, w, ctx.eps)
        need = ctx.needs_input_grad[:3]
        grads = [
            torch.from_numpy(g) if n else None
            for g, n in zip((dx, dw, db), need, strict=True)
        ]
        return (*grads, None, None, None, None, None)


def _stats(rm: np.ndarray, rv: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Copies of the running statistics, frozen for an eval-mode backward."""
    return torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy())


def batch_norm(
    input: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> torch.Tensor:
    """``torch.nn.functional.batch_norm`` computed by bnlib, differentiable.

    Parameters
    ----------
    input : Tensor, shape ``(N, C, *)``
        CPU, float32 or float64.
    running_mean, running_var : Tensor, shape ``(C,)``, or None
        Updated in place in training mode.
    weight, bias : Tensor, shape ``(C,)``, optional
    training, momentum, eps
        As in :func:`bnlib.batch_norm`.

    Returns
    -------
    Tensor, shape ``(N, C, *)``
        The output; gradients flow to ``input``, ``weight`` and ``bias`` through
        bnlib's closed-form backward.

    See Also
    --------
    bnlib.batch_norm_backward : the backward pass used here.
    """
    _check_tensor(input)
    return BatchNormFunction.apply(
        input, weight, bias, running_mean, running_var, training, momentum, eps
    )


class _BnlibForward:
    """Replaces ``torch.nn.BatchNorm*d.forward`` with bnlib's computation."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        _check_tensor(input)
        if self.training and input.numel() // input.shape[1] == 1:
            raise ValueError(
                "Expected more than 1 value per channel when training, "
                f"got input of shape {tuple(input.shape)}"
            )
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        use_batch = self.training or self.running_mean is None
        keep = not self.training or self.track_running_stats
        return batch_norm(
            input,
            self.running_mean if keep else None,
            self.running_var if keep else None,
            self.weight,
            self.bias,
            use_batch,
            factor,
            self.eps,
        )


class BatchNorm1d(_BnlibForward, torch.nn.BatchNorm1d):
    """Drop-in ``torch.nn.BatchNorm1d`` whose forward and backward are bnlib's.

    Same constructor, parameters (``weight``, ``bias``), buffers (``running_mean``,
    ``running_var``, ``num_batches_tracked``), state dict and train/eval behaviour
    as :class:`torch.nn.BatchNorm1d`; input ``(N, C)`` or ``(N, C, L)``.
    """


class BatchNorm2d(_BnlibForward, torch.nn.BatchNorm2d):
    """Drop-in ``torch.nn.BatchNorm2d`` whose forward and backward are bnlib's."""


class BatchNorm3d(_BnlibForward, torch.nn.BatchNorm3d):
    """Drop-in ``torch.nn.BatchNorm3d`` whose forward and backward are bnlib's."""
