"""LayerNorm, GroupNorm and RMSNorm layers, with torch's constructors and state dicts.

These layers keep no running statistics, so training and eval mode compute the
same thing; ``train()`` and ``eval()`` exist for a uniform interface. Each layer
has a hand-written ``backward(grad_output)`` that returns ``dl/dx`` and sets
``weight_grad`` and ``bias_grad``. The InstanceNorm layers, which may keep
running statistics, are in :mod:`bnlib.instance`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bnlib.family import (
    as_shape,
    float_input,
    group_norm,
    group_norm_backward,
    layer_norm,
    layer_norm_backward,
)
from bnlib.rmsnorm import rms_norm, rms_norm_backward
from bnlib.zscore import check_eps

__all__ = ["GroupNorm", "LayerNorm", "RMSNorm"]


def _float_dtype(dtype: Any) -> np.dtype:
    dt = np.dtype(dtype)
    if not np.issubdtype(dt, np.floating):
        raise TypeError(f"dtype must be a floating dtype, got {dt}")
    return dt


class _Stateless:
    """Modes, parameters, state dict and the saved forward input."""

    weight: np.ndarray | None
    bias: np.ndarray | None

    def _init_params(self, shape: tuple[int, ...], weight: bool, bias: bool) -> None:
        self.training = True
        self.weight = np.ones(shape, self.dtype) if weight else None
        self.bias = np.zeros(shape, self.dtype) if bias else None
        self.weight_grad: np.ndarray | None = None
        self.bias_grad: np.ndarray | None = None
        self._input: np.ndarray | None = None

    def train(self, mode: bool = True) -> _Stateless:
        """Set the mode flag (no effect on the output); returns self."""
        if not isinstance(mode, (bool, np.bool_)):
            raise TypeError(f"training mode must be a bool, got {type(mode).__name__}")
        self.training = bool(mode)
        return self

    def eval(self) -> _Stateless:
        """Same as ``train(False)``; returns self."""
        return self.train(False)

    def reset_parameters(self) -> None:
        """gamma = 1, beta = 0."""
        if self.weight is not None:
            self.weight.fill(1)
        if self.bias is not None:
            self.bias.fill(0)

    def _state_keys(self) -> list[str]:
        return [k for k in ("weight", "bias") if getattr(self, k) is not None]

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the parameters, under PyTorch's key names."""
        return {k: getattr(self, k).copy() for k in self._state_keys()}

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True) -> None:
        """Load parameters (numpy arrays or CPU tensors); all checked before any
        is written, so a bad state dict leaves the layer unchanged."""
        if not isinstance(state_dict, dict):
            raise TypeError(
                f"state_dict must be a dict, got {type(state_dict).__name__}"
            )
        expected = self._state_keys()
        missing = [k for k in expected if k not in state_dict]
        unexpected = [k for k in state_dict if k not in expected]
        if strict and (missing or unexpected):
            raise ValueError(
                f"state_dict does not match {self!r}: missing keys {missing}, "
                f"unexpected keys {unexpected}"
            )
        staged = {}
        for k in expected:
            if k not in state_dict:
                continue
            arr = np.asarray(state_dict[k])
            if not np.issubdtype(arr.dtype, np.floating):
                raise TypeError(f"{k} must have a floating dtype, got {arr.dtype}")
            if arr.shape != getattr(self, k).shape:
                raise ValueError(
                    f"{k} must have shape {getattr(self, k).shape}, got {arr.shape}"
                )
            staged[k] = arr
        for k, arr in staged.items():
            getattr(self, k)[...] = arr

    def _saved_input(self, grad_output: Any) -> tuple[np.ndarray, np.ndarray]:
        if self._input is None:
            raise RuntimeError(
                "backward() called before forward(): nothing to differentiate"
            )
        dy = float_input(grad_output, "grad_output")
        if dy.shape != self._input.shape:
            raise ValueError(
                f"grad_output must have the shape of the last forward input "
                f"{self._input.shape}, got {dy.shape}"
            )
        return dy, self._input

    def _set_grads(self, dw: np.ndarray, db: np.ndarray | None) -> None:
        if self.weight is not None:
            self.weight_grad = dw.astype(self.dtype)
        if self.bias is not None and db is not None:
            self.bias_grad = db.astype(self.dtype)


