"""Every error path of the normalization family: a clear error, state untouched."""

from __future__ import annotations

import numpy as np
import pytest

import bnlib

X = np.arange(48, dtype=np.float64).reshape(2, 4, 6) % 7
DY = np.ones_like(X) * 0.5

FUNCTIONAL_ERRORS = [
    # (call, exception, words of the message)
    (lambda: bnlib.layer_norm(X, (5,)), ValueError, "trailing"),
    (lambda: bnlib.layer_norm(X, (2, 4, 6, 1)), ValueError, "trailing"),
    (lambda: bnlib.layer_norm(X, ()), ValueError, "non-empty"),
    (lambda: bnlib.layer_norm(X, "6"), ValueError, "ints"),
    (lambda: bnlib.layer_norm(X, 6.0), TypeError, "normalized_shape"),
    (lambda: bnlib.layer_norm(X, 6, np.ones(5)), ValueError, "weight"),
    (lambda: bnlib.layer_norm(X, 6, None, np.ones(5)), ValueError, "bias"),
    (lambda: bnlib.layer_norm(X, 6, eps=0), ValueError, "eps"),
    (lambda: bnlib.layer_norm(X, 6, eps=-1e-5), ValueError, "eps"),
    (lambda: bnlib.layer_norm(X, 6, eps="1"), TypeError, "eps"),
    (lambda: bnlib.layer_norm(X.astype(int), 6), TypeError, "floating"),
    (lambda: bnlib.layer_norm_backward(DY[:1], X, 6), ValueError, "same shape"),
    (lambda: bnlib.layer_norm_backward(DY, X, 5), ValueError, "trailing"),
    (lambda: bnlib.group_norm(X, 3), ValueError, "divisor"),
    (lambda: bnlib.group_norm(X, 0), ValueError, "divisor"),
    (lambda: bnlib.group_norm(X, 2.0), TypeError, "num_groups"),
    (lambda: bnlib.group_norm(X[0, 0], 1), ValueError, "at least 2"),
    (lambda: bnlib.group_norm(X, 2, np.ones(3)), ValueError, "weight"),
    (lambda: bnlib.group_norm(X, 2, eps=0.0), ValueError, "eps"),
    (lambda: bnlib.group_norm_backward(DY, X, 3), ValueError, "divisor"),
    (lambda: bnlib.group_norm_backward(DY[:, :2], X, 2), ValueError, "same shape"),
    (lambda: bnlib.rms_norm(X, 5), ValueError, "trailing"),
    (lambda: bnlib.rms_norm(X, 6, np.ones(2)), ValueError, "weight"),
    (lambda: bnlib.rms_norm(X, 6, eps=0), ValueError, "eps"),
    (lambda: bnlib.rms_norm_backward(DY.T, X, 6), ValueError, "same shape"),
    (lambda: bnlib.instance_norm(X[:, :, :1]), ValueError, "spatial"),
    (lambda: bnlib.instance_norm(X, weight=np.ones(3)), ValueError, "weight"),
    (lambda: bnlib.instance_norm(X, eps=0), ValueError, "eps"),
    (lambda: bnlib.instance_norm(X, use_input_stats=False), ValueError, "running"),
    (lambda: bnlib.instance_norm(X, np.zeros(4)), ValueError, "together"),
    (lambda: bnlib.instance_norm(X, np.zeros(3), np.ones(3)), ValueError, "shape"),
    (lambda: bnlib.instance_norm(X, [0.0] * 4, [1.0] * 4), TypeError, "in place"),
    (lambda: bnlib.instance_norm_backward(DY, X[:, :, :1]), ValueError, "same shape"),
    (lambda: bnlib.instance_norm_backward(DY, X, np.ones(2)), ValueError, "weight"),
    (lambda: bnlib.normalize(X, (0, 3)), ValueError, "out of range"),
    (lambda: bnlib.normalize(X, (1, -2)), ValueError, "distinct"),
    (lambda: bnlib.normalize(X, 1.5), TypeError, "axes"),
    (lambda: bnlib.normalize(X, ("a",)), TypeError, "ints"),
    (lambda: bnlib.normalize(X, 1, eps=0), ValueError, "eps"),
    (lambda: bnlib.normalize(X.astype(int), 1), TypeError, "floating"),
    (lambda: bnlib.normalize_backward(DY[0], X, 1), ValueError, "same shape"),
]


@pytest.mark.parametrize(("call", "exc", "words"), FUNCTIONAL_ERRORS)
def test_functional_bad_input_raises_clear_error(call, exc, words):
    with pytest.raises(exc, match=words):
        call()


