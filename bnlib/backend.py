"""Which kernels compute BatchNorm: numpy's (the default) or numba's compiled ones.

The functional BatchNorm (:mod:`bnlib.batchnorm`) is written once, over a few
per-channel primitives that each backend implements (see
:mod:`bnlib._kernels.numpy_backend`):

- ``shift(x3)``: the shift ``K`` the statistics are accumulated about;
- ``channel_sums(x3, shift, dy3)``: ``sum(d)``, ``sum(d**2)``, ``sum(dy)``,
  ``sum(dy * d)`` with ``d = x - K`` (the statistics, and the backward sums);
- ``normalized(x3, mean, scale, beta)``: the affine apply of the forward pass;
- ``input_grad(dy3, x3, mean, coef)``: the backward apply.

``"numpy"`` needs nothing but numpy. ``"numba"`` needs the ``fast`` extra
(``pip install "bnlib-batchnorm[fast]"``). The environment variable
``BNLIB_BACKEND`` sets the backend a process starts with; :func:`set_backend`
changes it.

See Also
--------
The chapter "How fast is bnlib?" (``chapters/speed.md``).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol, cast

import numpy as np

__all__ = ["BACKENDS", "Backend", "get_backend", "set_backend", "using"]

BACKENDS = ("numpy", "numba")
ENV_VAR = "BNLIB_BACKEND"
_MODULES = {
    "numpy": "bnlib._kernels.numpy_backend",
    "numba": "bnlib._kernels.numba_backend",
}


class Backend(Protocol):
    """The primitives a backend module provides (see the module's docstring)."""

    def shift(self, x3: np.ndarray) -> np.ndarray: ...

    def channel_sums(
        self, x3: np.ndarray, shift: np.ndarray, dy3: np.ndarray | None = None
    ) -> np.ndarray: ...

    def normalized(
        self, x3: np.ndarray, mean: Any, scale: Any, beta: Any
    ) -> np.ndarray: ...

    def input_grad(
        self, dy3: np.ndarray, x3: np.ndarray, mean: Any, coef: tuple[Any, Any, Any]
    ) -> np.ndarray: ...


_current: tuple[str, Backend] | None = None


def _load(name: object, where: str) -> tuple[str, Backend]:
    if not isinstance(name, str):
        raise TypeError(f"{where} must be a str, got {type(name).__name__}")
    if name not in BACKENDS:
        raise ValueError(f"{where} must be one of {BACKENDS}, got {name!r}")
    if name == "numba" and importlib.util.find_spec("numba") is None:
        raise ImportError(
            "the numba backend needs numba, which is not installed; "
            'install it with: pip install "bnlib-batchnorm[fast]"'
        )
    return name, cast(Backend, importlib.import_module(_MODULES[name]))


def set_backend(name: str) -> None:
    """Choose the kernels of every later BatchNorm call in this process.

    Parameters
    ----------
    name : {"numpy", "numba"}
        ``"numba"`` compiles its kernels on first use (cached on disk afterwards).

    Raises
    ------
    TypeError, ValueError
        If ``name`` is not one of the names above.
    ImportError
        For ``"numba"`` when numba is not installed; the message names the extra.

    See Also
    --------
    get_backend
    """
    global _current
    _current = _load(name, "the backend")


def get_backend() -> str:
    """The name of the backend in use: ``"numpy"`` unless chosen otherwise.

    Returns
    -------
    str
        Set by :func:`set_backend`, else by the environment variable
        ``BNLIB_BACKEND``, else ``"numpy"``.
    """
    kernels()
    assert _current is not None
    return _current[0]


@contextmanager
def using(name: str) -> Iterator[None]:
    """Run a block of code with backend ``name``, then go back to the previous one.

    Parameters
    ----------
    name : {"numpy", "numba"}
        As for :func:`set_backend`, which raises the same errors.
    """
    global _current
    before, _current = _current, _load(name, "the backend")
    try:
        yield
    finally:
        _current = before


def kernels() -> Backend:
    """The module of the backend in use, with its primitives (for bnlib's own use)."""
    global _current
    if _current is None:
        _current = _load(os.environ.get(ENV_VAR, "numpy"), ENV_VAR)
    return _current[1]
