"""bnbook.lab.landscape: loss and gradient along the gradient direction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from bnbook.lab import experiments as ex
from bnbook.lab import landscape


def _net(batch_norm: bool) -> nn.Sequential:
    return ex.make_mlp(8, (6, 5), 3, batch_norm=batch_norm, seed=1).double()


@pytest.fixture
def batch(rng):
    x = torch.from_numpy(rng.normal(size=(12, 8)))
    y = torch.from_numpy(rng.integers(0, 3, size=12))
    return x, y


@pytest.mark.parametrize("batch_norm", [False, True])
def test_probe_gradient_direction_matches_a_functional_reference(batch, batch_norm):
    x, y = batch
    model = _net(batch_norm).train()
    params = dict(model.named_parameters())
    buffers = {k: v.clone() for k, v in model.named_buffers()}

    def loss_and_grad(p):
        loss = nn.functional.cross_entropy(
            functional_call(model, {**p, **buffers}, (x,)), y
        )
        return loss.item(), torch.autograd.grad(loss, list(p.values()))

    _, g = loss_and_grad(params)
    probe = landscape.probe_gradient_direction(_net(batch_norm), x, y, [0.3, 2.0])
    for k, eta in enumerate((0.3, 2.0)):
        moved = {n: p - eta * d for (n, p), d in zip(params.items(), g, strict=True)}
        loss, g_moved = loss_and_grad(moved)
        diffs = [a - b for a, b in zip(g_moved, g, strict=True)]
        change = torch.sqrt(sum((d**2).sum() for d in diffs))
        assert probe.loss[k] == pytest.approx(loss, rel=1e-12)
        assert probe.grad_change[k] == pytest.approx(change.item(), rel=1e-10)
    norm = torch.sqrt(sum((d**2).sum() for d in g)).item()
    assert probe.grad_norm == pytest.approx(norm, rel=1e-12)
    assert probe.beta == pytest.approx(
        max(probe.grad_change / (np.array([0.3, 2.0]) * norm)), rel=1e-12
    )


def test_probe_gradient_direction_records_the_loss_before_the_step(batch):
    model, (x, y) = _net(True).train(), batch
    probe = landscape.probe_gradient_direction(model, x, y, [0.1])
    with torch.no_grad():
        loss0 = nn.functional.cross_entropy(_net(True).train()(x), y).item()
    assert probe.base_loss == pytest.approx(loss0, rel=1e-12)


def test_probe_gradient_direction_descends_at_first_order(batch):
    # L(w - eta g) = L(w) - eta ||g||^2 + O(eta^2)
    model, (x, y) = _net(False), batch
    loss0 = nn.functional.cross_entropy(model(x), y).item()
    probe = landscape.probe_gradient_direction(model, x, y, [1e-5])
    slope = (loss0 - probe.loss[0]) / (1e-5 * probe.grad_norm**2)
    assert slope == pytest.approx(1.0, rel=1e-3)


def test_probe_gradient_direction_leaves_the_model_untouched(batch):
    model = _net(True).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    landscape.probe_gradient_direction(model, *batch, [0.5, 1.0])
    assert not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("steps", [[], [0.1, -0.1], [[0.1]], [0.0]])
def test_probe_gradient_direction_rejects_bad_step_sizes(batch, steps):
    with pytest.raises(ValueError, match="step_sizes"):
        landscape.probe_gradient_direction(_net(False), *batch, steps)


def test_probe_gradient_direction_rejects_bad_batch(batch):
    with pytest.raises(ValueError, match="shape"):
        landscape.probe_gradient_direction(_net(False), batch[0], batch[1][:3], [1.0])


def test_landscape_tracker_records_probes(rng):
    x = torch.from_numpy(rng.normal(size=(40, 8)))
    y = torch.from_numpy(rng.integers(0, 3, size=40))
    model = _net(False)
    trackers = [
        landscape.LandscapeTracker(x, y, [0.5, 1.0], batch_size=10) for _ in "ab"
    ]
    for tracker in trackers:
        tracker(0, model)
        tracker(4, model)
    a, b = trackers
    assert a.steps == [0, 4] and a.loss_range().shape == (2, 2)
    assert np.all(a.loss_range()[:, 0] <= a.loss_range()[:, 1])
    np.testing.assert_array_equal(a.beta(), b.beta())
    assert a.beta()[0] != a.beta()[1]  # a fresh batch at every call


def test_landscape_tracker_rejects_bad_batch_size(batch):
    with pytest.raises(ValueError, match="batch_size"):
        landscape.LandscapeTracker(*batch, step_sizes=[1.0])
