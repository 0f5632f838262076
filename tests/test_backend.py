"""bnlib.backend: choosing the kernels, and the backends' primitives.

The primitives are compared with plain numpy over the whole array; the BatchNorm
functions under each backend are compared with PyTorch in tests/test_batchnorm.py
(the ``backend`` fixture of conftest.py).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import bnlib
from bnlib import backend as chooser

NO_NUMBA = "numba is not installed (the fast extra: bnlib-batchnorm[fast])"
SHAPES = [(1, 1, 1), (7, 3, 5), (3, 4, 2001), (2, 3, 50_000), (300, 1024, 1)]


@pytest.fixture
def restore():
    """Put back the backend a test changes, and forget it when none was chosen."""
    before = chooser._current
    yield
    chooser._current = before


def test_get_backend_is_numpy_by_default(restore, monkeypatch):
    monkeypatch.delenv("BNLIB_BACKEND", raising=False)
    chooser._current = None
    assert bnlib.get_backend() == "numpy"


def test_set_backend_numpy_is_read_back(restore):
    bnlib.set_backend("numpy")
    assert bnlib.get_backend() == "numpy"
    assert chooser.kernels().__name__ == "bnlib._kernels.numpy_backend"


@pytest.mark.parametrize(
    ("name", "error"), [("cuda", ValueError), ("", ValueError), (1, TypeError)]
)
def test_set_backend_rejects_unknown_names(restore, name, error):
    bnlib.set_backend("numpy")
    with pytest.raises(error, match="backend"):
        bnlib.set_backend(name)
    assert bnlib.get_backend() == "numpy"


def test_environment_variable_chooses_the_backend(restore, monkeypatch):
    monkeypatch.setenv("BNLIB_BACKEND", "numpy")
    chooser._current = None
    assert bnlib.get_backend() == "numpy"


def test_environment_variable_with_an_unknown_name_raises(restore, monkeypatch):
    monkeypatch.setenv("BNLIB_BACKEND", "fortran")
    chooser._current = None
    with pytest.raises(ValueError, match="BNLIB_BACKEND"):
        bnlib.get_backend()


def _without_numba(monkeypatch):
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "numba" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_set_backend_numba_without_numba_names_the_extra(restore, monkeypatch):
    bnlib.set_backend("numpy")
    _without_numba(monkeypatch)
    with pytest.raises(ImportError, match=r'pip install "bnlib-batchnorm\[fast\]"'):
        bnlib.set_backend("numba")
    assert bnlib.get_backend() == "numpy"


def test_environment_variable_numba_without_numba_names_the_extra(restore, monkeypatch):
    _without_numba(monkeypatch)
    monkeypatch.setenv("BNLIB_BACKEND", "numba")
    chooser._current = None
    with pytest.raises(ImportError, match=r"bnlib-batchnorm\[fast\]"):
        bnlib.batch_norm(np.ones((2, 3)), None, None, training=True)


def test_set_backend_numba_is_read_back(restore):
    pytest.importorskip("numba", reason=NO_NUMBA)
    bnlib.set_backend("numba")
    assert bnlib.get_backend() == "numba"


def test_numba_cache_is_in_a_user_folder():
    pytest.importorskip("numba", reason=NO_NUMBA)
    import numba

    from bnlib._kernels import numba_backend

    folder = numba_backend._affine._cache._cache_path
    assert numba.config.CACHE_DIR and folder.startswith(numba.config.CACHE_DIR)


def _kernels(backend):
    return chooser._load(backend, "backend")[1]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_channel_sums_match_numpy(backend, rng, shape, dtype):
    x3 = rng.normal(2, 3, size=shape).astype(dtype)
    dy3 = rng.normal(size=shape).astype(dtype)
    k = _kernels(backend)
    shift = k.shift(x3)
    d = x3.astype(np.float64) - shift.reshape(1, -1, 1)
    g = dy3.astype(np.float64)
    expected = [d.sum((0, 2)), (d * d).sum((0, 2)), g.sum((0, 2)), (g * d).sum((0, 2))]
    tol = 1e-10 if dtype == np.float64 else 1e-5
    scale = np.abs(d).sum((0, 2)) * np.abs(d).max()  # for sums that cancel
    np.testing.assert_allclose(
        k.channel_sums(x3, shift, dy3), expected, rtol=tol, atol=tol * scale.max()
    )
    np.testing.assert_array_equal(k.channel_sums(x3, shift)[2:], 0)


@pytest.mark.parametrize("shape", SHAPES)
def test_normalized_and_input_grad_match_their_formulas(backend, rng, shape):
    x3, dy3 = rng.normal(2, 3, size=shape), rng.normal(size=shape)
    mean, s, c, a, b = (rng.normal(size=shape[1]).reshape(1, -1, 1) for _ in range(5))
    k = _kernels(backend)
    y = k.normalized(x3, mean.ravel(), s.ravel(), b.ravel())
    np.testing.assert_allclose(y, (x3 - mean) * s + b, rtol=0, atol=1e-12)
    dx = k.input_grad(dy3, x3, mean.ravel(), (s.ravel(), c.ravel(), a.ravel()))
    np.testing.assert_allclose(dx, s * (dy3 - c - a * (x3 - mean)), rtol=0, atol=1e-12)


def test_shift_lies_within_each_channel(backend, rng):
    x3 = rng.normal(size=(64, 5, 300)) + np.arange(5).reshape(1, 5, 1) * 100
    k = _kernels(backend).shift(x3)
    assert np.all((x3.min(axis=(0, 2)) <= k) & (k <= x3.max(axis=(0, 2))))


def test_numpy_few_channel_long_rows_match_the_blocked_passes(rng):
    from bnlib._kernels import blocked, numpy_backend

    x3 = rng.normal(1, 2, size=(2, 3, numpy_backend.LONG_ROW + 5))
    dy3 = rng.normal(size=x3.shape)
    assert numpy_backend._by_channel(x3)
    shift = numpy_backend.shift(x3)
    np.testing.assert_allclose(
        numpy_backend.channel_sums(x3, shift, dy3),
        blocked.channel_sums(x3, shift, dy3),
        rtol=1e-12,
        atol=1e-9,
    )


def test_using_restores_the_previous_backend(restore):
    bnlib.set_backend("numpy")
    with chooser.using("numpy"):
        assert bnlib.get_backend() == "numpy"
    with pytest.raises(ValueError, match="backend"), chooser.using("cobol"):
        pass
    assert bnlib.get_backend() == "numpy"


def test_numba_kernels_follow_set_num_threads(restore, rng):
    numba = pytest.importorskip("numba", reason=NO_NUMBA)
    before = bnlib.get_num_threads()
    bnlib.set_backend("numba")
    try:
        bnlib.set_num_threads(1)
        bnlib.batch_norm(rng.normal(size=(4, 3, 5)), None, None, training=True)
        assert numba.get_num_threads() == 1
    finally:
        bnlib.set_num_threads(before)


def test_numba_backend_leaves_torchs_threads_alone(restore, rng):
    pytest.importorskip("numba", reason=NO_NUMBA)
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        bnlib.set_backend("numba")
        bnlib.batch_norm(rng.normal(size=(4, 3, 5)), None, None, training=True)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
