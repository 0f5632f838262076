"""Batch Renormalization: BatchNorm at r_max = 1, d_max = 0; gradients against a torch
autograd reference with r and d detached, and against finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import bnlib

TOL = 1e-10


def _torch_renorm(x, rm, rv, w, b, eps, r_max, d_max):
    """Ioffe (2017), Algorithm 1, written in torch with r and d detached."""
    axes = [0] + list(range(2, x.dim()))
    shape = [1, -1] + [1] * (x.dim() - 2)
    mu = x.mean(axes)
    sigma_b = torch.sqrt(x.var(axes, unbiased=False) + eps)
    sigma = torch.sqrt(rv + eps)
    r = torch.clamp(sigma_b / sigma, 1 / r_max, r_max).detach()
    d = torch.clamp((mu - rm) / sigma, -d_max, d_max).detach()
    x_hat = (x - mu.view(shape)) / sigma_b.view(shape) * r.view(shape) + d.view(shape)
    return w.view(shape) * x_hat + b.view(shape)


@pytest.mark.parametrize("shape", [(16, 3), (8, 3, 5), (4, 3, 3, 4)])
def test_batch_renorm_gradients_match_torch_with_r_d_detached(rng, shape):
    x = rng.normal(1, 2, size=shape)
    dy = rng.normal(size=shape)
    rm, rv = rng.normal(size=3), rng.uniform(0.2, 5, size=3)
    w, b = rng.normal(size=3), rng.normal(size=3)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    y_ref = _torch_renorm(
        xt, torch.tensor(rm), torch.tensor(rv), wt, bt, 1e-5, 1.5, 0.5
    )
    y_ref.backward(torch.tensor(dy))
    layer = (bnlib.BatchRenorm1d if len(shape) < 4 else bnlib.BatchRenorm2d)(
        3, r_max=1.5, d_max=0.5, momentum=0.2, dtype=np.float64
    )
    layer.weight[...], layer.bias[...] = w, b
    layer.running_mean[...], layer.running_var[...] = rm, rv
    np.testing.assert_allclose(layer(x), y_ref.detach().numpy(), atol=TOL)
    np.testing.assert_allclose(layer.backward(dy), xt.grad.numpy(), atol=TOL)
    np.testing.assert_allclose(layer.weight_grad, wt.grad.numpy(), atol=TOL)
    np.testing.assert_allclose(layer.bias_grad, bt.grad.numpy(), atol=TOL)
    n = x.size // 3
    mu = x.mean(axis=tuple(i for i in range(x.ndim) if i != 1))
    var = x.var(axis=tuple(i for i in range(x.ndim) if i != 1), ddof=1)
    np.testing.assert_allclose(layer.running_mean, 0.8 * rm + 0.2 * mu, atol=TOL)
    np.testing.assert_allclose(layer.running_var, 0.8 * rv + 0.2 * var, atol=TOL)
    assert n > 1


def test_batch_renorm_gradient_matches_finite_differences_when_clipped(rng):
    """Far from the running statistics r and d sit at their limits, so they are
    locally constant: the rule "r, d constant" is then the exact derivative."""
    x = rng.normal(4, 3, size=(6, 2))
    rm, rv, w = np.zeros(2), np.full(2, 0.5), rng.normal(size=2)
    dy = rng.normal(size=x.shape)

    def loss(x_):
        y = bnlib.batch_renorm(
            x_, rm.copy(), rv.copy(), w, None, True, 0.1, 1e-5, 1.5, 0.5
        )
        return np.sum(y * dy)

    r, d = _factors(x, rm, rv, 1.5, 0.5)
    assert np.allclose(np.abs(np.log(r)), np.log(1.5)) and np.allclose(np.abs(d), 0.5)
    dx, _, _ = bnlib.batch_renorm_backward(dy, x, r, d, w)
    h, fd = 1e-6, np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = h
        fd[idx] = (loss(x + e) - loss(x - e)) / (2 * h)
    np.testing.assert_allclose(dx, fd, atol=1e-7)


def _factors(x, rm, rv, r_max, d_max, eps=1e-5):
    sigma = np.sqrt(rv + eps)
    r = np.clip(np.sqrt(x.var(0) + eps) / sigma, 1 / r_max, r_max)
    return r, np.clip((x.mean(0) - rm) / sigma, -d_max, d_max)


@pytest.mark.parametrize(
    ("renorm", "bn", "shape"),
    [
        (bnlib.BatchRenorm1d, bnlib.BatchNorm1d, (8, 3)),
        (bnlib.BatchRenorm2d, bnlib.BatchNorm2d, (4, 3, 2, 5)),
    ],
)
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batch_renorm_r1_d0_is_batch_norm(rng, renorm, bn, shape, momentum):
    ours = renorm(3, r_max=1.0, d_max=0.0, momentum=momentum, dtype=np.float64)
    ref = bn(3, momentum=momentum, dtype=np.float64)
    w, b = rng.normal(size=3), rng.normal(size=3)
    for layer in (ours, ref):
        layer.weight[...], layer.bias[...] = w, b
    for step in range(5):
        if step == 3:
            ours.eval(), ref.eval()
        x, dy = rng.normal(step, 1 + step, size=shape), rng.normal(size=shape)
        np.testing.assert_allclose(ours(x), ref(x), atol=TOL)
        # grads accumulate in both, in training and (as BatchNorm's) in eval mode
        np.testing.assert_allclose(ours.backward(dy), ref.backward(dy), atol=TOL)
        np.testing.assert_allclose(ours.weight_grad, ref.weight_grad, atol=TOL)
        np.testing.assert_allclose(ours.bias_grad, ref.bias_grad, atol=TOL)
        for key, value in ref.state_dict().items():
            np.testing.assert_allclose(ours.state_dict()[key], value, atol=TOL)


def test_batch_renorm_functional_r1_d0_is_batch_norm(rng):
    x, dy = rng.normal(2, 3, size=(10, 4)), rng.normal(size=(10, 4))
    rm1, rv1 = rng.normal(size=4), rng.uniform(1, 2, size=4)
    rm2, rv2 = rm1.copy(), rv1.copy()
    y = bnlib.batch_renorm(x, rm1, rv1, training=True, r_max=1, d_max=0)
    np.testing.assert_allclose(y, bnlib.batch_norm(x, rm2, rv2, training=True))
    np.testing.assert_allclose(rm1, rm2)
    np.testing.assert_allclose(rv1, rv2)
    got = bnlib.batch_renorm_backward(dy, x, np.ones(4), np.zeros(4))
    for a, b in zip(got, bnlib.batch_norm_backward(dy, x), strict=True):
        np.testing.assert_allclose(a, b, atol=TOL)
    y_eval = bnlib.batch_renorm(x, rm1, rv1, training=False)
    np.testing.assert_allclose(y_eval, bnlib.batch_norm(x, rm1, rv1, training=False))


def test_batch_renorm_unclipped_equals_normalizing_with_running_stats(rng):
    x = rng.normal(1, 2, size=(12, 3))
    rm, rv = rng.normal(size=3), rng.uniform(1, 3, size=3)
    expected = bnlib.batch_norm(x, rm, rv, training=False)
    y = bnlib.batch_renorm(x, rm.copy(), rv.copy(), training=True, r_max=1e6, d_max=1e6)
    np.testing.assert_allclose(y, expected, atol=TOL)


def test_batch_renorm_float32_large_offset_accurate(rng):
    x = (1e4 + rng.normal(size=(64, 4))).astype(np.float32)
    exact = bnlib.batch_renorm(x.astype(np.float64), None, None, training=True)
    y = bnlib.batch_renorm(x, None, None, training=True)
    assert y.dtype == np.float32
    bn_err = np.abs(bnlib.batch_norm(x, None, None, training=True) - exact).max()
    assert np.abs(y - exact).max() <= max(bn_err, 1e-4)


@pytest.mark.parametrize(
    ("kwargs", "exc", "words"),
    [
        ({"r_max": 0.5}, ValueError, "r_max"),
        ({"d_max": -1.0}, ValueError, "d_max"),
        ({"r_max": "3"}, TypeError, "r_max"),
        ({"eps": 0.0}, ValueError, "eps"),
        ({"weight": np.ones(3)}, ValueError, "weight"),
        ({"momentum": "0.1"}, TypeError, "momentum"),
    ],
)
def test_batch_renorm_bad_argument_leaves_buffers_untouched(rng, kwargs, exc, words):
    x = rng.normal(size=(8, 4))
    rm, rv = np.zeros(4), np.ones(4)
    with pytest.raises(exc, match=words):
        bnlib.batch_renorm(x, rm, rv, training=True, **kwargs)
    np.testing.assert_array_equal(rm, 0)
    np.testing.assert_array_equal(rv, 1)


def test_batch_renorm_layer_errors_leave_state_untouched():
    with pytest.raises(ValueError, match="r_max"):
        bnlib.BatchRenorm1d(3, r_max=0.9)
    with pytest.raises(ValueError, match="eps"):
        bnlib.BatchRenorm1d(3, eps=0)
    layer = bnlib.BatchRenorm2d(3)
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(np.ones((2, 3, 2, 2)))
    for bad in (np.ones((2, 3, 4)), np.ones((2, 4, 2, 2)), np.ones((1, 3, 1, 1))):
        with pytest.raises(ValueError):
            layer(bad)
    assert layer.num_batches_tracked == 0
    np.testing.assert_array_equal(layer.running_mean, 0)
    with pytest.raises(ValueError, match="more than 1"):
        bnlib.batch_renorm(np.ones((1, 3)), np.zeros(3), np.ones(3), training=True)
    with pytest.raises(ValueError, match="shape"):
        bnlib.batch_renorm_backward(np.ones((2, 3)), np.ones((3, 3)), np.ones(3), 0)
