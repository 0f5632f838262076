"""bnlib._kernels.blocked: blocks cover the data once, the passes compute their
formulas, and the results do not depend on the block size or the number of threads.

Expected values are written with plain numpy over the whole array, never with the
blocked code.
"""

from __future__ import annotations

import multiprocessing
import threading

import numpy as np
import pytest

import bnlib
from bnlib._kernels import blocked

SHAPES = [(1, 1, 1), (7, 3, 5), (3, 4, 2000), (2, 3, 50_000), (300, 1024, 1)]


@pytest.fixture
def threads():
    """Restore the number of threads after a test that changes it."""
    before = blocked.get_num_threads()
    yield
    blocked.set_num_threads(before)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocks_cover_every_value_once(shape, dtype):
    x3 = np.zeros(shape, dtype)
    hits = np.zeros(shape, np.int64)
    for b in blocked.blocks(x3):
        hits[b] += 1
        longest = max(
            blocked.BLOCK_BYTES, x3.itemsize * shape[1] * 2 * blocked.SHORT_ROW
        )
        assert x3[b].nbytes <= longest
    np.testing.assert_array_equal(hits, 1)


def test_blocks_split_a_large_sample_along_its_rows():
    x3 = np.zeros((2, 3, 50_000), np.float64)
    bl = blocked.blocks(x3)
    assert len(bl) > 2
    assert all(x3[b].shape[2] >= blocked.SHORT_ROW for b in bl[:-1])


