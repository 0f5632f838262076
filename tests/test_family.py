"""layer_norm, group_norm, instance_norm, rms_norm and their backward passes against
torch.nn.functional in float64, with random upstream gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import bnlib

TOL = 1e-10


def _t(a):
    return None if a is None else torch.tensor(a)


def _torch_grads(fn, x, dy, *params):
    """Run ``fn(x, *params)`` under autograd; return y and the gradients."""
    xt = torch.tensor(x, requires_grad=True)
    pt = [None if p is None else torch.tensor(p, requires_grad=True) for p in params]
    y = fn(xt, *pt)
    y.backward(torch.tensor(dy))
    grads = [None if p is None else p.grad.numpy() for p in pt]
    return y.detach().numpy(), xt.grad.numpy(), grads


def _close(a, b, tol=TOL):
    np.testing.assert_allclose(a, b, rtol=0, atol=tol)


LN_CASES = [((6, 5), (5,)), ((3, 4, 5), (4, 5)), ((2, 3, 4, 5), (5,)), ((7,), (7,))]


@pytest.mark.parametrize(("shape", "ns"), LN_CASES)
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_matches_torch(rng, shape, ns, affine):
    x = rng.normal(2, 3, size=shape)
    dy = rng.normal(size=shape)
    w = rng.normal(size=ns) if affine else None
    b = rng.normal(size=ns) if affine else None
    y_ref, dx_ref, (dw_ref, db_ref) = _torch_grads(
        lambda xt, wt, bt: F.layer_norm(xt, ns, wt, bt, 1e-3), x, dy, w, b
    )
    _close(bnlib.layer_norm(x, ns, w, b, 1e-3), y_ref)
    dx, dw, db = bnlib.layer_norm_backward(dy, x, ns, w, 1e-3)
    _close(dx, dx_ref)
    if affine:
        _close(dw, dw_ref)
        _close(db, db_ref)
    else:  # the gradients an affine layer at gamma = 1, beta = 0 would get
        one, zero = np.ones(ns), np.zeros(ns)
        _, _, (dw1, db1) = _torch_grads(
            lambda xt, wt, bt: F.layer_norm(xt, ns, wt, bt, 1e-3), x, dy, one, zero
        )
        _close(dw, dw1)
        _close(db, db1)


GN_CASES = [((4, 6), 3), ((3, 6, 5), 2), ((2, 6, 3, 4), 1), ((2, 6, 3, 4), 6)]


@pytest.mark.parametrize(("shape", "groups"), GN_CASES)
@pytest.mark.parametrize("affine", [True, False])
def test_group_norm_matches_torch(rng, shape, groups, affine):
    x = rng.normal(-1, 2, size=shape)
    dy = rng.normal(size=shape)
    c = shape[1]
    w = rng.normal(size=c) if affine else None
    b = rng.normal(size=c) if affine else None
    y_ref, dx_ref, (dw_ref, db_ref) = _torch_grads(
        lambda xt, wt, bt: F.group_norm(xt, groups, wt, bt, 1e-4), x, dy, w, b
    )
    _close(bnlib.group_norm(x, groups, w, b, 1e-4), y_ref)
    dx, dw, db = bnlib.group_norm_backward(dy, x, groups, w, 1e-4)
    _close(dx, dx_ref)
    if affine:
        _close(dw, dw_ref)
        _close(db, db_ref)


@pytest.mark.parametrize(("shape", "ns"), LN_CASES)
@pytest.mark.parametrize("eps", [None, 1e-3])
def test_rms_norm_matches_torch(rng, shape, ns, eps):
    x = rng.normal(1, 2, size=shape)
    dy = rng.normal(size=shape)
    w = rng.normal(size=ns)
    y_ref, dx_ref, (dw_ref,) = _torch_grads(
        lambda xt, wt: F.rms_norm(xt, ns, wt, eps), x, dy, w
    )
    _close(bnlib.rms_norm(x, ns, w, eps), y_ref)
    dx, dw = bnlib.rms_norm_backward(dy, x, ns, w, eps)
    _close(dx, dx_ref)
    _close(dw, dw_ref)
    y_ref0, dx_ref0, _ = _torch_grads(lambda xt: F.rms_norm(xt, ns, None, eps), x, dy)
    _close(bnlib.rms_norm(x, ns, None, eps), y_ref0)
    _close(bnlib.rms_norm_backward(dy, x, ns, None, eps)[0], dx_ref0)


def test_rms_norm_default_eps_is_dtype_machine_epsilon():
    x = np.full((2, 3), 1e-5, dtype=np.float32)  # mean square near float32's eps
    ref = F.rms_norm(torch.tensor(x), (3,)).numpy()
    np.testing.assert_allclose(bnlib.rms_norm(x, 3), ref, rtol=1e-6)
    expected = 1e-5 / np.sqrt(1e-10 + np.finfo(np.float32).eps)
    np.testing.assert_allclose(bnlib.rms_norm(x, 3), expected, rtol=1e-6)
    x16 = np.full((2, 3), 1e-2, dtype=np.float16)  # computed in float32, as torch does
    ref16 = F.rms_norm(torch.tensor(x16), (3,)).numpy()
    np.testing.assert_allclose(bnlib.rms_norm(x16, 3), ref16, rtol=1e-3)


IN_SHAPES = [(4, 3, 5), (3, 2, 4, 5), (2, 3, 2, 3, 4)]


@pytest.mark.parametrize("shape", IN_SHAPES)
@pytest.mark.parametrize("affine", [True, False])
def test_instance_norm_matches_torch(rng, shape, affine):
    x = rng.normal(3, 2, size=shape)
    dy = rng.normal(size=shape)
    c = shape[1]
    w = rng.normal(size=c) if affine else None
    b = rng.normal(size=c) if affine else None
    rm, rv = rng.normal(size=c), rng.uniform(0.5, 2, size=c)
    rm_t, rv_t = torch.tensor(rm), torch.tensor(rv)
    y_ref, dx_ref, (dw_ref, db_ref) = _torch_grads(
        lambda xt, wt, bt: F.instance_norm(xt, rm_t, rv_t, wt, bt, True, 0.3, 1e-4),
        x, dy, w, b,
    )  # fmt: skip
    y = bnlib.instance_norm(x, rm, rv, w, b, True, 0.3, 1e-4)
    _close(y, y_ref)
    _close(rm, rm_t.numpy())
    _close(rv, rv_t.numpy())
    dx, dw, db = bnlib.instance_norm_backward(dy, x, w, 1e-4)
    _close(dx, dx_ref)
    if affine:
        _close(dw, dw_ref)
        _close(db, db_ref)


def test_instance_norm_running_stats_mode_matches_torch(rng):
    x = rng.normal(size=(3, 4, 6))
    rm, rv = rng.normal(size=4), rng.uniform(0.5, 2, size=4)
    w, b = rng.normal(size=4), rng.normal(size=4)
    ref = F.instance_norm(
        torch.tensor(x), _t(rm), _t(rv), _t(w), _t(b), use_input_stats=False
    )
    rm0 = rm.copy()
    _close(bnlib.instance_norm(x, rm, rv, w, b, use_input_stats=False), ref.numpy())
    np.testing.assert_array_equal(rm, rm0)


def test_instance_norm_without_running_stats_matches_torch(rng):
    x = rng.normal(size=(3, 4, 6))
    _close(bnlib.instance_norm(x), F.instance_norm(torch.tensor(x)).numpy())


def test_layer_norm_is_batch_norm_of_the_transposed_table(rng):
    x = rng.normal(5, 2, size=(6, 9))  # 6 examples, 9 features
    bn_t = bnlib.batch_norm(x.T, None, None, training=True, eps=1e-5)
    _close(bnlib.layer_norm(x, 9), bn_t.T)


def test_group_norm_extremes_are_layer_and_instance_norm(rng):
    x = rng.normal(size=(3, 4, 5, 2))
    _close(bnlib.group_norm(x, 1), bnlib.layer_norm(x, (4, 5, 2)))
    _close(bnlib.group_norm(x, 4), bnlib.instance_norm(x))


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: bnlib.layer_norm(x, x.shape[1:]),
        lambda x: bnlib.group_norm(x, 2),
        lambda x: bnlib.instance_norm(x),
    ],
    ids=["layer_norm", "group_norm", "instance_norm"],
)
def test_family_float32_large_offset_as_accurate_as_batch_norm(rng, fn):
    """x = 1e4 + noise in float32: the statistics must not lose the noise."""
    x32 = (1e4 + rng.normal(size=(16, 4, 6, 6))).astype(np.float32)
    exact = fn(x32.astype(np.float64))
    err = np.abs(fn(x32) - exact).max()
    bn_exact = bnlib.batch_norm(x32.astype(np.float64), None, None, training=True)
    bn_err = np.abs(bnlib.batch_norm(x32, None, None, training=True) - bn_exact).max()
    assert fn(x32).dtype == np.float32
    assert err <= max(bn_err, 1e-4), (err, bn_err)


def test_family_float32_backward_large_offset_accurate(rng):
    x32 = (1e4 + rng.normal(size=(8, 4, 5))).astype(np.float32)
    dy = rng.normal(size=x32.shape).astype(np.float32)
    x64, dy64 = x32.astype(np.float64), dy.astype(np.float64)
    for back in (
        lambda x, g: bnlib.layer_norm_backward(g, x, (4, 5))[0],
        lambda x, g: bnlib.group_norm_backward(g, x, 2)[0],
        lambda x, g: bnlib.instance_norm_backward(g, x)[0],
    ):
        exact = back(x64, dy64)
        assert np.abs(back(x32, dy) - exact).max() <= 1e-4 * np.abs(exact).max() + 1e-5


def test_rms_norm_float32_matches_float64(rng):
    x32 = (1e4 + rng.normal(size=(8, 6))).astype(np.float32)
    exact = bnlib.rms_norm(x32.astype(np.float64), 6, eps=1e-6)
    assert np.abs(bnlib.rms_norm(x32, 6, eps=1e-6) - exact).max() < 1e-6


def test_family_float16_matches_float64_torch(rng):
    """float16 in, float16 out, within float16's rounding of torch's float64."""
    x = rng.normal(size=(4, 4, 3)).astype(np.float16)
    xt = torch.tensor(x.astype(np.float64))
    pairs = [
        (bnlib.layer_norm(x, 3), F.layer_norm(xt, (3,))),
        (bnlib.group_norm(x, 2), F.group_norm(xt, 2)),
        (bnlib.instance_norm(x), F.instance_norm(xt)),
        (bnlib.rms_norm(x, 3), F.rms_norm(xt, (3,))),
    ]
    for y, ref in pairs:
        assert y.dtype == np.float16
        np.testing.assert_allclose(y.astype(np.float64), ref.numpy(), atol=4e-3)


def test_family_does_not_modify_inputs(rng):
    x = rng.normal(size=(4, 4, 3))
    dy = rng.normal(size=x.shape)
    x0, dy0 = x.copy(), dy.copy()
    bnlib.layer_norm_backward(dy, x, 3)
    bnlib.group_norm_backward(dy, x, 2)
    bnlib.instance_norm_backward(dy, x)
    bnlib.rms_norm_backward(dy, x, 3)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dy, dy0)


@settings(max_examples=15, deadline=None)
@given(
    shape=st.lists(st.integers(1, 4), min_size=2, max_size=4),
    k=st.integers(1, 2),
    seed=st.integers(0, 2**16),
)
def test_layer_and_rms_norm_match_torch_for_any_shape(shape, k, seed):
    gen = np.random.default_rng(seed)
    ns = tuple(shape[-k:])
    x, dy, w = gen.normal(size=shape), gen.normal(size=shape), gen.normal(size=ns)
    _, dx_ln, (dw_ln,) = _torch_grads(lambda t, wt: F.layer_norm(t, ns, wt), x, dy, w)
    dx, dw, _ = bnlib.layer_norm_backward(dy, x, ns, w)
    _close(dx, dx_ln, 1e-8)
    _close(dw, dw_ln, 1e-8)
    _, dx_rms, _ = _torch_grads(lambda t, wt: F.rms_norm(t, ns, wt), x, dy, w)
    _close(bnlib.rms_norm_backward(dy, x, ns, w)[0], dx_rms, 1e-8)