class LayerNorm(_Stateless):
    """Layer normalization over the trailing ``normalized_shape`` dimensions.

    Parameters
    ----------
    normalized_shape : int or tuple of ints
    eps : float
        > 0.
    elementwise_affine : bool
        Learn ``weight`` (and ``bias``), of shape ``normalized_shape``.
    bias : bool
        Learn ``bias`` too (only with ``elementwise_affine``).
    dtype : numpy floating dtype

    See Also
    --------
    bnlib.layer_norm, torch.nn.LayerNorm
    """

    def __init__(
        self,
        normalized_shape: Any,
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        dtype: Any = np.float32,
    ) -> None:
        self.normalized_shape = as_shape(normalized_shape)
        self.eps = check_eps(eps)
        self.elementwise_affine = bool(elementwise_affine)
        self.dtype = _float_dtype(dtype)
        affine = self.elementwise_affine
        self._init_params(self.normalized_shape, affine, affine and bool(bias))

    def __repr__(self) -> str:
        return (
            f"LayerNorm({self.normalized_shape}, eps={self.eps}, "
            f"elementwise_affine={self.elementwise_affine})"
        )

    def forward(self, input: Any) -> np.ndarray:
        """``layer_norm(input, normalized_shape, weight, bias, eps)``."""
        y = layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)
        self._input = np.asarray(input)
        return y

    __call__ = forward

    def backward(self, grad_output: Any) -> np.ndarray:
        """``dl/dx`` of the last forward pass; sets ``weight_grad``, ``bias_grad``."""
        dy, x = self._saved_input(grad_output)
        dx, dw, db = layer_norm_backward(
            dy, x, self.normalized_shape, self.weight, self.eps
        )
        self._set_grads(dw, db)
        return dx


class GroupNorm(_Stateless):
    """Group normalization over ``(N, C, *)`` input.

    Parameters
    ----------
    num_groups : int
        A divisor of ``num_channels``.
    num_channels : int
    eps : float
        > 0.
    affine : bool
        Learn per-channel ``weight`` and ``bias``.
    dtype : numpy floating dtype

    See Also
    --------
    bnlib.group_norm, torch.nn.GroupNorm
    """

    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        dtype: Any = np.float32,
    ) -> None:
        for name, v in (("num_groups", num_groups), ("num_channels", num_channels)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"{name} must be an int, got {type(v).__name__}")
            if v < 1:
                raise ValueError(f"{name} must be positive, got {v}")
        if num_channels % num_groups:
            raise ValueError(
                f"num_channels must be divisible by num_groups, got "
                f"num_channels={num_channels} and num_groups={num_groups}"
            )
        self.num_groups, self.num_channels = int(num_groups), int(num_channels)
        self.eps = check_eps(eps)
        self.affine = bool(affine)
        self.dtype = _float_dtype(dtype)
        self._init_params((self.num_channels,), self.affine, self.affine)

    def __repr__(self) -> str:
        return (
            f"GroupNorm({self.num_groups}, {self.num_channels}, eps={self.eps}, "
            f"affine={self.affine})"
        )

    def _check(self, input: Any) -> np.ndarray:
        x = float_input(input, min_ndim=2)
        if x.shape[1] != self.num_channels:
            raise ValueError(
                f"expected input with {self.num_channels} channels on axis 1, "
                f"got {x.shape[1]} (input shape {x.shape})"
            )
        return x

    def forward(self, input: Any) -> np.ndarray:
        """``group_norm(input, num_groups, weight, bias, eps)``."""
        x = self._check(input)
        y = group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        self._input = x
        return y

    __call__ = forward

    def backward(self, grad_output: Any) -> np.ndarray:
        """``dl/dx`` of the last forward pass; sets ``weight_grad``, ``bias_grad``."""
        dy, x = self._saved_input(grad_output)
        dx, dw, db = group_norm_backward(dy, x, self.num_groups, self.weight, self.eps)
        self._set_grads(dw, db)
        return dx


class RMSNorm(_Stateless):
    """Root-mean-square normalization over the trailing dimensions (no bias).

    Parameters
    ----------
    normalized_shape : int or tuple of ints
    eps : float or None
        None: the machine epsilon of the input's dtype, as in torch.
    elementwise_affine : bool
        Learn ``weight`` of shape ``normalized_shape``.
    dtype : numpy floating dtype

    See Also
    --------
    bnlib.rms_norm, torch.nn.RMSNorm
    """

    def __init__(
        self,
        normalized_shape: Any,
        eps: float | None = None,
        elementwise_affine: bool = True,
        dtype: Any = np.float32,
    ) -> None:
        self.normalized_shape = as_shape(normalized_shape)
        self.eps = None if eps is None else check_eps(eps)
        self.elementwise_affine = bool(elementwise_affine)
        self.dtype = _float_dtype(dtype)
        self._init_params(self.normalized_shape, self.elementwise_affine, False)

    def __repr__(self) -> str:
        return (
            f"RMSNorm({self.normalized_shape}, eps={self.eps}, "
            f"elementwise_affine={self.elementwise_affine})"
        )

    def forward(self, input: Any) -> np.ndarray:
        """``rms_norm(input, normalized_shape, weight, eps)``."""
        y = rms_norm(input, self.normalized_shape, self.weight, self.eps)
        self._input = np.asarray(input)
        return y

    __call__ = forward

    def backward(self, grad_output: Any) -> np.ndarray:
        """``dl/dx`` of the last forward pass; sets ``weight_grad``."""
        dy, x = self._saved_input(grad_output)
        dx, dw = rms_norm_backward(dy, x, self.normalized_shape, self.weight, self.eps)
        self._set_grads(dw, None)
        return dx