@pytest.mark.parametrize("length", [1, 7, blocked.SHORT_ROW])
def test_per_channel_broadcasts_as_a_column(rng, length):
    x3 = rng.normal(size=(4, 3, length))
    v = rng.normal(size=3)
    np.testing.assert_array_equal(
        x3 * blocked.per_channel(v, x3), x3 * v.reshape(1, 3, 1)
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_channel_sums_match_numpy(rng, shape):
    x3, dy3 = rng.normal(2, 3, size=shape), rng.normal(size=shape)
    shift = rng.normal(size=shape[1])
    d = x3 - shift.reshape(1, -1, 1)
    expected = [
        d.sum((0, 2)),
        (d * d).sum((0, 2)),
        dy3.sum((0, 2)),
        (dy3 * d).sum((0, 2)),
    ]
    sums = blocked.channel_sums(x3, shift, dy3)
    np.testing.assert_allclose(sums, expected, rtol=1e-10, atol=1e-9)
    np.testing.assert_array_equal(blocked.channel_sums(x3, shift)[2:], 0)


@pytest.mark.parametrize("shape", SHAPES)
def test_normalized_and_input_grad_match_their_formulas(rng, shape):
    x3, dy3 = rng.normal(2, 3, size=shape), rng.normal(size=shape)
    mean, k, c, a, b = (rng.normal(size=shape[1]).reshape(1, -1, 1) for _ in range(5))
    y = blocked.normalized(x3, mean.ravel(), k.ravel(), b.ravel())
    np.testing.assert_allclose(y, (x3 - mean) * k + b, rtol=0, atol=1e-12)
    dx = blocked.input_grad(dy3, x3, mean.ravel(), (k.ravel(), c.ravel(), a.ravel()))
    np.testing.assert_allclose(dx, k * (dy3 - c - a * (x3 - mean)), rtol=0, atol=1e-12)


def test_channel_sums_of_an_empty_batch_are_zero():
    np.testing.assert_array_equal(
        blocked.channel_sums(np.zeros((0, 3, 4)), np.zeros(3)), np.zeros((4, 3))
    )


def test_map_blocks_keeps_block_order(threads):
    blocked.set_num_threads(3)
    assert blocked.map_blocks(lambda b: b, list(range(10))) == list(range(10))


def test_map_blocks_shares_blocks_among_threads(threads):
    blocked.set_num_threads(2)
    seen, lock, both_here = set(), threading.Lock(), threading.Event()

    def who(b):
        with lock:
            seen.add(threading.get_ident())
            if len(seen) == 2:
                both_here.set()
        both_here.wait(timeout=30)  # the first block waits for the helper to come
        return threading.get_ident()

    idents = blocked.map_blocks(who, list(range(8)))
    assert len(set(idents)) == 2


def _forward_backward(x, dy):
    y = bnlib.batch_norm(x, None, None, training=True)
    return (y, *bnlib.batch_norm_backward(dy, x))


@pytest.mark.parametrize("shape", [(64, 8, 100), (4096, 16), (3, 2, 40_000)])
def test_results_do_not_depend_on_threads(backend, rng, threads, shape):
    x = rng.normal(1, 2, size=shape).astype(np.float32)
    dy = rng.normal(size=shape).astype(np.float32)
    results = []
    for n in (1, 2, 3):
        blocked.set_num_threads(n)
        results.append(_forward_backward(x, dy))
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            np.testing.assert_array_equal(a, b)


def test_results_barely_depend_on_the_block_size(rng, monkeypatch):
    x = rng.normal(1, 2, size=(64, 8, 100))
    dy = rng.normal(size=x.shape)
    ref = _forward_backward(x, dy)
    monkeypatch.setattr(blocked, "BLOCK_BYTES", 1000)
    for a, b in zip(ref, _forward_backward(x, dy), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def _child(queue):
    x = np.random.default_rng(0).normal(size=(512, 4, 64))  # several blocks
    queue.put(float(bnlib.batch_norm(x, None, None, training=True).sum()))


def test_forked_child_can_use_bnlib_after_the_parent_did(rng, threads):
    blocked.set_num_threads(2)
    _forward_backward(rng.normal(size=(512, 4, 64)), rng.normal(size=(512, 4, 64)))
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    assert abs(queue.get(timeout=5)) < 1e-6


@pytest.mark.parametrize(
    ("n", "error"),
    [(0, ValueError), (-2, ValueError), (1.5, TypeError), (True, TypeError)],
)
def test_set_num_threads_rejects_bad_values(threads, n, error):
    with pytest.raises(error, match="number of threads"):
        blocked.set_num_threads(n)
    assert blocked.get_num_threads() >= 1


def test_batch_stats_float32_is_accurate_when_the_first_block_is_atypical(backend, rng):
    """Sorted data put the first block (the shift) in the low tail of every channel."""
    x = np.sort(rng.normal(1e3, 1.0, size=4096 * 64)).reshape(4096, 64)
    x32 = x.astype(np.float32)
    exact = x32.astype(np.float64)
    mu, var = bnlib.batch_stats(x32)
    np.testing.assert_allclose(mu, exact.mean(axis=0), rtol=1e-6)
    # (mu - K)^2 / var reaches the number of blocks here (32), so the variance may
    # lose more digits than with a typical first block: 2e-6 measured
    np.testing.assert_allclose(var, exact.var(axis=0), rtol=1e-5)


@pytest.mark.parametrize(
    "shape", [(8, 3, 50_176), (4096, 32), (4096, 256), (64, 64, 32, 32)]
)
def test_batch_stats_float32_is_as_accurate_as_torch(backend, rng, shape):
    """Long rows (one channel of a block holds tens of thousands of values) once
    lost digits to einsum's one-after-another float32 sums: 100 times torch's
    error on the variance."""
    torch = pytest.importorskip("torch")
    x32 = (1e4 + rng.normal(size=shape)).astype(np.float32)
    exact = x32.astype(np.float64)
    axes = (0, *range(2, x32.ndim))
    exact_mean, exact_var = exact.mean(axis=axes), exact.var(axis=axes)
    table = torch.from_numpy(x32).transpose(0, 1).reshape(shape[1], -1)
    torch_var = table.var(dim=1, unbiased=False).numpy()
    torch_err = np.max(np.abs(torch_var - exact_var) / exact_var)
    mu, var = bnlib.batch_stats(x32)
    # float32 keeps 7 digits: the mean to a few units of 1e4 * 6e-8
    np.testing.assert_allclose(mu, exact_mean, rtol=1e-7, atol=0)
    assert np.max(np.abs(var - exact_var) / exact_var) <= max(20 * torch_err, 1e-6)


def test_by_channel_sums_add_many_rows_in_float64():
    """Few channels with long rows go channel by channel; each row's float32 sum
    goes to float64 before the rows are added. Added in float32, 256 row sums err
    by about 1e-7 of the total; in float64 by about 5e-9."""
    from bnlib._kernels import numpy_backend

    rng = np.random.default_rng(3)
    shape = (256, numpy_backend.FEW_CHANNELS // 2, numpy_backend.LONG_ROW)
    x = rng.normal(1.0, 1.0, size=shape).astype(np.float32)
    g = rng.normal(1.0, 1.0, size=shape).astype(np.float32)
    d, g64 = x.astype(np.float64), g.astype(np.float64)
    exact = np.stack([s.sum(axis=(0, 2)) for s in (d, d * d, g64, g64 * d)])
    ours = numpy_backend.channel_sums(x, np.zeros(shape[1]), g)
    assert np.max(np.abs(ours - exact) / np.abs(exact)) < 3e-8
