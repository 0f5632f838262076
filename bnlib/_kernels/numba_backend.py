"""The numba backend: BatchNorm's per-channel primitives as compiled loops.

Each primitive is one loop over the data, compiled by numba: the statistics and the
backward sums read ``x`` (and ``dy``) once, the two applies read them once and
write once, so forward is 2 passes and backward 2, with every step of a value done
while it is in a register. Sums are accumulated in float64 about a shift ``K``
(``d = x - K``, formed in float64), in independent chains of partial sums per row
(four for the statistics, two for each backward sum) so that an addition need not
wait for the one before; float32 inputs thus keep their digits far from zero. No
``fastmath``: the order of every sum is fixed. Loops run in parallel (``prange``)
over rows ``(n, c)``, or, for ``(N, C)`` inputs, over groups of samples with the
channels innermost; each row or group is summed by one thread and the partial sums
are added in a fixed order, so results do not depend on the number of threads
(``bnlib.set_num_threads``, applied to numba at each call).

numba's OpenMP threads are asked to wait passively (``OMP_WAIT_POLICY=PASSIVE``
unless set): spinning after each kernel, they took the cores from the next numpy or
PyTorch call in the same process, which then ran up to 10 times slower on 2 cores.

Compiled code is cached on disk (``cache=True``), in ``NUMBA_CACHE_DIR`` or, if that
is unset, in the user's cache folder (``~/.cache/bnlib/numba``): the folder beside
an installed package may be read-only.

Warm-up: numba compiles, or loads from its cache, each kernel for each dtype and
layout on the kernel's first call. Left to the calls themselves, a run's first
forward paid for three kernels, its first backward for two more, and the first
(N, C) batch for four others: the first calls of a run took up to 20 times the
steady time, spread over several calls. So the first call of a primitive with a new
dtype prepares every kernel of that dtype at once (:func:`warm_up`, on tiny
arrays); every later call runs at the steady speed.

See Also
--------
bnlib._kernels.numpy_backend : the same primitives in numpy.
bnlib.backend : chooses the backend.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import numba
import numpy as np
from numba import njit, prange

from bnlib._kernels.blocked import get_num_threads

# Read when numba first starts its threads (see the module's docstring).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_config: Any = numba.config  # its settings are made at import: untyped
if not _config.CACHE_DIR:  # neither NUMBA_CACHE_DIR nor a setting: ours
    _base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    _config.CACHE_DIR = str(Path(_base) / "bnlib" / "numba")

__all__ = ["GROUP", "channel_sums", "input_grad", "normalized", "shift", "warm_up"]

GROUP = 64  # samples per partial sum of an (N, C) input
SHIFT_VALUES = 256  # about how many values per channel the shift is the mean of
F = TypeVar("F", bound=Callable[..., Any])
Array = np.ndarray


def _jit(fn: F) -> F:
    """Compile ``fn`` on first call: parallel, cached on disk, no fastmath."""
    return cast(F, njit(parallel=True, cache=True, fastmath=False, nogil=True)(fn))


@_jit
def _stat_rows(x3: Array, k: Array) -> Array:  # pragma: no cover - compiled
    """Per row ``(n, c)``: ``sum(d)`` and ``sum(d * d)``; shape ``(N, C, 2)``."""
    n, c, length = x3.shape
    out = np.empty((n, c, 2))
    for r in prange(n * c):
        i, j = r // c, r % c
        x, kj = x3[i, j], k[j]
        s0 = s1 = s2 = s3 = q0 = q1 = q2 = q3 = 0.0
        t = 0
        while t + 4 <= length:  # four chains of additions, not one
            d0, d1 = np.float64(x[t]) - kj, np.float64(x[t + 1]) - kj
            d2, d3 = np.float64(x[t + 2]) - kj, np.float64(x[t + 3]) - kj
            s0, s1, s2, s3 = s0 + d0, s1 + d1, s2 + d2, s3 + d3
            q0, q1, q2, q3 = q0 + d0 * d0, q1 + d1 * d1, q2 + d2 * d2, q3 + d3 * d3
            t += 4
        while t < length:
            d0 = np.float64(x[t]) - kj
            s0, q0 = s0 + d0, q0 + d0 * d0
            t += 1
        out[i, j, 0] = (s0 + s1) + (s2 + s3)
        out[i, j, 1] = (q0 + q1) + (q2 + q3)
    return out


@_jit
def _grad_rows(x3: Array, k: Array, dy3: Array) -> Array:  # pragma: no cover - compiled
    """Per row: ``sum(d)``, ``sum(d*d)``, ``sum(dy)``, ``sum(dy*d)``; ``(N, C, 4)``."""
    n, c, length = x3.shape
    out = np.empty((n, c, 4))
    for r in prange(n * c):
        i, j = r // c, r % c
        x, g, kj = x3[i, j], dy3[i, j], k[j]
        s0 = s1 = q0 = q1 = g0 = g1 = p0 = p1 = 0.0
        t = 0
        while t + 2 <= length:  # two chains each of four sums
            d0, d1 = np.float64(x[t]) - kj, np.float64(x[t + 1]) - kj
            e0, e1 = np.float64(g[t]), np.float64(g[t + 1])
            s0, s1, q0, q1 = s0 + d0, s1 + d1, q0 + d0 * d0, q1 + d1 * d1
            g0, g1, p0, p1 = g0 + e0, g1 + e1, p0 + e0 * d0, p1 + e1 * d1
            t += 2
        if t < length:
            d0, e0 = np.float64(x[t]) - kj, np.float64(g[t])
            s0, q0, g0, p0 = s0 + d0, q0 + d0 * d0, g0 + e0, p0 + e0 * d0
        out[i, j, 0], out[i, j, 1] = s0 + s1, q0 + q1
        out[i, j, 2], out[i, j, 3] = g0 + g1, p0 + p1
    return out


@_jit
def _stat_groups(x2: Array, k: Array) -> Array:  # pragma: no cover - compiled
    """Per group of ``GROUP`` samples of ``(N, C)``: sum(d), sum(d*d); ``(G, 2, C)``."""
    n, c = x2.shape
    groups = (n + GROUP - 1) // GROUP
    out = np.zeros((groups, 2, c))
    for b in prange(groups):
        s, q = out[b, 0], out[b, 1]
        for i in range(b * GROUP, min(n, (b + 1) * GROUP)):
            x = x2[i]
            for j in range(c):  # channels innermost: one chain of sums per channel
                d = np.float64(x[j]) - k[j]
                s[j] += d
                q[j] += d * d
    return out


@_jit
def _grad_groups(
    x2: Array, k: Array, dy2: Array
) -> Array:  # pragma: no cover - compiled
    """Per group of ``GROUP`` samples: the four sums of ``(N, C)``; ``(G, 4, C)``."""
    n, c = x2.shape
    groups = (n + GROUP - 1) // GROUP
    out = np.zeros((groups, 4, c))
    for b in prange(groups):
        s, q, h, p = out[b, 0], out[b, 1], out[b, 2], out[b, 3]
        for i in range(b * GROUP, min(n, (b + 1) * GROUP)):
            x, g = x2[i], dy2[i]
            for j in range(c):
                d, e = np.float64(x[j]) - k[j], np.float64(g[j])
                s[j] += d
                q[j] += d * d
                h[j] += e
                p[j] += e * d
    return out


@_jit
def _affine(
    x3: Array, mean: Array, scale: Array, beta: Array, y3: Array
) -> None:  # pragma: no cover - compiled
    """``y3 = (x - mean) * scale + beta`` per channel, computed in float64."""
    n, c, length = x3.shape
    for r in prange(n * c):
        i, j = r // c, r % c
        x, y = x3[i, j], y3[i, j]
        m, s, b = mean[j], scale[j], beta[j]
        for t in range(length):
            y[t] = (np.float64(x[t]) - m) * s + b


@_jit
def _affine_2d(
    x2: Array, mean: Array, scale: Array, beta: Array, y2: Array
) -> None:  # pragma: no cover - compiled
    n, c = x2.shape
    for i in prange(n):
        x, y = x2[i], y2[i]
        for j in range(c):
            y[j] = (np.float64(x[j]) - mean[j]) * scale[j] + beta[j]


@_jit
def _grad(
    dy3: Array, x3: Array, mean: Array, k: Array, c0: Array, a: Array, dx3: Array
) -> None:  # pragma: no cover - compiled
    """``dx3 = k * (dy - c0 - a * (x - mean))`` per channel, computed in float64."""
    n, c, length = x3.shape
    for r in prange(n * c):
        i, j = r // c, r % c
        x, g, dx = x3[i, j], dy3[i, j], dx3[i, j]
        m, kj, cj, aj = mean[j], k[j], c0[j], a[j]
        for t in range(length):
            dx[t] = kj * (np.float64(g[t]) - cj - aj * (np.float64(x[t]) - m))


@_jit
def _grad_2d(
    dy2: Array, x2: Array, mean: Array, k: Array, c0: Array, a: Array, dx2: Array
) -> None:  # pragma: no cover - compiled
    n, c = x2.shape
    for i in prange(n):
        x, g, dx = x2[i], dy2[i], dx2[i]
        for j in range(c):
            d = np.float64(x[j]) - mean[j]
            dx[j] = k[j] * (np.float64(g[j]) - c0[j] - a[j] * d)


def _launch() -> None:
    """Start numba's threads now, and leave PyTorch's thread count as it was.

    Starting its OpenMP threads, numba sets OpenMP's thread count of the calling
    thread, which PyTorch (sharing the OpenMP symbols) then reads as its own.
    """
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    numba.get_num_threads()  # starts the threads
    if torch is not None and before != torch.get_num_threads():
        torch.set_num_threads(before)


_launch()


_warm: set[np.dtype[Any]] = set()  # dtypes whose kernels are compiled or loaded


def warm_up(dtype: Any) -> bool:
    """Compile (or load from the cache) every kernel for ``dtype``, once.

    Parameters
    ----------
    dtype : numpy dtype
        The dtype of the arrays the kernels will see (float32 or float64).

    Returns
    -------
    bool
        True if this call did the work, False if ``dtype`` was ready already.
    """
    dt = np.dtype(dtype)
    if dt in _warm:
        return False
    _warm.add(dt)  # first: the calls below come back through _threads
    for shape in ((2, 1, 2), (2, 1, 1)):  # the (N, C, L) and the (N, C) kernels
        x3 = np.ones(shape, dt)
        k = np.zeros(1)
        channel_sums(x3, k)
        channel_sums(x3, k, x3)
        normalized(x3, k, k, k)
        input_grad(x3, x3, k, (k, k, k))
    return True


def _threads(dtype: Any = None) -> None:
    """Before a kernel: numba's thread count, and the kernels of ``dtype`` ready."""
    if dtype is not None and np.dtype(dtype) not in _warm:
        warm_up(dtype)
    numba.set_num_threads(min(get_num_threads(), _config.NUMBA_NUM_THREADS))


