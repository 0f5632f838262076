"""bnlib.shards: shard statistics and their merge, against the concatenated batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bnlib import shards

TOL = 1e-12
SIZES = [1, 5, 2, 9]  # uneven shards, one of a single example


def _batch(sizes, c=3, loc=2.0, scale=1.5, seed=0, tail=()):
    rng = np.random.default_rng(seed)
    x = loc + scale * rng.normal(size=(sum(sizes), c, *tail))
    return x, np.split(x, np.cumsum(sizes)[:-1])


def _torch_full(x, w, b, dy):
    """PyTorch on the whole batch: output and gradients, float64."""
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    y = F.batch_norm(xt, None, None, wt, bt, training=True)
    y.backward(torch.tensor(dy))
    return y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


def _axes(x):
    return (0, *range(2, x.ndim))


@pytest.mark.parametrize("tail", [(), (4,)])
def test_merge_stats_of_uneven_shards_equals_whole_batch(tail):
    x, parts = _batch(SIZES, tail=tail)
    merged = shards.merge_stats([shards.shard_stats(p) for p in parts])
    assert merged.count == x.size // x.shape[1]
    np.testing.assert_allclose(merged.mean, x.mean(axis=_axes(x)), rtol=0, atol=TOL)
    np.testing.assert_allclose(merged.var, x.var(axis=_axes(x)), rtol=0, atol=TOL)
    np.testing.assert_allclose(
        merged.unbiased_var, x.var(axis=_axes(x), ddof=1), rtol=0, atol=TOL
    )


def test_merge_stats_of_one_shard_is_that_shard():
    x, _ = _batch([6])
    s = shards.shard_stats(x)
    merged = shards.merge_stats([s])
    assert merged.count == s.count
    np.testing.assert_allclose(merged.mean, s.mean, rtol=1e-15)
    np.testing.assert_allclose(merged.m2, s.m2, rtol=1e-15)


def test_merge_stats_ignores_empty_shards():
    x, parts = _batch([4, 0, 3])
    merged = shards.merge_stats([shards.shard_stats(p) for p in parts])
    np.testing.assert_allclose(merged.mean, x.mean(axis=0), rtol=0, atol=TOL)
    np.testing.assert_allclose(merged.var, x.var(axis=0), rtol=0, atol=TOL)


def test_merge_stats_of_empty_shards_is_empty():
    merged = shards.merge_stats([shards.shard_stats(np.zeros((0, 2)))] * 2)
    assert merged.count == 0
    with pytest.raises(ValueError, match="empty shard"):
        merged.var  # noqa: B018


def test_merge_stats_float32_far_from_zero_keeps_digits():
    x, parts = _batch([7, 3, 12], c=4, loc=1e4, scale=1.0, seed=3)
    parts32 = [p.astype(np.float32) for p in parts]
    x32 = np.concatenate(parts32).astype(np.float64)  # the float32 values, exactly
    merged = shards.merge_stats([shards.shard_stats(p) for p in parts32])
    np.testing.assert_allclose(merged.mean, x32.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(merged.var, x32.var(axis=0), rtol=1e-5)


def test_shard_stats_dtype_is_float64():
    s = shards.shard_stats(np.ones((3, 2), dtype=np.float32))
    assert s.mean.dtype == np.float64 and s.m2.dtype == np.float64
    assert s.count == 3


def test_shard_batch_norm_and_grad_input_match_torch_on_whole_batch():
    x, parts = _batch(SIZES, tail=(2,), seed=1)
    rng = np.random.default_rng(2)
    w, b, dy = rng.normal(size=3), rng.normal(size=3), rng.normal(size=x.shape)
    y_t, dx_t, dw_t, db_t = _torch_full(x, w, b, dy)
    dys = np.split(dy, np.cumsum(SIZES)[:-1])
    stats = shards.merge_stats([shards.shard_stats(p) for p in parts])
    local = [shards.grad_sums(d, p, stats) for d, p in zip(dys, parts, strict=True)]
    sums = tuple(np.sum(s, axis=0) for s in zip(*local, strict=True))
    y = np.concatenate([shards.shard_batch_norm(p, stats, w, b) for p in parts])
    dx = np.concatenate(
        [
            shards.shard_grad_input(d, p, stats, sums, w)
            for d, p in zip(dys, parts, strict=True)
        ]
    )
    np.testing.assert_allclose(y, y_t, rtol=0, atol=1e-10)
    np.testing.assert_allclose(dx, dx_t, rtol=0, atol=1e-10)
    np.testing.assert_allclose(sums[1], dw_t, rtol=0, atol=1e-10)
    np.testing.assert_allclose(sums[0], db_t, rtol=0, atol=1e-10)


def test_grad_sums_float32_far_from_zero():
    x, _ = _batch([16], c=2, loc=1e4, scale=1.0, seed=4)
    x32 = x.astype(np.float32)
    dy = np.random.default_rng(5).normal(size=x.shape).astype(np.float32)
    stats = shards.shard_stats(x32)
    xd, dyd = x32.astype(np.float64), dy.astype(np.float64)
    x_hat = (xd - xd.mean(0)) / np.sqrt(xd.var(0) + 1e-5)
    sum_dy, sum_dy_xhat = shards.grad_sums(dy, x32, stats)
    np.testing.assert_allclose(sum_dy, dyd.sum(0), rtol=1e-6)
    np.testing.assert_allclose(sum_dy_xhat, (dyd * x_hat).sum(0), rtol=1e-4)


def test_grad_sums_of_empty_shard_are_zero():
    stats = shards.shard_stats(np.ones((4, 2)))
    s = shards.grad_sums(np.zeros((0, 2)), np.zeros((0, 2)), stats)
    assert all(np.array_equal(v, np.zeros(2)) for v in s)


def test_shard_functions_accept_an_empty_shard():
    stats = shards.shard_stats(np.random.default_rng(0).normal(size=(5, 2, 3)))
    empty = np.zeros((0, 2, 3))
    assert shards.shard_batch_norm(empty, stats).shape == (0, 2, 3)
    sums = (np.ones(2), np.ones(2))
    assert shards.shard_grad_input(empty, empty, stats, sums).shape == (0, 2, 3)


# -- errors --------------------------------------------------------------------


def test_merge_stats_mismatched_channels_raises():
    a, b = shards.shard_stats(np.ones((3, 2))), shards.shard_stats(np.ones((3, 4)))
    with pytest.raises(ValueError, match="same channels"):
        shards.merge_stats([a, b])


def test_merge_stats_empty_or_wrong_type_raises():
    with pytest.raises(TypeError, match="non-empty sequence of ShardStats"):
        shards.merge_stats([])
    with pytest.raises(TypeError, match="non-empty sequence of ShardStats"):
        shards.merge_stats([(3, np.zeros(2), np.zeros(2))])


def test_shard_stats_rank_and_dtype_errors():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        shards.shard_stats(np.ones(5))
    with pytest.raises(TypeError, match="floating dtype"):
        shards.shard_stats(np.ones((3, 2), dtype=np.int64))


def test_unbiased_var_of_one_value_raises():
    with pytest.raises(ValueError, match="needs 2 values"):
        shards.shard_stats(np.ones((1, 2))).unbiased_var  # noqa: B018


def test_shard_functions_reject_stats_of_other_channels():
    x, stats = np.ones((3, 2)), shards.shard_stats(np.ones((3, 5)))
    with pytest.raises(ValueError, match="2 channels"):
        shards.shard_batch_norm(x, stats)
    with pytest.raises(ValueError, match="2 channels"):
        shards.grad_sums(x, x, stats)
    with pytest.raises(TypeError, match="must be a ShardStats"):
        shards.grad_sums(x, x, (3, np.zeros(2), np.zeros(2)))


def test_shard_grad_input_shape_errors():
    x = np.random.default_rng(0).normal(size=(4, 2))
    stats = shards.shard_stats(x)
    with pytest.raises(ValueError, match="same shape"):
        shards.grad_sums(np.ones((3, 2)), x, stats)
    with pytest.raises(ValueError, match="sum_dy_xhat must have shape"):
        shards.shard_grad_input(x, x, stats, (np.zeros(2), np.zeros(3)))
    with pytest.raises(TypeError, match="must be a pair"):
        shards.shard_grad_input(x, x, stats, np.zeros(3))
