"""The shared experiment kit: data split, MLP builder, training loop, trackers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bnbook.lab import experiments as ex
from bnlib.torch import batchnorm as torch_bn


@pytest.fixture(scope="module")
def split():
    return ex.load_digits_split(seed=3)


def test_load_digits_split_is_a_partition(split):
    assert split.x_train.shape == (1258, 64) and split.x_test.shape == (539, 64)
    assert split.x_train.dtype == torch.float32 and split.y_train.dtype == torch.int64
    assert 0 <= float(split.x_train.min()) and float(split.x_train.max()) <= 1
    rows = {tuple(r) for r in torch.cat([split.x_train, split.x_test]).tolist()}
    assert len(rows) > 1700  # a few digits repeat exactly, but no row is lost


def test_load_digits_split_is_deterministic_and_seeded():
    a, b, c = (ex.load_digits_split(seed=s) for s in (1, 1, 2))
    assert torch.equal(a.x_train, b.x_train)
    assert not torch.equal(a.x_train, c.x_train)


def test_load_digits_split_n_train_keeps_a_prefix(split):
    small = ex.load_digits_split(seed=3, n_train=200)
    assert torch.equal(small.x_train, split.x_train[:200])
    assert torch.equal(small.x_test, split.x_test)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"test_fraction": 1.0}, "test_fraction"), ({"n_train": 1}, "n_train")],
)
def test_load_digits_split_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ex.load_digits_split(**kwargs)


def test_make_mlp_structure():
    plain = ex.make_mlp(hidden=(5, 7), dropout=0.5)
    kinds = [type(m).__name__ for m in plain]
    assert kinds == [
        "Linear",
        "Sigmoid",
        "Dropout",
        "Linear",
        "Sigmoid",
        "Dropout",
        "Linear",
    ]
    bn = ex.make_mlp(hidden=(5, 7), batch_norm=True, activation="relu")
    assert isinstance(bn[1], torch_bn.BatchNorm1d) and bn[0].bias is None
    assert bn[-1].out_features == 10


def test_make_mlp_gaussian_init_has_requested_std():
    model = ex.make_mlp(hidden=(400,), init_std=0.05, seed=1)
    w = model[0].weight.detach().double()
    assert abs(w.std().item() - 0.05) < 0.002
    assert float(model[0].bias.detach().abs().max()) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"activation": "gelu"}, "activation"), ({"dropout": 1.0}, "dropout")],
)
def test_make_mlp_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ex.make_mlp(**kwargs)


def test_hidden_preactivations_are_activation_inputs(split):
    model = ex.make_mlp(hidden=(6, 4), batch_norm=True).eval()
    z = ex.hidden_preactivations(model, split.x_test[:10])
    assert [t.shape for t in z] == [(10, 6), (10, 4)]
    with torch.no_grad():
        expected = model[1](model[0](split.x_test[:10]))
    torch.testing.assert_close(z[0], expected)


def test_percentile_tracker_records_percentiles(split):
    model = ex.make_mlp(hidden=(8, 8)).eval()
    tracker = ex.PercentileTracker(split.x_test, layer=1, unit=3, q=(10.0, 90.0))
    tracker(0, model)
    tracker(5, model)
    z = ex.hidden_preactivations(model, split.x_test)[1][:, 3].double().numpy()
    np.testing.assert_allclose(tracker.as_array()[0], np.percentile(z, [10, 90]))
    assert tracker.steps == [0, 5] and tracker.as_array().shape == (2, 2)


def test_train_learns_digits_and_is_deterministic(split):
    runs = []
    for _ in range(2):
        model = ex.make_mlp(hidden=(32,), batch_norm=True, seed=4)
        runs.append(ex.train(model, split, steps=40, lr=0.5, eval_every=20, seed=4))
    h = runs[0]
    assert h.steps == [0, 20, 40]
    assert h.test_acc[-1] > 0.85 > h.test_acc[0]
    assert runs[0].test_acc == runs[1].test_acc
    assert runs[0].train_loss == runs[1].train_loss


def test_train_reports_divergence(split):
    # Logistic regression with an absurd step: the logits overflow float32.
    model = ex.make_mlp(hidden=())
    h = ex.train(model, split, steps=200, lr=1e38, eval_every=10)
    assert h.diverged and h.steps[-1] < 200


def test_train_calls_callbacks_at_each_evaluation(split):
    calls = []
    model = ex.make_mlp(hidden=(8,))
    ex.train(
        model,
        split,
        steps=20,
        lr=0.1,
        eval_every=10,
        callbacks=[lambda step, m: calls.append((step, m.training))],
    )
    assert calls == [(0, True), (10, True), (20, True)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"steps": 0}, "steps"), ({"batch_size": 1}, "batch_size")],
)
def test_train_rejects_bad_arguments(split, kwargs, message):
    args = {"steps": 10, "lr": 0.1} | kwargs
    with pytest.raises(ValueError, match=message):
        ex.train(ex.make_mlp(hidden=(4,)), split, **args)


def test_every_calls_only_at_multiples_of_the_period():
    calls = []
    callback = ex.every(20, lambda step, model: calls.append(step))
    for step in range(0, 101, 10):
        callback(step, None)
    assert calls == [0, 20, 40, 60, 80, 100]


@pytest.mark.parametrize(
    ("period", "callback", "error"),
    [
        (0, print, ValueError),
        (2.0, print, ValueError),
        (True, print, ValueError),
        (2, "not callable", TypeError),
    ],
)
def test_every_rejects_bad_arguments(period, callback, error):
    with pytest.raises(error, match="period|callback"):
        ex.every(period, callback)


def test_first_step_above_finds_the_first_crossing():
    h = ex.History(steps=[0, 10, 20, 30], test_acc=[0.1, 0.95, 0.5, 0.99])
    assert ex.first_step_above(h, 0.9) == 10
    assert ex.first_step_above(h, 0.99) == 30
    assert ex.first_step_above(h, 0.1) == 0
    assert ex.first_step_above(h, 0.999) is None


@pytest.mark.parametrize("level", [-0.1, 1.5])
def test_first_step_above_rejects_a_level_outside_0_1(level):
    with pytest.raises(ValueError, match="level"):
        ex.first_step_above(ex.History(), level)


def test_percentile_range_uses_the_records_after_a_step(split):
    tracker = ex.PercentileTracker(split.x_test[:5], q=(10.0, 50.0, 90.0))
    tracker.steps = [0, 10, 20, 30]
    tracker.values = [np.array([0.0, m, 9.0]) for m in (5.0, -3.0, 1.0, 2.5)]
    assert ex.percentile_range(tracker) == 8.0
    assert ex.percentile_range(tracker, after=20) == 1.5
    assert ex.percentile_range(tracker, column=0, after=10) == 0.0
    assert ex.percentile_range(tracker, column=-1) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"column": 3}, "column"), ({"after": 31}, "no record")]
)
def test_percentile_range_rejects_bad_arguments(split, kwargs, message):
    tracker = ex.PercentileTracker(split.x_test[:5])
    tracker.steps, tracker.values = [0, 30], [np.zeros(3), np.ones(3)]
    with pytest.raises(ValueError, match=message):
        ex.percentile_range(tracker, **kwargs)
