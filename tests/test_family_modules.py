"""LayerNorm, GroupNorm, RMSNorm and InstanceNorm1d/2d/3d layers against torch's
(float64, random upstream gradients, several steps, then eval), with state dicts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import bnlib

TOL = 1e-10

RUNNING = {"affine": True, "track_running_stats": True}
CASES = [
    ("LayerNorm", (5,), {}, (6, 5)),
    ("LayerNorm", ((3, 4),), {"eps": 1e-3}, (2, 5, 3, 4)),
    ("LayerNorm", (4,), {"bias": False}, (3, 4)),
    ("LayerNorm", (4,), {"elementwise_affine": False}, (3, 2, 4)),
    ("GroupNorm", (2, 6), {}, (4, 6, 5)),
    ("GroupNorm", (3, 6), {"affine": False}, (2, 6, 3, 2)),
    ("RMSNorm", (5,), {}, (6, 5)),
    ("RMSNorm", ((2, 3),), {"eps": 1e-4}, (4, 2, 3)),
    ("RMSNorm", (3,), {"elementwise_affine": False}, (2, 3)),
    ("InstanceNorm1d", (4,), {}, (3, 4, 6)),
    ("InstanceNorm1d", (4,), RUNNING, (3, 4, 6)),
    ("InstanceNorm1d", (4,), {"affine": True}, (4, 6)),  # unbatched
    ("InstanceNorm2d", (3,), {"track_running_stats": True, "momentum": 0.5},
     (2, 3, 4, 5)),
    ("InstanceNorm2d", (3,), {**RUNNING, "momentum": None}, (2, 3, 4, 5)),
    ("InstanceNorm3d", (2,), RUNNING, (2, 2, 3, 2, 4)),
]  # fmt: skip


def _pair(name, args, kwargs, rng):
    ours = getattr(bnlib, name)(*args, dtype=np.float64, **kwargs)
    ref = getattr(torch.nn, name)(*args, dtype=torch.float64, **kwargs)
    for key, value in ref.state_dict().items():
        if key in ("weight", "bias"):
            new = rng.normal(size=tuple(value.shape))
            getattr(ours, key)[...] = new
            with torch.no_grad():
                getattr(ref, key).copy_(torch.tensor(new))
    return ours, ref


def _step(ours, ref, x, dy):
    ours.zero_grad()  # torch's grads are set to None below
    xt = torch.tensor(x, requires_grad=True)
    y_ref = ref(xt)
    y_ref.backward(torch.tensor(dy))
    np.testing.assert_allclose(ours(x), y_ref.detach().numpy(), rtol=0, atol=TOL)
    np.testing.assert_allclose(ours.backward(dy), xt.grad.numpy(), rtol=0, atol=TOL)
    for name in ("weight", "bias"):
        p = getattr(ref, name, None)
        if p is not None:
            got = getattr(ours, f"{name}_grad")
            np.testing.assert_allclose(got, p.grad.numpy(), rtol=0, atol=TOL)
            p.grad = None
    state, ref_state = ours.state_dict(), ref.state_dict()
    assert list(state) == list(ref_state)
    for key, value in ref_state.items():
        np.testing.assert_allclose(state[key], value.numpy(), rtol=0, atol=TOL)


@pytest.mark.parametrize(("name", "args", "kwargs", "shape"), CASES)
def test_layer_train_then_eval_matches_torch(rng, name, args, kwargs, shape):
    ours, ref = _pair(name, args, kwargs, rng)
    for step in range(3):
        x = rng.normal(step, 1 + step, size=shape)
        _step(ours, ref, x, rng.normal(size=shape))
    ours.eval()
    ref.eval()
    _step(ours, ref, rng.normal(size=shape), rng.normal(size=shape))


@pytest.mark.parametrize(("name", "args", "kwargs", "shape"), CASES)
def test_layer_load_state_dict_from_torch(rng, name, args, kwargs, shape):
    ours, ref = _pair(name, args, kwargs, rng)
    ref.train()
    ref(torch.tensor(rng.normal(size=shape)))  # moves running stats, if any
    fresh = getattr(bnlib, name)(*args, dtype=np.float64, **kwargs)
    fresh.load_state_dict(ref.state_dict())
    for key, value in ref.state_dict().items():
        np.testing.assert_array_equal(fresh.state_dict()[key], value.numpy())


def test_layer_default_dtype_is_float32():
    for layer in (bnlib.LayerNorm(3), bnlib.GroupNorm(1, 3), bnlib.RMSNorm(3),
                  bnlib.InstanceNorm2d(3, affine=True)):  # fmt: skip
        assert layer.weight.dtype == np.float32
        assert layer(np.ones((2, 3, 2, 3), np.float32)).dtype == np.float32


def test_layer_norm_layer_on_float32_input_matches_torch(rng):
    x = rng.normal(size=(4, 6)).astype(np.float32)
    ref = torch.nn.LayerNorm(6)(torch.tensor(x)).detach().numpy()
    np.testing.assert_allclose(bnlib.LayerNorm(6)(x), ref, atol=1e-6)


@pytest.mark.parametrize(
    "name", ["LayerNorm", "GroupNorm", "RMSNorm", "InstanceNorm1d"]
)
def test_layer_grads_accumulate_like_torch_until_zero_grad(rng, name):
    args = {"LayerNorm": (5,), "GroupNorm": (1, 4), "RMSNorm": (5,)}.get(name, (4,))
    kwargs = {"affine": True} if name == "InstanceNorm1d" else {}
    ours, ref = _pair(name, args, kwargs, rng)
    shape = (3, 4, 5)
    for _ in range(2):  # two backward passes, no zeroing in between
        x, dy = rng.normal(size=shape), rng.normal(size=shape)
        ref(torch.tensor(x)).backward(torch.tensor(dy))
        ours(x)
        ours.backward(dy)
    np.testing.assert_allclose(ours.weight_grad, ref.weight.grad.numpy(), atol=TOL)
    ours.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(ours.weight_grad, 0)
    ours.zero_grad()
    assert ours.weight_grad is None


def test_layer_mixed_dtype_raises_like_torch():
    x = np.ones((2, 4, 5), np.float64)
    for layer in (bnlib.LayerNorm(5), bnlib.GroupNorm(2, 4), bnlib.RMSNorm(5),
                  bnlib.InstanceNorm1d(4, affine=True)):  # fmt: skip
        with pytest.raises(TypeError, match="mixed dtype"):
            layer(x)
    assert bnlib.LayerNorm(5, elementwise_affine=False)(x).dtype == np.float64
    assert bnlib.LayerNorm(5)(x.astype(np.float16)).dtype == np.float16


def test_layer_accepts_torch_dtype_and_cpu_device():
    layer = bnlib.GroupNorm(2, 4, device="cpu", dtype=torch.float64)
    assert layer.weight.dtype == np.float64
    with pytest.raises(ValueError, match="CPU"):
        bnlib.LayerNorm(3, device="cuda")
