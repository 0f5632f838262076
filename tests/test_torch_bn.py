"""bnlib.torch.batchnorm: gradcheck; agreement with torch.nn.BatchNorm*d in training."""

from __future__ import annotations

import pytest
import torch
from layercheck import assert_same_in_eval, assert_same_state

from bnlib.torch import batchnorm as torch_bn

TOL = 1e-10


def _double(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (3, 2, 3, 4)])
def test_batch_norm_passes_gradcheck(training, shape):
    c = shape[1]
    x = (_double(shape, 0) * 2 + 1).requires_grad_()
    w = _double((c,), 1).requires_grad_()
    b = _double((c,), 2).requires_grad_()
    rm, rv = _double((c,), 3), _double((c,), 4).abs() + 0.5

    def f(x, w, b):
        # Fresh copies: the running stats must not drift between gradcheck calls.
        return torch_bn.batch_norm(x, rm.clone(), rv.clone(), w, b, training)

    assert torch.autograd.gradcheck(f, (x, w, b), eps=1e-6, atol=1e-8)


@pytest.mark.parametrize(
    ("ours_cls", "ref_cls", "shape"),
    [
        (torch_bn.BatchNorm1d, torch.nn.BatchNorm1d, (8, 4)),
        (torch_bn.BatchNorm1d, torch.nn.BatchNorm1d, (5, 4, 6)),
        (torch_bn.BatchNorm2d, torch.nn.BatchNorm2d, (4, 4, 3, 5)),
    ],
)
@pytest.mark.parametrize("config", [{}, {"momentum": None}, {"affine": False}])
def test_module_matches_torch_over_training_steps(ours_cls, ref_cls, shape, config):
    torch.manual_seed(0)
    ours = ours_cls(4, dtype=torch.float64, **config)
    ref = ref_cls(4, dtype=torch.float64, **config)
    if ours.affine:
        with torch.no_grad():
            for p in (ours.weight, ours.bias):
                p.normal_()
        ref.load_state_dict(ours.state_dict())
    opt_ours = torch.optim.SGD(ours.parameters(), lr=0.1) if ours.affine else None
    opt_ref = torch.optim.SGD(ref.parameters(), lr=0.1) if ref.affine else None
    for step in range(5):
        x = _double(shape, 10 + step) * (1 + step) + step
        dy = _double(shape, 100 + step)  # random upstream gradient
        outs = []
        for module, opt in ((ours, opt_ours), (ref, opt_ref)):
            xi = x.clone().requires_grad_()
            y = module(xi)
            y.backward(dy)
            grads = [xi.grad] + [p.grad.clone() for p in module.parameters()]
            outs.append((y.detach(), grads))
            if opt is not None:
                opt.step()
                opt.zero_grad()
        (y1, g1), (y2, g2) = outs
        torch.testing.assert_close(y1, y2, rtol=0, atol=TOL)
        for a, b in zip(g1, g2, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=TOL)
        assert_same_state(ours, ref, TOL)
    assert_same_in_eval(ours, ref, _double(shape, 999), TOL)


def test_module_eval_without_running_stats_uses_batch_stats():
    ours = torch_bn.BatchNorm1d(3, track_running_stats=False, dtype=torch.float64)
    ref = torch.nn.BatchNorm1d(3, track_running_stats=False, dtype=torch.float64)
    x = _double((6, 3), 5)
    torch.testing.assert_close(ours.eval()(x), ref.eval()(x), rtol=0, atol=TOL)


def test_module_one_value_per_channel_raises_without_counting():
    bn = torch_bn.BatchNorm1d(3)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        bn(torch.ones(1, 3))
    assert int(bn.num_batches_tracked) == 0


def test_module_wrong_rank_raises():
    with pytest.raises(ValueError, match="expected 4D input"):
        torch_bn.BatchNorm2d(3)(torch.ones(4, 3))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (torch.ones(4, 3, dtype=torch.int64), "float32 or float64"),
        ([[1.0, 2.0]], "must be a torch.Tensor"),
    ],
)
def test_batch_norm_rejects_bad_input(value, message):
    with pytest.raises(TypeError, match=message):
        torch_bn.batch_norm(value, None, None, training=True)
