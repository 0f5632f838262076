"""The numba backend: BatchNorm's per-channel primitives as compiled loops.

Each primitive is one loop over the data, compiled by numba: the statistics and the
backward sums read ``x`` (and ``dy``) once, the two applies read them once and
write once, so forward is 2 passes and backward 2, with every step of a value done
while it is in a register. Sums are accumulated in float64 about a shift ``K``
(``d = x - K``), in four independent partial sums per row so that the additions
need not wait for one another; float32 inputs thus keep their digits far from
zero. Loops run in parallel (``prange``) over rows ``(n, c)``, or, for ``(N, C)``
inputs, over groups of samples with the channels innermost; partial sums are
added in a fixed order, so results do not depend on the number of threads.

Compiled code is cached on disk (``cache=True``), in ``NUMBA_CACHE_DIR`` or, if that
is unset, in the user's cache folder (``~/.cache/bnlib/numba``): the folder beside
an installed package may be read-only.

See Also
--------
bnlib._kernels.numpy_backend : the same primitives in numpy.
bnlib.backend : chooses the backend.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numba
import numpy as np
from numba import njit, prange

from bnlib._kernels.blocked import get_num_threads

if not numba.config.CACHE_DIR:  # neither NUMBA_CACHE_DIR nor a setting: ours
    _base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    numba.config.CACHE_DIR = str(Path(_base) / "bnlib" / "numba")

__all__ = ["GROUP", "channel_sums", "input_grad", "normalized", "shift"]

GROUP = 64  # samples per partial sum of an (N, C) input
SHIFT_VALUES = 4096  # about how many values per channel the shift is the mean of
_jit = njit(parallel=True, cache=True, fastmath=False, nogil=True)


@_jit
def _stat_rows(x3, k):  # pragma: no cover - compiled
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
def _grad_rows(x3, k, dy3):  # pragma: no cover - compiled
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
def _group_sums(x2, k, dy2, with_dy):  # pragma: no cover - compiled
    """Per group of ``GROUP`` samples of ``(N, C)``: the four sums; ``(G, 4, C)``."""
    n, c = x2.shape
    groups = (n + GROUP - 1) // GROUP
    out = np.zeros((groups, 4, c))
    for b in prange(groups):
        acc = out[b]
        for i in range(b * GROUP, min(n, (b + 1) * GROUP)):
            for j in range(c):
                d = np.float64(x2[i, j]) - k[j]
                acc[0, j] += d
                acc[1, j] += d * d
                if with_dy:
                    dy = np.float64(dy2[i, j])
                    acc[2, j] += dy
                    acc[3, j] += dy * d
    return out


@_jit
def _affine(x3, mean, scale, beta):  # pragma: no cover - compiled
    """``(x - mean) * scale + beta`` per channel, computed in float64."""
    n, c, length = x3.shape
    y3 = np.empty_like(x3)
    for r in prange(n * c):
        i, j = r // c, r % c
        m, s, b = mean[j], scale[j], beta[j]
        for t in range(length):
            y3[i, j, t] = (np.float64(x3[i, j, t]) - m) * s + b
    return y3


@_jit
def _affine_2d(x2, mean, scale, beta):  # pragma: no cover - compiled
    n, c = x2.shape
    y2 = np.empty_like(x2)
    for i in prange(n):
        for j in range(c):
            y2[i, j] = (np.float64(x2[i, j]) - mean[j]) * scale[j] + beta[j]
    return y2


@_jit
def _grad(dy3, x3, mean, k, c0, a):  # pragma: no cover - compiled
    """``k * (dy - c0 - a * (x - mean))`` per channel, computed in float64."""
    n, c, length = x3.shape
    dx3 = np.empty_like(x3)
    for r in prange(n * c):
        i, j = r // c, r % c
        m, kj, cj, aj = mean[j], k[j], c0[j], a[j]
        for t in range(length):
            d = np.float64(x3[i, j, t]) - m
            dx3[i, j, t] = kj * (np.float64(dy3[i, j, t]) - cj - aj * d)
    return dx3


@_jit
def _grad_2d(dy2, x2, mean, k, c0, a):  # pragma: no cover - compiled
    n, c = x2.shape
    dx2 = np.empty_like(x2)
    for i in prange(n):
        for j in range(c):
            d = np.float64(x2[i, j]) - mean[j]
            dx2[i, j] = k[j] * (np.float64(dy2[i, j]) - c0[j] - a[j] * d)
    return dx2


def _threads() -> None:
    numba.set_num_threads(min(get_num_threads(), numba.config.NUMBA_NUM_THREADS))


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
    return x3[:rows, :, :SHIFT_VALUES].mean(axis=(0, 2), dtype=np.float64)


def channel_sums(
    x3: np.ndarray, shift: np.ndarray, dy3: np.ndarray | None = None
) -> np.ndarray:
    """``sum(d)``, ``sum(d**2)``, ``sum(dy)``, ``sum(dy * d)`` per channel; ``(4, C)``.

    As :func:`bnlib._kernels.numpy_backend.channel_sums`, in one compiled pass.
    """
    _threads()
    x3 = np.ascontiguousarray(x3)
    g3 = x3 if dy3 is None else np.ascontiguousarray(dy3, dtype=x3.dtype)
    k = _vec(shift, x3.shape[1])
    out = np.zeros((4, x3.shape[1]))
    if x3.shape[2] == 1:
        parts = _group_sums(x3[:, :, 0], k, g3[:, :, 0], dy3 is not None)
        out[:] = parts.sum(axis=0)
    elif dy3 is None:
        out[:2] = _stat_rows(x3, k).sum(axis=0).T
    else:
        out[:] = _grad_rows(x3, k, g3).sum(axis=0).T
    return out


def normalized(
    x3: np.ndarray, mean: np.ndarray, scale: np.ndarray, beta: np.ndarray
) -> np.ndarray:
    """``(x - mean) * scale + beta`` per channel, in the dtype of ``x3``."""
    _threads()
    x3 = np.ascontiguousarray(x3)
    vs = [_vec(v, x3.shape[1]) for v in (mean, scale, beta)]
    if x3.shape[2] == 1:
        return _affine_2d(x3[:, :, 0], *vs)[:, :, None]
    return _affine(x3, *vs)


def input_grad(
    dy3: np.ndarray, x3: np.ndarray, mean: np.ndarray, coef: tuple[Any, Any, Any]
) -> np.ndarray:
    """``dx = k * (dy - c - a * (x - mean))`` per channel, ``coef = (k, c, a)``."""
    _threads()
    x3 = np.ascontiguousarray(x3)
    dy3 = np.ascontiguousarray(dy3, dtype=x3.dtype)
    vs = [_vec(v, x3.shape[1]) for v in (mean, *coef)]
    if x3.shape[2] == 1:
        return _grad_2d(dy3[:, :, 0], x3[:, :, 0], *vs)[:, :, None]
    return _grad(dy3, x3, *vs)
