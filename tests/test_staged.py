"""bnbook.derive.staged.batch_norm_backward_staged against PyTorch autograd in float64.

Expected values come from ``torch.nn.functional.batch_norm`` and autograd, with
random upstream gradients.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import bnlib
from bnbook.derive.staged import batch_norm_backward_staged

TOL = 1e-10
SHAPES = [(8, 3), (5, 4, 7), (4, 3, 5, 6), (2, 3, 2, 2, 3), (2, 1)]


def _torch_grads(x, dy, w, eps):
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = torch.zeros_like(wt, requires_grad=True)
    y = F.batch_norm(xt, None, None, wt, bt, training=True, eps=eps)
    y.backward(torch.tensor(dy))
    return xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("eps", [1e-5, 0.5])
def test_batch_norm_backward_staged_matches_torch(rng, shape, eps):
    x = rng.normal(1.5, 2.0, size=shape)
    dy = rng.normal(size=shape)
    w = rng.normal(size=shape[1])
    ours = batch_norm_backward_staged(dy, x, w, eps)
    for got, ref in zip(ours, _torch_grads(x, dy, w, eps), strict=True):
        np.testing.assert_allclose(got, ref, rtol=0, atol=TOL)


def test_batch_norm_backward_staged_equals_compact_form(rng):
    x = rng.normal(-3.0, 0.5, size=(16, 5, 3))
    dy = rng.normal(size=x.shape)
    staged = batch_norm_backward_staged(dy, x)
    compact = bnlib.batch_norm_backward(dy, x)
    for a, b in zip(staged, compact, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(1, 4), min_size=2, max_size=4),
    st.integers(0, 2**32 - 1),
    st.floats(1e-5, 1.0),
)
def test_batch_norm_backward_staged_equals_compact_on_any_shape(dims, seed, eps):
    shape = (dims[0] + 1, *dims[1:])  # at least 2 values per channel
    g = np.random.default_rng(seed)
    x = g.normal(g.normal() * 5, g.uniform(0.1, 10), size=shape)
    dy, w = g.normal(size=shape), g.normal(size=shape[1])
    staged = batch_norm_backward_staged(dy, x, w, eps)
    compact = bnlib.batch_norm_backward(dy, x, w, eps)
    for a, b in zip(staged, compact, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(staged[0].sum(axis=(0, *range(2, x.ndim))), 0, atol=1e-8)


def test_batch_norm_backward_staged_keeps_float32(rng):
    x = rng.normal(size=(6, 2, 4)).astype(np.float32)
    dy = rng.normal(size=x.shape)  # float64: cast to the input's dtype
    dx, dgamma, dbeta = batch_norm_backward_staged(dy, x)
    assert dx.dtype == dgamma.dtype == dbeta.dtype == np.float32
    ref = _torch_grads(x.astype(np.float64), dy.astype(np.float32), np.ones(2), 1e-5)
    np.testing.assert_allclose(dx, ref[0], rtol=0, atol=1e-5)


def test_batch_norm_backward_staged_default_weight_is_one(rng):
    x, dy = rng.normal(size=(7, 3)), rng.normal(size=(7, 3))
    default = batch_norm_backward_staged(dy, x)
    ones = batch_norm_backward_staged(dy, x, np.ones(3))
    for a, b in zip(default, ones, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("dy", "x", "w", "error", "message"),
    [
        (np.ones((4, 3)), np.ones((4, 3), int), None, TypeError, "floating dtype"),
        (np.ones((4, 2)), np.ones((4, 3)), None, ValueError, "same shape"),
        (np.ones(4), np.ones(4), None, ValueError, "at least 2 dimensions"),
        (np.ones((1, 3)), np.ones((1, 3)), None, ValueError, "more than 1 value"),
        (np.ones((0, 3, 2)), np.ones((0, 3, 2)), None, ValueError, "more than 1"),
        (np.ones((4, 3)), np.ones((4, 3)), np.ones(2), ValueError, "shape \\(3,\\)"),
        (np.ones((4, 3)), np.ones((4, 3)), ["a"] * 3, TypeError, "real numeric"),
    ],
)
def test_batch_norm_backward_staged_rejects_bad_input(dy, x, w, error, message):
    with pytest.raises(error, match=message):
        batch_norm_backward_staged(dy, x, w)
