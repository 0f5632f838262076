"""bnlib.ghost: Ghost BatchNorm against plain BatchNorm and PyTorch, chunk by chunk."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from layercheck import assert_same_in_eval, assert_same_state

import bnlib.torch
from bnbook.lab import experiments as ex
from bnlib import ghost
from bnlib.torch.batchnorm import BatchNorm1d

TOL = 1e-10


def _data(shape, seed, loc=3.0, scale=2.0):
    rng = np.random.default_rng(seed)
    return loc + scale * rng.normal(size=shape)


def _params(c, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=c), rng.normal(size=c)


def _torch_chunks(x, g, w, b, dy):
    """PyTorch reference: F.batch_norm on each ghost batch, with autograd."""
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    ys = [F.batch_norm(c, None, None, wt, bt, training=True) for c in xt.split(g)]
    y = torch.cat(ys)
    y.backward(torch.tensor(dy))
    return y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


# -- numpy definition ---------------------------------------------------------


@pytest.mark.parametrize("shape", [(8, 3), (6, 3, 4)])
def test_ghost_batch_norm_with_full_ghost_matches_torch(shape):
    x, (w, b) = _data(shape, 0), _params(shape[1], 1)
    mean, var = np.zeros(shape[1]), np.ones(shape[1])
    y_ghost = ghost.ghost_batch_norm(x, shape[0], mean, var, w, b, training=True)
    t_mean, t_var = (
        torch.zeros(shape[1], dtype=torch.float64),
        torch.ones(shape[1], dtype=torch.float64),
    )
    y_torch = F.batch_norm(
        torch.tensor(x), t_mean, t_var, torch.tensor(w), torch.tensor(b), True
    )
    np.testing.assert_allclose(y_ghost, y_torch.numpy(), rtol=0, atol=TOL)
    np.testing.assert_allclose(mean, t_mean.numpy(), rtol=0, atol=TOL)
    np.testing.assert_allclose(var, t_var.numpy(), rtol=0, atol=TOL)


@pytest.mark.parametrize("shape", [(8, 3), (6, 3, 4)])
def test_ghost_batch_norm_backward_with_full_ghost_matches_torch(shape):
    x, dy, (w, b) = _data(shape, 0), _data(shape, 2, 0, 1), _params(shape[1], 1)
    ours = ghost.ghost_batch_norm_backward(dy, x, shape[0], w)
    ref = _torch_chunks(x, shape[0], w, b, dy)[1:]
    for a, r in zip(ours, ref, strict=True):
        np.testing.assert_allclose(a, r, rtol=0, atol=TOL)


@pytest.mark.parametrize(("shape", "g"), [((12, 3), 4), ((12, 3), 2), ((6, 2, 5), 1)])
def test_ghost_batch_norm_normalizes_each_chunk_by_its_own_stats(shape, g):
    # Ghost batches with very different locations: one set of statistics for the
    # whole batch would leave each chunk far from mean beta.
    x = _data(shape, 3) + 10 * np.repeat(np.arange(shape[0] // g), g).reshape(
        (-1,) + (1,) * (len(shape) - 1)
    )
    (w, b), dy = _params(shape[1], 4), _data(shape, 5, 0, 1)
    y_ref, dx_ref, dw_ref, db_ref = _torch_chunks(x, g, w, b, dy)
    y = ghost.ghost_batch_norm(x, g, None, None, w, b, training=True)
    dx, dw, db = ghost.ghost_batch_norm_backward(dy, x, g, w)
    for ours, ref in ((y, y_ref), (dx, dx_ref), (dw, dw_ref), (db, db_ref)):
        np.testing.assert_allclose(ours, ref, rtol=0, atol=TOL)
    axes = (1,) + tuple(range(3, len(shape) + 1))
    chunk_means = y.reshape(-1, g, *shape[1:]).mean(axis=axes)
    np.testing.assert_allclose(chunk_means, np.broadcast_to(b, chunk_means.shape))


def test_ghost_batch_norm_updates_running_stats_once_per_ghost_batch():
    x, g = _data((12, 3), 6), 4
    rm, rv = np.zeros(3), np.ones(3)
    ghost.ghost_batch_norm(x, g, rm, rv, training=True, momentum=0.3)
    ref = torch.nn.BatchNorm1d(3, momentum=0.3, dtype=torch.float64)
    for chunk in torch.tensor(x).split(g):  # plain BN fed the ghosts in order
        ref(chunk)
    np.testing.assert_allclose(rm, ref.running_mean.numpy(), rtol=0, atol=TOL)
    np.testing.assert_allclose(rv, ref.running_var.numpy(), rtol=0, atol=TOL)


@pytest.mark.parametrize("eps", [1e-5, 0.5])
def test_ghost_batch_norm_eval_uses_running_stats_for_any_batch_size(eps):
    """Also with a non-default eps: eval mode must pass it on."""
    x, (w, b) = _data((7, 3), 7), _params(3, 8)
    rm, rv = _data((3,), 9), 0.1 + _data((3,), 10) ** 2
    y = ghost.ghost_batch_norm(x, 4, rm, rv, w, b, training=False, eps=eps)
    ref = F.batch_norm(*map(torch.tensor, (x, rm, rv, w, b)), training=False, eps=eps)
    np.testing.assert_allclose(y, ref.numpy(), rtol=0, atol=TOL)


def test_ghost_batch_norm_empty_batch_is_empty():
    y = ghost.ghost_batch_norm(np.zeros((0, 3)), 2, None, None, training=True)
    assert y.shape == (0, 3)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(2, 5), st.integers(1, 3), st.integers(0, 999))
def test_ghost_batch_norm_chunks_have_zero_mean_unit_variance(k, g, c, seed):
    x = _data((k * g, c), seed, loc=-20, scale=5)
    y = ghost.ghost_batch_norm(x, g, None, None, training=True, eps=1e-300)
    chunks = y.reshape(k, g, c)
    np.testing.assert_allclose(chunks.mean(axis=1), 0, atol=1e-9)
    np.testing.assert_allclose(chunks.var(axis=1), 1, rtol=1e-7)


@pytest.mark.parametrize(
    ("g", "error", "message"),
    [
        (2.0, TypeError, "ghost_size must be an int, got float"),
        (True, TypeError, "ghost_size must be an int, got bool"),
        (0, ValueError, "ghost_size must be >= 1, got 0"),
        (5, ValueError, "ghost_size must divide the batch size: got ghost_size 5"),
        (1, ValueError, "more than 1 value per channel in each ghost batch"),
    ],
)
def test_ghost_batch_norm_rejects_bad_ghost_size(g, error, message):
    x, rm, rv = _data((12, 3), 0), np.zeros(3), np.ones(3)
    with pytest.raises(error, match=message):
        ghost.ghost_batch_norm(x, g, rm, rv, training=True)
    np.testing.assert_array_equal(rm, 0)  # nothing was touched
    np.testing.assert_array_equal(rv, 1)
    with pytest.raises(error, match=message):
        ghost.ghost_batch_norm_backward(x, x, g)


def test_ghost_batch_norm_eval_still_checks_ghost_size():
    with pytest.raises(ValueError, match="ghost_size must be >= 1"):
        ghost.ghost_batch_norm(_data((4, 2), 0), 0, np.zeros(2), np.ones(2))


def test_ghost_batch_norm_backward_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"grad_output must have the same shape"):
        ghost.ghost_batch_norm_backward(np.zeros((4, 3)), np.zeros((4, 2)), 2)


# -- the torch layer ----------------------------------------------------------


def _layer_step(layer, x, dy):
    xt = torch.tensor(x, requires_grad=True)
    y = layer(xt)
    y.backward(torch.tensor(dy))
    grads = [xt.grad] + [p.grad.clone() for p in layer.parameters()]
    for p in layer.parameters():
        p.grad = None
    return y.detach(), [g.numpy() for g in grads]


@pytest.mark.parametrize(("shape", "g"), [((12, 4), 3), ((6, 4, 5), 2)])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_ghost_batch_norm1d_matches_numpy_definition(shape, g, momentum):
    layer = bnlib.torch.GhostBatchNorm1d(4, g, momentum=momentum, dtype=torch.float64)
    w, b = _params(4, 11)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(w))
        layer.bias.copy_(torch.tensor(b))
    rm, rv = np.zeros(4), np.ones(4)
    for step in range(3):
        x, dy = _data(shape, 20 + step, loc=step), _data(shape, 30 + step, 0, 1)
        y, grads = _layer_step(layer, x, dy)
        # momentum=None is a cumulative average over ghost batches, not steps.
        k = shape[0] // g
        for i, chunk in enumerate(np.split(x, k)):
            m = 1 / (step * k + i + 1) if momentum is None else momentum
            ghost.ghost_batch_norm(chunk, g, rm, rv, training=True, momentum=m)
        y_ref = ghost.ghost_batch_norm(x, g, None, None, w, b, training=True)
        ref = ghost.ghost_batch_norm_backward(dy, x, g, w)
        np.testing.assert_allclose(y.numpy(), y_ref, rtol=0, atol=TOL)
        for ours, r in zip(grads, ref, strict=True):
            np.testing.assert_allclose(ours, r, rtol=0, atol=TOL)
        np.testing.assert_allclose(layer.running_mean.numpy(), rm, rtol=0, atol=TOL)
        np.testing.assert_allclose(layer.running_var.numpy(), rv, rtol=0, atol=TOL)
    assert int(layer.num_batches_tracked) == 3 * (shape[0] // g)


def test_ghost_batch_norm1d_with_full_ghost_equals_torch_batch_norm1d():
    torch.manual_seed(0)
    ours = bnlib.torch.GhostBatchNorm1d(4, 8, dtype=torch.float64)
    ref = torch.nn.BatchNorm1d(4, dtype=torch.float64)
    with torch.no_grad():
        ours.weight.normal_()
        ours.bias.normal_()
    ref.load_state_dict(ours.state_dict(), strict=False)
    for step in range(3):
        x, dy = _data((8, 4), 40 + step, loc=step), _data((8, 4), 50 + step, 0, 1)
        (y1, g1), (y2, g2) = _layer_step(ours, x, dy), _layer_step(ref, x, dy)
        torch.testing.assert_close(y1, y2, rtol=0, atol=TOL)
        for a, r in zip(g1, g2, strict=True):
            np.testing.assert_allclose(a, r, rtol=0, atol=TOL)
    assert_same_state(ours, ref, TOL)
    x = torch.tensor(_data((5, 4), 60))  # any batch size in evaluation
    assert_same_in_eval(ours, ref, x, TOL)


def test_ghost_batch_norm1d_passes_gradcheck():
    layer = bnlib.torch.GhostBatchNorm1d(3, 2, dtype=torch.float64)
    x = torch.tensor(_data((6, 3), 70), requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,), eps=1e-6, atol=1e-8)


def test_ghost_batch_norm1d_without_running_stats_uses_ghosts_in_eval():
    layer = (
        bnlib.torch.GhostBatchNorm1d(3, 2, track_running_stats=False).double().eval()
    )
    x = _data((6, 3), 80)
    y = layer(torch.tensor(x)).detach().numpy()
    np.testing.assert_allclose(
        y, ghost.ghost_batch_norm(x, 2, None, None, training=True), rtol=0, atol=TOL
    )


@pytest.mark.parametrize(
    ("g", "error", "message"),
    [(0, ValueError, ">= 1"), (2.5, TypeError, "must be an int")],
)
def test_ghost_batch_norm1d_rejects_bad_ghost_size_at_construction(g, error, message):
    with pytest.raises(error, match=message):
        bnlib.torch.GhostBatchNorm1d(3, g)


def test_ghost_batch_norm1d_rejects_indivisible_batch_without_touching_state():
    layer = bnlib.torch.GhostBatchNorm1d(3, 4)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    with pytest.raises(ValueError, match="ghost_size must divide the batch size"):
        layer(torch.randn(10, 3))
    for key, value in layer.state_dict().items():
        assert torch.equal(value, before[key]), key
    with pytest.raises(TypeError, match="torch.Tensor"):
        layer(np.zeros((8, 3)))
    assert "ghost_size=4" in repr(layer)


def test_to_ghost_swaps_every_batch_norm_and_keeps_its_state():
    split = ex.load_digits_split(n_train=60)
    model = ex.make_mlp(hidden=(8, 6), batch_norm=True, seed=1)
    ex.train(model, split, steps=5, lr=0.1, batch_size=20, eval_every=5)
    model.eval()
    before = model(split.x_test).detach()
    bnlib.torch.to_ghost(model, 5)
    kinds = [type(m) for m in model if isinstance(m, BatchNorm1d)]
    assert kinds == [bnlib.torch.GhostBatchNorm1d] * 2
    assert all(m.ghost_size == 5 for m in model if isinstance(m, BatchNorm1d))
    assert not model.training
    torch.testing.assert_close(model(split.x_test).detach(), before, rtol=0, atol=0)
    with pytest.raises(ValueError, match=">= 1"):
        bnlib.torch.to_ghost(model, 0)


def test_to_ghost_with_full_ghost_trains_like_plain_batch_norm():
    split = ex.load_digits_split(n_train=60)
    plain = ex.make_mlp(hidden=(8,), batch_norm=True, seed=2).double()
    ghosted = bnlib.torch.to_ghost(
        ex.make_mlp(hidden=(8,), batch_norm=True, seed=2), 20
    )
    ghosted = ghosted.double()
    split64 = ex.Split(
        split.x_train.double(), split.y_train, split.x_test.double(), split.y_test
    )
    h1 = ex.train(plain, split64, steps=6, lr=0.5, batch_size=20, eval_every=3)
    h2 = ex.train(ghosted, split64, steps=6, lr=0.5, batch_size=20, eval_every=3)
    np.testing.assert_allclose(h1.train_loss, h2.train_loss, rtol=1e-10)
    for key, value in plain.state_dict().items():
        torch.testing.assert_close(ghosted.state_dict()[key], value, rtol=0, atol=1e-10)


def test_to_ghost_reaches_nested_modules_and_leaves_others():
    inner = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    model = torch.nn.Sequential(inner, torch.nn.ReLU(), torch.nn.BatchNorm1d(4))
    bnlib.torch.to_ghost(model, 2)
    assert isinstance(model[0][1], bnlib.torch.GhostBatchNorm1d)
    assert isinstance(model[2], bnlib.torch.GhostBatchNorm1d)
    assert type(model[0][0]) is torch.nn.Linear and type(model[1]) is torch.nn.ReLU
