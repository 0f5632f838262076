"""bnbook.lab.seedprobes: time to a level, the gradient probe, Monte Carlo BN."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from bnbook.lab import experiments as ex
from bnbook.lab import ics, landscape
from bnbook.lab import seedprobes as sp
from bnbook.lab import seeds as sd


@pytest.fixture(scope="module")
def split():
    s = ex.load_digits_split(n_train=120, seed=0)
    return ex.Split(s.x_train.double(), s.y_train, s.x_test.double(), s.y_test)


def test_first_step_at_per_slot():
    acc = np.array([[0.1, 0.5], [0.6, 0.7], [0.95, 0.8]])
    out = sp.first_step_at([0, 10, 20], acc, 0.9)
    assert out[0] == 20 and np.isnan(out[1])
    assert sp.first_step_at([0, 10, 20], acc, 0.5).tolist() == [10, 0]


def test_first_step_at_rejects_bad_shape():
    with pytest.raises(ValueError, match="level in"):
        sp.first_step_at([0, 1], np.zeros((3, 2)), 0.5)
    with pytest.raises(ValueError, match="level in"):
        sp.first_step_at([0], np.zeros((1, 2)), 1.5)


def test_gradient_probe_matches_landscape_probe(split):
    models = [
        ex.make_mlp(hidden=(10, 6), batch_norm=True, seed=s).double() for s in (0, 1)
    ]
    net = sd.SeedMLP.from_models(copy.deepcopy(models))
    xb, yb = split.x_train[:30], split.y_train[:30]
    etas = [0.1, 0.5, 2.0]
    probe = sp.gradient_probe(net, xb.expand(2, -1, -1), yb.expand(2, -1), etas)
    for k, model in enumerate(models):
        ref = landscape.probe_gradient_direction(model.train(), xb, yb, etas)
        assert probe.base_loss[k] == pytest.approx(ref.base_loss, rel=1e-10)
        np.testing.assert_allclose(probe.loss[k], ref.loss, rtol=1e-10)
        assert probe.grad_norm[k] == pytest.approx(ref.grad_norm, rel=1e-10)
        assert probe.beta[k] == pytest.approx(ref.beta, rel=1e-9)
        linears = [m for m in model if isinstance(m, torch.nn.Linear)]
        norms = [m.weight.norm().item() for m in linears]
        np.testing.assert_allclose(probe.weight_norm[k], norms, rtol=1e-12)
    np.testing.assert_allclose(probe.step_length, np.outer(probe.grad_norm, etas))


def test_gradient_probe_rejects_bad_steps(split):
    net = sd.SeedMLP.make((0,), hidden=(4,), dtype=torch.float64)
    with pytest.raises(ValueError, match="positive"):
        sp.gradient_probe(net, split.x_train[:5], split.y_train[:5][None], [0.0])


def test_mc_batchnorm_probs_single_draw_equals_batch_statistics(split):
    model = ex.make_mlp(hidden=(9,), batch_norm=True, seed=2).double()
    net = sd.SeedMLP.from_models([model])
    x = split.x_test[:4]
    probs = sp.mc_batchnorm_probs(net, split.x_train, x, n_samples=1, batch_size=25)
    gen = torch.Generator().manual_seed(0)
    idx = torch.rand(1, len(split.x_train), generator=gen).argsort(dim=1)[0, :25]
    mates = split.x_train[idx]
    bn = model[1]
    ref = copy.deepcopy(model).eval()
    with torch.no_grad():
        z = model[0](mates)
        ref[1].running_mean.copy_(z.mean(0))
        ref[1].running_var.copy_(z.var(0, unbiased=False))
        expected = torch.softmax(ref(x), -1)
    assert bn.eps == sd.EPS
    torch.testing.assert_close(probs[0], expected, rtol=1e-10, atol=1e-12)
    assert torch.allclose(probs.sum(-1), torch.ones(1, 4, dtype=torch.float64))


def test_mc_batchnorm_probs_tends_to_population(split):
    net = sd.SeedMLP.make((0,), hidden=(9,), batch_norm=True, dtype=torch.float64)
    net.set_population(split.x_train)
    x = split.x_test[:4]
    with torch.no_grad():
        plain = torch.softmax(net.forward(x, training=False), -1)
    big = sp.mc_batchnorm_probs(net, split.x_train, x, n_samples=2, batch_size=120)
    torch.testing.assert_close(big, plain, rtol=0, atol=1e-2)


def test_mc_batchnorm_probs_rejects_bad_arguments(split):
    plain = sd.SeedMLP.make((0,), hidden=(4,))
    with pytest.raises(ValueError, match="BatchNorm net"):
        sp.mc_batchnorm_probs(plain, split.x_train, split.x_test[:2], 1, 10)


def test_gradient_shift_matches_ics(split):
    models = [
        ex.make_mlp(hidden=(10, 6), batch_norm=bn, seed=3).double() for bn in (0, 1)
    ]
    xb, yb = split.x_train[:30], split.y_train[:30]
    for model in models:
        net = sd.SeedMLP.from_models([copy.deepcopy(model)])
        cos, rel = sp.gradient_shift(net, xb, yb[None], lr=0.5)
        layer = len(ics.linear_positions(model)) - 1
        ref = ics.gradient_shift(model.train(), xb, yb, lr=0.5, layers=[layer])
        assert cos[0] == pytest.approx(ref.cosine[0], rel=1e-10)
        assert rel[0] == pytest.approx(ref.relative[0], rel=1e-10)


def test_forward_collects_activation_inputs(split):
    model = ex.make_mlp(hidden=(7, 5), batch_norm=True, seed=1).double().train()
    net = sd.SeedMLP.from_models([model])
    seen: list[torch.Tensor] = []
    with torch.no_grad():
        net.forward(split.x_train[:20], training=True, collect=seen)
    expected = ex.hidden_preactivations(model, split.x_train[:20])
    assert len(seen) == 2
    for mine, ref in zip(seen, expected, strict=True):
        torch.testing.assert_close(mine[0], ref, rtol=1e-10, atol=1e-10)


def test_seed_tracker_records_percentiles_and_probes(split):
    net = sd.SeedMLP.make((0, 1), hidden=(8, 6), batch_norm=True, dtype=torch.float64)
    tracker = sp.SeedTracker(
        split.x_test[:40],
        split.x_train,
        split.y_train,
        every=2,
        after=4,
        lr=0.1,
        step_sizes=[0.1, 0.2],
        batch_size=16,
        probe_every=4,
    )
    sd.train_seeds(
        net,
        split,
        steps=8,
        lr=0.1,
        batch_size=20,
        seeds=(0, 1),
        eval_every=1,
        callbacks=[tracker],
    )
    assert tracker.steps == [0, 2, 4, 6, 8]
    assert tracker.probe_steps == [4, 8]
    assert tracker.as_array().shape == (5, 2, 3)
    pct = tracker.as_array()
    assert np.all(pct[..., 0] <= pct[..., 1]) and np.all(pct[..., 1] <= pct[..., 2])
    assert tracker.probes[0].loss.shape == (2, 2)
    assert tracker.shifts[0][0].shape == (2,)


def test_batchmate_logits_shape_and_rejects_plain_net(split):
    net = sd.SeedMLP.make((0, 1), hidden=(5,), batch_norm=True, dtype=torch.float64)
    out = sp.batchmate_logits(net, split.x_train, split.x_test[:3], 4, 10)
    assert out.shape == (4, 2, 3, 10)
    assert not torch.allclose(out[0], out[1])  # different batch-mates
    plain = sd.SeedMLP.make((0,), hidden=(5,))
    with pytest.raises(ValueError, match="BatchNorm net"):
        sp.batchmate_logits(plain, split.x_train, split.x_test[:3], 4, 10)


def test_sigmoid_slope_matches_expit_derivative(split):
    # Independent reference: scipy's logistic on the plain nn.Sequential model.
    from scipy.special import expit

    models = [ex.make_mlp(hidden=(8, 6), init_std=0.5, seed=s).double() for s in (0, 1)]
    net = sd.SeedMLP.from_models(models)
    net.set_population(split.x_train)
    got = sp.sigmoid_slope(net, split.x_test)
    for k, model in enumerate(models):
        with torch.no_grad():
            z = model[:3](split.x_test).numpy()  # Linear, Sigmoid, Linear
        expected = (expit(z) * (1 - expit(z))).mean() / 0.25
        assert np.isclose(got[k], expected, rtol=1e-12)
    assert (0 < got).all() and (got <= 1).all()


def test_sigmoid_slope_rejects_relu(split):
    net = sd.SeedMLP.make([0], hidden=(4,), activation="relu")
    with pytest.raises(ValueError, match="sigmoid"):
        sp.sigmoid_slope(net, split.x_test.float())


def test_slope_recorder_keeps_early_steps_only(split):
    net = sd.SeedMLP.make([0, 1], hidden=(6,), dtype=torch.float64)
    rec = sp.SlopeRecorder(split.x_test, until=4)
    sd.train_seeds(
        net,
        split,
        steps=6,
        lr=0.5,
        batch_size=20,
        seeds=[0, 1],
        eval_every=2,
        callbacks=[rec],
    )
    assert rec.steps == [2, 4]
    assert rec.mean().shape == (2,)
    assert np.allclose(rec.mean(), (rec.slopes[0] + rec.slopes[1]) / 2)
    with pytest.raises(ValueError, match="no step"):
        sp.SlopeRecorder(split.x_test, until=0).mean()
