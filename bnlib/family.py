"""LayerNorm and GroupNorm: the normalization family without running state.

Each member is :func:`bnlib.normalize` over its own set of axes, then a
per-element (LayerNorm, RMSNorm) or per-channel (GroupNorm) affine map. The
functions mirror ``torch.nn.functional.layer_norm`` and ``group_norm``; the
``*_backward`` functions give the gradients in closed form. RMSNorm is in
:mod:`bnlib.rmsnorm`; InstanceNorm, which keeps running statistics as BatchNorm does,
in :mod:`bnlib.instance`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bnlib._checks import check_not_narrower
from bnlib.zscore import check_eps, standardized, standardized_backward

__all__ = [
    "group_norm",
    "group_norm_backward",
    "layer_norm",
    "layer_norm_backward",
]

_Grads = tuple[np.ndarray, np.ndarray, np.ndarray]


def float_input(x: Any, name: str = "input", min_ndim: int = 1) -> np.ndarray:
    """``x`` as an ndarray with a floating dtype and at least ``min_ndim`` axes."""
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(
            f"{name} must have a floating dtype (float16, float32 or float64), "
            f"got dtype {arr.dtype}"
        )
    if arr.ndim < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dimensions, "
            f"got {arr.ndim}D input of shape {arr.shape}"
        )
    return arr


def as_shape(normalized_shape: Any) -> tuple[int, ...]:
    """An int or a sequence of ints as a non-empty tuple of non-negative ints."""
    if isinstance(normalized_shape, (int, np.integer)):
        normalized_shape = (normalized_shape,)
    try:
        shape = tuple(normalized_shape)
    except TypeError:
        raise TypeError(
            "normalized_shape must be an int or a sequence of ints, "
            f"got {type(normalized_shape).__name__}"
        ) from None
    if not shape or any(
        isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0
        for s in shape
    ):
        raise ValueError(
            "normalized_shape must be a non-empty sequence of non-negative ints, "
            f"got {normalized_shape!r}"
        )
    return tuple(int(s) for s in shape)


def _trailing_axes(x: np.ndarray, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The last ``len(shape)`` axes of ``x``, which must have sizes ``shape``."""
    k = len(shape)
    if x.ndim < k or x.shape[x.ndim - k :] != shape:
        raise ValueError(
            f"normalized_shape {shape} must match the input's trailing dimensions, "
            f"got input of shape {x.shape} (expected shape [*, "
            f"{', '.join(map(str, shape))}])"
        )
    return tuple(range(x.ndim - k, x.ndim))


