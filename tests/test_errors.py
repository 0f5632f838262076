"""Every bad input gets a clear error, and no buffer is touched when it does."""

from __future__ import annotations

import numpy as np
import pytest

import bnlib


def _bn2d_state(bn):
    return {k: v.copy() for k, v in bn.state_dict().items()}


def _assert_state_unchanged(bn, before):
    after = bn.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])


@pytest.mark.parametrize(
    ("cls", "shape", "message"),
    [
        (bnlib.BatchNorm2d, (4, 3), "expected 4D input (got 2D input)"),
        (bnlib.BatchNorm2d, (4, 3, 2, 2, 2), "expected 4D input (got 5D input)"),
        (bnlib.BatchNorm1d, (4, 3, 2, 2), "expected 2D or 3D input (got 4D input)"),
        (bnlib.BatchNorm1d, (3,), "expected 2D or 3D input (got 1D input)"),
        (bnlib.BatchNorm3d, (4, 3, 2, 2), "expected 5D input (got 4D input)"),
    ],
)
def test_module_wrong_rank_raises_value_error(cls, shape, message):
    bn = cls(3)
    before = _bn2d_state(bn)
    with pytest.raises(
        ValueError, match=message.replace("(", r"\(").replace(")", r"\)")
    ):
        bn(np.zeros(shape, np.float32))
    _assert_state_unchanged(bn, before)


def test_module_channel_mismatch_raises_value_error():
    bn = bnlib.BatchNorm2d(3)
    before = _bn2d_state(bn)
    with pytest.raises(ValueError, match="expected input with 3 channels"):
        bn(np.zeros((4, 5, 2, 2), np.float32))
    _assert_state_unchanged(bn, before)


@pytest.mark.parametrize("shape", [(1, 3), (1, 3, 1)])
def test_module_one_value_per_channel_in_training_raises(shape):
    bn = bnlib.BatchNorm1d(3)
    before = _bn2d_state(bn)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        bn(np.ones(shape, np.float32))
    _assert_state_unchanged(bn, before)
    assert int(bn.num_batches_tracked) == 0


def test_module_one_value_per_channel_is_fine_in_eval():
    bn = bnlib.BatchNorm1d(3).eval()
    assert bn(np.ones((1, 3), np.float32)).shape == (1, 3)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_, np.complex128])
def test_module_non_floating_input_raises_type_error(dtype):
    bn = bnlib.BatchNorm1d(3)
    before = _bn2d_state(bn)
    with pytest.raises(TypeError, match="floating dtype"):
        bn(np.ones((4, 3), dtype=dtype))
    _assert_state_unchanged(bn, before)


def test_functional_one_value_per_channel_raises():
    rm, rv = np.zeros(3), np.ones(3)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        bnlib.batch_norm(np.ones((1, 3)), rm, rv, training=True)
    np.testing.assert_array_equal(rm, 0)
    np.testing.assert_array_equal(rv, 1)


def test_functional_channel_mismatch_raises_and_keeps_buffers():
    rm, rv = np.zeros(4), np.ones(4)
    with pytest.raises(ValueError, match=r"running_mean must have shape \(3,\)"):
        bnlib.batch_norm(np.ones((5, 3)), rm, rv, training=True)
    np.testing.assert_array_equal(rm, 0)
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\)"):
        bnlib.batch_norm(np.ones((5, 3)), None, None, np.ones(2), training=True)
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\)"):
        bnlib.batch_norm(np.ones((5, 3)), None, None, None, np.ones(4), True)


def test_functional_bad_running_var_does_not_touch_running_mean():
    rm, rv = np.zeros(3), np.ones(2)
    with pytest.raises(ValueError, match="running_var"):
        bnlib.batch_norm(
            np.random.default_rng(0).normal(size=(5, 3)), rm, rv, None, None, True
        )
    np.testing.assert_array_equal(rm, 0)


@pytest.mark.parametrize(
    ("rm", "rv", "missing"),
    [
        (None, None, "running_mean and running_var"),
        (np.zeros(3), None, "running_var"),
        (None, np.ones(3), "running_mean"),
    ],
)
def test_functional_eval_without_running_stats_names_them(rm, rv, missing):
    with pytest.raises(ValueError, match=f"{missing} must be given in evaluation mode"):
        bnlib.batch_norm(np.ones((4, 3)), rm, rv, training=False)


def test_functional_training_with_one_running_buffer_raises():
    with pytest.raises(ValueError, match="must be given together"):
        bnlib.batch_norm(np.ones((4, 3)), np.zeros(3), None, training=True)


