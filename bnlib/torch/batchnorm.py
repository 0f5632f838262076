"""bnlib's BatchNorm inside PyTorch: an autograd Function and drop-in layers.

The forward pass is :func:`bnlib.batch_norm` and the backward pass is bnlib's closed
form (:func:`bnlib.batch_norm_backward`), so a network built with these layers trains
on our own derivation rather than on PyTorch's kernel. The layers subclass
``torch.nn.BatchNorm*d`` and keep their constructor, parameters, buffers, state dict
and train/eval behaviour; only ``forward`` is replaced.

CPU tensors of dtype float32 or float64 only. First derivatives only: a second
backward pass (``create_graph=True`` and differentiating again) raises RuntimeError.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from bnlib import batchnorm as F
from bnlib._checks import MixedDtypeError

__all__ = [
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "BatchNormFunction",
    "batch_norm",
]

DOUBLE_BACKWARD = (
    "double backward through bnlib.torch's BatchNorm is not supported: bnlib "
    "computes the first derivatives in closed form with numpy; for second "
    "derivatives (a gradient penalty, a Hessian) use torch.nn.BatchNorm*d"
)


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


def _check_same_dtype(input: torch.Tensor, *tensors: torch.Tensor | None) -> None:
    """As ``torch.nn.functional.batch_norm``: parameters and buffers, when given,
    are tensors of the input's dtype."""
    for t in tensors:
        if t is None:
            continue
        if not isinstance(t, torch.Tensor) or t.device.type != "cpu":
            raise TypeError(
                f"weight, bias and the running statistics must be CPU tensors or "
                f"None, got {type(t).__name__} on {getattr(t, 'device', 'no device')}"
            )
        if t.dtype != input.dtype:
            raise MixedDtypeError(
                f"mixed dtype: the input is {input.dtype}, a parameter or buffer is "
                f"{t.dtype}; convert one to the other"
            )


class BatchNormFunction(torch.autograd.Function):
    """``y = batch_norm(x)`` with bnlib's forward and closed-form backward.

    The forward pass takes no ``ctx`` and ``setup_context`` saves what the
    backward pass needs, the style that ``torch.func`` transforms require. The
    backward pass is itself a :class:`torch.autograd.Function` whose own backward
    raises: differentiating twice fails loudly instead of silently dropping the
    second-order terms.
    """

    @staticmethod
    def forward(
        input: torch.Tensor,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        running_mean: torch.Tensor | None,
        running_var: torch.Tensor | None,
        training: bool,
        momentum: float,
        eps: float,
    ) -> torch.Tensor:
        rm, rv = _numpy(running_mean), _numpy(running_var)
        y = F.batch_norm(
            _numpy(input), rm, rv, _numpy(weight), _numpy(bias), training, momentum, eps
        )
        return torch.from_numpy(y)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        input, weight, _, running_mean, running_var, training, _, eps = inputs
        ctx.training, ctx.eps = training, eps
        if training:
            ctx.save_for_backward(input, weight)
        else:  # copies: the statistics this forward pass used, frozen
            ctx.save_for_backward(
                input, weight, running_mean.clone(), running_var.clone()
            )

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[Any, ...]:
        input, weight, *stats = ctx.saved_tensors
        args = (grad_output, input, weight, ctx.eps, *stats)
        # Building a graph (create_graph=True, torch.func.grad): through _Backward,
        # so that differentiating the gradients raises. Otherwise, directly.
        if torch.is_grad_enabled():
            grads = _Backward.apply(*args)
        else:
            grads = _Backward.forward(*args)
        need = ctx.needs_input_grad[:3]
        picked = [g if n else None for g, n in zip(grads, need, strict=True)]
        return (*picked, None, None, None, None, None)


class _Backward(torch.autograd.Function):
    """bnlib's closed-form gradients; differentiating them raises RuntimeError."""

    @staticmethod
    def forward(
        grad_output: torch.Tensor,
        input: torch.Tensor,
        weight: torch.Tensor | None,
        eps: float,
        *stats: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dy, x, w = _numpy(grad_output.contiguous()), _numpy(input), _numpy(weight)
        if stats:
            mean, var = (_numpy(t) for t in stats)
            grads = F.batch_norm_eval_backward(dy, x, mean, var, w, eps)
        else:
            grads = F.batch_norm_backward(dy, x, w, eps)
        dx, dw, db = (torch.from_numpy(g) for g in grads)
        return dx, dw, db

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[Any, ...]:
        raise RuntimeError(DOUBLE_BACKWARD)


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
    _check_same_dtype(input, weight, bias, running_mean, running_var)
    return BatchNormFunction.apply(
        input, weight, bias, running_mean, running_var, training, momentum, eps
    )


class _BnlibForward:
    """Replaces ``torch.nn.BatchNorm*d.forward`` with bnlib's computation."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        _check_tensor(input)
        _check_same_dtype(
            input, self.weight, self.bias, self.running_mean, self.running_var
        )
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
        stats = (self.running_mean, self.running_var) if keep else (None, None)
        affine = (self.weight, self.bias)
        return batch_norm(input, *stats, *affine, use_batch, factor, self.eps)


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
