"""bnbook.lab.seeds: K seeds as one batched model give the numbers of K runs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from bnbook.lab import experiments as ex
from bnbook.lab import regularization as reg
from bnbook.lab import seeds as sd
from bnlib.torch.ghost import to_ghost

SEEDS = (3, 7, 11)


@pytest.fixture(scope="module")
def split():
    s = ex.load_digits_split(n_train=120, seed=0)
    return ex.Split(
        *(t.double() if t.is_floating_point() else t for t in vars(s).values())
    )


def _models(batch_norm, activation="relu", hidden=(12, 8)):
    return [
        ex.make_mlp(
            hidden=hidden, activation=activation, batch_norm=batch_norm, seed=s
        ).double()
        for s in SEEDS
    ]


def _separate(models, split, steps, lr, batch_size, momentum, ghost=None):
    """K ordinary runs: torch SGD on nn.Sequential, batch orders of ex.train."""
    losses = []
    for model, seed, rate in zip(
        models, SEEDS, np.broadcast_to(lr, len(SEEDS)), strict=True
    ):
        if ghost:
            to_ghost(model, ghost)
        opt = torch.optim.SGD(model.parameters(), lr=float(rate), momentum=momentum)
        order = ex._batch_indices(len(split.y_train), batch_size, seed)
        run = []
        for _ in range(steps):
            idx = next(order)
            loss = torch.nn.functional.cross_entropy(
                model(split.x_train[idx]), split.y_train[idx]
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            run.append(loss.item())
        losses.append(run)
    return np.array(losses).T


@pytest.mark.parametrize(
    ("batch_norm", "activation", "momentum", "ghost"),
    [(True, "relu", 0.9, None), (False, "sigmoid", 0.0, None), (True, "tanh", 0.5, 5)],
)
def test_train_seeds_matches_separate_runs(
    split, batch_norm, activation, momentum, ghost
):
    models = _models(batch_norm, activation)
    net = sd.SeedMLP.from_models(copy.deepcopy(models), ghost_size=ghost)
    lr = np.array([0.3, 0.1, 0.05])
    hist = sd.train_seeds(
        net, split, steps=6, lr=lr, batch_size=20, seeds=SEEDS, momentum=momentum
    )
    expected = _separate(models, split, 6, lr, 20, momentum, ghost)
    np.testing.assert_allclose(hist.array("batch_loss"), expected, rtol=1e-10)
    for k, model in enumerate(models):
        stacked = [p[k] for p in net.params]
        for mine, theirs in zip(stacked, sd._ordered(model), strict=True):
            np.testing.assert_allclose(mine.detach(), theirs.detach(), atol=1e-12)
        ref = reg.set_population_stats(copy.deepcopy(model), split.x_train)
        if ghost:
            continue  # ghost layers in eval mode are checked in test_ghost
        acc = ex.accuracy(ref, split.x_test, split.y_test)
        assert hist.test_acc[-1][k] == pytest.approx(acc, abs=1e-12)
        logits = ref(split.x_train)
        loss = torch.nn.functional.cross_entropy(logits, split.y_train).item()
        assert hist.train_loss[-1][k] == pytest.approx(loss, rel=1e-10)


def test_make_equals_from_models():
    a = sd.SeedMLP.make(SEEDS, hidden=(6,), batch_norm=True, dtype=torch.float64)
    b = sd.SeedMLP.from_models(
        [ex.make_mlp(hidden=(6,), batch_norm=True, seed=s).double() for s in SEEDS]
    )
    for p, q in zip(a.params, b.params, strict=True):
        assert torch.equal(p, q)
    assert a.n_slots == 3 and a.n_hidden == 1


def test_forward_stats_rows_normalizes_with_reference_rows(split):
    net = sd.SeedMLP.make((0,), hidden=(7,), batch_norm=True, dtype=torch.float64)
    ref, x = split.x_train[:30], split.x_test[:5]
    net.set_population(ref)
    with torch.no_grad():
        mc = net.forward(torch.cat([ref, x]), training=False, stats_rows=30)[:, 30:]
        plain = net.forward(x, training=False)
    # Population stats use the unbiased variance, stats_rows the biased one.
    z = ref @ net.params[0][0]
    scale = torch.sqrt((z.var(0) + sd.EPS) / (z.var(0, unbiased=False) + sd.EPS))
    net.params[1].data *= scale
    with torch.no_grad():
        again = net.forward(x, training=False)
    net.params[1].data /= scale
    assert not torch.allclose(mc, plain)
    torch.testing.assert_close(mc, again, rtol=1e-10, atol=1e-10)


def test_dropout_slot_with_zero_is_untouched(split):
    x = split.x_train[:20]
    plain = sd.SeedMLP.make((0, 1), hidden=(9,), dtype=torch.float64)
    dropped = sd.SeedMLP.make(
        (0, 1), hidden=(9,), dropout=[0.0, 0.5], dtype=torch.float64
    )
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        a = plain.forward(x, training=True)
        b = dropped.forward(x, training=True, gen=gen)
        c = dropped.forward(x, training=False)
    torch.testing.assert_close(a[0], b[0])
    assert not torch.allclose(a[1], b[1])
    torch.testing.assert_close(a, c)


def test_dropout_keeps_share_and_scales(split):
    model = ex.make_mlp(hidden=(300,), out_features=300, seed=0).double()
    with torch.no_grad():
        model[-1].weight.copy_(torch.eye(300))
        model[-1].bias.zero_()
    net = sd.SeedMLP.from_models([model], dropout=0.25)
    x = split.x_train[:40]
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        hidden = torch.sigmoid(model[0](x))
        out = net.forward(x, training=True, gen=gen)[0]
    kept = out != 0
    assert abs(kept.double().mean().item() - 0.75) < 0.01
    torch.testing.assert_close(out[kept], hidden[kept] / 0.75)


@pytest.mark.parametrize("per", ["batch", "example"])
def test_noise_has_mean_scale_one_and_bounds(per):
    noise = sd.Noise(shift=0.5, scale=0.4, per=per)
    z = torch.randn(
        4, 6, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64
    )
    gen = torch.Generator().manual_seed(3)
    scales, shifts = [], []
    for _ in range(400):
        out = sd._add_noise(z, noise, gen)
        # Two rows determine s and m per unit (batch noise), or 0-input gives m.
        out0 = sd._add_noise(
            torch.zeros_like(z), noise, torch.Generator().manual_seed(9)
        )
        scales.append(out)
        shifts.append(out0)
    m = torch.stack(shifts)
    assert m.abs().max() <= 0.5
    if per == "batch":
        assert torch.allclose(m, m[:, :, :1, :].expand_as(m))
    else:
        assert not torch.allclose(m, m[:, :, :1, :].expand_as(m))
    ones = torch.ones(2000, 1, 1, dtype=torch.float64)
    s = sd._add_noise(ones, sd.Noise(0.0, 0.4, per), torch.Generator().manual_seed(4))
    assert s.min() >= 0.6 and s.max() <= 1.4
    assert abs(s.mean().item() - 1.0) < 0.02


def test_noise_rejects_bad_arguments():
    with pytest.raises(ValueError, match="per must be"):
        sd.Noise(1.0, 0.5, per="unit")
    with pytest.raises(ValueError, match="scale <= 1"):
        sd.Noise(1.0, 1.5)


def test_from_models_rejects_mixed_and_empty():
    with pytest.raises(ValueError, match="at least one"):
        sd.SeedMLP.from_models([])
    mixed = [ex.make_mlp(hidden=(4,)), ex.make_mlp(hidden=(4,), batch_norm=True)]
    with pytest.raises(ValueError, match="share activation"):
        sd.SeedMLP.from_models(mixed)
    with pytest.raises(ValueError, match="dropout must be"):
        sd.SeedMLP.make((0,), hidden=(4,), dropout=1.0)


def test_train_seeds_rejects_bad_arguments(split):
    net = sd.SeedMLP.make((0, 1), hidden=(4,), dtype=torch.float64)
    with pytest.raises(ValueError, match="need 2 seeds"):
        sd.train_seeds(net, split, steps=1, lr=0.1, batch_size=10, seeds=(0,))
    with pytest.raises(ValueError, match="steps >= 1"):
        sd.train_seeds(net, split, steps=0, lr=0.1, batch_size=10, seeds=(0, 1))


def test_evaluation_needs_population(split):
    net = sd.SeedMLP.make((0,), hidden=(4,), batch_norm=True)
    with pytest.raises(RuntimeError, match="set_population"):
        net.forward(split.x_test.float(), training=False)


def test_ghost_size_must_divide_batch():
    with pytest.raises(ValueError, match="multiple of ghost size"):
        sd._ghost_normalize(torch.zeros(1, 10, 2), 3)


def test_noise_apply_is_identity_without_noise():
    z = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(sd.Noise(0.0, 0.0).apply(z), z)
    torch.testing.assert_close(sd.Noise(0.0, 0.0, per="example").apply(z), z)
