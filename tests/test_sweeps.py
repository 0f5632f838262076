"""bnbook.lab.sweeps: the outcome rule, contiguity, and the cached sweep runner."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bnbook.lab import experiments as ex
from bnbook.lab import sweeps as sw

LN10 = math.log(10)


@pytest.fixture(scope="module")
def split():
    return ex.load_digits_split(seed=0)


@pytest.fixture(scope="module")
def sweep(split):
    torch.set_num_threads(1)
    return sw.Sweep(split, steps=3, batch_size=50, seed=2)


@pytest.mark.parametrize(
    ("loss", "acc", "expected"),
    [
        (0.1, 0.95, "trained"),
        (0.1, 0.5, "trained"),  # stall_acc itself is not a stall
        (0.1, 0.49, "stalled"),
        (LN10, 0.1, "stalled"),  # guessing: stalled, not diverged
        (2 * LN10 * (1 - 1e-9), 0.3, "stalled"),
        (2 * LN10 * (1 + 1e-9), 0.3, "diverged"),
        (2 * LN10 * (1 + 1e-9), 0.99, "diverged"),  # the loss rule comes first
        (math.inf, 0.9, "diverged"),
        (math.nan, 0.9, "diverged"),
    ],
)
def test_outcome_follows_the_stated_rule(loss, acc, expected):
    assert sw.outcome(loss, acc) == expected


def test_outcome_rule_constants_are_keywords():
    assert sw.outcome(5.0, 0.9) == "diverged"
    assert sw.outcome(5.0, 0.9, diverge_factor=3.0) == "trained"
    assert sw.outcome(5.0, 0.9, n_classes=100) == "trained"  # 2 ln 100 > 5
    assert sw.outcome(0.1, 0.9, stall_acc=0.95) == "stalled"
    assert sw.outcome(np.float32(0.1), np.float64(0.9)) == "trained"


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (["stalled", "trained", "trained", "diverged"], True),
        (["trained"], True),
        (("trained", "trained", "diverged", "diverged"), True),
        (["trained", "stalled", "trained"], False),
        (["trained", "diverged", "diverged", "trained"], False),
        (["stalled", "diverged"], False),
        ([], False),
    ],
)
def test_is_contiguous_finds_one_unbroken_block(labels, expected):
    assert sw.is_contiguous(labels) is expected


def test_is_contiguous_checks_any_target():
    labels = ["diverged", "trained", "diverged"]
    assert sw.is_contiguous(labels, "trained")
    assert not sw.is_contiguous(labels, "diverged")


def test_sweep_run_measures_the_final_weights_independently(sweep, split):
    run = sweep.run(True, 0.5, 0.3)
    model = run.model.eval()
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(model(split.x_train), split.y_train)
        predictions = model(split.x_test).argmax(dim=1).numpy()
    assert run.final_loss == pytest.approx(loss.item(), rel=1e-6)
    assert run.test_acc == pytest.approx(np.mean(predictions == split.y_test.numpy()))
    assert run.outcome() == sw.outcome(run.final_loss, run.test_acc)


def test_sweep_run_weight_ratios_match_a_fresh_network(sweep):
    run = sweep.run(False, 1.0, 0.3)
    start = ex.make_mlp(batch_norm=False, init_std=0.3, seed=2)
    linear = [i for i, m in enumerate(start) if isinstance(m, torch.nn.Linear)]
    w0 = [start[i].weight.detach().double().numpy() for i in linear]
    w1 = [run.model[i].weight.detach().double().numpy() for i in linear]
    pairs = list(zip(w0, w1, strict=True))
    growth = [np.linalg.norm(b) / np.linalg.norm(a) for a, b in pairs]
    change = [np.linalg.norm(b - a) / np.linalg.norm(a) for a, b in pairs]
    np.testing.assert_allclose(run.weight_growth, growth, rtol=1e-6)
    np.testing.assert_allclose(run.weight_change, change, rtol=1e-6)
    assert np.all(run.weight_change > 0)  # the run did train


def test_sweep_run_is_the_documented_training_run(sweep, split):
    run = sweep.run(True, 0.2, 1.0)
    model = ex.make_mlp(batch_norm=True, init_std=1.0, seed=2)
    history = ex.train(model, split, steps=3, lr=0.2, batch_size=50, seed=2)
    assert run.history.steps == [0, 3]
    assert run.history.train_loss == [history.train_loss[0], history.train_loss[-1]]
    for a, b in zip(run.model.parameters(), model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_sweep_run_caches_each_setting(sweep):
    first = sweep.run(False, 1, 0.3)  # int and float learning rates are one key
    assert sweep.run(False, 1.0, 0.3) is first
    assert sweep.run(True, 1.0, 0.3) is not first


def test_sweep_run_stopped_on_a_nonfinite_loss_is_diverged(split):
    run = sw.Sweep(split, steps=5).run(False, 1e38, 1.0)
    assert run.history.diverged and run.history.steps == [0]
    assert run.final_loss == math.inf and run.outcome() == "diverged"
    assert run.test_acc == ex.accuracy(run.model, split.x_test, split.y_test)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: sw.outcome("1.0", 0.5), TypeError, "final_loss"),
        (lambda: sw.outcome(1.0, True), TypeError, "test_acc"),
        (lambda: sw.outcome(1.0, 1.5), ValueError, "test_acc"),
        (lambda: sw.outcome(1.0, 0.5, diverge_factor=0), ValueError, "diverge"),
        (lambda: sw.outcome(1.0, 0.5, stall_acc=-0.1), ValueError, "stall_acc"),
        (lambda: sw.outcome(1.0, 0.5, stall_acc=None), TypeError, "stall_acc"),
        (lambda: sw.outcome(1.0, 0.5, n_classes=1), ValueError, "n_classes"),
        (lambda: sw.outcome(1.0, 0.5, n_classes=10.0), TypeError, "n_classes"),
        (lambda: sw.is_contiguous("trained"), TypeError, "labels"),
        (lambda: sw.is_contiguous([1, 2]), TypeError, "labels"),
    ],
)
def test_outcome_and_is_contiguous_reject_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"steps": 0}, ValueError, "steps"),
        ({"steps": 2.0}, TypeError, "steps"),
        ({"steps": 2, "batch_size": 1}, ValueError, "batch_size"),
    ],
)
def test_sweep_rejects_bad_settings(split, kwargs, error, match):
    with pytest.raises(error, match=match):
        sw.Sweep(split, **kwargs)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((1, 1.0, 0.3), TypeError, "batch_norm"),
        ((True, 0.0, 0.3), ValueError, "positive"),
        ((True, 1.0, -1.0), ValueError, "positive"),
        ((True, "1", 0.3), TypeError, "lr"),
        ((True, 1.0, float("nan")), ValueError, "positive"),
    ],
)
def test_sweep_run_rejects_bad_settings_before_training(sweep, args, error, match):
    before = dict(sweep._cache)
    with pytest.raises(error, match=match):
        sweep.run(*args)
    assert sweep._cache == before
