"""bnlib._kernels.blocksums: every way of summing a block gives the four sums, and keeps
float32's digits where einsum's one-after-another sums would lose them.

Expected values are float64 numpy sums over the whole block.
"""

from __future__ import annotations

import numpy as np
import pytest

from bnlib._kernels import blocksums
from bnlib._kernels.blocksums import EINSUM_ROWS, EINSUM_RUN, GROUP_ROWS, block_sums

# one shape per branch: plain einsum, groups of samples (with leftovers), long rows
SHAPES = {
    "einsum": (4, 3, 100),
    "grouped": (EINSUM_ROWS + GROUP_ROWS + 3, 5, 2),
    "pairwise": (2, 3, EINSUM_RUN),
}


def _expected(d: np.ndarray, g: np.ndarray) -> np.ndarray:
    d, g = d.astype(np.float64), g.astype(np.float64)
    return np.stack([s.sum(axis=(0, 2)) for s in (d, d * d, g, g * d)])


@pytest.mark.parametrize("branch", SHAPES)
def test_block_sums_match_float64_numpy(rng, branch):
    d = rng.normal(size=SHAPES[branch])
    g = rng.normal(size=d.shape)
    expected = _expected(d, g)
    got = block_sums(d.copy(), g)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("branch", SHAPES)
def test_block_sums_without_gradient_leave_its_sums_zero(rng, branch):
    d = rng.normal(size=SHAPES[branch])
    got = block_sums(d.copy())
    np.testing.assert_allclose(got[:2], _expected(d, d)[:2], rtol=1e-12, atol=1e-9)
    assert (got[2:] == 0).all()


@pytest.mark.parametrize("branch", ["grouped", "pairwise"])
def test_block_sums_keep_float32_digits_where_einsum_loses_them(rng, branch):
    """The case for the two other branches: on the same float32 block, one einsum
    over every sample (or along a long row) errs far more than they do."""
    n, c, length = SHAPES[branch]
    shape = (n * 16, c, length) if branch == "grouped" else (1, c, length * 16)
    d = rng.normal(1.0, 1.0, size=shape).astype(np.float32)
    exact = (d.astype(np.float64) ** 2).sum(axis=(0, 2))
    einsum = np.einsum("ncl,ncl->c", d, d)
    ours = block_sums(d.copy())[1]
    err_einsum = np.max(np.abs(einsum - exact) / exact)
    err_ours = np.max(np.abs(ours - exact) / exact)
    assert err_ours < 1e-6 and err_ours < err_einsum / 4, (err_ours, err_einsum)


def test_groups_cover_every_sample_once():
    a = np.arange(2 * GROUP_ROWS + 5, dtype=float).reshape(-1, 1, 1)
    parts = blocksums._groups(a)
    flat = np.concatenate([p.reshape(-1) for p in parts])
    assert np.array_equal(flat, a.reshape(-1))


@pytest.mark.parametrize(
    "shape",
    [
        (EINSUM_ROWS, 8, 2 * EINSUM_RUN // EINSUM_ROWS),  # pairwise: n * L > RUN
        (GROUP_ROWS * EINSUM_ROWS, 8, 1),  # grouped: 256 groups of samples
    ],
    ids=["pairwise", "grouped"],
)
def test_block_sums_add_many_partial_sums_in_float64(rng, shape):
    """A block of many samples: each row's (or group's) float32 sum goes to float64
    before they are added. Added in float32, 256 partial sums of about 64 err by
    about 4e-7 of the total; in float64 by about 6e-9."""
    d = rng.normal(1.0, 1.0, size=shape).astype(np.float32)
    g = rng.normal(1.0, 1.0, size=shape).astype(np.float32)
    exact = _expected(d, g)
    ours = block_sums(d.copy(), g)
    err = np.max(np.abs(ours - exact) / np.abs(exact))
    assert err < 5e-8, err
