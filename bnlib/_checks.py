"""Input validation shared by bnlib's public functions.

Every check runs before any state is touched, and every failure says what was
expected and what came.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "as_float_input",
    "as_channel_vector",
    "check_running_buffer",
    "check_same_shape",
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
