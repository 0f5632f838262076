"""Synchronized BatchNorm across processes, on CPU, with ``torch.distributed``.

``torch.nn.SyncBatchNorm`` refuses CPU tensors when it trains inside an initialized
process group (in evaluation mode, or with no process group, it runs on CPU as plain
BatchNorm). :class:`SyncBatchNorm` here has its constructor and
:meth:`~SyncBatchNorm.convert_sync_batchnorm`, and runs wherever
``torch.distributed`` collectives work on CPU tensors (the gloo backend, on one
machine or many); :func:`revert_sync_batchnorm` turns either layer back into plain
BatchNorm. Each process holds one shard of the batch; the layer normalizes with the
statistics of the whole batch, and its backward pass gives every process its rows of
the whole batch's input gradient.

What travels, per layer and training step, in float64 (``C`` channels), with
:mod:`bnlib.shards` doing the arithmetic on each side, in two rounds:

1. forward: one all-gather of ``[n_k, mu_k, M2_k]`` (``2 C + 1`` values from each
   process); every process merges the gathered statistics itself with
   :func:`bnlib.merge_stats` (Chan, Golub and LeVeque's formula), in the same order,
   so all get the same numbers;
2. backward: one all-reduce of ``sum dy`` and ``sum dy x_hat`` (``2 C`` values).

The weight and bias gradients stay local (each process's share), as for any other
parameter: ``DistributedDataParallel`` adds them up with the rest.

Every process must run its SyncBatchNorm layers in the same order, as with any
collective. Errors that one process alone would see are turned into errors on all:
the first training call of each layer all-reduces its channel count (-1 from a
process whose input does not match its layer), and if the processes disagree every
process raises a ``ValueError`` instead of hanging; a batch with one value per channel
over all processes raises on every process too (each knows the total after the
all-gather). Later calls trust the channel check: an input whose channel count no
longer matches ``num_features`` raises on its own process, and the others wait for
the process group's timeout.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.autograd.function import once_differentiable
from torch.nn.modules.batchnorm import _BatchNorm

from bnlib import shards
from bnlib.torch._inputs import _check_tensor, _numpy, bias_kwargs
from bnlib.torch.batchnorm import batch_norm

__all__ = [
    "SyncBatchNorm",
    "SyncBatchNormFunction",
    "gather_stats",
    "revert_sync_batchnorm",
]


def _all_reduce(values: np.ndarray, group: Any) -> np.ndarray:
    """Sum a float64 vector over the processes of ``group``."""
    t = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64))
    dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
    return t.numpy()


def gather_stats(local: shards.ShardStats, group: Any = None) -> shards.ShardStats:
    """:func:`bnlib.merge_stats` over processes: one all-gather, merged locally.

    Parameters
    ----------
    local : ShardStats
        This process's shard statistics.
    group : ProcessGroup, optional
        Default: the whole world.

    Returns
    -------
    ShardStats
        The statistics of the whole batch, the same on every process.

    Notes
    -----
    Each process sends ``[n_k, mu_k, M2_k]``, ``2 C + 1`` float64 values, and
    receives everyone's; the merge runs on each process in rank order.
    """
    c = local.mean.shape[0]
    mine = np.concatenate([[local.count], local.mean, local.m2])
    t = torch.from_numpy(np.ascontiguousarray(mine, dtype=np.float64))
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, t, group=group)
    stats = [
        shards.ShardStats(
            int(round(float(p[0]))), p[1 : c + 1].numpy(), p[c + 1 :].numpy()
        )
        for p in parts
    ]
    return shards.merge_stats(stats)


def _check_peers(num_features: int, input_channels: int, group: Any) -> None:
    """Every process raises a ValueError unless all agree on the channel count.

    A process whose input does not have ``num_features`` channels sends -1, so the
    others learn of it from the same all-reduce instead of waiting for it.
    """
    ok = input_channels == num_features
    mine = num_features if ok else -1
    t = torch.tensor([mine, -mine], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group)
    largest, smallest = int(t[0]), -int(t[1])
    if not ok:
        raise ValueError(
            f"expected input with {num_features} channels, got {input_channels}"
        )
    if smallest == -1:
        raise ValueError(
            "SyncBatchNorm: on another process the input does not have the "
            "layer's number of channels"
        )
    if largest != smallest:
        other = smallest if smallest != num_features else largest
        raise ValueError(
            "SyncBatchNorm: the processes disagree on the number of channels "
            f"(this process has {num_features}, another {other})"
        )


class SyncBatchNormFunction(torch.autograd.Function):
    """Training-mode BatchNorm over the shards held by the processes of a group."""

    @staticmethod
    def forward(
        ctx: Any, input: torch.Tensor,
        weight: torch.Tensor | None, bias: torch.Tensor | None,
        running_mean: torch.Tensor | None, running_var: torch.Tensor | None,
        eps: float, momentum: float, group: Any,
    ) -> torch.Tensor:  # fmt: skip
        x, w = _numpy(input), _numpy(weight)
        stats = gather_stats(shards.shard_stats(x), group)
        if stats.count < 2:
            raise ValueError(
                "Expected more than 1 value per channel when training, got "
                f"{stats.count} over all processes"
            )
        if running_mean is not None and running_var is not None:
            _update_running(running_mean, running_var, stats, momentum)
        y = shards.shard_batch_norm(x, stats, w, _numpy(bias), eps)
        ctx.save_for_backward(input, weight)
        ctx.stats, ctx.eps, ctx.group = stats, eps, group
        return torch.from_numpy(y)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[Any, ...]:
        input, weight = ctx.saved_tensors
        x, dy = _numpy(input), _numpy(grad_output.contiguous())
        local = shards.grad_sums(dy, x, ctx.stats, ctx.eps)
        both = _all_reduce(np.concatenate(local), ctx.group)
        c = x.shape[1]
        sums = (both[:c], both[c:])
        dx = shards.shard_grad_input(dy, x, ctx.stats, sums, _numpy(weight), ctx.eps)
        dt = input.dtype
        dw, db = (torch.from_numpy(s).to(dt) for s in (local[1], local[0]))
        need = ctx.needs_input_grad
        return (
            torch.from_numpy(dx) if need[0] else None,
            dw if need[1] else None,
            db if need[2] else None,
            *([None] * 5),
        )


@torch.no_grad()
def _update_running(
    mean: torch.Tensor, var: torch.Tensor, stats: shards.ShardStats, momentum: float
) -> None:
    """The moving averages, with the unbiased variance of the whole batch."""
    new = (stats.mean, stats.unbiased_var)
    for buf, s in zip((mean, var), new, strict=True):
        buf.mul_(1 - momentum).add_(torch.from_numpy(momentum * s).to(buf.dtype))


class SyncBatchNorm(_BatchNorm):
    """BatchNorm whose statistics span the batch shards of all processes; CPU.

    Parameters
    ----------
    num_features : int
        ``C``; input ``(N, C, *)`` of any rank >= 2, float32 or float64 (not
        float16 or bfloat16, unlike :class:`bnlib.torch.BatchNorm1d`), on the CPU.
    eps, momentum, affine, track_running_stats, device, dtype, bias
        As in :class:`torch.nn.SyncBatchNorm` (``bias`` is keyword-only).
    process_group : ProcessGroup, optional
        The processes whose shards make up the batch (default: the whole world).

    Notes
    -----
    In training, with a process group of two or more processes, the forward pass
    all-gathers ``2 C + 1`` numbers from each process and the backward pass
    all-reduces ``2 C`` (see the module docstring); the running statistics use the
    whole batch's count for the unbiased variance. With one process, or when
    ``torch.distributed`` is not initialized, it is :class:`bnlib.torch.BatchNorm1d`'s
    computation. In evaluation mode it normalizes with the running statistics and
    communicates nothing. Shards may have different sizes, even zero.

    See Also
    --------
    bnlib.merge_stats : the numpy merge it runs across processes.
    """

    def __init__(
        self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
        affine: bool = True, track_running_stats: bool = True,
        process_group: Any = None, device: Any = None, dtype: Any = None,
        *, bias: bool = True,
    ) -> None:  # fmt: skip
        super().__init__(
            num_features, eps, momentum, affine, track_running_stats, device, dtype,
            **bias_kwargs(bias),
        )  # fmt: skip
        self.process_group = process_group
        self._peers_checked = False

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def _group_size(self) -> int:
        if not (dist.is_available() and dist.is_initialized()):
            return 1
        return dist.get_world_size(self.process_group)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        _check_tensor(input, low_precision=False)
        self._check_input_dim(input)
        use_batch = self.training or self.running_mean is None
        sync = use_batch and self.training and self._group_size() > 1
        if sync and not self._peers_checked:
            _check_peers(self.num_features, input.shape[1], self.process_group)
            self._peers_checked = True
        if input.shape[1] != self.num_features:
            raise ValueError(
                f"expected input with {self.num_features} channels, "
                f"got input of shape {tuple(input.shape)}"
            )
        tracking = self.training and self.track_running_stats
        factor = self._factor(tracking)
        keep = not self.training or self.track_running_stats
        rm, rv = (self.running_mean, self.running_var) if keep else (None, None)
        if not sync:
            y = batch_norm(
                input, rm, rv, self.weight, self.bias, use_batch, factor, self.eps
            )
        else:
            y = SyncBatchNormFunction.apply(  # type: ignore[no-untyped-call]
                input, self.weight, self.bias, rm, rv, self.eps, factor,
                self.process_group,
            )  # fmt: skip
        if tracking:  # counted only once the call has succeeded
            self._count().add_(1)
        out: torch.Tensor = y
        return out

    def _count(self) -> torch.Tensor:
        """``num_batches_tracked``, which a layer that tracks statistics has."""
        assert self.num_batches_tracked is not None
        return self.num_batches_tracked

    def _factor(self, tracking: bool) -> float:
        """The moving-average weight of this call (which counts when tracking)."""
        if tracking and self.momentum is None:
            return 1.0 / (float(self._count()) + 1)
        return 0.0 if self.momentum is None else self.momentum

    @classmethod
    def convert_sync_batchnorm(
        cls, module: torch.nn.Module, process_group: Any = None
    ) -> torch.nn.Module:
        """Replace every BatchNorm layer in ``module`` by a :class:`SyncBatchNorm`.

        Parameters
        ----------
        module : torch.nn.Module
            A network, or a single ``torch.nn.BatchNorm*d`` layer.
        process_group : ProcessGroup, optional

        Returns
        -------
        torch.nn.Module
            ``module`` with its BatchNorm layers replaced (they share the old
            layers' parameters and buffers), or the new layer when ``module`` is
            one.
        """
        out = module
        if isinstance(module, _BatchNorm) and not isinstance(module, cls):
            out = _sync_copy(cls, module, process_group)
        for name, child in module.named_children():
            out.add_module(name, cls.convert_sync_batchnorm(child, process_group))
        return out


def _sync_copy(cls: type, bn: _BatchNorm, group: Any) -> SyncBatchNorm:
    new: SyncBatchNorm = cls(
        bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats,
        bias=bn.bias is not None or not bn.affine,
    )  # fmt: skip
    new.process_group = group
    if bn.affine:
        new.weight, new.bias = bn.weight, bn.bias
    new.running_mean, new.running_var = bn.running_mean, bn.running_var
    new.num_batches_tracked = bn.num_batches_tracked
    return new.train(bn.training)


def revert_sync_batchnorm(
    module: torch.nn.Module, batch_norm_class: type = torch.nn.BatchNorm2d
) -> torch.nn.Module:
    """Replace every SyncBatchNorm in ``module`` by a plain BatchNorm layer.

    Parameters
    ----------
    module : torch.nn.Module
        A network, or one ``torch.nn.SyncBatchNorm`` or bnlib ``SyncBatchNorm``
        (any BatchNorm layer with a ``process_group`` attribute).
    batch_norm_class : type, optional
        The layer to put in their place, ``torch.nn.BatchNorm1d``, ``2d`` or ``3d``
        (default ``2d``): a SyncBatchNorm takes inputs of any rank, so the rank
        must be chosen.

    Returns
    -------
    torch.nn.Module
        ``module`` with those layers replaced (the new layers share their
        parameters and buffers, and keep their mode), or the new layer when
        ``module`` is one. Only plain PyTorch: copy it where bnlib is absent.
    """
    out = module
    if isinstance(module, _BatchNorm) and hasattr(module, "process_group"):
        m = module  # a SyncBatchNorm: torch's, bnlib's or another one
        settings = (m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
        out = batch_norm_class(*settings)
        for name in ("weight", "bias", "running_mean", "running_var"):
            setattr(out, name, getattr(m, name))
        out.num_batches_tracked = m.num_batches_tracked
        out.train(m.training)
    for name, child in module.named_children():
        out.add_module(name, revert_sync_batchnorm(child, batch_norm_class))
    return out
