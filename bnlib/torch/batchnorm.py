"""bnlib's BatchNorm inside PyTorch: custom operators, autograd and drop-in layers.

The forward pass is :func:`bnlib.batch_norm` and the backward pass is bnlib's closed
form (:func:`bnlib.batch_norm_backward`), so a network built with these layers trains
on our own derivation rather than on PyTorch's kernel. Both run as the torch custom
operators of :mod:`bnlib.torch._ops`, so ``torch.compile`` and ``torch.export`` see
one node per layer. The layers subclass ``torch.nn.BatchNorm*d`` and keep their
constructor, parameters, buffers, state dict and train/eval behaviour; only
``forward`` is replaced.

CPU tensors. float32 and float64 are computed in their own dtype; float16 and
bfloat16 inputs (also under CPU autocast) are computed in float32 and returned in
the input's dtype, as PyTorch does. First derivatives only: a second backward pass
(``create_graph=True`` and differentiating again) raises RuntimeError.
Forward-mode AD (``torch.func.jvp``, ``torch.autograd.forward_ad``) has its own rule;
``torch.func.vmap`` raises RuntimeError.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.autograd.forward_ad as fwAD

from bnlib.torch import _ops
from bnlib.torch._inputs import (
    _LOW,
    _check_same_dtype,
    _check_tensor,
    _working,
)
from bnlib.torch._ops import DOUBLE_BACKWARD

__all__ = [
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "BatchNormFunction",
    "batch_norm",
]

VMAP = (
    "torch.func.vmap over bnlib.torch's BatchNorm is not supported: the kernel is "
    "numpy and has no batching rule; loop over the batch, or use "
    "torch.nn.functional.batch_norm"
)


def _save(ctx: Any, inputs: tuple[Any, ...], output: Any) -> tuple[Any, ...]:
    """What both backward passes need; frozen copies of the running statistics."""
    input, weight, _, running_mean, running_var, training, _, eps, _ = inputs
    ctx.training, ctx.eps = training, eps
    ctx.mark_non_differentiable(output[1], output[2])
    if training or running_mean is None:
        saved: tuple[Any, ...] = (input, weight)
    else:  # copies: the statistics this forward pass used, frozen
        saved = (input, weight, running_mean.clone(), running_var.clone())
    ctx.save_for_backward(*saved)
    return saved


class BatchNormFunction(torch.autograd.Function):
    """``(y, new_mean, new_var) = batch_norm(x)``: bnlib's forward, closed-form
    backward and forward-mode rule.

    Its ``setup_context`` and ``backward`` are also the autograd formula
    registered for the custom operator ``bnlib::batch_norm``, which
    :func:`batch_norm` calls; :func:`batch_norm` applies this Function itself only
    under ``torch.func`` transforms and forward-mode AD, which custom operators do
    not support. The backward pass goes through an autograd Function whose own
    backward raises: differentiating twice fails loudly instead of silently
    dropping the second-order terms.
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
        count: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return _ops.forward_impl(
            input, weight, bias, running_mean, running_var, training, momentum, eps,
            count,
        )  # fmt: skip

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        ctx.save_for_forward(*_save(ctx, inputs, output))

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor, *_: Any) -> tuple[Any, ...]:
        input, weight, *stats = ctx.saved_tensors
        mean, var = stats if stats else (None, None)
        args = (grad_output, input, weight, mean, var, ctx.eps)
        # Building a graph (create_graph=True, torch.func.grad): through _Backward,
        # so that differentiating the gradients raises. Otherwise, directly.
        if torch.is_grad_enabled():
            grads = _Backward.apply(*args)  # type: ignore[no-untyped-call]
        else:
            grads = _ops.batch_norm_backward(*args)
        need = ctx.needs_input_grad[:3]
        picked = [g if n else None for g, n in zip(grads, need, strict=True)]
        return (*picked, None, None, None, None, None, None)

    @staticmethod
    def jvp(ctx: Any, *tangents: Any) -> tuple[Any, ...]:
        return (_tangent(ctx, *tangents[:5]), None, None)

    @staticmethod
    def vmap(info: Any, in_dims: Any, *args: Any) -> Any:
        raise RuntimeError(VMAP)


def _tangent(
    ctx: Any, t_x: Any, t_w: Any, t_b: Any, t_mean: Any, t_var: Any
) -> torch.Tensor:
    """The output's tangent: the Jacobian of ``x_hat`` is symmetric, so bnlib's
    backward pass applied to ``t_x`` is the forward-mode product, and ``gamma``'s and
    ``beta``'s tangents add ``t_w x_hat + t_b``."""
    input, weight, *stats = ctx.saved_tensors
    mean, var = stats if stats else (None, None)
    if mean is not None and any(_nonzero(t) for t in (t_mean, t_var)):
        raise RuntimeError(
            "forward-mode AD through bnlib.torch's running statistics is not "
            "supported; give tangents for the input, weight and bias only"
        )
    out = torch.zeros_like(input)
    if t_x is not None:
        out += _ops.batch_norm_backward(t_x, input, weight, mean, var, ctx.eps)[0]
    if t_w is not None or t_b is not None:
        shape = (1, -1) + (1,) * (input.dim() - 2)
        if t_w is not None:
            train = mean is None
            x_hat = _ops.batch_norm(input, None, None, mean, var, train, 0.0, ctx.eps)
            out += t_w.reshape(shape) * x_hat[0]
        if t_b is not None:
            out += t_b.reshape(shape)
    return out


