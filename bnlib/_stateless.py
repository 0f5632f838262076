"""The base of the layers without running statistics (LayerNorm, GroupNorm, RMSNorm).

Modes, parameters, gradients that add up until ``zero_grad``, PyTorch's state-dict
keys and the input saved for one backward pass: the contract of
:class:`bnlib.BatchNorm1d` for layers whose parameters have any shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bnlib._checks import MixedDtypeError, check_bool
from bnlib._state import StateDictMixin
from bnlib.family import float_input
from bnlib.modules import _accumulate

__all__ = ["Stateless"]


class Stateless(StateDictMixin):
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
        self._input: np.ndarray | None = None

    def __call__(self, input: Any) -> np.ndarray:
        """``self.forward(input)``."""
        return self.forward(input)

    def forward(self, input: Any) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def train(self, mode: bool = True) -> Stateless:
        """Set the mode flag (no effect on the output); returns self."""
        self.training = check_bool(mode, "training mode")
        return self

    def eval(self) -> Stateless:
        """Same as ``train(False)``; returns self."""
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear ``weight_grad`` and ``bias_grad`` (None, or zeros); :meth:`backward`
        adds into them, as PyTorch adds into ``.grad``."""
        check_bool(set_to_none, "set_to_none")
        for name in ("weight_grad", "bias_grad"):
            grad = getattr(self, name)
            if set_to_none or grad is None:
                setattr(self, name, None)
            else:
                grad.fill(0)

    def reset_parameters(self) -> None:
        """gamma = 1, beta = 0."""
        if self.weight is not None:
            self.weight.fill(1)
        if self.bias is not None:
            self.bias.fill(0)

    def _state_keys(self) -> list[str]:
        return [k for k in ("weight", "bias") if getattr(self, k) is not None]

    def _checked_entry(self, key: str, value: Any) -> np.ndarray:
        arr = np.asarray(value)
        if not np.issubdtype(arr.dtype, np.floating):
            raise TypeError(f"{key} must have a floating dtype, got {arr.dtype}")
        shape = getattr(self, key).shape
        if arr.shape != shape:
            raise ValueError(f"{key} must have shape {shape}, got {arr.shape}")
        return arr

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
        if self._input is None:
            raise RuntimeError(
                "backward() needs a forward() first: the input is kept only until "
                "one backward()"
            )
        dy = float_input(grad_output, "grad_output")
        if dy.shape != self._input.shape:
            raise ValueError(
                f"grad_output must have the shape of the last forward input "
                f"{self._input.shape}, got {dy.shape}"
            )
        x, self._input = self._input, None
        return dy, x

    def _add_grads(self, dw: np.ndarray, db: np.ndarray | None) -> None:
        if self.weight is not None:
            self.weight_grad = _accumulate(self.weight_grad, dw.astype(self.dtype))
        if self.bias is not None and db is not None:
            self.bias_grad = _accumulate(self.bias_grad, db.astype(self.dtype))
