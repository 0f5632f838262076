"""The generic z-score over a set of axes: BatchNorm, LayerNorm, InstanceNorm and
GroupNorm as choices of axes; its backward against torch autograd; properties."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import bnlib

TOL = 1e-10


def test_normalize_over_batch_axes_is_batch_norm(rng):
    x = rng.normal(3, 2, size=(5, 4, 3, 2))
    y = bnlib.batch_norm(x, None, None, training=True)
    np.testing.assert_allclose(bnlib.normalize(x, (0, 2, 3)), y, atol=TOL)


def test_normalize_backward_matches_torch_autograd(rng):
    x, g = rng.normal(size=(4, 3, 5)), rng.normal(size=(4, 3, 5))
    for axes, center in (((0, 2), True), ((1, 2), True), ((-1,), False)):
        xt = torch.tensor(x, requires_grad=True)
        if center:
            mu = xt.mean(axes, keepdim=True)
            var = xt.var(axes, unbiased=False, keepdim=True)
            y = (xt - mu) / torch.sqrt(var + 1e-5)
        else:
            y = xt / torch.sqrt((xt * xt).mean(axes, keepdim=True) + 1e-5)
        y.backward(torch.tensor(g))
        dx = bnlib.normalize_backward(g, x, axes, center=center)
        np.testing.assert_allclose(dx, xt.grad.numpy(), atol=TOL)
        y_ours = bnlib.normalize(x, axes, center=center)
        np.testing.assert_allclose(y_ours, y.detach().numpy(), atol=TOL)


def test_normalize_float32_far_from_zero_keeps_digits(rng):
    x = (1e4 + rng.normal(size=(64, 8))).astype(np.float32)
    exact = bnlib.normalize(x.astype(np.float64), 0)
    assert np.abs(bnlib.normalize(x, 0) - exact).max() < 1e-4


shapes = st.lists(st.integers(2, 4), min_size=2, max_size=4)


@settings(max_examples=25, deadline=None)
@given(shape=shapes, data=st.data())
def test_normalize_any_axes_gives_mean_zero_variance_one(shape, data):
    axes = data.draw(st.sets(st.integers(0, len(shape) - 1), min_size=1))
    axes = tuple(sorted(axes))
    seed = data.draw(st.integers(0, 2**16))
    x = np.random.default_rng(seed).normal(2, 3, size=shape)
    y = bnlib.normalize(x, axes, eps=1e-12)
    np.testing.assert_allclose(y.mean(axis=axes), 0, atol=1e-9)
    var = x.var(axis=axes)  # two close values can make a group's variance tiny
    np.testing.assert_allclose(y.var(axis=axes), var / (var + 1e-12), atol=1e-9)
    g = np.random.default_rng(seed + 1).normal(size=shape)
    dx = bnlib.normalize_backward(g, x, axes, eps=1e-12)
    # the gradient is blind to shifting (and scaling) each group
    np.testing.assert_allclose(dx.sum(axis=axes), 0, atol=1e-8)
    np.testing.assert_allclose((dx * (x - x.mean(axis=axes, keepdims=True))).sum(
        axis=axes), 0, atol=1e-7)  # fmt: skip


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 6), c=st.integers(1, 3), groups_log=st.integers(0, 1))
def test_group_norm_is_normalize_over_reshaped_groups(n, c, groups_log):
    groups = 2**groups_log
    x = np.random.default_rng(n * 10 + c).normal(size=(n, c * groups, 3))
    expected = bnlib.normalize(x.reshape(n, groups, -1), 2).reshape(x.shape)
    np.testing.assert_allclose(bnlib.group_norm(x, groups), expected, atol=TOL)
