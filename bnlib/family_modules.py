"""LayerNorm, GroupNorm and RMSNorm layers, with torch's constructors and state dicts.

These layers keep no running statistics, so training and eval mode compute the
same thing; ``train()`` and ``eval()`` exist for a uniform interface. Each layer
has a hand-written ``backward(grad_output)`` that returns ``dl/dx`` and adds into
``weight_grad`` and ``bias_grad`` (cleared by ``zero_grad``), as
:class:`bnlib.BatchNorm1d` does. The InstanceNorm layers, which may keep
running statistics, are in :mod:`bnlib.instance`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bnlib._checks import check_device, float_dtype
from bnlib._stateless import Stateless
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


class LayerNorm(Stateless):
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
    device : None or "cpu"
        For PyTorch's signature; bnlib computes on the CPU.
    dtype : numpy or torch floating dtype, optional
        dtype of the parameters (default float32); inputs must have it.

    See Also
    --------
    bnlib.layer_norm, torch.nn.LayerNorm
    """

    _positional = ("normalized_shape",)
    _keywords = ("eps", "elementwise_affine")
    _shows_bias = True

    def __init__(
        self,
        normalized_shape: Any,
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        self.normalized_shape = as_shape(normalized_shape)
        self.eps = check_eps(eps)
        self.elementwise_affine = bool(elementwise_affine)
        check_device(device)
        self.dtype = float_dtype(dtype)
        affine = self.elementwise_affine
        self._init_params(self.normalized_shape, affine, affine and bool(bias))

    def forward(self, input: Any) -> np.ndarray:
        """``layer_norm(input, normalized_shape, weight, bias, eps)``."""
        x = float_input(input)
        self._check_dtype(x)
        y = layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        self._keep(x)
        return y

    def backward(self, grad_output: Any) -> np.ndarray:
        """``dl/dx`` of the last forward; adds into ``weight_grad``, ``bias_grad``."""
        dy, x = self._saved_input(grad_output)
        dx, dw, db = layer_norm_backward(
            dy, x, self.normalized_shape, self.weight, self.eps
        )
        return self._add_grads(dx, dw, db)


class GroupNorm(Stateless):
    """Group normalization over ``(N, C, *)`` input.

    Parameters
    ----------
    num_groups : int
        A divisor of ``num_channels``.
    num_channels : int
    eps : float
        > 0.
    affine : bool
        Learn per-channel ``weight`` (and ``bias``).
    device, dtype
        As for :class:`bnlib.LayerNorm`.
    bias : bool, keyword-only
        With ``affine``, learn ``bias``; if False it is None (as in torch).

    See Also
    --------
    bnlib.group_norm, torch.nn.GroupNorm
    """

    _positional = ("num_groups", "num_channels")
    _keywords = ("eps", "affine")
    _shows_bias = True

    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        bias: bool = True,
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
        check_device(device)
        self.dtype = float_dtype(dtype)
        self._init_params((self.num_channels,), self.affine, self.affine and bias)

    def _check(self, input: Any) -> np.ndarray:
        x = float_input(input, min_ndim=2)
        if x.shape[1] != self.num_channels:
            raise ValueError(
                f"expected input with {self.num_channels} channels on axis 1, "
                f"got {x.shape[1]} (input shape {x.shape})"
            )
        self._check_dtype(x)
        return x

    def forward(self, input: Any) -> np.ndarray:
        """``group_norm(input, num_groups, weight, bias, eps)``."""
        x = self._check(input)
        y = group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        self._keep(x)
        return y

    def backward(self, grad_output: Any) -> np.ndarray:
        """``dl/dx`` of the last forward; adds into ``weight_grad``, ``bias_grad``."""
        dy, x = self._saved_input(grad_output)
        dx, dw, db = group_norm_backward(dy, x, self.num_groups, self.weight, self.eps)
        return self._add_grads(dx, dw, db)


class RMSNorm(Stateless):
    """Root-mean-square normalization over the trailing dimensions (no bias).

    Parameters
    ----------
    normalized_shape : int or tuple of ints
    eps : float or None
        None: the machine epsilon of the input's dtype, as in torch.
    elementwise_affine : bool
        Learn ``weight`` of shape ``normalized_shape``; RMSNorm has no
        ``bias``.
    device, dtype
        As for :class:`bnlib.LayerNorm`.

    See Also
    --------
    bnlib.rms_norm, bnlib.LayerNorm, torch.nn.RMSNorm
    """

    _positional = ("normalized_shape",)
    _keywords = ("eps", "elementwise_affine")

    def __init__(
        self,
        normalized_shape: Any,
        eps: float | None = None,
        elementwise_affine: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        self.normalized_shape = as_shape(normalized_shape)
        self.eps = None if eps is None else check_eps(eps)
        self.elementwise_affine = bool(elementwise_affine)
        check_device(device)
        self.dtype = float_dtype(dtype)
        self._init_params(self.normalized_shape, self.elementwise_affine, False)

    def forward(self, input: Any) -> np.ndarray:
        """``rms_norm(input, normalized_shape, weight, eps)``."""
        x = float_input(input)
        self._check_dtype(x)
        y = rms_norm(x, self.normalized_shape, self.weight, self.eps)
        self._keep(x)
        return y

    def backward(self, grad_output: Any) -> np.ndarray:
        """``dl/dx`` of the last forward pass; adds into ``weight_grad``."""
        dy, x = self._saved_input(grad_output)
        dx, dw = rms_norm_backward(dy, x, self.normalized_shape, self.weight, self.eps)
        return self._add_grads(dx, dw, None)
