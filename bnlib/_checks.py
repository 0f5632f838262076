"""Input validation shared by bnlib's public functions.

Every check runs before any state is touched, and every failure says what was
expected and what came.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "affine_or_default",
    "as_float_input",
    "as_channel_vector",
    "check_momentum",
    "check_running_buffer",
    "check_same_shape",
    "check_stats_pair",
]


def as_float_input(x: Any, name: str = "input") -> np.ndarray:
    """Return ``x`` as an ndarray of rank >= 2 with a floating dtype, never a copy."""
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(
            f"{name} must have a floating dtype (float16, float32 or float64), "
            f"got dtype {arr.dtype}"
        )
    if arr.ndim < 2:
        raise ValueError(
            f"{name} must have shape (N, C, *) with at least 2 dimensions, "
            f"got {arr.ndim}D input of shape {arr.shape}"
        )
    return arr


def as_channel_vector(
    v: Any, name: str, num_channels: int, dtype: np.dtype
) -> np.ndarray:
    """Return a per-channel parameter as a ``(C,)`` array of ``dtype``."""
    arr = np.asarray(v)
    if not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.shape != (num_channels,):
        raise ValueError(
            f"{name} must have shape ({num_channels},) to match the input's "
            f"{num_channels} channels, got shape {arr.shape}"
        )
    return arr.astype(dtype, copy=False)


def check_running_buffer(buf: Any, name: str, num_channels: int) -> np.ndarray:
    """Check a running-statistics buffer that may be updated in place."""
    if not isinstance(buf, np.ndarray):
        raise TypeError(
            f"{name} must be a numpy.ndarray (it is updated in place), "
            f"got {type(buf).__name__}"
        )
    if not np.issubdtype(buf.dtype, np.floating):
        raise TypeError(f"{name} must have a floating dtype, got dtype {buf.dtype}")
    if buf.shape != (num_channels,):
        raise ValueError(
            f"{name} must have shape ({num_channels},) to match the input's "
            f"{num_channels} channels, got shape {buf.shape}"
        )
    return buf


def check_same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Raise ``ValueError`` unless ``a`` and ``b`` have the same shape."""
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} must have the same shape as {name_b} {b.shape}, got {a.shape}"
        )


def check_stats_pair(running_mean: Any, running_var: Any, training: bool) -> None:
    """Both running buffers or neither; eval mode needs both."""
    missing = [
        name
        for name, buf in (("running_mean", running_mean), ("running_var", running_var))
        if buf is None
    ]
    if not training and missing:
        raise ValueError(
            f"{' and '.join(missing)} must be given in evaluation mode "
            "(training=False normalizes with the running statistics)"
        )
    if len(missing) == 1:
        raise ValueError(
            f"running_mean and running_var must be given together, got only "
            f"{'running_var' if missing[0] == 'running_mean' else 'running_mean'}"
        )


def check_momentum(momentum: Any) -> float:
    """Return ``momentum`` as a float; a bool or a non-number raises ``TypeError``."""
    if isinstance(momentum, bool) or not isinstance(
        momentum, (int, float, np.floating)
    ):
        raise TypeError(
            f"momentum must be a real number, got {type(momentum).__name__}"
        )
    return float(momentum)


def affine_or_default(
    v: Any, name: str, c: int, dtype: np.dtype, default: float
) -> np.ndarray:
    """gamma or beta as a ``(C,)`` vector, ``default`` everywhere when ``v`` is None."""
    if v is None:
        return np.full(c, default, dtype=dtype)
    return as_channel_vector(v, name, c, dtype)
