"""Property tests (hypothesis) and a finite-difference check of the backward pass."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import bnlib

shapes = st.tuples(
    st.integers(2, 6), st.integers(1, 4), st.integers(1, 4), st.integers(1, 3)
).map(lambda t: t[: 2 + (t[2] + t[3]) % 3])
seeds = st.integers(0, 2**32 - 1)


def _batch(shape, seed):
    rng = np.random.default_rng(seed)
    loc = rng.uniform(-50, 50, size=(1, shape[1]) + (1,) * (len(shape) - 2))
    scale = rng.uniform(0.1, 10, size=loc.shape)
    return rng, loc + scale * rng.normal(size=shape)


def _axes(x):
    return (0,) + tuple(range(2, x.ndim))


@settings(max_examples=60, deadline=None)
@given(shapes, seeds)
def test_batch_norm_output_has_zero_mean_unit_variance(shape, seed):
    _, x = _batch(shape, seed)
    var = x.var(axis=_axes(x))
    y = bnlib.batch_norm(x, None, None, training=True, eps=1e-300)
    np.testing.assert_allclose(y.mean(axis=_axes(x)), 0, atol=1e-9)
    # Only channels whose values are not all equal can be scaled to variance 1.
    ok = var > 1e-12
    np.testing.assert_allclose(y.var(axis=_axes(x))[ok], 1, rtol=1e-7)


@settings(max_examples=60, deadline=None)
@given(shapes, seeds)
def test_batch_norm_backward_input_gradient_is_orthogonal_to_shift_and_scale(
    shape, seed
):
    rng, x = _batch(shape, seed)
    dy = rng.normal(size=shape)
    # Exact for eps = 0 only: eps > 0 breaks the invariance to scaling the input.
    # Training needs eps > 0, so x_hat takes a negligible one.
    gamma = rng.normal(size=shape[1])
    dx, _, _ = bnlib.batch_norm_backward(dy, x, gamma, eps=0.0)
    x_hat = bnlib.batch_norm(x, None, None, training=True, eps=1e-300)
    # The size of each term of dx: |gamma| / sigma * sum |dy|.
    size = np.abs(gamma) / x.std(axis=_axes(x)) * np.abs(dy).sum(axis=_axes(x))
    np.testing.assert_allclose(dx.sum(axis=_axes(x)) / size, 0, atol=1e-10)
    np.testing.assert_allclose((dx * x_hat).sum(axis=_axes(x)) / size, 0, atol=1e-10)


@settings(max_examples=40, deadline=None)
@given(shapes, seeds, st.floats(-5, 5), st.floats(0.1, 10))
def test_batch_norm_is_invariant_to_affine_change_of_input(shape, seed, shift, a):
    _, x = _batch(shape, seed)
    y1 = bnlib.batch_norm(x, None, None, training=True, eps=1e-300)
    y2 = bnlib.batch_norm(a * x + shift, None, None, training=True, eps=1e-300)
    np.testing.assert_allclose(y1, y2, atol=1e-6)


def _loss(x, w, b, g):
    return float((g * bnlib.batch_norm(x, None, None, w, b, training=True)).sum())


def test_batch_norm_backward_matches_central_differences():
    rng = np.random.default_rng(7)
    x, g = rng.normal(size=(5, 3, 4)), rng.normal(size=(5, 3, 4))
    w, b = rng.normal(size=3), rng.normal(size=3)
    dx, dw, db = bnlib.batch_norm_backward(g, x, w)
    h = 1e-6
    for arr, grad in ((x, dx), (w, dw), (b, db)):
        numeric = np.zeros_like(arr)
        for i in np.ndindex(arr.shape):
            old = arr[i]
            arr[i] = old + h
            up = _loss(x, w, b, g)
            arr[i] = old - h
            down = _loss(x, w, b, g)
            arr[i] = old
            numeric[i] = (up - down) / (2 * h)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-7)
