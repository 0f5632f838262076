"""torch's contract at the edges where users found gaps, checked against torch 2.13.

Empty batches of GroupNorm and InstanceNorm, their ``bias=`` keyword, parameters and
buffers of a narrower dtype than the input, read-only buffers, a BatchNorm without
state and a channel count other than ``num_features``, ``momentum=True``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import bnlib
from bnlib._checks import MixedDtypeError

TOL = 1e-10


def _normal(shape, seed, loc=0.0, scale=1.0):
    return np.random.default_rng(seed).normal(loc, scale, size=shape)


# -- empty batches --

EMPTY_FAMILY = [
    (
        lambda: bnlib.GroupNorm(2, 4, dtype=np.float64),
        lambda: torch.nn.GroupNorm(2, 4, dtype=torch.float64),
    ),
    (
        lambda: bnlib.InstanceNorm1d(4, dtype=np.float64),
        lambda: torch.nn.InstanceNorm1d(4, dtype=torch.float64),
    ),
    (
        lambda: bnlib.InstanceNorm1d(4, track_running_stats=True, dtype=np.float64),
        lambda: torch.nn.InstanceNorm1d(
            4, track_running_stats=True, dtype=torch.float64
        ),
    ),
]


@pytest.mark.parametrize(("make", "make_ref"), EMPTY_FAMILY)
def test_family_layer_empty_batch_matches_torch(make, make_ref):
    ours, ref = make(), make_ref()
    x = np.zeros((0, 4, 3))
    xt = torch.zeros(0, 4, 3, dtype=torch.float64, requires_grad=True)
    y_ref = ref(xt)
    y_ref.sum().backward()
    y = ours(x)
    assert y.shape == tuple(y_ref.shape) == (0, 4, 3)
    assert ours.backward(np.ones_like(y)).shape == tuple(xt.grad.shape)
    if ref.weight is not None:
        np.testing.assert_array_equal(ours.weight_grad, ref.weight.grad.numpy())
        np.testing.assert_array_equal(ours.bias_grad, ref.bias.grad.numpy())


def test_functional_family_empty_batch_matches_torch():
    x = np.zeros((0, 4, 3))
    xt = torch.from_numpy(x)
    assert bnlib.group_norm(x, 2).shape == tuple(F.group_norm(xt, 2).shape)
    assert bnlib.instance_norm(x).shape == tuple(F.instance_norm(xt).shape)
    for grads in (
        bnlib.group_norm_backward(x, x, 2),
        bnlib.instance_norm_backward(x, x),
    ):
        assert grads[0].shape == (0, 4, 3)
        np.testing.assert_array_equal(grads[1], 0)
        np.testing.assert_array_equal(grads[2], 0)


def test_affine_instance_norm_empty_batch_gives_empty_output_and_zero_grads():
    """A documented difference: torch 2.13 raises IndexError for an affine
    InstanceNorm on an empty batch; bnlib returns the empty output, zero
    gradients, and leaves the running statistics, as its batch_norm does."""
    with pytest.raises(IndexError):
        torch.nn.InstanceNorm1d(4, affine=True)(torch.zeros(0, 4, 3))
    layer = bnlib.InstanceNorm1d(4, affine=True, track_running_stats=True)
    before = layer.state_dict()
    y = layer(np.zeros((0, 4, 3), np.float32))
    assert y.shape == (0, 4, 3)
    assert layer.backward(y).shape == (0, 4, 3)
    np.testing.assert_array_equal(layer.weight_grad, 0)
    np.testing.assert_array_equal(layer.bias_grad, 0)
    for key, value in before.items():
        np.testing.assert_array_equal(layer.state_dict()[key], value)


# -- bias= --


@pytest.mark.parametrize(
    ("ours", "ref"),
    [
        (bnlib.GroupNorm(2, 4, bias=False), torch.nn.GroupNorm(2, 4, bias=False)),
        (
            bnlib.InstanceNorm2d(4, affine=True, bias=False),
            torch.nn.InstanceNorm2d(4, affine=True, bias=False),
        ),
        (bnlib.GroupNorm(2, 4, affine=False), torch.nn.GroupNorm(2, 4, affine=False)),
    ],
    ids=repr,
)
def test_family_bias_false_matches_torch(ours, ref):
    assert repr(ours) == repr(ref)
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert ours.bias is None
    if ours.weight is None:
        return
    ours = type(ours)(*_args(ours), dtype=np.float64, bias=False)
    ref = ref.double()
    w = _normal(4, 1)
    ours.weight[...] = w
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(w))
    x, dy = _normal((3, 4, 2, 5), 2, 1.0, 2.0), _normal((3, 4, 2, 5), 3)
    xt = torch.tensor(x, requires_grad=True)
    y_ref = ref(xt)
    y_ref.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(ours(x), y_ref.detach().numpy(), atol=TOL)
    np.testing.assert_allclose(ours.backward(dy), xt.grad.numpy(), atol=TOL)
    np.testing.assert_allclose(ours.weight_grad, ref.weight.grad.numpy(), atol=TOL)
    assert ours.bias_grad is None


def _args(layer):
    if isinstance(layer, bnlib.GroupNorm):
        return (layer.num_groups, layer.num_channels, layer.eps, layer.affine)
    return (layer.num_features, layer.eps, layer.momentum, layer.affine)


# -- dtypes --


def _buffers(dtype):
    return np.zeros(3, dtype), np.ones(3, dtype)


def test_batch_norm_float64_input_float32_buffers_raises_like_torch():
    x = _normal((4, 3), 0, 2.0)
    for training in (True, False):
        rm, rv = _buffers(np.float32)
        with pytest.raises(RuntimeError, match="mixed dtype"):
            F.batch_norm(torch.from_numpy(x), *map(torch.from_numpy, (rm, rv)),
                         training=training)  # fmt: skip
        with pytest.raises(MixedDtypeError, match="running_mean is float32"):
            bnlib.batch_norm(x, rm, rv, training=training)
        np.testing.assert_array_equal(rm, 0)
        np.testing.assert_array_equal(rv, 1)


@pytest.mark.parametrize("name", ["weight", "bias"])
def test_narrower_affine_parameters_raise_like_torch(name):
    x = _normal((4, 4, 3), 0)
    narrow = {name: np.ones(4, np.float32)}
    t_narrow = {name: torch.ones(4)}
    xt = torch.from_numpy(x)
    calls = [
        (lambda: bnlib.batch_norm(x, None, None, training=True, **narrow),
         lambda: F.batch_norm(xt, None, None, training=True, **t_narrow)),
        (lambda: bnlib.layer_norm(x, 3, **_last(narrow, 3)),
         lambda: F.layer_norm(xt, (3,), **_last(t_narrow, 3))),
        (lambda: bnlib.group_norm(x, 2, **narrow),
         lambda: F.group_norm(xt, 2, **t_narrow)),
        (lambda: bnlib.instance_norm(x, **narrow),
         lambda: F.instance_norm(xt, **t_narrow)),
    ]  # fmt: skip
    for ours, ref in calls:
        with pytest.raises(RuntimeError, match="mixed dtype"):
            ref()
        with pytest.raises(MixedDtypeError, match=f"{name} is float32"):
            ours()


def _last(params, n):
    return {k: v[:n] for k, v in params.items()}


def test_wider_parameters_are_used_in_the_input_dtype():
    """A documented difference: torch raises for float32 input with float64 weight
    or buffers; bnlib uses them in the input's dtype (nothing is lost)."""
    x = _normal((6, 3), 0, 1.0, 2.0).astype(np.float32)
    w = _normal(3, 1)
    with pytest.raises(RuntimeError, match="mixed dtype"):
        F.batch_norm(torch.from_numpy(x), None, None, torch.from_numpy(w),
                     training=True)  # fmt: skip
    y_wide = bnlib.batch_norm(x, *_buffers(np.float64), w, training=True)
    y_same = bnlib.batch_norm(x, *_buffers(np.float32), w.astype(np.float32),
                              training=True)  # fmt: skip
    assert y_wide.dtype == np.float32
    np.testing.assert_allclose(y_wide, y_same, rtol=1e-6, atol=1e-6)
    y_ln = bnlib.layer_norm(x, 3, w)
    np.testing.assert_allclose(y_ln, bnlib.layer_norm(x, 3, w.astype(np.float32)),
                               rtol=1e-6, atol=1e-6)  # fmt: skip


