"""Threads: set_num_threads is thread-safe and follows the environment; a layer
shared by threads gives each its own gradients."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import bnlib


@pytest.fixture
def restore_threads():
    before = bnlib.get_num_threads()
    yield
    bnlib.set_num_threads(before)


def test_set_num_threads_while_another_thread_computes(restore_threads):
    """Changing the count under a running computation neither raises nor changes
    its result (before the fix: 'cannot schedule new futures after shutdown')."""
    x = np.random.default_rng(0).normal(size=(64, 4, 1024))  # 2 MB: several blocks
    bnlib.set_num_threads(1)
    expected = bnlib.batch_norm(x, None, None, training=True)
    errors: list[BaseException] = []
    done = threading.Event()

    def compute() -> None:
        try:
            for _ in range(30):
                y = bnlib.batch_norm(x, None, None, training=True)
                np.testing.assert_array_equal(y, expected)
        except BaseException as err:  # reported to the main thread
            errors.append(err)
        finally:
            done.set()

    worker = threading.Thread(target=compute)
    worker.start()
    n = 0
    while not done.is_set():
        bnlib.set_num_threads(1 + n % 3)
        n += 1
    worker.join()
    assert errors == []
    assert n > 1


def _threads_in_child(env: dict[str, str]) -> int:
    clean = {k: v for k, v in os.environ.items() if not k.endswith("NUM_THREADS")}
    out = subprocess.run(
        [sys.executable, "-c", "import bnlib; print(bnlib.get_num_threads())"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout)


def test_get_num_threads_default_follows_the_environment():
    cores = _threads_in_child({})
    assert cores >= 1
    assert _threads_in_child({"OMP_NUM_THREADS": "3"}) == 3
    assert _threads_in_child({"OMP_NUM_THREADS": "5,2"}) == 5
    assert _threads_in_child({"BNLIB_NUM_THREADS": "7", "OMP_NUM_THREADS": "3"}) == 7
    assert _threads_in_child({"BNLIB_NUM_THREADS": "zero"}) == cores


def test_one_layer_shared_by_four_threads_gives_each_its_own_gradients():
    """Four threads doing forward + backward on one layer: each thread's dx is
    torch's for its own batch, weight_grad adds up every thread's dgamma, and the
    running statistics take every batch (momentum=None: the plain average, whatever
    order the threads came in)."""
    torch = pytest.importorskip("torch")
    n_threads, steps, shape = 4, 20, (16, 3, 8)
    rng = np.random.default_rng(5)
    w = rng.normal(size=3)
    bn = bnlib.BatchNorm1d(3, momentum=None, dtype=np.float64)
    bn.weight[...] = w
    batches = [
        [(rng.normal(t, 1 + s % 3, size=shape), rng.normal(size=shape))
         for s in range(steps)]
        for t in range(n_threads)
    ]  # fmt: skip
    results: list[list[np.ndarray]] = [[] for _ in range(n_threads)]
    start = threading.Barrier(n_threads)

    def run(t: int) -> None:
        start.wait()
        for x, dy in batches[t]:
            bn(x)
            results[t].append(bn.backward(dy))

    workers = [threading.Thread(target=run, args=(t,)) for t in range(n_threads)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns often: races would show
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        sys.setswitchinterval(interval)
    wt = torch.tensor(w, requires_grad=True)
    for t in range(n_threads):
        assert len(results[t]) == steps
        for (x, dy), dx in zip(batches[t], results[t], strict=True):
            xt = torch.tensor(x, requires_grad=True)
            y = torch.nn.functional.batch_norm(xt, None, None, wt, training=True)
            y.backward(torch.from_numpy(dy))
            np.testing.assert_allclose(dx, xt.grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(bn.weight_grad, wt.grad.numpy(), atol=1e-9)
    all_x = [x for per_thread in batches for x, _ in per_thread]
    mean = np.mean([x.mean(axis=(0, 2)) for x in all_x], axis=0)
    var = np.mean([x.var(axis=(0, 2), ddof=1) for x in all_x], axis=0)
    np.testing.assert_allclose(bn.running_mean, mean, atol=1e-10)
    np.testing.assert_allclose(bn.running_var, var, atol=1e-10)
    assert int(bn.num_batches_tracked) == n_threads * steps


def test_backward_in_another_thread_than_its_forward_raises():
    bn = bnlib.BatchNorm1d(3, dtype=np.float64)
    x = np.random.default_rng(0).normal(size=(5, 3))
    bn(x)
    errors: list[BaseException] = []

    def other() -> None:
        try:
            bn.backward(x)
        except RuntimeError as err:
            errors.append(err)

    worker = threading.Thread(target=other)
    worker.start()
    worker.join()
    assert len(errors) == 1 and "same thread" in str(errors[0])
    assert bn.backward(x).shape == x.shape  # the forward's own thread still can
