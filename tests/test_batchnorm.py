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


# Half-precision inputs are computed in float32 (as torch does) and rounded once.
DTYPE_TOL = {np.float16: 4e-3, np.float32: 2e-6, np.float64: 1e-12}


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_batch_norm_keeps_dtype_and_matches_float64_torch(backend, rng, dtype):
    """Output in the input's dtype, and values within that dtype's rounding of
    torch's float64 results (relative to each output's largest value)."""
    x = rng.normal(1.0, 2.0, size=(6, 3, 2)).astype(dtype)
    dy = rng.normal(size=x.shape).astype(dtype)
    w = rng.normal(size=3).astype(dtype)
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    wt = torch.tensor(w.astype(np.float64), requires_grad=True)
    bt = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    y_ref = F.batch_norm(xt, None, None, wt, bt, training=True)
    y_ref.backward(torch.tensor(dy.astype(np.float64)))
    y = bnlib.batch_norm(x, None, None, w, training=True)
    grads = bnlib.batch_norm_backward(dy, x, w)
    refs = (y_ref.detach(), xt.grad, wt.grad, bt.grad)
    for ours, ref in zip((y, *grads), refs, strict=True):
        assert ours.dtype == dtype
        ref = ref.numpy()
        tol = DTYPE_TOL[dtype] * np.abs(ref).max()
        np.testing.assert_allclose(ours.astype(np.float64), ref, rtol=0, atol=tol)


def test_batch_norm_does_not_modify_input(backend, rng):
    x = rng.normal(size=(6, 3, 4))
    dy = rng.normal(size=x.shape)
    x0, dy0 = x.copy(), dy.copy()
    bnlib.batch_norm(x, np.zeros(3), np.ones(3), training=True)
    bnlib.batch_norm(x, np.zeros(3), np.ones(3), training=False)
    bnlib.batch_norm_backward(dy, x, np.ones(3))
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dy, dy0)


@pytest.mark.parametrize("shape", [(128, 8, 6, 6), (256, 8, 4)])
@pytest.mark.parametrize("seed", range(4))
def test_batch_norm_float32_large_offset_as_accurate_as_torch(backend, shape, seed):
    """x = 1e4 + noise: E[x^2] - E[x]^2 would lose every digit in float32.

    (256, 8, 4) failed once in 75 runs, when the output was formed as
    ``(x - fl32(mean)) * scale``: the mean rounded to float32 is off by up to half
    an ulp of 1e4 (5e-4), the same for every value of a channel. The mean is now
    split into a float32 part and a remainder that goes into the per-channel
    constant, so the error is a few ulps of the output, whatever torch's is."""
    rng = np.random.default_rng(seed)
    x = (1e4 + rng.normal(size=shape)).astype(np.float32)
    exact = F.batch_norm(
        torch.tensor(x, dtype=torch.float64), None, None, training=True
    )
    exact = exact.numpy()
    torch32 = F.batch_norm(torch.tensor(x), None, None, training=True).numpy()
    ours = bnlib.batch_norm(x, None, None, training=True)
    err_ours = np.abs(ours - exact).max()
    err_torch = np.abs(torch32 - exact).max()
    assert ours.dtype == np.float32
    assert err_ours <= 8 * np.finfo(np.float32).eps * np.abs(exact).max(), err_ours
    assert err_ours <= max(err_torch, 1e-5), (err_ours, err_torch)


@pytest.mark.parametrize("shape", [(64, 8, 100), (4096, 16), (3, 2, 40_000)])
def test_batch_norm_backward_float32_large_matches_float64_torch(backend, rng, shape):
    """Large float32 batches far from zero (several blocks, and the by-channel and
    (N, C) paths): dx, dgamma and dbeta within a few float32 ulps of torch's
    float64 gradients, relative to each gradient's largest value."""
    x = (100.0 + rng.normal(0, 2, size=shape)).astype(np.float32)
    dy = rng.normal(0.3, 1.0, size=shape).astype(np.float32)
    w = rng.normal(size=shape[1]).astype(np.float32)
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    wt = torch.tensor(w.astype(np.float64), requires_grad=True)
    bt = torch.zeros(shape[1], dtype=torch.float64, requires_grad=True)
    F.batch_norm(xt, None, None, wt, bt, training=True).backward(
        torch.tensor(dy.astype(np.float64))
    )
    grads = bnlib.batch_norm_backward(dy, x, w)
    for ours, ref in zip(grads, (xt.grad, wt.grad, bt.grad), strict=True):
        ref = ref.numpy()
        tol = 64 * np.finfo(np.float32).eps * np.abs(ref).max()
        np.testing.assert_allclose(ours, ref, rtol=0, atol=tol)


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