def _vec(v: Any, c: int) -> np.ndarray:
    return np.ascontiguousarray(np.broadcast_to(np.asarray(v, np.float64), (c,)))


def shift(x3: np.ndarray) -> np.ndarray:
    """The shift ``K``: per channel, the mean of the first ``SHIFT_VALUES`` or so.

    Parameters
    ----------
    x3 : ndarray, shape ``(N, C, L)``, not empty

    Returns
    -------
    ndarray, shape ``(C,)``, float64
        The mean of the first ``min(L, SHIFT_VALUES)`` values of the first samples'
        rows. As those values are part of the batch, ``(mean - K)**2 / var`` is at
        most the number of values per channel over the number averaged.
    """
    n, _, length = x3.shape
    rows = min(n, max(1, SHIFT_VALUES // length))
    return np.asarray(x3[:rows, :, :SHIFT_VALUES].mean(axis=(0, 2), dtype=np.float64))


def channel_sums(
    x3: np.ndarray, shift: np.ndarray, dy3: np.ndarray | None = None
) -> np.ndarray:
    """``sum(d)``, ``sum(d**2)``, ``sum(dy)``, ``sum(dy * d)`` per channel; ``(4, C)``.

    As :func:`bnlib._kernels.numpy_backend.channel_sums`, in one compiled pass.
    """
    _threads(x3.dtype)
    x3 = np.ascontiguousarray(x3)
    g3 = x3 if dy3 is None else np.ascontiguousarray(dy3, dtype=x3.dtype)
    k = _vec(shift, x3.shape[1])
    out = np.zeros((4, x3.shape[1]))
    if x3.shape[2] == 1 and dy3 is None:
        out[:2] = _stat_groups(x3[:, :, 0], k).sum(axis=0)
    elif x3.shape[2] == 1:
        out[:] = _grad_groups(x3[:, :, 0], k, g3[:, :, 0]).sum(axis=0)
    elif dy3 is None:
        out[:2] = _stat_rows(x3, k).sum(axis=0).T
    else:
        out[:] = _grad_rows(x3, k, g3).sum(axis=0).T
    return out


def normalized(
    x3: np.ndarray, mean: np.ndarray, scale: np.ndarray, beta: np.ndarray
) -> np.ndarray:
    """``(x - mean) * scale + beta`` per channel, in the dtype of ``x3``."""
    _threads(x3.dtype)
    x3 = np.ascontiguousarray(x3)
    m, s, b = (_vec(v, x3.shape[1]) for v in (mean, scale, beta))
    y3 = np.empty_like(x3)  # numpy's, which asks for huge pages: fewer page faults
    if x3.shape[2] == 1:
        _affine_2d(x3[:, :, 0], m, s, b, y3[:, :, 0])
    else:
        _affine(x3, m, s, b, y3)
    return y3


def input_grad(
    dy3: np.ndarray, x3: np.ndarray, mean: np.ndarray, coef: tuple[Any, Any, Any]
) -> np.ndarray:
    """``dx = k * (dy - c - a * (x - mean))`` per channel, ``coef = (k, c, a)``."""
    _threads(x3.dtype)
    x3 = np.ascontiguousarray(x3)
    dy3 = np.ascontiguousarray(dy3, dtype=x3.dtype)
    m, k, c, a = (_vec(v, x3.shape[1]) for v in (mean, *coef))
    dx3 = np.empty_like(x3)
    if x3.shape[2] == 1:
        _grad_2d(dy3[:, :, 0], x3[:, :, 0], m, k, c, a, dx3[:, :, 0])
    else:
        _grad(dy3, x3, m, k, c, a, dx3)
    return dx3
