"""torch's contract, item by item, checked against torch 2.13.

The numpy layers and the functional form (``import bnlib``), and the PyTorch-facing
layers (``bnlib.torch``), where a PyTorch user would notice a difference: 0-size
batches, the constructor, dtypes, errors, state dicts, saved inputs, gradients.
"""

from __future__ import annotations

import inspect
import pickle
import types
import warnings

import numpy as np
import pytest
import torch

import bnlib
import bnlib.torch as bt

TOL = 1e-10
LAYERS = [
    (bnlib.BatchNorm1d, torch.nn.BatchNorm1d, bt.BatchNorm1d, (6, 3)),
    (bnlib.BatchNorm1d, torch.nn.BatchNorm1d, bt.BatchNorm1d, (4, 3, 5)),
    (bnlib.BatchNorm2d, torch.nn.BatchNorm2d, bt.BatchNorm2d, (3, 3, 2, 4)),
    (bnlib.BatchNorm3d, torch.nn.BatchNorm3d, bt.BatchNorm3d, (2, 3, 2, 2, 3)),
]


def _normal(shape, seed, loc=0.0, scale=1.0):
    return np.random.default_rng(seed).normal(loc, scale, size=shape)


def _pair(ours_cls, torch_cls, **kwargs):
    """A float64 numpy layer and a torch layer with the same random gamma, beta."""
    ours = ours_cls(3, dtype=np.float64, **kwargs)
    ref = torch_cls(3, dtype=torch.float64, **kwargs)
    with torch.no_grad():
        for name in ("weight", "bias"):
            if getattr(ours, name) is not None:
                value = _normal(3, 7 if name == "weight" else 8)
                getattr(ours, name)[...] = value
                getattr(ref, name).copy_(torch.from_numpy(value))
    return ours, ref


def _assert_state(ours, ref):
    for key, value in ref.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[key], value.numpy(), atol=TOL)


# -- 0-size batches --


def _empty_shapes(shape):
    return [(0, *shape[1:]), (shape[0], 3, *([0] * (len(shape) - 2)))]


@pytest.mark.parametrize(("ours_cls", "torch_cls", "_", "shape"), LAYERS)
@pytest.mark.parametrize("training", [True, False])
def test_layer_zero_size_batch_matches_torch(ours_cls, torch_cls, _, shape, training):
    for empty in _empty_shapes(shape):
        if len(empty) == 2 and empty[0] != 0:
            continue
        ours, ref = _pair(ours_cls, torch_cls)
        ours.train(training), ref.train(training)
        xt = torch.zeros(empty, dtype=torch.float64, requires_grad=True)
        y_ref = ref(xt)
        y = ours(np.zeros(empty))
        assert y.shape == tuple(y_ref.shape) == empty
        _assert_state(ours, ref)
        if training:
            y_ref.backward(torch.zeros(empty, dtype=torch.float64))
            assert ours.backward(np.zeros(empty)).shape == empty
            np.testing.assert_array_equal(ours.weight_grad, ref.weight.grad.numpy())
            np.testing.assert_array_equal(ours.bias_grad, ref.bias.grad.numpy())


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_zero_size_batch_is_empty_and_keeps_buffers(training):
    rm, rv = _normal(3, 1), 1 + _normal(3, 2) ** 2
    rm0, rv0 = rm.copy(), rv.copy()
    y = bnlib.batch_norm(np.zeros((0, 3, 4)), rm, rv, training=training)
    ref = torch.nn.functional.batch_norm(
        torch.zeros(0, 3, 4, dtype=torch.float64),
        torch.from_numpy(rm0.copy()),
        torch.from_numpy(rv0.copy()),
        training=training,
    )
    assert y.shape == tuple(ref.shape)
    np.testing.assert_array_equal(rm, rm0)
    np.testing.assert_array_equal(rv, rv0)


def test_batch_norm_eval_backward_zero_size_batch_gives_zero_gradients():
    dx, dw, db = bnlib.batch_norm_eval_backward(
        np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(3), np.ones(3)
    )
    assert dx.shape == (0, 3)
    np.testing.assert_array_equal(dw, 0)
    np.testing.assert_array_equal(db, 0)


