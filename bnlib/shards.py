"""BatchNorm over a batch split into shards: partial statistics, a merge, two sums.

Data-parallel training holds a batch as shards, one per process. The statistics of
the whole batch need not see the whole batch: each shard sends its count, mean and
sum of squared deviations ``M2`` (a :class:`ShardStats`), and :func:`merge_stats`
combines any number of them, of any sizes, into those of the concatenation. The
backward pass needs even less: the two per-channel sums of :func:`grad_sums`,
added over the shards. :func:`shard_batch_norm` and
:func:`shard_grad_input` then normalize and differentiate one shard with
the merged numbers, and give exactly what :func:`bnlib.batch_norm` and
:func:`bnlib.batch_norm_backward` give for the shard's rows of the whole batch.

Everything is accumulated in float64. numpy only; :class:`bnlib.torch.SyncBatchNorm`
runs the same steps across processes with ``torch.distributed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from bnlib._checks import (
    affine_or_default,
    as_channel_vector,
    as_float_input,
    check_same_shape,
)
from bnlib._kernels.blocked import channel_sums, input_grad, normalized
from bnlib.batchnorm import _count_per_channel, _moments, _working

__all__ = [
    "ShardStats",
    "grad_sums",
    "merge_stats",
    "shard_batch_norm",
    "shard_grad_input",
    "shard_stats",
]


def _ncl(x: np.ndarray) -> np.ndarray:
    """View ``(N, C, *)`` as ``(N, C, L)``; also for an empty shard (``N = 0``)."""
    return x.reshape(x.shape[0], x.shape[1], int(np.prod(x.shape[2:])))


@dataclass(frozen=True)
class ShardStats:
    """Per-channel statistics of a shard, ready to merge.

    Attributes
    ----------
    count : int
        ``n``, the number of values per channel (``N * prod(*)``).
    mean : ndarray, shape ``(C,)``, float64
        The per-channel mean (zeros for an empty shard).
    m2 : ndarray, shape ``(C,)``, float64
        ``M2 = sum (x - mean)**2``, the sum of squared deviations.
    """

    count: int
    mean: np.ndarray
    m2: np.ndarray

    @property
    def var(self) -> np.ndarray:
        """The biased variance ``M2 / n``, as BatchNorm normalizes with."""
        if self.count < 1:
            raise ValueError("an empty shard has no variance")
        return self.m2 / self.count

    @property
    def unbiased_var(self) -> np.ndarray:
        """``M2 / (n - 1)``, as the running variance is updated with."""
        if self.count < 2:
            raise ValueError(f"the unbiased variance needs 2 values, got {self.count}")
        return self.m2 / (self.count - 1)


def shard_stats(input: Any) -> ShardStats:
    """Count, mean and sum of squared deviations of one shard, per channel.

    Parameters
    ----------
    input : ndarray, shape ``(N, C, *)``
        One shard, channels on axis 1; ``N = 0`` is allowed.

    Returns
    -------
    ShardStats
        float64 whatever the input's dtype.

    Notes
    -----
    The mean and ``M2 = n var`` come from :func:`bnlib.batch_stats`'s shifted
    algorithm, so float32 data far from zero keeps its digits.

    See Also
    --------
    merge_stats : combines the statistics of several shards.
    """
    x = _working(as_float_input(input))
    n, c = _count_per_channel(x), x.shape[1]
    if n == 0:
        return ShardStats(0, np.zeros(c), np.zeros(c))
    mean, var, _, _ = _moments(_ncl(x))
    return ShardStats(n, mean, var * n)


def merge_stats(stats: Sequence[ShardStats]) -> ShardStats:
    """The statistics of the concatenation of shards, from theirs alone.

    Parameters
    ----------
    stats : sequence of ShardStats
        One per shard, all with the same number of channels; any counts.

    Returns
    -------
    ShardStats
        Equal, to rounding, to :func:`bnlib.shard_stats` of the concatenated shards.

    Notes
    -----
    With shard ``k`` holding ``n_k`` values of mean ``mu_k`` and ``M2_k``
    (Chan, Golub and LeVeque's parallel variance, for any number of shards):

    .. math::

        n = \\sum_k n_k, \\quad
        \\mu = \\frac{1}{n}\\sum_k n_k \\mu_k, \\quad
        M_2 = \\sum_k \\big(M_{2,k} + n_k (\\mu_k - \\mu)^2\\big).

    The deviations ``mu_k - mu`` are small, so nothing cancels far from zero.

    See Also
    --------
    shard_stats : the statistics of one shard.
    """
    stats = list(stats)
    if not stats or not all(isinstance(s, ShardStats) for s in stats):
        raise TypeError("stats must be a non-empty sequence of ShardStats")
    shapes = {np.shape(s.mean) for s in stats}
    if len(shapes) != 1:
        raise ValueError(
            f"every shard must have the same channels, got mean shapes {sorted(shapes)}"
        )
    counts = np.array([s.count for s in stats], dtype=np.float64)
    n = int(sum(s.count for s in stats))
    if n == 0:
        return ShardStats(0, np.zeros_like(stats[0].mean), np.zeros_like(stats[0].m2))
    means = np.stack([s.mean for s in stats])
    mean = counts @ means / n
    m2 = sum(s.m2 for s in stats) + counts @ (means - mean) ** 2
    return ShardStats(n, mean, m2)


def grad_sums(
    grad_output: Any, input: Any, stats: ShardStats, eps: float = 1e-5
) -> tuple[np.ndarray, np.ndarray]:
    """The two per-channel sums a shard contributes to BatchNorm's backward pass.

    Parameters
    ----------
    grad_output, input : ndarray, shape ``(N, C, *)``
        One shard's upstream gradient and input.
    stats : ShardStats
        The merged statistics of the whole batch.
    eps : float

    Returns
    -------
    sum_dy, sum_dy_xhat : ndarray, shape ``(C,)``, float64
        ``sum dy`` and ``sum dy * x_hat`` over the shard, with
        ``x_hat = (x - mu) / sqrt(var + eps)`` from the whole batch's statistics.
        Added over the shards they are ``dl/dbeta`` and ``dl/dgamma``.
    """
    x, dy = _pair(grad_output, input, stats)
    if x.size == 0:
        return np.zeros(x.shape[1]), np.zeros(x.shape[1])
    x3, dy3 = _ncl(x), _ncl(dy)
    shift = stats.mean.astype(x.dtype).astype(np.float64)
    _, _, s_dy, s_dyd = channel_sums(x3, shift, dy3)
    centred = s_dyd - (stats.mean - shift) * s_dy  # sum dy * (x - mu)
    return s_dy, centred / np.sqrt(stats.var + eps)


def _pair(grad_output: Any, input: Any, stats: ShardStats) -> tuple[Any, Any]:
    """Working-dtype ``x`` and ``dy`` of one shard, checked against ``stats``."""
    x = _working(as_float_input(input))
    dy = as_float_input(grad_output, "grad_output")
    check_same_shape(dy, x, "grad_output", "input")
    _check_channels(x, stats)
    return x, dy.astype(x.dtype, copy=False)


def _check_channels(x: np.ndarray, stats: ShardStats) -> None:
    if not isinstance(stats, ShardStats):
        raise TypeError(f"stats must be a ShardStats, got {type(stats).__name__}")
    if np.shape(stats.mean) != (x.shape[1],):
        raise ValueError(
            f"stats must have {x.shape[1]} channels to match the input, "
            f"got mean of shape {np.shape(stats.mean)}"
        )


_SUMS = ("sum_dy", "sum_dy_xhat")
_F64 = np.dtype(np.float64)


def shard_batch_norm(
    input: Any, stats: ShardStats,
    weight: ArrayLike | None = None, bias: ArrayLike | None = None, eps: float = 1e-5,
) -> np.ndarray:  # fmt: skip
    """Normalize one shard with the whole batch's merged statistics.

    Parameters
    ----------
    input : ndarray, shape ``(N, C, *)``
    stats : ShardStats
        The merged statistics, from :func:`bnlib.merge_stats`.
    weight, bias : array_like, shape ``(C,)``, optional
    eps : float

    Returns
    -------
    ndarray, shape ``(N, C, *)``
        ``gamma (x - mu) / sqrt(var + eps) + beta``: the shard's rows of training-mode
        :func:`bnlib.batch_norm` on the whole batch.
    """
    x_in = as_float_input(input)
    x = _working(x_in)
    _check_channels(x, stats)
    c = x.shape[1]
    gamma = affine_or_default(weight, "weight", c, x.dtype, 1)
    beta = affine_or_default(bias, "bias", c, x.dtype, 0)
    inv_std = 1 / np.sqrt(stats.var + float(eps))
    y3 = normalized(_ncl(x), stats.mean, gamma * inv_std, beta)
    return y3.reshape(x.shape).astype(x_in.dtype, copy=False)


def shard_grad_input(
    grad_output: Any,
    input: Any,
    stats: ShardStats,
    sums: tuple[Any, Any],
    weight: Any = None,
    eps: float = 1e-5,
) -> np.ndarray:
    """One shard's input gradient, from the whole batch's statistics and two sums.

    Parameters
    ----------
    grad_output, input : ndarray, shape ``(N, C, *)``
        One shard.
    stats : ShardStats
        The merged statistics of the whole batch (``n`` values per channel).
    sums : pair of array_like, shape ``(C,)``, or ndarray, shape ``(2, C)``
        ``(sum_dy, sum_dy_xhat)``: :func:`grad_sums` added over all shards.
    weight : array_like, shape ``(C,)``, optional
    eps : float

    Returns
    -------
    ndarray, shape ``(N, C, *)``
        The shard's rows of :func:`bnlib.batch_norm_backward`'s ``grad_input`` on the
        whole batch. (The shard's shares of ``dl/dgamma`` and ``dl/dbeta`` are its
        own :func:`grad_sums`.)

    Notes
    -----
    The compact gradient with the global ``n`` and the global sums:

    .. math::

        dx_i = \\frac{\\gamma}{\\sqrt{\\sigma^2+\\epsilon}}
        \\Big(dy_i - \\frac{1}{n}\\sum_j dy_j
        - \\frac{\\hat{x}_i}{n} \\sum_j dy_j \\hat{x}_j\\Big).
    """
    x, dy = _pair(grad_output, input, stats)
    c = x.shape[1]
    if not hasattr(sums, "__len__") or len(sums) != 2:
        raise TypeError("sums must be a pair (sum_dy, sum_dy_xhat)")
    sum_dy, sum_dy_xhat = (
        as_channel_vector(s, name, c, _F64) for s, name in zip(sums, _SUMS, strict=True)
    )
    gamma = affine_or_default(weight, "weight", c, x.dtype, 1)
    inv_std = 1 / np.sqrt(stats.var + eps)
    coef = (gamma * inv_std, sum_dy / stats.count, sum_dy_xhat / stats.count * inv_std)
    dx3 = input_grad(_ncl(dy), _ncl(x), stats.mean, coef)
    return dx3.reshape(x.shape).astype(np.asarray(input).dtype, copy=False)
