"""The base of the layers without running statistics (LayerNorm, GroupNorm, RMSNorm).

Modes, parameters, gradients that add up until ``zero_grad``, PyTorch's state-dict
keys and the input saved for one backward pass: the contract of
:class:`bnlib.BatchNorm1d` for layers whose parameters have any shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bnlib._checks import MixedDtypeError
from bnlib._layer import Layer
from bnlib.family import float_input

__all__ = ["Stateless"]


class Stateless(Layer):
    """Modes, parameters, gradients, state dict and the saved forward input, with
    the contract of :class:`bnlib.BatchNorm1d`."""

    weight: np.ndarray | None
    bias: np.ndarray | None
    dtype: np.dtype

    def _init_params(self, shape: tuple[int, ...], weight: bool, bias: bool) -> None:
        self.training = True
        self.weight = np.ones(shape, self.dtype) if weight else None
        self.bias = np.zeros(shape, self.dtype) if bias else None
        self.weight_grad: np.ndarray | None = None
        self.bias_grad: np.ndarray | None = None
        self._saved = None

    _positional: tuple[str, ...] = ()  # constructor arguments shown in repr
    _keywords: tuple[str, ...] = ()
    _shows_bias = False  # torch's repr ends with bias=True/False

    def __repr__(self) -> str:
        args = [f"{getattr(self, k)}" for k in self._positional]
        args += [f"{k}={getattr(self, k)}" for k in self._keywords]
        if self._shows_bias:
            args.append(f"bias={self.bias is not None}")
        return f"{type(self).__name__}({', '.join(args)})"

    def __call__(self, input: Any) -> np.ndarray:
        """``self.forward(input)``."""
        return self.forward(input)

    def forward(self, input: Any) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def reset_parameters(self) -> None:
        """gamma = 1, beta = 0."""
        self._reset_affine()

    def _state_keys(self) -> list[str]:
        return [k for k in ("weight", "bias") if getattr(self, k) is not None]

    def _check_dtype(self, x: np.ndarray) -> None:
        """As in PyTorch: with parameters, the input must have their dtype (float16
        is accepted by a float32 layer)."""
        half = x.dtype == np.float16 and self.dtype == np.float32
        if self.weight is not None and x.dtype != self.dtype and not half:
            raise MixedDtypeError(
                f"mixed dtype: the layer's parameters are {self.dtype}, the input is "
                f"{x.dtype}; convert one to the other"
            )

    def _saved_input(self, grad_output: Any) -> tuple[np.ndarray, np.ndarray]:
        """The input of the last forward pass, freed: one backward per forward."""
        x: np.ndarray = self._require_saved(self._saved)
        dy = float_input(grad_output, "grad_output")
        if dy.shape != x.shape:
            raise ValueError(
                f"grad_output must have the shape of the last forward input "
                f"{x.shape}, got {dy.shape}"
            )
        self._saved = None
        return dy, x
