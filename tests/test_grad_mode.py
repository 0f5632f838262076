"""Backward in either mode, as torch's, and bnlib.no_grad: what the layers keep.

A numpy layer keeps its input from ``forward`` for one ``backward``: in training
mode the gradient runs through the batch statistics, in eval mode the running
statistics are constants (a frozen BatchNorm, as the pitfalls chapter recommends
for fine-tuning). The saved input is never pickled, deep-copied or put in a state
dict, and inside ``bnlib.no_grad()`` nothing is kept. Checked against torch 2.13 in
float64 with random upstream gradients.
"""

from __future__ import annotations

import copy
import pickle
import threading

import numpy as np
import pytest
import torch

import bnlib

TOL = 1e-10
LAYERS = [
    (bnlib.BatchNorm1d, torch.nn.BatchNorm1d, (7, 3)),
    (bnlib.BatchNorm1d, torch.nn.BatchNorm1d, (4, 3, 5)),
    (bnlib.BatchNorm2d, torch.nn.BatchNorm2d, (3, 3, 2, 4)),
    (bnlib.BatchNorm3d, torch.nn.BatchNorm3d, (2, 3, 2, 2, 3)),
]
CONFIGS = [
    {},
    {"eps": 0.3, "momentum": None},
    {"bias": False},
    {"affine": False},
    {"track_running_stats": False},
]


def _trained_pair(ours_cls, torch_cls, rng, **kwargs):
    """Layers with the same random gamma, beta, after two training batches."""
    ours = ours_cls(3, dtype=np.float64, **kwargs)
    ref = torch_cls(3, dtype=torch.float64, **kwargs)
    with torch.no_grad():
        for name in ("weight", "bias"):
            if getattr(ours, name) is not None:
                value = rng.normal(size=3)
                getattr(ours, name)[...] = value
                getattr(ref, name).copy_(torch.from_numpy(value))
    for step in range(2):
        x = rng.normal(step + 1, 2.0, size=(8, 3))
        ours.train()(x.reshape(8, 3, *([1] * (ours._ranks[0] - 2))))
        ref.train()(torch.from_numpy(x.reshape(8, 3, *([1] * (ours._ranks[0] - 2)))))
    return ours, ref


def _backward_both(ours, ref, x, dy):
    xt = torch.tensor(x, requires_grad=True)
    y_ref = ref(xt)
    y = ours(x)
    y_ref.backward(torch.from_numpy(dy))
    return y, y_ref.detach().numpy(), ours.backward(dy), xt.grad.numpy()


@pytest.mark.parametrize(("ours_cls", "torch_cls", "shape"), LAYERS)
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: str(c) or "default")
def test_eval_mode_backward_matches_torch(rng, ours_cls, torch_cls, shape, config):
    ours, ref = _trained_pair(ours_cls, torch_cls, rng, **config)
    ours.eval()
    ref.eval()
    for _ in range(2):  # the parameter gradients add up, as .grad does
        x, dy = rng.normal(0.5, 3.0, size=shape), rng.normal(size=shape)
        y, y_ref, dx, dx_ref = _backward_both(ours, ref, x, dy)
        np.testing.assert_allclose(y, y_ref, rtol=0, atol=TOL)
        np.testing.assert_allclose(dx, dx_ref, rtol=0, atol=TOL)
        for name in ("weight", "bias"):
            if getattr(ref, name) is not None:
                grad = getattr(ours, f"{name}_grad")
                np.testing.assert_allclose(grad, getattr(ref, name).grad, atol=TOL)


def test_eval_mode_backward_is_not_the_training_one(rng):
    """The two modes give different dx: the eval one has no batch-statistics terms,
    dx = gamma / sqrt(running_var + eps) * dy exactly."""
    bn, _ = _trained_pair(bnlib.BatchNorm1d, torch.nn.BatchNorm1d, rng)
    x, dy = rng.normal(0.0, 5.0, size=(6, 3)), rng.normal(size=(6, 3))
    bn.eval()(x)
    dx = bn.backward(dy)
    np.testing.assert_allclose(
        dx, dy * bn.weight / np.sqrt(bn.running_var + bn.eps), rtol=1e-13
    )
    bn.train()(x)
    assert np.abs(bn.backward(dy) - dx).max() > 0.2


def test_backward_follows_the_mode_of_its_forward(rng):
    """Switching mode between forward and backward changes nothing, as in torch,
    whose graph is fixed at forward time."""
    ours, ref = _trained_pair(bnlib.BatchNorm2d, torch.nn.BatchNorm2d, rng)
    x, dy = rng.normal(size=(3, 3, 2, 2)), rng.normal(size=(3, 3, 2, 2))
    xt = torch.tensor(x, requires_grad=True)
    y_ref = ref.eval()(xt)
    ours.eval()(x)
    ours.train()
    ref.train()
    y_ref.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(ours.backward(dy), xt.grad.numpy(), atol=TOL)