def test_instance_norm_bad_input_leaves_running_stats_untouched():
    rm, rv = np.zeros(4), np.ones(4)
    for bad in (
        lambda: bnlib.instance_norm(X, rm, rv, weight=np.ones(3)),
        lambda: bnlib.instance_norm(X, rm, rv, eps=0),
        lambda: bnlib.instance_norm(X, rm, rv, momentum="0.1"),
        lambda: bnlib.instance_norm(X[:, :, :1], rm, rv),
    ):
        with pytest.raises((ValueError, TypeError)):
            bad()
        np.testing.assert_array_equal(rm, 0)
        np.testing.assert_array_equal(rv, 1)


CONSTRUCTOR_ERRORS = [
    (lambda: bnlib.GroupNorm(4, 6), ValueError, "divisible"),
    (lambda: bnlib.GroupNorm(0, 6), ValueError, "positive"),
    (lambda: bnlib.GroupNorm(2.0, 6), TypeError, "int"),
    (lambda: bnlib.GroupNorm(2, 6, eps=0), ValueError, "eps"),
    (lambda: bnlib.LayerNorm(()), ValueError, "non-empty"),
    (lambda: bnlib.LayerNorm(4, eps=-1), ValueError, "eps"),
    (lambda: bnlib.LayerNorm(4, dtype=np.int32), TypeError, "dtype"),
    (lambda: bnlib.RMSNorm(4, eps=0), ValueError, "eps"),
    (lambda: bnlib.RMSNorm((4, -1)), ValueError, "non-negative"),
    (lambda: bnlib.InstanceNorm2d(3, eps=0), ValueError, "eps"),
    (lambda: bnlib.InstanceNorm2d(0), ValueError, "positive"),
    (lambda: bnlib.InstanceNorm2d(3.0), TypeError, "int"),
]


@pytest.mark.parametrize(("call", "exc", "words"), CONSTRUCTOR_ERRORS)
def test_constructor_bad_argument_raises_clear_error(call, exc, words):
    with pytest.raises(exc, match=words):
        call()


def ones(*shape):
    """float32 ones: the layers' dtype, so the shape is what is wrong."""
    if len(shape) == 1 and isinstance(shape[0], tuple):
        shape = shape[0]
    return np.ones(shape, np.float32)


def _layers():
    return [
        (bnlib.LayerNorm(6), [ones((2, 5)), ones((6, 2)), np.ones(6, int)]),
        (bnlib.RMSNorm(6), [ones((2, 5)), ones((3,))]),
        (bnlib.GroupNorm(2, 4), [ones((2, 6, 3)), ones(4), np.ones((2, 4), int)]),
        (
            bnlib.InstanceNorm1d(4, affine=True, track_running_stats=True),
            [
                ones((2, 3, 5)),
                ones((2, 4, 5, 1)),
                ones((2, 4, 1)),
                ones((3, 5)),
                np.ones((2, 4, 5), int),
            ],
        ),  # fmt: skip
        (bnlib.InstanceNorm2d(4), [ones((2, 4, 5)), ones((2, 3, 2, 2))]),
        (bnlib.InstanceNorm3d(4), [ones((2, 4, 5, 2)), ones((1, 4, 1, 1, 1))]),
    ]


@pytest.mark.parametrize("index", range(6))
def test_layer_bad_input_raises_and_leaves_state_untouched(index):
    layer, bad_inputs = _layers()[index]
    before = layer.state_dict()
    for bad in bad_inputs:
        with pytest.raises((ValueError, TypeError)):
            layer(bad)
        for key, value in layer.state_dict().items():
            np.testing.assert_array_equal(value, before[key])


@pytest.mark.parametrize("index", range(6))
def test_layer_backward_errors(index):
    layer, _ = _layers()[index]
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(np.ones((2, 4, 6)))
    shape = [(2, 6), (2, 6), (2, 4, 3), (2, 4, 5), (2, 4, 3, 3), (2, 4, 2, 2, 2)][index]
    layer(np.arange(np.prod(shape), dtype=np.float32).reshape(shape) % 5)
    with pytest.raises(ValueError, match="shape"):
        layer.backward(np.ones((1,) + shape, np.float32))


def test_layer_load_bad_state_dict_leaves_layer_untouched():
    layer = bnlib.GroupNorm(2, 4)
    bad_dicts = [
        {"weight": np.full(4, 2.0)},  # missing bias
        {"weight": np.full(4, 2.0), "bias": np.zeros(3)},
        {"weight": np.full(4, 2.0), "bias": np.zeros(4, int)},
        {"weight": np.full(4, 2.0), "bias": np.zeros(4), "extra": np.ones(1)},
        [("weight", np.ones(4))],
    ]
    for bad in bad_dicts:
        with pytest.raises((ValueError, TypeError)):
            layer.load_state_dict(bad)
        np.testing.assert_array_equal(layer.weight, 1)
    with pytest.raises(TypeError, match="bool"):
        layer.train("yes")