def param(v: Any, name: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """An affine parameter of exactly ``shape`` (float64), or None."""
    if v is None:
        return None
    arr = np.asarray(v)
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got shape {arr.shape}")
    return arr.astype(np.float64)


def check_affine_dtypes(weight: Any, bias: Any, dtype: np.dtype) -> None:
    """gamma and beta no narrower than the input, as torch requires."""
    check_not_narrower(weight, "weight", dtype)
    check_not_narrower(bias, "bias", dtype)


def same_shape(dy: np.ndarray, x: np.ndarray) -> None:
    if dy.shape != x.shape:
        raise ValueError(
            f"grad_output must have the same shape as input {x.shape}, got {dy.shape}"
        )


def affine(x_hat: np.ndarray, w: Any, b: Any, dtype: np.dtype) -> np.ndarray:
    y = x_hat if w is None else x_hat * w
    return (y if b is None else y + b).astype(dtype)


def trailing_setup(
    input: Any, normalized_shape: Any, weight: Any
) -> tuple[np.ndarray, tuple[int, ...], tuple[int, ...], np.ndarray | None]:
    x = float_input(input)
    shape = as_shape(normalized_shape)
    axes = _trailing_axes(x, shape)
    return x, shape, axes, param(weight, "weight", shape)


def layer_norm(
    input: Any,
    normalized_shape: Any,
    weight: Any = None,
    bias: Any = None,
    eps: float = 1e-5,
) -> np.ndarray:
    """Layer normalization, as ``torch.nn.functional.layer_norm``.

    Parameters
    ----------
    input : ndarray, shape ``(*, *normalized_shape)``
        Floating-point input; never modified.
    normalized_shape : int or tuple of ints
        The trailing dimensions each example is normalized over.
    weight, bias : array_like, shape ``normalized_shape``, optional
        Element-wise gamma and beta.
    eps : float
        Added to the variance, > 0.

    Returns
    -------
    ndarray, shape and dtype of ``input``

    Notes
    -----
    :func:`bnlib.normalize` over the trailing axes, then
    ``y = gamma * x_hat + beta`` element-wise. It is BatchNorm applied to the
    transposed ``(features, examples)`` table, without running statistics.

    See Also
    --------
    layer_norm_backward, bnlib.LayerNorm
    """
    x, shape, axes, w = trailing_setup(input, normalized_shape, weight)
    b = param(bias, "bias", shape)
    check_affine_dtypes(weight, bias, x.dtype)
    x_hat, _ = standardized(x, axes, check_eps(eps))
    return affine(x_hat, w, b, x.dtype)


def lead_sums(dy: np.ndarray, x_hat: np.ndarray, k: int) -> tuple[Any, Any]:
    """``sum(dy * x_hat)`` and ``sum(dy)`` over all but the last ``k`` axes."""
    lead = tuple(range(dy.ndim - k))
    return (dy * x_hat).sum(axis=lead), dy.sum(axis=lead)


def layer_norm_backward(
    grad_output: Any,
    input: Any,
    normalized_shape: Any,
    weight: Any = None,
    eps: float = 1e-5,
) -> _Grads:
    """Gradients of :func:`layer_norm`.

    Returns
    -------
    grad_input : ndarray, shape of ``input``
    grad_weight, grad_bias : ndarray, shape ``normalized_shape``
        Returned even when ``weight`` is None, as the gradients an affine layer at
        ``gamma = 1`` would receive.

    Notes
    -----
    With ``g = gamma * dy``, ``dx`` is :func:`bnlib.normalize_backward` of
    ``g``; ``dgamma = sum(dy * x_hat)`` and ``dbeta = sum(dy)`` over the leading axes.
    """
    x, shape, axes, w = trailing_setup(input, normalized_shape, weight)
    dy = float_input(grad_output, "grad_output")
    same_shape(dy, x)
    x_hat, rstd = standardized(x, axes, check_eps(eps))
    dy64 = dy.astype(np.float64)
    dx = standardized_backward(dy64 if w is None else dy64 * w, x_hat, rstd, axes)
    dw, db = lead_sums(dy64, x_hat, len(shape))
    return dx.astype(x.dtype), dw.astype(x.dtype), db.astype(x.dtype)


def _groups(x: np.ndarray, num_groups: Any) -> np.ndarray:
    """View ``x`` ``(N, C, *)`` as ``(N, G, C/G * prod(*))``."""
    if isinstance(num_groups, bool) or not isinstance(num_groups, (int, np.integer)):
        raise TypeError(f"num_groups must be an int, got {type(num_groups).__name__}")
    c = x.shape[1]
    if num_groups < 1 or c % num_groups:
        raise ValueError(
            f"num_groups must be a positive divisor of the {c} channels, "
            f"got num_groups={num_groups}"
        )
    per_group = int(np.prod(x.shape[1:])) // int(num_groups)  # also for N = 0
    return x.reshape(x.shape[0], int(num_groups), per_group)


def _per_channel(v: np.ndarray | None, ndim: int) -> Any:
    """A ``(C,)`` vector shaped to broadcast over ``(N, C, *)``."""
    return None if v is None else v.reshape((1, -1) + (1,) * (ndim - 2))


def group_norm(
    input: Any, num_groups: int, weight: Any = None, bias: Any = None, eps: float = 1e-5
) -> np.ndarray:
    """Group normalization, as ``torch.nn.functional.group_norm``.

    Parameters
    ----------
    input : ndarray, shape ``(N, C, *)``
    num_groups : int
        ``G``, a divisor of ``C``; the channels are split into ``G`` groups of
        ``C / G`` consecutive channels.
    weight, bias : array_like, shape ``(C,)``, optional
        Per-channel gamma and beta.
    eps : float
        > 0, added to the variance of each group.

    Returns
    -------
    ndarray, shape and dtype of ``input``

    Notes
    -----
    Statistics per example and group, over ``C/G`` channels and all spatial
    positions. ``G = 1`` is LayerNorm over ``(C, *)``; ``G = C`` is InstanceNorm.

    See Also
    --------
    group_norm_backward, bnlib.GroupNorm
    """
    x = float_input(input, min_ndim=2)
    xg = _groups(x, num_groups)
    c = (x.shape[1],)
    w, b = param(weight, "weight", c), param(bias, "bias", c)
    check_affine_dtypes(weight, bias, x.dtype)
    x_hat, _ = standardized(xg, (2,), check_eps(eps))
    return affine(x_hat.reshape(x.shape), _per_channel(w, x.ndim),
                   _per_channel(b, x.ndim), x.dtype)  # fmt: skip


def group_norm_backward(
    grad_output: Any, input: Any, num_groups: int, weight: Any = None, eps: float = 1e-5
) -> _Grads:
    """Gradients of :func:`group_norm`.

    Returns
    -------
    grad_input : ndarray, shape ``(N, C, *)``
    grad_weight, grad_bias : ndarray, shape ``(C,)``
        ``sum(dy * x_hat)`` and ``sum(dy)`` over every axis but 1.
    """
    x = float_input(input, min_ndim=2)
    xg = _groups(x, num_groups)
    w = param(weight, "weight", (x.shape[1],))
    dy = float_input(grad_output, "grad_output")
    same_shape(dy, x)
    x_hat, rstd = standardized(xg, (2,), check_eps(eps))
    dy64 = dy.astype(np.float64)
    g = dy64 if w is None else dy64 * _per_channel(w, x.ndim)
    dx = standardized_backward(g.reshape(xg.shape), x_hat, rstd, (2,))
    other = (0,) + tuple(range(2, x.ndim))
    dw = (dy64 * x_hat.reshape(x.shape)).sum(axis=other)
    db = dy64.sum(axis=other)
    return dx.reshape(x.shape).astype(x.dtype), dw.astype(x.dtype), db.astype(x.dtype)