def test_float16_input_with_float32_parameters_like_torch():
    x = _normal((8, 3), 0, 1.0, 2.0).astype(np.float16)
    w = _normal(3, 1).astype(np.float32)
    rm, rv = _buffers(np.float32)
    ref = F.batch_norm(torch.from_numpy(x), torch.from_numpy(rm.copy()),
                       torch.from_numpy(rv.copy()), torch.from_numpy(w),
                       training=True)  # fmt: skip
    y = bnlib.batch_norm(x, rm, rv, w, training=True)
    assert y.dtype == np.float16
    np.testing.assert_allclose(y.astype(np.float64), ref.numpy(), atol=4e-3)


# -- read-only buffers --


@pytest.mark.parametrize("frozen", ["running_mean", "running_var"])
def test_read_only_buffer_raises_before_any_update(frozen):
    rm, rv = np.full(3, 0.5), np.full(3, 2.0)
    {"running_mean": rm, "running_var": rv}[frozen].flags.writeable = False
    x = _normal((5, 3), 0, 4.0)
    with pytest.raises(ValueError, match=f"{frozen} is read-only"):
        bnlib.batch_norm(x, rm, rv, training=True)
    np.testing.assert_array_equal(rm, 0.5)
    np.testing.assert_array_equal(rv, 2.0)
    y = bnlib.batch_norm(x, rm, rv, training=False)  # reading is fine
    np.testing.assert_allclose(y, (x - 0.5) / np.sqrt(2.0 + 1e-5), rtol=1e-12)


