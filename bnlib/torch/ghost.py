"""Ghost Batch Normalization as a PyTorch layer.

:class:`GhostBatchNorm1d` normalizes every ghost batch in a single call to
:func:`bnlib.torch.batch_norm` by laying the ghost batches side by side as channels;
:func:`to_ghost` puts it into an existing network. The numpy definition it is tested
against is :func:`bnlib.ghost_batch_norm`.

Running statistics: one training call updates the running averages once per ghost
batch, in order, exactly as a plain BatchNorm layer fed the ghost batches one after
another would (``num_batches_tracked`` grows by ``N / g``). Evaluation mode uses the
running statistics and accepts any batch size.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from bnlib.ghost import check_ghost_size, num_ghosts
from bnlib.torch._inputs import _check_tensor
from bnlib.torch.batchnorm import BatchNorm1d, batch_norm

__all__ = ["GhostBatchNorm1d", "to_ghost"]


def _to_ghost_channels(x: torch.Tensor, k: int) -> torch.Tensor:
    """``(k g, C, *) -> (g, k C, *)``; ghost l, channel c -> channel ``l C + c``.

    Batch normalization of the result normalizes every ghost batch with its own
    statistics, in one call (numpy reduces fast over the long leading axis).
    """
    n, c, rest = x.shape[0], x.shape[1], x.shape[2:]
    return x.reshape(k, n // k, c, *rest).transpose(0, 1).reshape(n // k, k * c, *rest)


def _from_ghost_channels(y: torch.Tensor, k: int, shape: torch.Size) -> torch.Tensor:
    """The inverse of :func:`_to_ghost_channels`."""
    return y.reshape(shape[0] // k, k, *shape[1:]).transpose(0, 1).reshape(shape)


class GhostBatchNorm1d(BatchNorm1d):
    """:class:`bnlib.torch.BatchNorm1d` with statistics over ghost batches.

    Parameters
    ----------
    num_features : int
        ``C``; input ``(N, C)`` or ``(N, C, L)``.
    ghost_size : int
        Examples per ghost batch; in training it must divide ``N``.
    eps, momentum, affine, track_running_stats, device, dtype
        As in :class:`torch.nn.BatchNorm1d`.

    Notes
    -----
    In training (and in evaluation without running statistics) the batch is cut
    into ``N / ghost_size`` consecutive ghost batches, each normalized with its own
    mean and variance; all of them go through one call of
    :func:`bnlib.torch.batch_norm` with the ghost batches laid side by side
    as channels. The running statistics then move as if updated once per ghost
    batch, in order (computed in closed form). In evaluation mode with running
    statistics it is plain BatchNorm.

    See Also
    --------
    bnlib.ghost.ghost_batch_norm : the numpy definition it is tested against.
    """

    def __init__(
        self, num_features: int, ghost_size: int,
        eps: float = 1e-5, momentum: float | None = 0.1,
        affine: bool = True, track_running_stats: bool = True,
        device: Any = None, dtype: Any = None,
    ) -> None:  # fmt: skip
        g = check_ghost_size(ghost_size)
        super().__init__(
            num_features, eps, momentum, affine, track_running_stats, device, dtype
        )
        self.ghost_size = g

    def extra_repr(self) -> str:
        base = super().extra_repr()  # type: ignore[no-untyped-call]
        return f"{base}, ghost_size={self.ghost_size}"

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training and self.running_mean is not None:
            return super().forward(input)
        _check_tensor(input)
        self._check_input_dim(input)
        k = num_ghosts(tuple(input.shape), self.ghost_size)
        if k == 0:
            return super().forward(input)
        x_g = _to_ghost_channels(input, k)
        w = None if self.weight is None else self.weight.repeat(k)
        b = None if self.bias is None else self.bias.repeat(k)
        # With momentum 1, the temporary buffers receive each ghost batch's mean
        # and unbiased variance from the same call that normalizes.
        mean, var = (torch.zeros(x_g.shape[1], dtype=input.dtype) for _ in range(2))
        y_g = batch_norm(x_g, mean, var, w, b, True, 1.0, self.eps)
        if self.training and self.track_running_stats:
            self._update_running_stats(mean, var, k)
        return _from_ghost_channels(y_g, k, input.shape)

    @torch.no_grad()
    def _update_running_stats(
        self, mean: torch.Tensor, var: torch.Tensor, k: int
    ) -> None:
        """The ``k`` moving-average steps plain BN would take, in one go."""
        bn: Any = self  # tracking statistics: the three buffers exist
        decay, w = _ema_weights(k, bn.momentum, int(bn.num_batches_tracked))
        bn.num_batches_tracked.add_(k)
        w_t = torch.from_numpy(w).to(mean.dtype)
        for buf, s in ((bn.running_mean, mean), (bn.running_var, var)):
            buf.mul_(decay).add_(w_t @ s.reshape(k, -1).to(buf.dtype))


def _ema_weights(k: int, momentum: float | None, seen: int) -> tuple[float, np.ndarray]:
    """``r_k = decay r_0 + sum_l w_l s_l`` after ``k`` moving-average steps.

    With momentum ``a`` each step is ``r <- (1 - a) r + a s``, so
    ``decay = (1 - a)**k`` and ``w_l = a (1 - a)**(k - 1 - l)``. With ``None`` (a
    cumulative average after ``seen`` earlier batches) ``decay = seen / (seen + k)``
    and every ``w_l = 1 / (seen + k)``.
    """
    if momentum is None:
        return seen / (seen + k), np.full(k, 1.0 / (seen + k))
    return (1 - momentum) ** k, momentum * (1 - momentum) ** np.arange(k - 1, -1, -1)


def to_ghost(model: nn.Module, ghost_size: int) -> nn.Module:
    """Replace every ``BatchNorm1d`` inside ``model`` by a :class:`GhostBatchNorm1d`.

    Parameters
    ----------
    model : torch.nn.Module
        Changed in place, for example a network from
        :func:`bnbook.lab.experiments.make_mlp`.
    ghost_size : int

    Returns
    -------
    torch.nn.Module
        ``model``. Each new layer starts from the old one's state dict (weights,
        biases and running statistics are copied), so build the optimizer after
        calling this.
    """
    g = check_ghost_size(ghost_size)
    for name, child in model.named_children():
        if isinstance(child, nn.BatchNorm1d):
            setattr(model, name, _ghost_copy(child, g))
        else:
            to_ghost(child, g)
    return model


def _ghost_copy(bn: nn.BatchNorm1d, ghost_size: int) -> GhostBatchNorm1d:
    ref = bn.weight if bn.affine else bn.running_mean
    kwargs = {} if ref is None else {"device": ref.device, "dtype": ref.dtype}
    ghost = GhostBatchNorm1d(
        bn.num_features,
        ghost_size,
        bn.eps,
        bn.momentum,
        bn.affine,
        bn.track_running_stats,
        **kwargs,
    )
    ghost.load_state_dict(bn.state_dict())
    return ghost.train(bn.training)