def _nonzero(t: torch.Tensor | None) -> bool:
    return t is not None and bool(t.any())


class _Backward(torch.autograd.Function):
    """bnlib's closed-form gradients; differentiating them raises RuntimeError."""

    @staticmethod
    def forward(
        grad_output: torch.Tensor,
        input: torch.Tensor,
        weight: torch.Tensor | None,
        running_mean: torch.Tensor | None,
        running_var: torch.Tensor | None,
        eps: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return _ops.backward_impl(
            grad_output, input, weight, running_mean, running_var, eps
        )

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[Any, ...]:
        raise RuntimeError(DOUBLE_BACKWARD)


_ops.batch_norm.register_autograd(BatchNormFunction.backward, setup_context=_save)


def _forward_mode_or_transform() -> bool:
    """True under ``torch.func`` transforms or forward-mode AD (never while
    ``torch.compile`` or ``torch.export`` traces: they use the operator)."""
    if torch.compiler.is_compiling():
        return False
    return bool(torch._C._are_functorch_transforms_active()) or (
        fwAD._current_level >= 0
    )


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
        CPU; float16, bfloat16, float32 or float64.
    running_mean, running_var : Tensor, shape ``(C,)``, or None
        Updated in place in training mode.
    weight, bias : Tensor, shape ``(C,)``, optional
        Of the input's dtype, or float32 for a float16 or bfloat16 input.
    training, momentum, eps
        As in :func:`bnlib.batch_norm`.

    Returns
    -------
    Tensor, shape ``(N, C, *)``
        The output, in the input's dtype; gradients flow to ``input``, ``weight``
        and ``bias`` through bnlib's closed-form backward.

    Notes
    -----
    float16 and bfloat16 are computed in float32 (input, parameters and running
    statistics converted, the output rounded once), as PyTorch's CPU kernel does.
    The computation is the custom operator ``bnlib::batch_norm``; under
    ``torch.func`` transforms and forward-mode AD it is
    :class:`BatchNormFunction`, which has a forward-mode rule.

    See Also
    --------
    bnlib.batch_norm_backward : the backward pass used here.
    """
    return _batch_norm(
        input, running_mean, running_var, weight, bias, training, momentum, eps
    )


def _batch_norm(
    input: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    training: bool,
    momentum: float,
    eps: float,
    count: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`batch_norm`; with ``count``, the momentum is ``1 / count``."""
    _check_tensor(input)
    _check_same_dtype(input, weight, bias, running_mean, running_var)
    low = input.dtype in _LOW
    args = [_working(t, low) for t in (input, weight, bias, running_mean, running_var)]
    if _forward_mode_or_transform():
        y, mean, var = BatchNormFunction.apply(  # type: ignore[no-untyped-call]
            *args, training, momentum, eps, count
        )
    else:
        y, mean, var = _ops.batch_norm(*args, training, momentum, eps, count)
    if training and running_mean is not None and running_var is not None:
        with torch.no_grad():
            running_mean.copy_(mean)
            running_var.copy_(var)
    out: torch.Tensor = y.to(input.dtype)
    return out


class _BnlibForward:
    """Replaces ``torch.nn.BatchNorm*d.forward`` with bnlib's computation."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        bn: Any = self  # a torch.nn.BatchNorm*d: this class is mixed into one
        bn._check_input_dim(input)
        _check_tensor(input)
        _check_same_dtype(input, bn.weight, bn.bias, bn.running_mean, bn.running_var)
        if bn.training and input.numel() // input.shape[1] == 1:
            raise ValueError(
                "Expected more than 1 value per channel when training, "
                f"got input of shape {tuple(input.shape)}"
            )
        factor = 0.0 if bn.momentum is None else bn.momentum
        count = None  # momentum None: 1 / count, read inside the operator
        if bn.training and bn.track_running_stats:
            bn.num_batches_tracked.add_(1)
            if bn.momentum is None:
                count = bn.num_batches_tracked
        use_batch = bn.training or bn.running_mean is None
        keep = not bn.training or bn.track_running_stats
        rm, rv = (bn.running_mean, bn.running_var) if keep else (None, None)
        return _batch_norm(
            input, rm, rv, bn.weight, bn.bias, use_batch, factor, bn.eps, count
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
