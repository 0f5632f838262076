"""Input validation shared by bnlib's public functions.

Every check runs before any state is touched, and every failure says what was
expected and what came.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "MixedDtypeError",
    "affine_or_default",
    "as_float_input",
    "as_channel_vector",
    "check_bool",
    "check_device",
    "check_eps",
    "check_layer_args",
    "check_momentum",
    "check_not_narrower",
    "check_running_buffer",
    "check_same_shape",
    "check_stats_pair",
    "float_dtype",
    "quiet_non_finite",
]

P = ParamSpec("P")
R = TypeVar("R")


class MixedDtypeError(TypeError, RuntimeError):
    """Input and layer of different dtypes: a ``TypeError`` for bnlib, and a
    ``RuntimeError`` as PyTorch raises for the same mistake."""


def quiet_non_finite(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` without numpy's warnings on inf and nan: non-finite input gives
    non-finite output, silently, as in PyTorch."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            return fn(*args, **kwargs)

    return wrapper


def as_float_input(x: Any, name: str = "input") -> NDArray[Any]:
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
    v: Any, name: str, num_channels: int, dtype: np.dtype[Any]
) -> NDArray[Any]:
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


def check_not_narrower(v: Any, name: str, dtype: np.dtype[Any]) -> None:
    """Raise :class:`MixedDtypeError` if ``v`` has a floating dtype narrower than
    the input's ``dtype`` (float32 weights or buffers for float64 input), which
    PyTorch refuses too; None, integers and wider dtypes pass (see the API
    page's "Differences from PyTorch")."""
    if v is None:
        return
    found = np.asarray(v).dtype
    if np.issubdtype(found, np.floating) and found.itemsize < dtype.itemsize:
        raise MixedDtypeError(
            f"mixed dtype: {name} is {found} but the input is {dtype}; "
            f"convert {name} to {dtype} (or the input to {found})"
        )


def check_running_buffer(
    buf: Any, name: str, num_channels: int, updated: bool = False
) -> NDArray[Any]:
    """Check a running-statistics buffer; ``updated``: it must be writeable."""
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
    if updated and not buf.flags.writeable:
        raise ValueError(
            f"{name} is read-only, but training updates it in place; pass a "
            "writeable array (or training=False)"
        )
    return buf


def check_same_shape(
    a: NDArray[Any], b: NDArray[Any], name_a: str, name_b: str
) -> None:
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
    v: Any, name: str, c: int, dtype: np.dtype[Any], default: float
) -> NDArray[Any]:
    """gamma or beta as a ``(C,)`` vector, ``default`` everywhere when ``v`` is None."""
    if v is None:
        return np.full(c, default, dtype=dtype)
    return as_channel_vector(v, name, c, dtype)


def check_eps(eps: Any) -> float:
    """``eps`` as a float; a non-number raises ``TypeError``, a negative one (or nan)
    ``ValueError``. Zero is allowed: the book checks exact identities at ``eps = 0``."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating)):
        raise TypeError(f"eps must be a real number, got {type(eps).__name__}")
    if not eps >= 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    return float(eps)


def check_bool(value: Any, name: str) -> bool:
    """``value`` as a bool; anything but a bool raises ``TypeError`` naming ``name``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def float_dtype(dtype: Any) -> np.dtype[Any]:
    """A numpy floating dtype from a numpy dtype, its name, or a torch dtype.

    None means float32, as in PyTorch. ``torch.float64`` is recognized by its name
    (``"torch.float64"``), so torch is never imported here.
    """
    if dtype is None:
        return np.dtype(np.float32)
    if type(dtype).__module__ == "torch":
        name = str(dtype).removeprefix("torch.")
        if name not in ("float16", "float32", "float64"):
            raise TypeError(
                f"dtype must be torch.float16, torch.float32 or torch.float64, "
                f"got {dtype}"
            )
        dtype = name
    try:
        dt: np.dtype[Any] = np.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"dtype must be a floating dtype, got {dtype!r}") from err
    if not np.issubdtype(dt, np.floating):
        raise TypeError(f"dtype must be a floating dtype, got {dt}")
    return dt


def check_device(device: Any) -> None:
    """bnlib computes with numpy: ``device`` must be None, ``"cpu"`` or a CPU
    ``torch.device``; anything else raises ``ValueError``."""
    if device is None:
        return
    is_device = isinstance(device, str) or type(device).__module__ == "torch"
    if not is_device or str(device).split(":")[0] != "cpu":
        raise ValueError(
            f"bnlib computes on the CPU with numpy: device must be None or 'cpu', "
            f"got {device!r}"
        )


def check_layer_args(num_features: Any, eps: Any, momentum: Any) -> None:
    """The numeric arguments of a layer's constructor."""
    if isinstance(num_features, bool) or not isinstance(
        num_features, (int, np.integer)
    ):
        raise TypeError(
            f"num_features must be an int, got {type(num_features).__name__}"
        )
    if num_features < 1:
        raise ValueError(f"num_features must be positive, got {num_features}")
    check_eps(eps)
    if momentum is not None:
        check_momentum(momentum)
