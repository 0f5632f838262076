"""bnlib.set_num_threads: thread-safe, and its default follows the environment."""

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
