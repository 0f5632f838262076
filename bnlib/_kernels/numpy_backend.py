"""The numpy backend: BatchNorm's per-channel primitives as numpy passes.

Two ways to make a pass over an ``(N, C, L)`` array, chosen by its shape:

- the blocked passes of :mod:`bnlib._kernels.blocked`: a cache-sized block at a
  time, shared among threads;
- for a few channels with long rows (``C <= FEW_CHANNELS``, ``L >= LONG_ROW``, as
  for an image batch at a network's input), whole-array numpy calls over one
  channel's rows at a time: each channel is a few long contiguous runs, so numpy's
  loops are already long and blocking only adds calls.

See Also
--------
bnlib.backend : chooses between this backend and the numba one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bnlib._kernels import blocked

__all__ = [
    "FEW_CHANNELS",
    "LONG_ROW",
    "channel_sums",
    "input_grad",
    "normalized",
    "shift",
]

FEW_CHANNELS = 4  # at most this many channels ...
LONG_ROW = 1 << 14  # ... with rows at least this long: one channel at a time


def _by_channel(x3: np.ndarray) -> bool:
    return bool(x3.shape[1] <= FEW_CHANNELS and x3.shape[2] >= LONG_ROW)


def shift(x3: np.ndarray) -> np.ndarray:
    """The shift ``K`` of the statistics, ``(C,)`` float64: per channel, the mean of
    the first block of ``x3`` ``(N, C, L)``, rounded to the dtype of ``x3`` so that
    ``x - K`` is formed with this very ``K``. As the block is part of the batch,
    ``(mean - K)**2 / var`` is at most the number of blocks.
    """
    first = x3[blocked.blocks(x3)[0]]
    k = np.einsum("ncl->c", first) / (first.shape[0] * first.shape[2])
    return np.asarray(k, dtype=x3.dtype).astype(np.float64)


def _each_channel(
    x3: np.ndarray, fill: Callable[[int, np.ndarray], None]
) -> np.ndarray:
    """A new array like ``x3``; ``fill(c, view)`` writes channel ``c``, ``(N, L)``."""
    out = np.empty(x3.shape, x3.dtype)
    for c in range(x3.shape[1]):
        fill(c, out[:, c])
    return out


def _row_sums(a: np.ndarray) -> np.ndarray:
    """Pairwise sums along each row of ``a`` ``(N, L)``, then float64 over rows."""
    return np.asarray(a.sum(axis=1).sum(dtype=np.float64))


def _channel_sums_by_channel(
    x3: np.ndarray, k: np.ndarray, dy3: np.ndarray | None
) -> np.ndarray:
    out = np.zeros((4, x3.shape[1]))
    for c in range(x3.shape[1]):
        d = x3[:, c] - x3.dtype.type(k[c])
        out[0, c] = _row_sums(d)
        if dy3 is not None:
            g = dy3[:, c]
            out[2, c], out[3, c] = _row_sums(g), _row_sums(g * d)
        out[1, c] = _row_sums(np.square(d, out=d))
    return out


def channel_sums(
    x3: np.ndarray, shift: np.ndarray, dy3: np.ndarray | None = None
) -> np.ndarray:
    """``sum(d)``, ``sum(d**2)``, ``sum(dy)``, ``sum(dy * d)`` per channel, ``(4, C)``.

    With ``d = x - shift``; the last two rows are zero without ``dy3``. Few channels
    with long rows go channel by channel in whole-row numpy calls, the rest through
    the blocked pass :func:`bnlib._kernels.blocked.channel_sums`.
    """
    if _by_channel(x3):
        return _channel_sums_by_channel(x3, shift, dy3)
    return blocked.channel_sums(x3, shift, dy3)


def normalized(
    x3: np.ndarray, mean: np.ndarray, scale: np.ndarray, beta: np.ndarray
) -> np.ndarray:
    """``(x - mean) * scale + beta`` per channel, shape and dtype of ``x3``; through
    :func:`bnlib._kernels.blocked.normalized` unless the rows are few and long."""
    if not _by_channel(x3):
        return blocked.normalized(x3, mean, scale, beta)
    t = x3.dtype.type

    def fill(c: int, y: np.ndarray) -> None:
        np.subtract(x3[:, c], t(mean[c]), out=y)
        y *= t(scale[c])
        y += t(beta[c])

    return _each_channel(x3, fill)


def input_grad(
    dy3: np.ndarray, x3: np.ndarray, mean: np.ndarray, coef: tuple[Any, Any, Any]
) -> np.ndarray:
    """``dx = k * (dy - c - a * (x - mean))`` per channel, ``coef = (k, c, a)``.

    Few long rows go channel by channel, others through the blocked pass.
    """
    if not _by_channel(x3):
        return blocked.input_grad(dy3, x3, mean, coef)
    t = x3.dtype.type

    def fill(ch: int, dx: np.ndarray) -> None:
        k, c, a = (t(np.asarray(v)[ch]) for v in coef)
        np.subtract(x3[:, ch], t(mean[ch]), out=dx)
        dx *= a
        np.subtract(dy3[:, ch], dx, out=dx)
        dx -= c
        dx *= k

    return _each_channel(x3, fill)