@pytest.mark.parametrize(("_", "torch_cls", "bt_cls", "shape"), LAYERS)
@pytest.mark.parametrize("training", [True, False])
def test_torch_layer_zero_size_batch_matches_torch(
    _, torch_cls, bt_cls, shape, training
):
    empty = (0, *shape[1:])
    ours = bt_cls(3, dtype=torch.float64).train(training)
    ref = torch_cls(3, dtype=torch.float64).train(training)
    x1 = torch.zeros(empty, dtype=torch.float64, requires_grad=True)
    x2 = torch.zeros(empty, dtype=torch.float64, requires_grad=True)
    ours(x1).sum().backward()
    ref(x2).sum().backward()
    assert x1.grad.shape == x2.grad.shape == empty
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad)
    torch.testing.assert_close(ours.state_dict(), ref.state_dict())


# -- the constructor --


def _described(cls):
    return [
        (p.name, p.kind, p.default) for p in inspect.signature(cls).parameters.values()
    ]


@pytest.mark.parametrize(("ours_cls", "torch_cls", "_", "__"), LAYERS)
def test_layer_signature_is_torchs(ours_cls, torch_cls, _, __):
    assert _described(ours_cls) == _described(torch_cls)


def test_layer_positional_arguments_in_torchs_order():
    args = (3, 1e-3, 0.2, False, True, "cpu", torch.float64)
    ours, ref = bnlib.BatchNorm2d(*args), torch.nn.BatchNorm2d(*args)
    assert repr(ours) == repr(ref)
    assert ours.dtype == np.float64
    for name in ("num_features", "eps", "momentum", "affine", "track_running_stats"):
        assert getattr(ours, name) == getattr(ref, name)


@pytest.mark.parametrize("device", [None, "cpu", "cpu:0", torch.device("cpu")])
def test_layer_device_cpu_is_accepted(device):
    assert bnlib.BatchNorm1d(3, device=device).weight is not None


@pytest.mark.parametrize("device", ["cuda", "meta", torch.device("meta"), 0])
def test_layer_device_other_than_cpu_raises_value_error(device):
    with pytest.raises(ValueError, match="device must be None or 'cpu'"):
        bnlib.BatchNorm1d(3, device=device)


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (None, np.float32),
        (torch.float64, np.float64),
        (torch.float16, np.float16),
        (np.float64, np.float64),
        ("float64", np.float64),
    ],
)
def test_layer_dtype_numpy_or_torch(dtype, expected):
    bn = bnlib.BatchNorm1d(3, dtype=dtype)
    assert bn.dtype == expected
    assert bn.weight.dtype == bn.running_var.dtype == expected


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.int64, np.int32, "no"])
def test_layer_dtype_not_floating_raises_type_error(dtype):
    with pytest.raises(TypeError, match="dtype must be"):
        bnlib.BatchNorm1d(3, dtype=dtype)


def test_layer_bias_false_matches_torch():
    ours, ref = _pair(bnlib.BatchNorm1d, torch.nn.BatchNorm1d, bias=False)
    assert ours.bias is None and ours.bias_grad is None
    assert list(ours.state_dict()) == list(ref.state_dict())
    x, dy = _normal((5, 3), 1, 2.0), _normal((5, 3), 2)
    xt = torch.tensor(x, requires_grad=True)
    y_ref = ref(xt)
    y_ref.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(ours(x), y_ref.detach().numpy(), atol=TOL)
    np.testing.assert_allclose(ours.backward(dy), xt.grad.numpy(), atol=TOL)
    np.testing.assert_allclose(ours.weight_grad, ref.weight.grad.numpy(), atol=TOL)
    assert ours.bias_grad is None


def test_layer_bias_is_keyword_only():
    with pytest.raises(TypeError):
        bnlib.BatchNorm1d(3, 1e-5, 0.1, True, True, None, None, False)


