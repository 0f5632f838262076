"""bnlib.BatchNorm1d/2d/3d against torch.nn.BatchNorm*d over several steps (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import bnlib

TOL = 1e-10
CASES = [
    (bnlib.BatchNorm1d, torch.nn.BatchNorm1d, (10, 4)),
    (bnlib.BatchNorm1d, torch.nn.BatchNorm1d, (6, 4, 5)),
    (bnlib.BatchNorm2d, torch.nn.BatchNorm2d, (5, 4, 3, 6)),
    (bnlib.BatchNorm3d, torch.nn.BatchNorm3d, (3, 4, 2, 3, 4)),
]
CONFIGS = [
    {},
    {"momentum": None},
    {"momentum": 0.5, "eps": 1e-3},
    {"affine": False},
    {"track_running_stats": False},
    {"affine": False, "track_running_stats": False, "momentum": None},
]


def _pair(ours_cls, torch_cls, rng, **kwargs):
    c = 4
    ours = ours_cls(c, dtype=np.float64, **kwargs)
    ref = torch_cls(c, dtype=torch.float64, **kwargs)
    if ours.affine:
        w, b = rng.normal(size=c), rng.normal(size=c)
        ours.weight[...] = w
        ours.bias[...] = b
        with torch.no_grad():
            ref.weight.copy_(torch.tensor(w))
            ref.bias.copy_(torch.tensor(b))
    return ours, ref


def _step_and_compare(ours, ref, x, dy):
    """One forward (and, in training, backward) of both layers; the gradients of
    gamma and beta accumulate over the steps in both, as ``.grad`` does."""
    xt = torch.tensor(x, requires_grad=True)
    y_ref = ref(xt)
    y = ours(x)
    np.testing.assert_allclose(y, y_ref.detach().numpy(), rtol=0, atol=TOL)
    if ours.training:
        y_ref.backward(torch.tensor(dy))
        dx = ours.backward(dy)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=0, atol=TOL)
    if ours.affine:
        np.testing.assert_allclose(ours.weight_grad, ref.weight.grad.numpy(), atol=TOL)
        np.testing.assert_allclose(ours.bias_grad, ref.bias.grad.numpy(), atol=TOL)
    for key, value in ref.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[key], value.numpy(), atol=TOL)


@pytest.mark.parametrize(("ours_cls", "torch_cls", "shape"), CASES)
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: str(c) or "default")
def test_module_train_then_eval_matches_torch(rng, ours_cls, torch_cls, shape, config):
    ours, ref = _pair(ours_cls, torch_cls, rng, **config)
    for step in range(4):
        x = rng.normal(step, 1 + step, size=shape)
        _step_and_compare(ours, ref, x, rng.normal(size=shape))
    ours.eval()
    ref.eval()
    for _ in range(2):
        _step_and_compare(ours, ref, rng.normal(size=shape), rng.normal(size=shape))


def test_module_momentum_none_is_cumulative_average(rng):
    bn = bnlib.BatchNorm1d(3, momentum=None, dtype=np.float64)
    batches = [rng.normal(i, 1, size=(8, 3)) for i in range(5)]
    for x in batches:
        bn(x)
    np.testing.assert_allclose(
        bn.running_mean, np.mean([x.mean(0) for x in batches], 0)
    )
    np.testing.assert_allclose(
        bn.running_var, np.mean([x.var(0, ddof=1) for x in batches], 0)
    )
    assert int(bn.num_batches_tracked) == 5


def test_module_state_dict_from_torch_gives_same_outputs(rng):
    ref = torch.nn.BatchNorm2d(3, dtype=torch.float64)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(rng.normal(size=3)))
        ref.bias.copy_(torch.tensor(rng.normal(size=3)))
    for _ in range(3):
        ref(torch.tensor(rng.normal(2, 3, size=(4, 3, 5, 5))))
    ours = bnlib.BatchNorm2d(3, dtype=np.float64)
    ours.load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()})
    assert int(ours.num_batches_tracked) == 3
    x = rng.normal(size=(2, 3, 4, 4))
    ours.eval()
    ref.eval()
    np.testing.assert_allclose(ours(x), ref(torch.tensor(x)).detach().numpy(), atol=TOL)


def test_module_state_dict_to_torch_gives_same_outputs(rng):
    ours = bnlib.BatchNorm2d(3, dtype=np.float64)
    ours.weight[...] = rng.normal(size=3)
    for _ in range(3):
        ours(rng.normal(-1, 2, size=(4, 3, 5, 5)))
    ref = torch.nn.BatchNorm2d(3, dtype=torch.float64)
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    x = rng.normal(size=(2, 3, 4, 4))
    ours.eval()
    ref.eval()
    np.testing.assert_allclose(ours(x), ref(torch.tensor(x)).detach().numpy(), atol=TOL)
    assert int(ref.num_batches_tracked) == 3


def test_module_state_dict_keys_follow_torch():
    for kwargs in [{}, {"affine": False}, {"track_running_stats": False}]:
        ours = bnlib.BatchNorm1d(3, **kwargs)
        ref = torch.nn.BatchNorm1d(3, **kwargs)
        assert list(ours.state_dict()) == list(ref.state_dict())


def test_module_state_dict_returns_copies():
    bn = bnlib.BatchNorm1d(3)
    bn.state_dict()["running_mean"][...] = 5
    np.testing.assert_array_equal(bn.running_mean, 0)


def test_module_attributes_match_torch_defaults():
    bn = bnlib.BatchNorm2d(3)
    assert bn.training is True
    assert bn.weight.dtype == np.float32
    np.testing.assert_array_equal(bn.weight, 1)
    np.testing.assert_array_equal(bn.bias, 0)
    np.testing.assert_array_equal(bn.running_var, 1)
    assert bn.num_batches_tracked.dtype == np.int64
    plain = bnlib.BatchNorm2d(3, affine=False, track_running_stats=False)
    assert plain.weight is plain.bias is None
    assert plain.running_mean is plain.running_var is plain.num_batches_tracked is None


def test_module_train_and_eval_return_self():
    bn = bnlib.BatchNorm1d(2)
    assert bn.eval() is bn and bn.training is False
    assert bn.train() is bn and bn.training is True
    assert bn.train(False) is bn and bn.training is False


def test_module_resets(rng):
    bn = bnlib.BatchNorm1d(3)
    bn.weight[...] = 2
    bn(rng.normal(3, 2, size=(5, 3)).astype(np.float32))
    bn.reset_running_stats()
    np.testing.assert_array_equal(bn.running_mean, 0)
    np.testing.assert_array_equal(bn.running_var, 1)
    assert int(bn.num_batches_tracked) == 0
    np.testing.assert_array_equal(bn.weight, 2)
    bn.reset_parameters()
    np.testing.assert_array_equal(bn.weight, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_module_low_precision_matches_torch_float64(rng, dtype):
    """A float32 layer on float32 (or float16) input: output and gradients in the
    input's dtype, within its rounding of torch's float64 values (a random upstream
    gradient: an all-ones one makes dx zero whatever the code does)."""
    bn = bnlib.BatchNorm1d(3)
    ref = torch.nn.BatchNorm1d(3, dtype=torch.float64)
    w = rng.normal(size=3).astype(np.float32)
    bn.weight[...] = w
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(w.astype(np.float64)))
    x = rng.normal(3, 2, size=(5, 3)).astype(dtype)
    dy = rng.normal(size=(5, 3)).astype(dtype)
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    y_ref = ref(xt)
    y_ref.backward(torch.from_numpy(dy.astype(np.float64)))
    y, dx = bn(x), bn.backward(dy)
    assert y.dtype == dx.dtype == dtype
    assert bn.weight_grad.dtype == np.float32
    tol = 4e-3 if dtype == np.float16 else 4e-6
    pairs = [
        (y, y_ref.detach()),
        (dx, xt.grad),
        (bn.weight_grad, ref.weight.grad),
        (bn.bias_grad, ref.bias.grad),
        (bn.running_var, ref.running_var),
    ]
    for ours, want in pairs:
        want = want.numpy()
        np.testing.assert_allclose(ours, want, rtol=0, atol=tol * np.abs(want).max())


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"momentum": None, "affine": False}, {"eps": 1e-3, "bias": False}],
    ids=str,
)
def test_module_repr_is_torchs(kwargs):
    for ours_cls, torch_cls, _ in CASES:
        assert repr(ours_cls(3, **kwargs)) == repr(torch_cls(3, **kwargs))


def test_load_state_dict_without_num_batches_tracked_keeps_count_like_torch(rng):
    sd = {
        "weight": rng.normal(size=3),
        "bias": rng.normal(size=3),
        "running_mean": rng.normal(size=3),
        "running_var": rng.uniform(1, 2, 3),
    }
    ref = torch.nn.BatchNorm1d(3, dtype=torch.float64)
    ref(torch.tensor(rng.normal(size=(4, 3))))
    ref.load_state_dict({k: torch.tensor(v) for k, v in sd.items()})
    ours = bnlib.BatchNorm1d(3, dtype=np.float64)
    ours(rng.normal(size=(4, 3)))
    ours.load_state_dict(sd)
    assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked) == 1
    np.testing.assert_array_equal(ours.running_var, ref.running_var.numpy())