def test_functional_non_floating_input_raises_type_error():
    with pytest.raises(TypeError, match="got dtype int64"):
        bnlib.batch_norm(np.ones((4, 3), dtype=np.int64), None, None, training=True)


def test_functional_rank_one_input_raises_value_error():
    with pytest.raises(ValueError, match="got 1D input"):
        bnlib.batch_norm(np.ones(4), None, None, training=True)


def test_functional_running_buffer_must_be_ndarray():
    with pytest.raises(TypeError, match="numpy.ndarray"):
        bnlib.batch_norm(np.ones((4, 3)), [0.0, 0, 0], np.ones(3), training=True)


def test_functional_integer_running_buffer_raises_type_error():
    with pytest.raises(TypeError, match="running_mean must have a floating dtype"):
        bnlib.batch_norm(np.ones((4, 3)), np.zeros(3, int), np.ones(3), training=True)


def test_functional_bad_momentum_raises_type_error():
    with pytest.raises(TypeError, match="momentum must be a real number"):
        bnlib.batch_norm(
            np.ones((4, 3)), np.zeros(3), np.ones(3), training=True, momentum=None
        )


def test_backward_shape_mismatch_raises():
    with pytest.raises(ValueError, match="grad_output must have the same shape"):
        bnlib.batch_norm_backward(np.ones((4, 3)), np.ones((5, 3)))
    with pytest.raises(ValueError, match="grad_output must have the same shape"):
        bnlib.batch_norm_eval_backward(
            np.ones((4, 3)), np.ones((5, 3)), np.zeros(3), np.ones(3)
        )


def test_backward_one_value_per_channel_raises():
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        bnlib.batch_norm_backward(np.ones((1, 3)), np.ones((1, 3)))


def test_backward_non_floating_grad_raises_type_error():
    with pytest.raises(TypeError, match="grad_output must have a floating dtype"):
        bnlib.batch_norm_backward(np.ones((4, 3), int), np.ones((4, 3)))


def test_module_backward_before_forward_raises():
    with pytest.raises(RuntimeError, match="needs a forward"):
        bnlib.BatchNorm1d(3).backward(np.ones((4, 3)))


def test_module_backward_wrong_shape_raises():
    bn = bnlib.BatchNorm1d(3)
    bn(np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32))
    with pytest.raises(ValueError, match="same shape"):
        bn.backward(np.ones((5, 3), np.float32))


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        ({"num_features": 0}, ValueError, "num_features must be positive"),
        ({"num_features": 2.5}, TypeError, "num_features must be an int"),
        ({"num_features": 3, "eps": -1.0}, ValueError, "eps must be non-negative"),
        ({"num_features": 3, "eps": "1e-5"}, TypeError, "eps must be a real number"),
        ({"num_features": 3, "momentum": "0.1"}, TypeError, "momentum must be"),
        ({"num_features": 3, "dtype": np.int32}, TypeError, "floating dtype"),
    ],
)
def test_module_constructor_rejects_bad_arguments(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        bnlib.BatchNorm1d(**kwargs)


def test_module_train_rejects_non_bool():
    with pytest.raises(TypeError, match="must be a bool"):
        bnlib.BatchNorm1d(3).train("eval")


def _trained_bn():
    bn = bnlib.BatchNorm2d(3)
    bn(np.random.default_rng(1).normal(2, 3, size=(4, 3, 2, 2)).astype(np.float32))
    return bn


@pytest.mark.parametrize(
    ("edit", "exc", "message"),
    [
        (lambda sd: sd.pop("running_var"), ValueError, "missing keys"),
        (lambda sd: sd.update(extra=np.zeros(3)), ValueError, "unexpected keys"),
        (lambda sd: sd.update(bias=np.zeros(4)), ValueError, r"shape \(3,\)"),
        (lambda sd: sd.update(running_var=np.ones(3, int)), TypeError, "floating"),
        (lambda sd: sd.update(num_batches_tracked=np.zeros(2)), ValueError, "scalar"),
    ],
)
def test_load_state_dict_rejects_bad_dicts_without_partial_update(edit, exc, message):
    bn = _trained_bn()
    before = _bn2d_state(bn)
    sd = {
        "weight": np.full(3, 7.0),
        "bias": np.full(3, 7.0),
        "running_mean": np.full(3, 7.0),
        "running_var": np.full(3, 7.0),
        "num_batches_tracked": np.array(7),
    }
    edit(sd)
    with pytest.raises(exc, match=message):
        bn.load_state_dict(sd)
    _assert_state_unchanged(bn, before)


def test_load_state_dict_rejects_non_mapping():
    with pytest.raises(TypeError, match="must be a Mapping"):
        bnlib.BatchNorm1d(3).load_state_dict([("weight", np.ones(3))])