def test_layer_with_read_only_buffer_keeps_its_state():
    bn = bnlib.BatchNorm1d(3, dtype=np.float64)
    bn(_normal((5, 3), 0, 1.0, 2.0))
    before = bn.state_dict()
    bn.running_var.flags.writeable = False
    with pytest.raises(ValueError, match="running_var is read-only"):
        bn(_normal((5, 3), 1, 3.0))
    for key, value in before.items():
        np.testing.assert_array_equal(bn.state_dict()[key], value)


def test_instance_norm_read_only_buffer_raises_before_any_update():
    rm, rv = np.full(3, 0.5), np.full(3, 2.0)
    rv.flags.writeable = False
    with pytest.raises(ValueError, match="running_var is read-only"):
        bnlib.instance_norm(_normal((2, 3, 5), 0), rm, rv)
    np.testing.assert_array_equal(rm, 0.5)


# -- stateless BatchNorm, momentum --


@pytest.mark.parametrize("training", [True, False])
def test_stateless_batchnorm_takes_any_channel_count_like_torch(training):
    ours = bnlib.BatchNorm1d(3, affine=False, track_running_stats=False,
                             dtype=np.float64).train(training)  # fmt: skip
    ref = torch.nn.BatchNorm1d(3, affine=False, track_running_stats=False)
    ref.train(training)
    x, dy = _normal((6, 5), 0, 1.0, 2.0), _normal((6, 5), 1)
    xt = torch.tensor(x, requires_grad=True)
    y_ref = ref(xt)
    y_ref.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(ours(x), y_ref.detach().numpy(), atol=TOL)
    np.testing.assert_allclose(ours.backward(dy), xt.grad.numpy(), atol=TOL)


@pytest.mark.parametrize("kwargs", [{"affine": False}, {"track_running_stats": False}])
def test_stateful_batchnorm_other_channel_count_raises(kwargs):
    with pytest.raises(ValueError, match="expected input with 3 channels"):
        bnlib.BatchNorm1d(3, **kwargs)(np.zeros((4, 5), np.float32))


@pytest.mark.parametrize("momentum", [True, False, "0.1", None])
def test_batch_norm_momentum_not_a_number_raises_type_error(momentum):
    x = _normal((4, 3), 0)
    rm, rv = _buffers(np.float64)
    with pytest.raises(TypeError, match="momentum must be a real number"):
        bnlib.batch_norm(x, rm, rv, training=True, momentum=momentum)
    np.testing.assert_array_equal(rm, 0)


@pytest.mark.parametrize("cls", [bnlib.BatchNorm1d, bnlib.InstanceNorm1d])
def test_layer_momentum_bool_raises_type_error(cls):
    with pytest.raises(TypeError, match="momentum must be a real number"):
        cls(3, momentum=True)