# -- mixed dtypes --


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize(
    ("layer_dtype", "input_dtype"), [("float32", "float64"), ("float64", "float32")]
)
def test_layer_mixed_dtype_raises_like_torch_and_keeps_state(
    training, layer_dtype, input_dtype
):
    x = _normal((4, 3), 1).astype(input_dtype)
    ref = torch.nn.BatchNorm1d(3, dtype=getattr(torch, layer_dtype)).train(training)
    with pytest.raises(RuntimeError, match="mixed dtype"):
        ref(torch.from_numpy(x))
    bn = bnlib.BatchNorm1d(3, dtype=layer_dtype).train(training)
    before = bn.state_dict()
    with pytest.raises(RuntimeError, match="mixed dtype"):
        bn(x)
    with pytest.raises(TypeError, match="mixed dtype"):
        bn(x)
    for key, value in bn.state_dict().items():
        np.testing.assert_array_equal(value, before[key])
    assert bn._saved is None


def test_layer_without_parameters_or_buffers_takes_any_dtype_like_torch():
    kwargs = {"affine": False, "track_running_stats": False}
    x = _normal((4, 3), 1)
    ref = torch.nn.BatchNorm1d(3, **kwargs)(torch.from_numpy(x))
    y = bnlib.BatchNorm1d(3, **kwargs)(x)
    assert y.dtype == np.float64 and ref.dtype == torch.float64


def test_layer_float16_input_into_float32_layer_like_torch():
    x = _normal((4, 3), 1).astype(np.float16)
    ref = torch.nn.BatchNorm1d(3)(torch.from_numpy(x))
    y = bnlib.BatchNorm1d(3)(x)
    assert y.dtype == np.float16 and ref.dtype == torch.float16
    exact = torch.nn.BatchNorm1d(3, dtype=torch.float64)(
        torch.from_numpy(x.astype(np.float64))
    )
    np.testing.assert_allclose(y.astype(np.float64), exact.detach().numpy(), atol=4e-3)


@pytest.mark.parametrize("training", [True, False])
def test_torch_layer_mixed_dtype_raises_and_keeps_state(training):
    bn = bt.BatchNorm1d(3).train(training)
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    with pytest.raises(RuntimeError, match="mixed dtype"):
        bn(torch.randn(4, 3, dtype=torch.float64))
    torch.testing.assert_close(bn.state_dict(), before, rtol=0, atol=0)


def test_torch_batch_norm_mixed_dtype_raises():
    x = torch.randn(4, 3, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="mixed dtype"):
        bt.batch_norm(x, None, None, torch.ones(3), None, training=True)


# -- the functional form's arguments --


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        ({"eps": -1.0}, ValueError, "eps must be non-negative"),
        ({"eps": float("nan")}, ValueError, "eps must be non-negative"),
        ({"eps": "1e-5"}, TypeError, "eps must be a real number"),
        ({"training": "no"}, TypeError, "training must be a bool"),
        ({"training": 1}, TypeError, "training must be a bool"),
    ],
)
def test_batch_norm_rejects_bad_eps_and_training(kwargs, exc, message):
    rm, rv = np.zeros(3), np.ones(3)
    kwargs = {"training": True, **kwargs}
    with pytest.raises(exc, match=message):
        bnlib.batch_norm(_normal((4, 3), 1), rm, rv, **kwargs)
    np.testing.assert_array_equal(rm, 0)
    np.testing.assert_array_equal(rv, 1)


def test_batch_norm_training_not_bool_raises_type_error_like_torch():
    with pytest.raises(TypeError, match="must be bool"):
        torch.nn.functional.batch_norm(torch.randn(4, 3), None, None, training="no")


