"""bnlib's numpy BatchNorm registered as PyTorch custom operators.

Two operators, ``bnlib::batch_norm`` and ``bnlib::batch_norm_backward``, run
:func:`bnlib.batch_norm` and its closed-form gradients on CPU tensors. Because they
are operators with a fake (meta) implementation, ``torch.compile`` puts them into
its graph as single nodes instead of breaking the graph at every numpy call, and
``torch.export`` records them in the exported program.

Both are functional: nothing is changed in place. ``bnlib::batch_norm`` returns the
output and, in training with running statistics, the updated running averages,
which the caller copies into its buffers (empty tensors otherwise). The autograd
formula of ``bnlib::batch_norm`` is registered in :mod:`bnlib.torch.batchnorm`;
``bnlib::batch_norm_backward`` has one that raises, so a second derivative fails
loudly.

The annotations below use ``typing.Optional``: torch reads them at run time to infer
each operator's schema, and ``Optional`` is what every torch since 2.4 understands.
"""

# ruff: noqa: UP007, UP045

from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor

from bnlib import batchnorm as F

__all__ = ["DOUBLE_BACKWARD", "backward_impl", "batch_norm_backward", "forward_impl"]

DOUBLE_BACKWARD = (
    "double backward through bnlib.torch's BatchNorm is not supported: bnlib "
    "computes the first derivatives in closed form with numpy; for second "
    "derivatives (a gradient penalty, a Hessian) use torch.nn.BatchNorm*d"
)


def _np(t: Optional[Tensor]) -> Any:
    """A numpy view of a CPU tensor (shares memory), or None."""
    return None if t is None else t.detach().numpy()


def forward_impl(
    input: Tensor,
    weight: Optional[Tensor],
    bias: Optional[Tensor],
    running_mean: Optional[Tensor],
    running_var: Optional[Tensor],
    training: bool,
    momentum: float,
    eps: float,
    count: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(y, new_running_mean, new_running_var)`` from :func:`bnlib.batch_norm`.

    The running statistics are updated on copies; the inputs are never changed.
    The two statistics are empty unless ``training`` and ``running_mean`` is given.
    With ``count`` (a layer's ``num_batches_tracked``, ``momentum=None``) the
    momentum is ``1 / count``: read here, inside the operator, so that tracing
    never needs the count as a Python number.
    """
    if count is not None:
        momentum = 1.0 / float(count)
    if training and running_mean is not None and running_var is not None:
        mean, var = running_mean.clone(), running_var.clone()
        y = F.batch_norm(
            _np(input), _np(mean), _np(var), _np(weight), _np(bias), True, momentum, eps
        )
        return _tensor(y), mean, var
    stats = _np(running_mean), _np(running_var)
    y = F.batch_norm(
        _np(input), *stats, _np(weight), _np(bias), training, momentum, eps
    )
    return _tensor(y), input.new_empty(0), input.new_empty(0)


def _tensor(a: Any) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def backward_impl(
    grad_output: Tensor,
    input: Tensor,
    weight: Optional[Tensor],
    running_mean: Optional[Tensor],
    running_var: Optional[Tensor],
    eps: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(dx, dweight, dbias)``: training-mode gradients when ``running_mean`` is
    None, otherwise those of normalization with the given (frozen) statistics."""
    dy, x, w = _np(grad_output.contiguous()), _np(input), _np(weight)
    if running_mean is not None:
        mean, var = _np(running_mean), _np(running_var)
        grads = F.batch_norm_eval_backward(dy, x, mean, var, w, eps)
    else:
        grads = F.batch_norm_backward(dy, x, w, eps)
    dx, dw, db = (_tensor(g) for g in grads)
    return dx, dw, db


batch_norm = torch.library.custom_op(
    "bnlib::batch_norm", forward_impl, mutates_args=(), device_types="cpu"
)
batch_norm_backward = torch.library.custom_op(
    "bnlib::batch_norm_backward", backward_impl, mutates_args=(), device_types="cpu"
)


@batch_norm.register_fake
def _(
    input: Tensor,
    weight: Optional[Tensor],
    bias: Optional[Tensor],
    running_mean: Optional[Tensor],
    running_var: Optional[Tensor],
    training: bool,
    momentum: float,
    eps: float,
    count: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor, Tensor]:
    y = torch.empty_like(input, memory_format=torch.contiguous_format)
    if training and running_mean is not None and running_var is not None:
        return y, torch.empty_like(running_mean), torch.empty_like(running_var)
    return y, input.new_empty(0), input.new_empty(0)


@batch_norm_backward.register_fake
def _(
    grad_output: Tensor,
    input: Tensor,
    weight: Optional[Tensor],
    running_mean: Optional[Tensor],
    running_var: Optional[Tensor],
    eps: float,
) -> tuple[Tensor, Tensor, Tensor]:
    dx = torch.empty_like(input, memory_format=torch.contiguous_format)
    c = input.shape[1]
    return dx, input.new_empty(c), input.new_empty(c)


def _no_double_backward(ctx: Any, *grads: Tensor) -> tuple[Any, ...]:
    raise RuntimeError(DOUBLE_BACKWARD)


batch_norm_backward.register_autograd(_no_double_backward)
