"""bnbook.lab.ics: Santurkar et al.'s internal covariate shift, against our own."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from bnbook.lab import experiments as ex
from bnbook.lab import ics


def _net(batch_norm: bool, seed: int = 0) -> nn.Sequential:
    return ex.make_mlp(8, (6, 5), 3, batch_norm=batch_norm, seed=seed).double()


@pytest.fixture
def batch(rng):
    x = torch.from_numpy(rng.normal(size=(12, 8)))
    y = torch.from_numpy(rng.integers(0, 3, size=12))
    return x, y


def _reference(model, x, y, lr, position):
    """G and G' written out with functional_call on a parameter dictionary."""
    model = model.train()
    params = dict(model.named_parameters())
    buffers = {k: v.clone() for k, v in model.named_buffers()}

    def loss(p):
        out = functional_call(model, {**p, **buffers}, (x,))
        return nn.functional.cross_entropy(out, y)

    values = torch.autograd.grad(loss(params), list(params.values()))
    grads = dict(zip(params, values, strict=True))
    name = f"{position}.weight"
    moved = {
        k: v - lr * grads[k] if int(k.split(".")[0]) < position else v
        for k, v in params.items()
    }
    (g_moved,) = torch.autograd.grad(loss(moved), [moved[name]])
    return grads[name].detach(), g_moved.detach()


@pytest.mark.parametrize("batch_norm", [False, True])
def test_gradient_shift_matches_a_functional_reference(batch, batch_norm):
    model, (x, y), lr = _net(batch_norm), batch, 0.7
    result = ics.gradient_shift(model, x, y, lr)
    positions = ics.linear_positions(model)
    assert result.layers == (1, 2)
    for k, layer in enumerate(result.layers):
        g, g_moved = _reference(_net(batch_norm), x, y, lr, positions[layer])
        distance = (g - g_moved).norm().item()
        cosine = (g * g_moved).sum().item() / (g.norm() * g_moved.norm()).item()
        assert distance > 1e-4  # the earlier layers' step did change the gradient
        assert result.distance[k] == pytest.approx(distance, rel=1e-10)
        assert result.relative[k] == pytest.approx(distance / g.norm().item(), 1e-10)
        assert result.cosine[k] == pytest.approx(cosine, rel=1e-12)


def test_gradient_shift_first_layer_and_zero_lr_show_no_shift(batch):
    model = _net(True)
    first = ics.gradient_shift(model, *batch, lr=0.5, layers=[0])
    still = ics.gradient_shift(model, *batch, lr=0.0)
    for r in (first, still):
        np.testing.assert_array_equal(r.distance, 0.0)
        np.testing.assert_allclose(r.cosine, 1.0, rtol=1e-12)


def test_gradient_shift_grows_linearly_with_small_steps(batch):
    model = _net(False)
    small = ics.gradient_shift(model, *batch, lr=1e-4).distance
    double = ics.gradient_shift(model, *batch, lr=2e-4).distance
    np.testing.assert_allclose(double / small, 2.0, rtol=1e-3)


def test_gradient_shift_leaves_the_model_untouched(batch):
    model = _net(True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    ics.gradient_shift(model, *batch, lr=0.5)
    assert not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"model": nn.Linear(8, 3)}, TypeError, "nn.Sequential"),
        ({"layers": [3]}, ValueError, "indices in 0..2"),
        ({"layers": []}, ValueError, "layers must be"),
        ({"lr": -0.1}, ValueError, "lr must be >= 0"),
        ({"lr": float("nan")}, ValueError, "lr must be >= 0"),
        ({"y": torch.zeros(5, dtype=torch.int64)}, ValueError, "shape"),
        ({"x": np.zeros((12, 8))}, TypeError, "torch.Tensor"),
    ],
)
def test_gradient_shift_rejects_bad_input(batch, kwargs, error, message):
    args = {"model": _net(False), "x": batch[0], "y": batch[1], "lr": 0.1} | kwargs
    with pytest.raises(error, match=message):
        ics.gradient_shift(**args)


def test_gradient_shift_tracker_records_fresh_batches(rng):
    x = torch.from_numpy(rng.normal(size=(40, 8)))
    y = torch.from_numpy(rng.integers(0, 3, size=40))
    model = _net(False)
    trackers = [ics.GradientShiftTracker(x, y, lr=0.5, batch_size=10) for _ in "ab"]
    for tracker in trackers:
        for step in (0, 7, 9):
            tracker(step, model)
    a, b = trackers
    assert a.steps == [0, 7, 9] and a.as_array("cosine").shape == (3, 2)
    np.testing.assert_array_equal(a.as_array("distance"), b.as_array("distance"))
    assert len(set(a.as_array("distance")[:, 0])) == 3  # a new batch every call


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"batch_size": 1}, "batch_size"), ({"lr": -1}, "lr")]
)
def test_gradient_shift_tracker_rejects_bad_arguments(batch, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ics.GradientShiftTracker(*batch, **({"lr": 0.1} | kwargs))


def test_gradient_shift_tracker_as_array_rejects_unknown_measure(batch):
    with pytest.raises(ValueError, match="name must be"):
        ics.GradientShiftTracker(*batch, lr=0.1, batch_size=6).as_array("angle")


def test_linear_positions_finds_the_linear_layers():
    assert ics.linear_positions(_net(True)) == [0, 3, 6]
    assert ics.linear_positions(_net(False)) == [0, 2, 4]
