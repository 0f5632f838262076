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
The chapter "How fast is bnlib?" (``chapters/speed.md``).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from bnlib._kernels.blocksums import block_sums

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

BLOCK_BYTES = 1 << 19  # of x per block: a block and its temporaries fit in L2
SHORT_ROW = 512  # rows shorter than this get per-channel vectors repeated along L
BLOCKS_PER_THREAD = 2  # fewer blocks than this per thread: not worth a hand-off
Block = tuple[slice, ...]
R = TypeVar("R")


def _env_threads(name: str) -> int | None:
    """A positive thread count from environment variable ``name``, or None.

    ``OMP_NUM_THREADS`` may list one count per nesting level (``"4,2"``): the
    first is the outer one.
    """
    value = os.environ.get(name, "").split(",")[0].strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def _default_threads() -> int:
    """``BNLIB_NUM_THREADS``, else ``OMP_NUM_THREADS`` (so that inside a torch
    program bnlib takes the cores torch was given), else the usable cores."""
    for name in ("BNLIB_NUM_THREADS", "OMP_NUM_THREADS"):
        if (n := _env_threads(name)) is not None:
            return n
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


_threads = _default_threads()
_pool: ThreadPoolExecutor | None = None
# Guards _threads and _pool. A pool that set_num_threads replaces is not shut
# down: the calls still using it finish with it, and its threads exit once the
# last of them lets it go.
_lock = threading.Lock()


def _forget_pool() -> None:
    """A forked child cannot use its parent's threads: start a fresh pool there."""
    global _pool, _lock
    _pool, _lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def get_num_threads() -> int:
    """Number of threads the blocked passes use.

    Returns
    -------
    int
        By default ``BNLIB_NUM_THREADS``, else ``OMP_NUM_THREADS``, else the
        number of cores this process may run on.

    See Also
    --------
    set_num_threads
    """
    return _threads


def set_num_threads(n: int) -> None:
    """Set the number of threads of the blocked passes.

    Safe to call while other threads compute: a call already running finishes
    with the threads it started with.

    Parameters
    ----------
    n : int
        At least 1; with 1, every block runs in the calling thread. The results do
        not depend on ``n``.

    See Also
    --------
    get_num_threads
    """
    global _threads, _pool
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"the number of threads must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"the number of threads must be at least 1, got {n}")
    with _lock:
        _threads, _pool = int(n), None


def _helpers(n_blocks: int) -> tuple[int, ThreadPoolExecutor | None]:
    """How many helper threads a pass over ``n_blocks`` blocks calls in, and the
    pool they come from (None when none are needed)."""
    global _pool
    with _lock:
        n_helpers = min(_threads, n_blocks // BLOCKS_PER_THREAD) - 1
        if n_helpers < 1:
            return 0, None
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=_threads - 1)
        return n_helpers, _pool


def blocks(x3: np.ndarray) -> list[Block]:
    """Cut an ``(N, C, L)`` array into blocks of about ``BLOCK_BYTES``.

    Parameters
    ----------
    x3 : ndarray, shape ``(N, C, L)``

    Returns
    -------
    list of tuple of slice
        Indices ``b`` such that the views ``x3[b]`` cover ``x3`` once, in memory
        order: runs of whole samples, or, when one sample is larger than a block
        and its rows are long (``L >= 2 * SHORT_ROW``), pieces of a sample's rows.
        Every block holds all ``C`` channels.

    See Also
    --------
    map_blocks : runs a function on every block.
    """
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


def per_channel(v: Any, x3: np.ndarray) -> np.ndarray:
    """Shape a per-channel vector to broadcast against the blocks of ``x3``.

    Parameters
    ----------
    v : array_like, shape ``(C,)``
    x3 : ndarray, shape ``(N, C, L)``

    Returns
    -------
    ndarray, shape ``(C, 1)`` or ``(C, L)``, in the dtype of ``x3``
        A column; for short rows (``L < SHORT_ROW``) the column repeated along L, so
        that numpy's inner loop runs over ``C * L`` contiguous values instead of
        restarting every L values.
    """
    col = np.asarray(v).astype(x3.dtype, copy=False).reshape(-1, 1)
    return col if x3.shape[2] >= SHORT_ROW else np.repeat(col, x3.shape[2], axis=1)


