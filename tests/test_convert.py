"""bnlib.convert: a Keras BatchNormalization ported to torch, against torch itself.

The Keras side is written out here in numpy from Keras's documented formulas, so the
expected values never come from the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import bnlib
from bnlib.convert import from_keras

TOL = 1e-10
C = 5


def _keras_weights(seed: int = 0, c: int = C) -> list[np.ndarray]:
    """gamma, beta, moving_mean, moving_variance of a trained-looking Keras layer."""
    rng = np.random.default_rng(seed)
    return [
        rng.normal(1.0, 0.3, c),
        rng.normal(0.0, 0.5, c),
        rng.normal(2.0, 1.0, c),
        rng.uniform(0.01, 0.05, c),  # small variances, where eps matters
    ]


def _keras_inference(x, gamma, beta, mean, var, epsilon):
    return gamma * (x - mean) / np.sqrt(var + epsilon) + beta


def _keras_train_step(x, gamma, beta, mean, var, momentum, epsilon):
    """Keras's training call: batch statistics, and the old-weighted update."""
    mu, s2 = x.mean(axis=0), x.var(axis=0)
    y = gamma * (x - mu) / np.sqrt(s2 + epsilon) + beta
    return (
        y,
        momentum * mean + (1 - momentum) * mu,
        momentum * var + (1 - momentum) * s2,
    )


def _torch_layer(converted) -> nn.BatchNorm1d:
    bn = nn.BatchNorm1d(
        C, momentum=converted.momentum, eps=converted.eps, dtype=torch.float64
    )
    bn.load_state_dict(
        {k: torch.from_numpy(v) for k, v in converted.state_dict.items()}
    )
    return bn


@pytest.mark.parametrize("momentum, epsilon", [(0.99, 1e-3), (0.9, 1e-5), (0.5, 0.1)])
def test_from_keras_matches_keras_inference(momentum, epsilon):
    weights = _keras_weights()
    bn = _torch_layer(from_keras(*weights, momentum=momentum, epsilon=epsilon)).eval()
    x = np.random.default_rng(1).normal(2.0, 0.2, size=(7, C))
    with torch.no_grad():
        got = bn(torch.from_numpy(x)).numpy()
    expected = _keras_inference(x, *weights, epsilon)
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOL)


def test_from_keras_matches_keras_training_step():
    weights = _keras_weights(2)
    bn = _torch_layer(from_keras(*weights, momentum=0.99, epsilon=1e-3)).train()
    m = 16
    x = np.random.default_rng(3).normal(2.0, 0.3, size=(m, C))
    y_keras, mean_keras, var_keras = _keras_train_step(x, *weights, 0.99, 1e-3)
    y = bn(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(y, y_keras, rtol=0, atol=TOL)
    np.testing.assert_allclose(bn.running_mean.numpy(), mean_keras, rtol=0, atol=TOL)
    # torch averages the unbiased batch variance: Keras's update plus w (m/(m-1)-1) s2
    extra = (1 - 0.99) * x.var(axis=0) / (m - 1)
    np.testing.assert_allclose(bn.running_var.numpy(), var_keras + extra, atol=TOL)


def test_from_keras_torch_defaults_would_differ():
    weights = _keras_weights()
    bn = _torch_layer(from_keras(*weights))
    wrong = nn.BatchNorm1d(C, dtype=torch.float64)  # torch's eps and momentum
    wrong.load_state_dict(bn.state_dict())
    x = torch.from_numpy(np.random.default_rng(4).normal(2.0, 0.2, size=(6, C)))
    with torch.no_grad():
        gap = (wrong.eval()(x) - bn.eval()(x)).abs().max().item()
    assert gap > 1e-2
    assert bn.momentum == pytest.approx(0.01) and bn.eps == 1e-3


def test_from_keras_defaults_and_none_scale_center():
    mean, var = np.array([1.0, -2.0]), np.array([4.0, 0.25])
    out = from_keras(None, None, mean, var)
    np.testing.assert_array_equal(out.state_dict["weight"], [1.0, 1.0])
    np.testing.assert_array_equal(out.state_dict["bias"], [0.0, 0.0])
    assert out.momentum == pytest.approx(0.01) and out.eps == 1e-3
    assert out.state_dict["num_batches_tracked"].dtype == np.int64
    out.state_dict["running_mean"][0] = 99.0
    assert mean[0] == 1.0  # a copy, never shared


def test_from_keras_keeps_dtype_and_loads_into_bnlib():
    weights = [w.astype(np.float32) for w in _keras_weights()]
    out = from_keras(*weights)
    assert all(v.dtype == np.float32 for k, v in out.state_dict.items() if k[0] != "n")
    layer = bnlib.BatchNorm1d(C, momentum=out.momentum, eps=out.eps)
    layer.load_state_dict(out.state_dict)
    np.testing.assert_array_equal(layer.running_var, weights[3])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"momentum": 1.5}, ValueError, "momentum must be in"),
        ({"momentum": -0.1}, ValueError, "momentum must be in"),
        ({"momentum": "0.99"}, TypeError, "momentum must be a real number"),
        ({"momentum": True}, TypeError, "momentum must be a real number"),
        ({"epsilon": -1e-3}, ValueError, "epsilon must be in"),
        ({"epsilon": None}, TypeError, "epsilon must be a real number"),
    ],
)
def test_from_keras_rejects_bad_numbers(kwargs, error, match):
    with pytest.raises(error, match=match):
        from_keras(*_keras_weights(), **kwargs)


def test_from_keras_rejects_bad_arrays():
    g, b, m, v = _keras_weights()
    with pytest.raises(TypeError, match="moving_mean must be a floating array"):
        from_keras(g, b, np.arange(C), v)
    with pytest.raises(TypeError, match="moving_mean must be a floating array"):
        from_keras(g, b, m.reshape(1, C), v)
    with pytest.raises(ValueError, match=r"gamma must have shape \(5,\)"):
        from_keras(g[:3], b, m, v)
    with pytest.raises(ValueError, match="moving_variance must have shape"):
        from_keras(g, b, m, v[:, None])
    with pytest.raises(TypeError, match="beta must be a real numeric array"):
        from_keras(g, np.array(["a"] * C), m, v)
    with pytest.raises(ValueError, match="moving_variance must be non-negative"):
        from_keras(g, b, m, -v)
