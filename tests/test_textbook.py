"""bnbook.bench.textbook: the one-pass variance is exact where rounding cannot hurt
it, and loses the digits of float32 data far from zero, which is why bnlib avoids it.

The textbook forward and backward passes are tested against PyTorch in
tests/test_bench.py.
"""

import numpy as np

from bnbook.bench.textbook import one_pass_variance


def test_one_pass_variance_matches_numpy_in_float64(rng):
    x = rng.normal(2.0, 3.0, size=(16, 5, 4, 3))
    expected = x.transpose(1, 0, 2, 3).reshape(5, -1).var(axis=1)
    np.testing.assert_allclose(one_pass_variance(x), expected, rtol=1e-10)


def test_one_pass_variance_is_never_negative():
    x = np.full((4, 3), 1e4, dtype=np.float32)  # variance 0, rounding may go below
    assert (one_pass_variance(x) >= 0).all()


def test_one_pass_variance_loses_float32_digits_far_from_zero(rng):
    x = (1e4 + rng.normal(size=(256, 4))).astype(np.float32)
    exact = x.astype(np.float64).var(axis=0)
    error = np.abs(one_pass_variance(x) - exact) / exact
    assert error.max() > 1e-2  # at least two of float32's seven digits gone