def test_batch_norm_eps_zero_in_training_raises_value_error_like_torch():
    x = _normal((6, 3), 1, 5.0, 2.0)
    with pytest.raises(ValueError, match="eps must be positive"):
        torch.nn.functional.batch_norm(
            torch.from_numpy(x), None, None, training=True, eps=0.0
        )
    rm, rv = np.zeros(3), np.ones(3)
    with pytest.raises(ValueError, match="eps must be positive in training"):
        bnlib.batch_norm(x, rm, rv, training=True, eps=0.0)
    np.testing.assert_array_equal(rm, 0)  # state untouched
    np.testing.assert_array_equal(rv, 1)
    layer = bnlib.BatchNorm1d(3, eps=0.0, dtype=np.float64)  # torch accepts it too
    with pytest.raises(ValueError, match="eps must be positive in training"):
        layer(x)
    assert int(layer.num_batches_tracked) == 0


def test_batch_norm_eps_zero_in_eval_allowed():
    x = _normal((6, 3), 1, 5.0, 2.0)
    mean, var = x.mean(0), x.var(0)
    y = bnlib.batch_norm(x, mean, var, training=False, eps=0.0)
    expected = torch.nn.functional.batch_norm(
        torch.from_numpy(x), torch.from_numpy(mean), torch.from_numpy(var), eps=0.0
    )
    np.testing.assert_allclose(y, expected.numpy(), rtol=0, atol=TOL)


# -- non-finite input --


@pytest.fixture
def two_threads():
    before = bnlib.get_num_threads()
    bnlib.set_num_threads(2)
    yield
    bnlib.set_num_threads(before)


@pytest.mark.parametrize("shape", [(6, 3), (64, 4, 1024)])
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_non_finite_input_gives_non_finite_output_without_warnings(
    shape, bad, two_threads
):
    x = _normal(shape, 1)
    x[1, 0] = bad
    dy = _normal(shape, 2)
    ref_x = torch.tensor(x, requires_grad=True)
    ref = torch.nn.functional.batch_norm(ref_x, None, None, training=True)
    ref.backward(torch.from_numpy(dy))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bn = bnlib.BatchNorm1d(3 if len(shape) == 2 else 4, dtype=np.float64)
        y = bn(x)
        dx = bn.backward(dy)
        bn.eval()
        y_eval = bn(x)
    np.testing.assert_array_equal(np.isfinite(y), np.isfinite(ref.detach().numpy()))
    np.testing.assert_array_equal(np.isfinite(dx), np.isfinite(ref_x.grad.numpy()))
    assert not np.isfinite(y_eval).all()


# -- state dicts --


def test_load_state_dict_returns_torchs_missing_and_unexpected_keys():
    ours, ref = bnlib.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    sd = ours.state_dict()
    del sd["running_var"]
    sd["extra"] = np.zeros(3, np.float32)
    got = ours.load_state_dict(sd, strict=False)
    want = ref.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, False)
    assert got.missing_keys == want.missing_keys == ["running_var"]
    assert got.unexpected_keys == want.unexpected_keys == ["extra"]
    assert tuple(got) == tuple(want)
    full = ours.load_state_dict(ours.state_dict())
    assert repr(full) == repr(ref.load_state_dict(ref.state_dict()))


def test_load_state_dict_strict_false_loads_what_matches():
    bn = bnlib.BatchNorm1d(3, dtype=np.float64)
    bn.load_state_dict({"weight": np.full(3, 2.0), "other": 1}, strict=False)
    np.testing.assert_array_equal(bn.weight, 2.0)


def test_load_state_dict_accepts_any_mapping():
    source = bnlib.BatchNorm1d(3)
    source.running_mean[...] = 4
    bn = bnlib.BatchNorm1d(3)
    bn.load_state_dict(types.MappingProxyType(source.state_dict()))
    np.testing.assert_array_equal(bn.running_mean, 4)


# -- calls, saved inputs, pickling, gradients --


def test_call_runs_a_subclass_forward():
    class Doubled(bnlib.BatchNorm1d):
        def forward(self, input):
            return 2 * super().forward(input)

    x = _normal((5, 3), 1)
    bn = Doubled(3, dtype=np.float64)
    np.testing.assert_allclose(
        bn(x), 2 * bnlib.batch_norm(x, None, None, training=True)
    )


