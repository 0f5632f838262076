"""weight_norm and its backward against torch.nn.utils.parametrizations.weight_norm."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn.utils.parametrizations import weight_norm as torch_weight_norm

import bnlib

TOL = 1e-10


@pytest.mark.parametrize(
    ("layer", "dim"),
    [
        (lambda: torch.nn.Linear(5, 4, dtype=torch.float64), 0),
        (lambda: torch.nn.Linear(5, 4, dtype=torch.float64), 1),
        (lambda: torch.nn.Linear(5, 4, dtype=torch.float64), None),
        (lambda: torch.nn.Conv2d(3, 4, 3, dtype=torch.float64), 0),
        (lambda: torch.nn.Conv2d(3, 4, 3, dtype=torch.float64), 2),
    ],
)
def test_weight_norm_matches_torch(rng, layer, dim):
    torch.manual_seed(0)
    module = layer()
    w0 = module.weight.detach().numpy().copy()
    module = torch_weight_norm(module, dim=dim)
    param = module.parametrizations.weight
    g_ref, v_ref = param.original0.detach().numpy(), param.original1.detach().numpy()
    g, v = bnlib.weight_norm_init(w0, dim)
    np.testing.assert_allclose(g, g_ref, atol=TOL)
    np.testing.assert_array_equal(v, v_ref)
    with torch.no_grad():  # move away from the initial point: g != ||v||
        param.original0.mul_(torch.tensor(rng.uniform(0.5, 2)))
    g = param.original0.detach().numpy().copy()
    dw = rng.normal(size=w0.shape)
    module.weight.backward(torch.tensor(dw))
    np.testing.assert_allclose(
        bnlib.weight_norm(v, g, dim), module.weight.detach().numpy(), atol=TOL
    )
    grad_v, grad_g = bnlib.weight_norm_backward(dw, v, g, dim)
    np.testing.assert_allclose(grad_g, param.original0.grad.numpy(), atol=TOL)
    np.testing.assert_allclose(grad_v, param.original1.grad.numpy(), atol=TOL)
    assert grad_g.shape == g.shape


def test_weight_norm_direction_gradient_is_orthogonal_to_v(rng):
    v, dw = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    g = rng.uniform(1, 2, size=(4, 1))
    grad_v, _ = bnlib.weight_norm_backward(dw, v, g)
    np.testing.assert_allclose(np.sum(grad_v * v, axis=1), 0, atol=TOL)


def test_weight_norm_rows_have_length_g(rng):
    v = rng.normal(size=(3, 7)).astype(np.float32)
    g = np.array([[1.0], [2.0], [3.0]], dtype=np.float32)
    w = bnlib.weight_norm(v, g)
    assert w.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(w, axis=1), [1, 2, 3], rtol=1e-6)


@pytest.mark.parametrize(
    ("call", "exc", "words"),
    [
        (lambda: bnlib.weight_norm(np.ones((3, 2)), np.ones((2, 1))), ValueError, "g"),
        (lambda: bnlib.weight_norm(np.ones((3, 2)), np.ones((3, 1)), 2), ValueError,
         "range"),
        (lambda: bnlib.weight_norm(np.ones((3, 2)), np.ones((3, 1)), 0.5), TypeError,
         "dim"),
        (lambda: bnlib.weight_norm(np.ones((3, 2), int), np.ones((3, 1))), TypeError,
         "floating"),
        (lambda: bnlib.weight_norm(np.ones((3, 2)), np.ones((3, 1), int)), TypeError,
         "floating"),
        (lambda: bnlib.weight_norm(np.float64(1), np.ones(1)), ValueError, "scalar"),
        (lambda: bnlib.weight_norm_backward(np.ones(2), np.ones((3, 2)),
                                            np.ones((3, 1))), ValueError, "shape"),
        (lambda: bnlib.weight_norm_init(np.ones((3, 2)), 3), ValueError, "range"),
    ],
)  # fmt: skip
def test_weight_norm_bad_input_raises_clear_error(call, exc, words):
    with pytest.raises(exc, match=words):
        call()


def test_weight_norm_accepts_flat_g(rng):
    v, dw = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    g = rng.uniform(1, 2, size=4)
    np.testing.assert_allclose(
        bnlib.weight_norm(v, g), bnlib.weight_norm(v, g[:, None])
    )
    grad_v, grad_g = bnlib.weight_norm_backward(dw, v, g)
    assert grad_g.shape == (4,)
    np.testing.assert_allclose(
        grad_g, bnlib.weight_norm_backward(dw, v, g[:, None])[1][:, 0]
    )
