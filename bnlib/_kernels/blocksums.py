"""Per-channel sums of one block, accurate in float32 and fast in numpy.

BatchNorm's statistics are sums over every value of a channel. Summed one after
another in float32, ``k`` terms carry a relative rounding error that grows with ``k``
(up to about ``k * 6e-8``), so no sum here runs over more than a few thousand values
in the input's dtype: each block's sums go to float64 before they are added up.
How a block is summed depends on its shape ``(n, C, L)``:

- few samples, short runs (``n <= EINSUM_ROWS``, ``n * L <= EINSUM_RUN``):
  ``np.einsum``, whose inner loops along ``L`` keep several partial sums;
- many samples (``n > EINSUM_ROWS``, as for an ``(N, C)`` input with few
  channels): ``np.einsum`` over groups of ``GROUP_ROWS`` samples, then float64;
- long rows (``n * L > EINSUM_RUN``): numpy's pairwise summation along ``L``, whose
  error grows with the logarithm of the length, then float64.

See Also
--------
bnlib._kernels.blocked.channel_sums : the pass over the data that calls
    :func:`block_sums`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["EINSUM_ROWS", "EINSUM_RUN", "GROUP_ROWS", "block_sums"]

EINSUM_RUN = 4096  # most values per channel that one einsum sums
EINSUM_ROWS = 256  # most samples: across samples einsum adds one after another
GROUP_ROWS = 16  # samples per group when a block has more than EINSUM_ROWS
Sum = Callable[[np.ndarray], np.ndarray]
Dot = Callable[[np.ndarray, np.ndarray], np.ndarray]


def block_sums(d: np.ndarray, g: np.ndarray | None = None) -> np.ndarray:
    """``sum(d)``, ``sum(d**2)``, ``sum(g)``, ``sum(g * d)`` per channel of a block.

    Parameters
    ----------
    d : ndarray, shape ``(n, C, L)``
        The shifted block ``x - K``. May be overwritten.
    g : ndarray, shape ``(n, C, L)``, optional
        The upstream gradient of the same block.

    Returns
    -------
    ndarray, shape ``(4, C)``, float64
        The four sums over ``n`` and ``L``; the last two are zero without ``g``.
    """
    n, _, length = d.shape
    if n > EINSUM_ROWS:
        return _sums(d, g, _grouped_sum, _grouped_dot)
    if n * length > EINSUM_RUN:
        return _pairwise(d, g)
    return _sums(d, g, _einsum_sum, _einsum_dot)


def _sums(d: np.ndarray, g: np.ndarray | None, total: Sum, dot: Dot) -> np.ndarray:
    out = np.zeros((4, d.shape[1]))
    out[0], out[1] = total(d), dot(d, d)
    if g is not None:
        out[2], out[3] = total(g), dot(g, d)
    return out


def _einsum_sum(a: np.ndarray) -> np.ndarray:
    sums: np.ndarray = np.einsum("ncl->c", a)
    return sums


def _einsum_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    dots: np.ndarray = np.einsum("ncl,ncl->c", a, b)
    return dots


def _groups(a: np.ndarray) -> list[np.ndarray]:
    """``a`` as ``(groups, GROUP_ROWS, C, L)``; leftover samples form one more group."""
    n, c, length = a.shape
    full = n - n % GROUP_ROWS
    parts = [a[:full].reshape(full // GROUP_ROWS, GROUP_ROWS, c, length)]
    return parts + [a[full:][None]] if full < n else parts


def _grouped_sum(a: np.ndarray) -> np.ndarray:
    sums: np.ndarray = sum(
        np.einsum("gqcl->gc", p).sum(axis=0, dtype=np.float64) for p in _groups(a)
    )
    return sums


def _grouped_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    pairs = zip(_groups(a), _groups(b), strict=True)
    dots: np.ndarray = sum(
        np.einsum("gqcl,gqcl->gc", p, q).sum(axis=0, dtype=np.float64) for p, q in pairs
    )
    return dots


def _pairwise(d: np.ndarray, g: np.ndarray | None) -> np.ndarray:
    def total(a: np.ndarray) -> np.ndarray:
        sums: np.ndarray = a.sum(axis=2).sum(axis=0, dtype=np.float64)
        return sums

    out = np.zeros((4, d.shape[1]))
    if g is not None:
        out[2], out[3] = total(g), total(g * d)
    out[0] = total(d)
    out[1] = total(np.square(d, out=d))  # d is not needed after this
    return out