def test_batch_norm_backward_shift_far_from_mean_matches_torch(backend, rng):
    """The statistics are summed about a shift K (the first block's mean, or the
    first values'), and sum(dy * (x - mean)) is corrected by (mean - K) * sum(dy).
    A batch of several blocks whose samples drift makes K far from the mean, so a
    wrong correction shows; small batches have K equal to the mean."""
    shape = (64, 4, 1024)  # 2 MB in float64: four blocks
    drift = np.linspace(0.0, 20.0, shape[0]).reshape(-1, 1, 1)
    x = drift + rng.normal(size=shape)
    dy = rng.normal(0.5, 1.0, size=shape)
    w = rng.normal(size=4)
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    y_ref = F.batch_norm(xt, None, None, wt, bt, training=True)
    y_ref.backward(torch.from_numpy(dy))
    y = bnlib.batch_norm(x, None, None, w, training=True)
    dx, dw, db = bnlib.batch_norm_backward(dy, x, w)
    np.testing.assert_allclose(y, y_ref.detach().numpy(), rtol=0, atol=TOL)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=0, atol=TOL)
    np.testing.assert_allclose(dw, wt.grad.numpy(), rtol=1e-10, atol=TOL)
    np.testing.assert_allclose(db, bt.grad.numpy(), rtol=1e-10, atol=TOL)


def test_batch_norm_float16_is_computed_in_float32(backend, rng):
    """float16 input is computed in float32 and rounded once, as torch does: every
    output and gradient is torch's float64 value correctly rounded to float16
    (within half a float16 ulp, plus float32's own rounding). Computed in float16,
    the scaling and the shift round again: about a third of the values are off
    by more."""
    shape = (64, 3, 32)
    x = rng.normal(1.0, 2.0, size=shape).astype(np.float16)
    dy = rng.normal(size=shape).astype(np.float16)
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    y_ref = F.batch_norm(xt, None, None, training=True)
    y_ref.backward(torch.tensor(dy.astype(np.float64)))
    y = bnlib.batch_norm(x, None, None, training=True)
    dx = bnlib.batch_norm_backward(dy, x)[0]
    for ours, ref in ((y, y_ref.detach().numpy()), (dx, xt.grad.numpy())):
        assert ours.dtype == np.float16
        half_ulp = 0.5 * np.spacing(np.abs(ref).astype(np.float16)).astype(np.float64)
        bound = half_ulp + 1e-6 * np.abs(ref) + 1e-6 * np.abs(ref).max()
        assert (np.abs(ours.astype(np.float64) - ref) <= bound).all()


@pytest.mark.parametrize("seed", range(3))
def test_batch_norm_backward_float32_large_offset_within_a_few_ulps(backend, seed):
    """x = 1e4 + noise in float32: dx within 8 float32 ulps (of its largest value)
    of torch's float64 gradient. The mean's float32 rounding (up to 5e-4) is kept
    out of ``x - mean`` here too; let in, it costs about 170 ulps."""
    rng = np.random.default_rng(seed)
    x = (1e4 + rng.normal(size=(256, 8, 4))).astype(np.float32)
    dy = rng.normal(0.5, 1.0, size=x.shape).astype(np.float32)
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    F.batch_norm(xt, None, None, training=True).backward(
        torch.tensor(dy.astype(np.float64))
    )
    ref = xt.grad.numpy()
    dx = bnlib.batch_norm_backward(dy, x)[0]
    assert np.abs(dx - ref).max() <= 8 * np.finfo(np.float32).eps * np.abs(ref).max()
