"""bnlib.batch_norm and bnlib.batch_norm_backward against PyTorch in float64.

Expected values come from ``torch.nn.functional.batch_norm`` and autograd, never
from bnlib. Upstream gradients are random: with an all-ones upstream gradient the
input gradient of BatchNorm is identically zero and would hide any bug.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import bnlib

TOL = 1e-10
SHAPES = [(8, 3), (5, 4, 7), (4, 3, 5, 6), (2, 3, 3, 4, 5), (3, 2, 1, 1)]


def _torch_reference(x, dy, w, b, rm, rv, training, momentum, eps=1e-5):
    """Output, running stats and gradients computed by PyTorch in float64."""
    xt = torch.tensor(x, requires_grad=True)
    wt = None if w is None else torch.tensor(w, requires_grad=True)
    bt = None if b is None else torch.tensor(b, requires_grad=True)
    rmt = None if rm is None else torch.tensor(rm)
    rvt = None if rv is None else torch.tensor(rv)
    y = F.batch_norm(xt, rmt, rvt, wt, bt, training, momentum, eps)
    y.backward(torch.tensor(dy))
    grads = [None if t is None else t.grad.numpy() for t in (xt, wt, bt)]
    stats = [None if t is None else t.numpy() for t in (rmt, rvt)]
    return y.detach().numpy(), stats, grads


def _case(rng, shape):
    c = shape[1]
    return (
        rng.normal(1.5, 2.0, size=shape),
        rng.normal(size=shape),
        rng.normal(size=c),
        rng.normal(size=c),
        rng.normal(size=c),
        rng.uniform(0.5, 2.0, size=c),
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_batch_norm_training_matches_torch(backend, rng, shape):
    x, dy, w, b, rm, rv = _case(rng, shape)
    y_ref, (rm_ref, rv_ref), _ = _torch_reference(x, dy, w, b, rm, rv, True, 0.1)
    y = bnlib.batch_norm(x, rm, rv, w, b, training=True, momentum=0.1)
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=TOL)
    np.testing.assert_allclose(rm, rm_ref, rtol=0, atol=TOL)
    np.testing.assert_allclose(rv, rv_ref, rtol=0, atol=TOL)


@pytest.mark.parametrize("shape", SHAPES)
def test_batch_norm_eval_matches_torch(backend, rng, shape):
    x, dy, w, b, rm, rv = _case(rng, shape)
    y_ref, _, grads = _torch_reference(x, dy, w, b, rm, rv, False, 0.1)
    rm0, rv0 = rm.copy(), rv.copy()
    y = bnlib.batch_norm(x, rm, rv, w, b, training=False)
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=TOL)
    np.testing.assert_array_equal(rm, rm0)
    np.testing.assert_array_equal(rv, rv0)
    dx, dw, db = bnlib.batch_norm_eval_backward(dy, x, rm, rv, w)
    for ours, ref in zip((dx, dw, db), grads, strict=True):
        np.testing.assert_allclose(ours, ref, rtol=0, atol=TOL)


@pytest.mark.parametrize("shape", SHAPES)
def test_batch_norm_backward_matches_torch_autograd(backend, rng, shape):
    x, dy, w, b, _, _ = _case(rng, shape)
    _, _, grads = _torch_reference(x, dy, w, b, None, None, True, 0.1)
    dx, dw, db = bnlib.batch_norm_backward(dy, x, w)
    for ours, ref in zip((dx, dw, db), grads, strict=True):
        np.testing.assert_allclose(ours, ref, rtol=0, atol=TOL)


def test_batch_norm_backward_without_weight_matches_torch(backend, rng):
    x, dy, *_ = _case(rng, (6, 4, 3))
    _, _, (dx_ref, _, _) = _torch_reference(x, dy, None, None, None, None, True, 0.1)
    dx, dw, db = bnlib.batch_norm_backward(dy, x)
    np.testing.assert_allclose(dx, dx_ref, rtol=0, atol=TOL)
    x_hat = (x - x.mean(axis=(0, 2), keepdims=True)) / np.sqrt(
        x.var(axis=(0, 2), keepdims=True) + 1e-5
    )
    np.testing.assert_allclose(dw, (dy * x_hat).sum(axis=(0, 2)), atol=TOL)
    np.testing.assert_allclose(db, dy.sum(axis=(0, 2)), atol=TOL)


def test_batch_norm_running_stats_over_steps_match_torch(backend, rng):
    c = 5
    rm, rv = np.zeros(c), np.ones(c)
    rmt, rvt = torch.zeros(c, dtype=torch.float64), torch.ones(c, dtype=torch.float64)
    for step in range(6):
        x = rng.normal(step, 1 + step, size=(7, c, 3))
        bnlib.batch_norm(x, rm, rv, training=True, momentum=0.3)
        F.batch_norm(torch.tensor(x), rmt, rvt, training=True, momentum=0.3)
    np.testing.assert_allclose(rm, rmt.numpy(), rtol=0, atol=TOL)
    np.testing.assert_allclose(rv, rvt.numpy(), rtol=0, atol=TOL)


def test_batch_norm_running_var_is_unbiased(rng):
    x = rng.normal(size=(4, 2, 3))
    rm, rv = np.zeros(2), np.zeros(2)
    bnlib.batch_norm(x, rm, rv, training=True, momentum=1.0)
    np.testing.assert_allclose(rv, x.var(axis=(0, 2), ddof=1), atol=TOL)
    np.testing.assert_allclose(rm, x.mean(axis=(0, 2)), atol=TOL)


def test_batch_norm_training_without_running_stats(backend, rng):
    x, dy, w, b, _, _ = _case(rng, (6, 3, 4))
    y_ref, _, _ = _torch_reference(x, dy, w, b, None, None, True, 0.1)
    np.testing.assert_allclose(
        bnlib.batch_norm(x, None, None, w, b, True), y_ref, atol=TOL
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_batch_norm_keeps_dtype(backend, rng, dtype):
    x = rng.normal(size=(6, 3, 2)).astype(dtype)
    y = bnlib.batch_norm(x, None, None, training=True)
    dx, dw, db = bnlib.batch_norm_backward(x, x)
    assert y.dtype == dx.dtype == dw.dtype == db.dtype == dtype


def test_batch_norm_does_not_modify_input(backend, rng):
    x = rng.normal(size=(6, 3, 4))
    dy = rng.normal(size=x.shape)
    x0, dy0 = x.copy(), dy.copy()
    bnlib.batch_norm(x, np.zeros(3), np.ones(3), training=True)
    bnlib.batch_norm(x, np.zeros(3), np.ones(3), training=False)
    bnlib.batch_norm_backward(dy, x, np.ones(3))
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dy, dy0)


def test_batch_norm_float32_large_offset_as_accurate_as_torch(backend, rng):
    """x = 1e4 + noise: E[x^2] - E[x]^2 would lose every digit in float32."""
    x = (1e4 + rng.normal(size=(128, 8, 6, 6))).astype(np.float32)
    exact = F.batch_norm(
        torch.tensor(x, dtype=torch.float64), None, None, training=True
    )
    exact = exact.numpy()
    torch32 = F.batch_norm(torch.tensor(x), None, None, training=True).numpy()
    ours = bnlib.batch_norm(x, None, None, training=True)
    err_ours = np.abs(ours - exact).max()
    err_torch = np.abs(torch32 - exact).max()
    assert ours.dtype == np.float32
    assert err_ours <= max(err_torch, 1e-4), (err_ours, err_torch)


def test_batch_norm_non_contiguous_input_matches_torch(backend, rng):
    base = rng.normal(size=(4, 6, 5, 3))
    x = base.transpose(0, 3, 2, 1)  # (4, 3, 5, 6), not contiguous
    y_ref = F.batch_norm(
        torch.tensor(np.ascontiguousarray(x)), None, None, training=True
    )
    y = bnlib.batch_norm(x, None, None, training=True)
    np.testing.assert_allclose(y, y_ref.numpy(), atol=TOL)


def test_batch_norm_empty_batch_leaves_running_stats(backend, rng):
    rm, rv = np.full(3, 0.5), np.full(3, 2.0)
    y = bnlib.batch_norm(np.zeros((0, 3, 2)), rm, rv, training=True)
    assert y.shape == (0, 3, 2)
    np.testing.assert_array_equal(rm, 0.5)
    np.testing.assert_array_equal(rv, 2.0)


def test_batch_stats_matches_numpy(backend, rng):
    x = rng.normal(3, 2, size=(5, 4, 6))
    mu, var = bnlib.batch_stats(x)
    np.testing.assert_allclose(mu, x.mean(axis=(0, 2)), atol=TOL)
    np.testing.assert_allclose(var, x.var(axis=(0, 2)), atol=TOL)