def test_layer_keeps_input_until_one_backward_in_either_mode():
    bn = bnlib.BatchNorm1d(3, dtype=np.float64)
    for mode in (True, False):
        bn.train(mode)(_normal((5, 3), 1))
        assert bn._saved is not None
        bn.backward(_normal((5, 3), 2))
        assert bn._saved is None
        with pytest.raises(RuntimeError, match="needs a forward"):
            bn.backward(_normal((5, 3), 2))


def test_layer_pickle_never_carries_the_input():
    bn = bnlib.BatchNorm2d(3, dtype=np.float64)
    empty_size = len(pickle.dumps(bn))
    bn(_normal((64, 3, 16, 16), 1))
    data = pickle.dumps(bn)
    assert len(data) < empty_size + 200  # the input is 393 kB
    copy = pickle.loads(data)
    for key, value in bn.state_dict().items():
        np.testing.assert_array_equal(copy.state_dict()[key], value)
    assert bn._saved is not None and copy._saved is None


def test_layer_grads_accumulate_like_torch_until_zero_grad():
    ours, ref = _pair(bnlib.BatchNorm1d, torch.nn.BatchNorm1d)
    for step in range(3):
        x, dy = _normal((5, 3), step, 1.0, 2.0), _normal((5, 3), 10 + step)
        ref(torch.from_numpy(x)).backward(torch.from_numpy(dy))
        ours(x)
        ours.backward(dy)
        np.testing.assert_allclose(ours.weight_grad, ref.weight.grad.numpy(), atol=TOL)
        np.testing.assert_allclose(ours.bias_grad, ref.bias.grad.numpy(), atol=TOL)
    ours.zero_grad(set_to_none=False)
    ref.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(ours.weight_grad, ref.weight.grad.numpy())
    ours.zero_grad()
    ref.zero_grad()
    assert ours.weight_grad is ours.bias_grad is ref.weight.grad is None


def test_zero_grad_and_load_state_dict_reject_non_bool_flags():
    bn = bnlib.BatchNorm1d(3)
    with pytest.raises(TypeError, match="set_to_none must be a bool"):
        bn.zero_grad("yes")
    with pytest.raises(TypeError, match="strict must be a bool"):
        bn.load_state_dict(bn.state_dict(), strict="no")


# -- bnlib.torch: double backward, torch.func --


def _issue_example(bn):
    """``y = bn(x)**3 + x**2``: the first derivative with a graph, then a second."""
    torch.manual_seed(0)
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    v = torch.randn(5, 3, dtype=torch.float64)
    y = bn(x) ** 3 + x**2
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    return g, lambda: torch.autograd.grad((g * v).sum(), x)


def test_torch_layer_double_backward_raises_instead_of_wrong_numbers():
    g, second = _issue_example(bt.BatchNorm1d(3, dtype=torch.float64))
    g_ref, _ = _issue_example(torch.nn.BatchNorm1d(3, dtype=torch.float64))
    torch.testing.assert_close(g, g_ref, rtol=0, atol=TOL)
    with pytest.raises(RuntimeError, match="double backward .* is not supported"):
        second()


def test_torch_function_uses_setup_context():
    fn = bt.BatchNormFunction
    assert "setup_context" in vars(fn)
    assert next(iter(inspect.signature(fn.forward).parameters)) == "input"


def test_torch_batch_norm_func_grad_equals_autograd():
    x = torch.randn(6, 3, dtype=torch.float64)
    w, v = torch.randn(3, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)

    def loss(x):
        return (bt.batch_norm(x, None, None, w, None, True) * v).pow(2).sum()

    got = torch.func.grad(loss)(x)
    xr = x.clone().requires_grad_()
    (torch.nn.functional.batch_norm(xr, None, None, w, None, True) * v).pow(
        2
    ).sum().backward()
    torch.testing.assert_close(got, xr.grad, rtol=0, atol=TOL)


def test_torch_batch_norm_vmap_raises():
    """A limit: the forward pass is numpy, so torch.func.vmap has no rule for it."""
    xs = torch.randn(2, 5, 3, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="vmap"):
        torch.func.vmap(lambda x: bt.batch_norm(x, None, None, training=True))(xs)