def test_eval_backward_uses_the_statistics_of_its_forward(rng):
    """Running statistics moved between forward and backward (here by a state
    dict) do not change the gradient: the forward's values are kept."""
    ours, ref = _trained_pair(bnlib.BatchNorm1d, torch.nn.BatchNorm1d, rng)
    x, dy = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    xt = torch.tensor(x, requires_grad=True)
    ref.eval()(xt).backward(torch.from_numpy(dy))
    ours.eval()(x)
    ours.running_mean += 5.0
    ours.running_var *= 4.0
    np.testing.assert_allclose(ours.backward(dy), xt.grad.numpy(), atol=TOL)
    np.testing.assert_allclose(ours.weight_grad, ref.weight.grad.numpy(), atol=TOL)


@pytest.mark.parametrize("training", [True, False])
def test_backward_uses_the_weight_of_its_forward(rng, training):
    """gamma changed in place between forward and backward (an optimizer step)
    does not change the gradient: the forward's gamma is kept."""
    ours, ref = _trained_pair(bnlib.BatchNorm1d, torch.nn.BatchNorm1d, rng)
    x, dy = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    xt = torch.tensor(x, requires_grad=True)
    ref.train(training)(xt).backward(torch.from_numpy(dy))
    ours.train(training)(x)
    ours.weight *= 3.0
    np.testing.assert_allclose(ours.backward(dy), xt.grad.numpy(), atol=TOL)


def test_renorm_eval_backward_is_batchnorms(rng):
    """In eval mode Batch Renormalization is BatchNorm with running statistics."""
    ours = bnlib.BatchRenorm1d(3, dtype=np.float64)
    for step in range(3):
        ours(rng.normal(step, 2.0, size=(8, 3)))
    ref = torch.nn.BatchNorm1d(3, dtype=torch.float64).eval()
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    x, dy = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    _, _, dx, dx_ref = _backward_both(ours.eval(), ref, x, dy)
    np.testing.assert_allclose(dx, dx_ref, atol=TOL)


# -- no_grad --

FAMILY = [
    lambda: bnlib.BatchNorm1d(3, dtype=np.float64),
    lambda: bnlib.BatchRenorm1d(3, dtype=np.float64),
    lambda: bnlib.InstanceNorm1d(3, dtype=np.float64),
    lambda: bnlib.LayerNorm(4, dtype=np.float64),
    lambda: bnlib.GroupNorm(1, 3, dtype=np.float64),
    lambda: bnlib.RMSNorm(4, dtype=np.float64),
]


@pytest.mark.parametrize("make", FAMILY, ids=lambda f: type(f()).__name__)
@pytest.mark.parametrize("training", [True, False])
def test_no_grad_keeps_nothing_and_backward_says_why(make, training):
    layer = make().train(training)
    x = np.random.default_rng(0).normal(size=(5, 3, 4))
    with bnlib.no_grad():
        assert not bnlib.is_grad_enabled()
        y = layer(x)
        assert layer._saved is None
    assert bnlib.is_grad_enabled()
    with pytest.raises(RuntimeError, match=r"no_grad"):
        layer.backward(np.ones_like(y))
    layer(x)  # outside the block the input is kept again
    assert layer._saved is not None


def test_no_grad_still_updates_running_statistics_like_torch(rng):
    ours, ref = _trained_pair(bnlib.BatchNorm1d, torch.nn.BatchNorm1d, rng)
    x = rng.normal(3.0, 2.0, size=(6, 3))
    with bnlib.no_grad(), torch.no_grad():
        y = ours(x)
        y_ref = ref(torch.from_numpy(x))
    np.testing.assert_allclose(y, y_ref.numpy(), atol=TOL)
    for key, value in ref.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[key], value.numpy(), atol=TOL)


def test_no_grad_nests_restores_and_decorates():
    @bnlib.no_grad()
    def infer() -> bool:
        return bnlib.is_grad_enabled()

    with bnlib.no_grad():
        with bnlib.no_grad():
            pass
        assert not bnlib.is_grad_enabled()
    assert bnlib.is_grad_enabled()
    assert infer() is False
    assert bnlib.is_grad_enabled()
    with pytest.raises(KeyError), bnlib.no_grad():
        raise KeyError("left by an exception")
    assert bnlib.is_grad_enabled()


def test_no_grad_is_per_thread():
    seen: list[bool] = []
    with bnlib.no_grad():
        worker = threading.Thread(target=lambda: seen.append(bnlib.is_grad_enabled()))
        worker.start()
        worker.join()
    assert seen == [True]


# -- what travels with a layer --


@pytest.mark.parametrize("make", FAMILY, ids=lambda f: type(f()).__name__)
@pytest.mark.parametrize("training", [True, False])
def test_saved_input_never_pickled_copied_or_in_state_dict(make, training):
    layer = make().train(training)
    empty_size = len(pickle.dumps(layer))
    x = np.random.default_rng(1).normal(size=(64, 3, 4))
    layer(x)
    assert layer._saved is not None
    assert len(pickle.dumps(layer)) < empty_size + 200  # x is 6 kB
    for twin in (pickle.loads(pickle.dumps(layer)), copy.deepcopy(layer)):
        assert twin._saved is None
        with pytest.raises(RuntimeError, match="needs a forward"):
            twin.backward(np.ones_like(x))
        twin(x)  # the twin has a lock and a store of its own
        assert twin._saved is not None
    assert all(v.nbytes < x.nbytes for v in layer.state_dict().values())
    layer.backward(np.ones_like(x))  # the original still has its input