def map_blocks(fn: Callable[[Block], R], blks: list[Block]) -> list[R]:
    """``[fn(b) for b in blks]``, computed by up to ``get_num_threads()`` threads.

    Parameters
    ----------
    fn : callable
        Called once per block; numpy releases the GIL inside its loops, so calls
        on different blocks run in parallel.
    blks : list of tuple of slice
        Usually ``blocks(x3)``.

    Returns
    -------
    list
        ``fn(b)`` for every block, in block order whichever thread computed it.

    Notes
    -----
    Each thread takes the next block not yet taken. A helper thread that the
    operating system does not schedule (a busy machine) thus holds nobody up: the
    caller does the work itself and withdraws the helpers that have not started.
    Helpers are only called in when there are at least ``BLOCKS_PER_THREAD`` blocks
    for each thread.
    """
    results: list[Any] = [None] * len(blks)
    taken = itertools.count()  # next() on it is atomic under the GIL

    def work() -> None:
        while (i := next(taken)) < len(blks):
            results[i] = fn(blks[i])

    n_helpers, pool = _helpers(len(blks))
    err = np.geterr()  # numpy's error state is per thread: helpers take the caller's

    def helper() -> None:
        with np.errstate(**err):
            work()

    helpers = [pool.submit(helper) for _ in range(n_helpers)] if pool else []
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
    """Per-channel sums of shifted data, and of the upstream gradient with it.

    Parameters
    ----------
    x3 : ndarray, shape ``(N, C, L)``
    shift : ndarray, shape ``(C,)``
        ``K``, subtracted from every value of its channel.
    dy3 : ndarray, shape ``(N, C, L)``, optional

    Returns
    -------
    ndarray, shape ``(4, C)``, float64
        Over ``n`` and ``l``, with ``d = x - K``: ``sum(d)``, ``sum(d**2)``,
        ``sum(dy)`` and ``sum(dy * d)`` (the last two zero without ``dy3``).

    Notes
    -----
    One read of ``x3`` and ``dy3`` from memory; ``d`` is a block-sized temporary.
    Each block is summed by :func:`bnlib._kernels.blocksums.block_sums`, in the input's
    dtype over runs short enough to keep float32's digits, and the blocks' sums
    are added in float64, in block order.

    ``_moments`` in ``bnlib.batchnorm`` turns these sums into the mean and the
    variance.
    """
    k = per_channel(shift, x3)

    def sums(b: Block) -> np.ndarray:
        return block_sums(x3[b] - k, None if dy3 is None else dy3[b])

    parts = map_blocks(sums, blocks(x3))
    return np.sum(parts, axis=0) if parts else np.zeros((4, x3.shape[1]))


def normalized(
    x3: np.ndarray, mean: np.ndarray, scale: np.ndarray, beta: np.ndarray
) -> np.ndarray:
    """``(x - mean) * scale + beta`` per channel, a block at a time.

    Parameters
    ----------
    x3 : ndarray, shape ``(N, C, L)``
    mean, scale, beta : array_like, shape ``(C,)``

    Returns
    -------
    ndarray, shape ``(N, C, L)``, in the dtype of ``x3``

    Notes
    -----
    One read of ``x3`` and one write of the result; the two in-place steps of a
    block work on data still in the cache.
    """
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
    """``dx = k * (dy - c - a * (x - mean))`` per channel, a block at a time.

    Parameters
    ----------
    dy3, x3 : ndarray, shape ``(N, C, L)``
    mean : array_like, shape ``(C,)``
    coef : tuple of three array_like of shape ``(C,)``
        ``(k, c, a)``.

    Returns
    -------
    ndarray, shape ``(N, C, L)``, in the dtype of ``x3``

    Notes
    -----
    Reads ``x3`` and ``dy3`` once and writes ``dx`` once. In BatchNorm's backward
    pass ``k = gamma / sqrt(var + eps)``, ``c = mean(dy)`` and
    ``a = mean(dy * x_hat) / sqrt(var + eps)``.
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
