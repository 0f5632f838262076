"""bnbook.scratch: the from-scratch listings agree with PyTorch, float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bnbook import scratch

M, C = 7, 3


def _batch(seed: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(loc=[0.0, 5.0, -3.0], scale=[1.0, 0.1, 4.0], size=(M, C))
    gamma, beta = rng.normal(size=C), rng.normal(size=C)
    dy = rng.normal(size=(M, C))  # random upstream gradient: all-ones hides bugs
    return x, gamma, beta, dy


def _torch_bn(gamma, beta, eps):
    bn = torch.nn.BatchNorm1d(C, eps=eps, momentum=0.1, dtype=torch.float64)
    with torch.no_grad():
        bn.weight.copy_(torch.from_numpy(gamma))
        bn.bias.copy_(torch.from_numpy(beta))
    return bn


@pytest.mark.parametrize("eps", [1e-5, 0.3])
def test_batch_norm_training_matches_torch_output_and_running_stats(eps):
    x, gamma, beta, _ = _batch(0)
    bn = _torch_bn(gamma, beta, eps)
    rm, rv = np.zeros(C), np.ones(C)
    for step in range(3):  # the running statistics accumulate over steps
        xs = x + step
        y = scratch.batch_norm(xs, gamma, beta, rm, rv, training=True, eps=eps)
        ref = bn(torch.from_numpy(xs)).detach().numpy()
        np.testing.assert_allclose(y, ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(rm, bn.running_mean.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(rv, bn.running_var.numpy(), rtol=0, atol=1e-12)


def test_batch_norm_inference_uses_running_stats_and_leaves_them():
    x, gamma, beta, _ = _batch(1)
    bn = _torch_bn(gamma, beta, 1e-5)
    rm, rv = np.zeros(C), np.ones(C)
    scratch.batch_norm(x, gamma, beta, rm, rv, training=True)
    bn(torch.from_numpy(x))
    bn.eval()
    before = rm.copy(), rv.copy()
    y = scratch.batch_norm(x * 2, gamma, beta, rm, rv, training=False)
    ref = bn(torch.from_numpy(x * 2)).detach().numpy()
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(rm, before[0])
    np.testing.assert_array_equal(rv, before[1])


@pytest.mark.parametrize(
    "backward", [scratch.batch_norm_backward_staged, scratch.batch_norm_backward]
)
@pytest.mark.parametrize("eps", [1e-5, 0.3])
def test_backward_matches_torch_autograd(backward, eps):
    x, gamma, beta, dy = _batch(2)
    # A batch whose mean is far from zero: a term dropped from dmu would show.
    x = x + 10.0
    bn = _torch_bn(gamma, beta, eps)
    xt = torch.from_numpy(x).requires_grad_(True)
    bn(xt).backward(torch.from_numpy(dy))
    dx, dgamma, dbeta = backward(dy, x, gamma, eps=eps)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=0, atol=1e-11)
    np.testing.assert_allclose(dgamma, bn.weight.grad.numpy(), rtol=0, atol=1e-11)
    np.testing.assert_allclose(dbeta, bn.bias.grad.numpy(), rtol=0, atol=1e-11)


@pytest.mark.parametrize(
    "fn", [scratch.batch_norm, scratch.batch_norm_backward_staged,
           scratch.batch_norm_backward],
)  # fmt: skip
def test_listings_fit_on_one_screen(fn):
    import inspect

    lines = [ln for ln in inspect.getsource(fn).splitlines() if ln.strip()]
    body = lines[next(i for i, ln in enumerate(lines) if '"""' in ln) + 1 :]
    assert len(body) <= 15, len(body)


@pytest.mark.parametrize(
    "backward", [scratch.batch_norm_backward_staged, scratch.batch_norm_backward]
)
def test_backward_matches_central_finite_differences(backward):
    """A second reference, independent of PyTorch: the loss sum(dy * y)."""
    x, gamma, beta, dy = _batch(3)
    eps, h = 1e-5, 1e-6

    def loss(x_, gamma_, beta_):
        x_hat = (x_ - x_.mean(axis=0)) / np.sqrt(x_.var(axis=0) + eps)
        return float((dy * (gamma_ * x_hat + beta_)).sum())

    def numeric(arg):
        args, grad = [x, gamma, beta], np.zeros_like([x, gamma, beta][arg])
        for idx in np.ndindex(grad.shape):
            up = [a.copy() for a in args]
            down = [a.copy() for a in args]
            up[arg][idx] += h
            down[arg][idx] -= h
            grad[idx] = (loss(*up) - loss(*down)) / (2 * h)
        return grad

    for got, arg in zip(backward(dy, x, gamma, eps=eps), range(3), strict=True):
        np.testing.assert_allclose(got, numeric(arg), rtol=0, atol=1e-7)


@pytest.mark.parametrize(
    "backward", [scratch.batch_norm_backward_staged, scratch.batch_norm_backward]
)
def test_backward_all_ones_upstream_gives_zero_input_gradient(backward):
    """The trap the chapter warns about: an all-ones dy makes the true dx zero."""
    x, gamma, _, _ = _batch(4)
    dx, _, dbeta = backward(np.ones_like(x), x, gamma)
    np.testing.assert_allclose(dx, 0.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(dbeta, np.full(C, M), rtol=0, atol=1e-12)
