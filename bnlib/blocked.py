"""Per-channel passes over ``(N, C, L)`` arrays, a cache-sized block at a time.

BatchNorm does little arithmetic per value, so its speed is set by memory traffic.
Each pass here reads its inputs from memory once and writes its output once: the
batch is cut into blocks of about ``BLOCK_BYTES``, and every intermediate step of
a block works on data still in the CPU cache. numpy releases the GIL inside its
loops, so the blocks are shared out among ``get_num_threads()`` threads.

The results do not depend on the number of threads: per-block sums are always
added in block order.

See Also
--------
The chapter "How fast is bnlib?" (``chapters/05-speed.md``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

__all__ = [
    "BLOCK_BYTES",
    "blocks",
    "channel_sums",
    "get_num_threads",
    "input_grad",
    "map_blocks",
    "normalized",
    "per_channel",
    "set_num_threads",
]

BLOCK_BYTES = 1 << 18  # of x per block: the temporaries of a block stay in cache
SHORT_ROW = 512  # rows shorter than this get per-channel vectors repeated along L
Block = tuple[slice, ...]
R = TypeVar("R")


def _default_threads() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


_threads = _default_threads()
_pool: ThreadPoolExecutor | None = None


def _forget_pool() -> None:
    """A forked child cannot use its parent's threads: start a fresh pool there."""
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def get_num_threads() -> int:
    """Number of threads the blocked passes use (default: the usable cores)."""
    return _threads


def set_num_threads(n: int) -> None:
    """Use ``n >= 1`` threads from now on; 1 runs every block in the caller."""
    global _threads, _pool
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"the number of threads must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"the number of threads must be at least 1, got {n}")
    if _pool is not None:
        _pool.shutdown()
    _threads, _pool = int(n), None


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=_threads - 1)
    return _pool


def blocks(x3: np.ndarray) -> list[Block]:
    """Index tuples that cut ``x3`` ``(N, C, L)`` into blocks of about
    ``BLOCK_BYTES``: runs of whole samples, or pieces of one sample's L axis when
    a sample is large and its rows are long."""
    n, c, length = x3.shape
    sample = max(x3.itemsize * c * length, 1)
    if sample <= BLOCK_BYTES or length < 2 * SHORT_ROW:
        step = max(1, BLOCK_BYTES // sample)
        return [(slice(i, i + step),) for i in range(0, n, step)]
    piece = max(SHORT_ROW, BLOCK_BYTES // (x3.itemsize * c))
    pieces = range(0, length, piece)
    return [
        (slice(i, i + 1), slice(None), slice(j, j + piece))
        for i in range(n)
        for j in pieces
    ]


def per_channel(v: np.ndarray, x3: np.ndarray) -> np.ndarray:
    """A ``(C,)`` vector shaped to broadcast against the blocks of ``x3``.

    For short rows (L < ``SHORT_ROW``) it is repeated along L, so that numpy's
    inner loop runs over ``C * L`` contiguous values instead of restarting every
    L values; otherwise it is a ``(C, 1)`` column.
    """
    col = np.asarray(v).astype(x3.dtype, copy=False).reshape(-1, 1)
    return col if x3.shape[2] >= SHORT_ROW else np.repeat(col, x3.shape[2], axis=1)


def map_blocks(fn: Callable[[Block], R], blks: list[Block]) -> list[R]:
    """``[fn(b) for b in blks]``, computed by up to ``get_num_threads()`` threads.

    Each thread takes the next block not yet taken, so a thread that the operating
    system does not schedule (a busy machine) holds nobody up: the caller does the
    work itself and withdraws the helpers that have not started. The results are
    returned in block order whichever thread computed them.
    """
    results: list[Any] = [None] * len(blks)
    taken = itertools.count()  # next() on it is atomic under the GIL

    def work() -> None:
        while (i := next(taken)) < len(blks):
            results[i] = fn(blks[i])

    n_helpers = min(_threads, len(blks)) - 1
    helpers = [_executor().submit(work) for _ in range(n_helpers)]
    try:
        work()
    finally:
        for h in helpers:
            if not h.cancel():
                h.result()
    return results


def channel_sums(
    x3: np.ndarray, shift: np.ndarray, dy3: np.ndarray | None = None
) -> np.ndarray:
    """Per-channel sums of ``d``, ``d**2``, ``dy`` and ``dy * d`` with
    ``d = x - shift``: a float64 array of shape ``(4, C)`` (rows 2 and 3 are zero
    without ``dy3``). One read of ``x3`` and ``dy3``; ``d`` is a block temporary."""
    k = per_channel(shift, x3)

    def sums(b: Block) -> np.ndarray:
        d = x3[b] - k
        out = np.zeros((4, x3.shape[1]))
        out[0] = np.einsum("ncl->c", d)
        out[1] = np.einsum("ncl,ncl->c", d, d)
        if dy3 is not None:
            out[2] = np.einsum("ncl->c", dy3[b])
            out[3] = np.einsum("ncl,ncl->c", dy3[b], d)
        return out

    parts = map_blocks(sums, blocks(x3))
    return np.sum(parts, axis=0) if parts else np.zeros((4, x3.shape[1]))


def normalized(
    x3: np.ndarray, mean: np.ndarray, scale: np.ndarray, beta: np.ndarray
) -> np.ndarray:
    """``(x - mean) * scale + beta`` per channel: one read of ``x3``, one write of
    the result; the in-place steps of a block hit the cache."""
    y3 = np.empty(x3.shape, x3.dtype)
    m, s, b = (per_channel(v, x3) for v in (mean, scale, beta))

    def step(blk: Block) -> None:
        y = np.subtract(x3[blk], m, out=y3[blk])
        y *= s
        y += b

    map_blocks(step, blocks(x3))
    return y3


def input_grad(
    dy3: np.ndarray, x3: np.ndarray, mean: np.ndarray, coef: tuple[Any, Any, Any]
) -> np.ndarray:
    """``dx = k * (dy - c - a * (x - mean))`` per channel, ``coef = (k, c, a)``.

    Reads ``x3`` and ``dy3`` once and writes ``dx`` once.
    """
    dx3 = np.empty(x3.shape, x3.dtype)
    m = per_channel(mean, x3)
    k, c, a = (per_channel(v, x3) for v in coef)

    def step(blk: Block) -> None:
        dx = np.subtract(x3[blk], m, out=dx3[blk])
        dx *= a
        np.subtract(dy3[blk], dx, out=dx)
        dx -= c
        dx *= k

    map_blocks(step, blocks(x3))
    return dx3
