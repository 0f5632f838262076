"""What every numpy layer shares: modes, and gradients that add up until zero_grad.

:class:`Layer` is the base of the BatchNorm layers (with running statistics, in
:mod:`bnlib.modules`) and of the layers without them (:mod:`bnlib._stateless`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from numpy.typing import NDArray

from bnlib._checks import check_bool
from bnlib._state import StateDictMixin

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["Layer", "accumulate"]

_T = TypeVar("_T")


def accumulate(total: NDArray[Any] | None, grad: NDArray[Any]) -> NDArray[Any]:
    """``total + grad`` in place, as PyTorch adds into ``.grad``; ``grad`` if None."""
    if total is None:
        return grad.copy()
    total += grad
    return total


class Layer(StateDictMixin):
    """Modes, ``zero_grad`` and gradient accumulation of a numpy layer."""

    training: bool
    dtype: Any
    weight: NDArray[Any] | None
    bias: NDArray[Any] | None
    weight_grad: NDArray[Any] | None
    bias_grad: NDArray[Any] | None
    _saves_in_training_only = False  # True: eval-mode forward passes keep no input

    def train(self, mode: bool = True) -> Self:
        """Set training mode (``mode=True``) or eval mode; returns self."""
        self.training = check_bool(mode, "training mode")
        return self

    def eval(self) -> Self:
        """Same as ``train(False)``; returns self."""
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear ``weight_grad`` and ``bias_grad`` (None, or zeros), as PyTorch's
        ``Module.zero_grad``; :meth:`backward` adds into them."""
        check_bool(set_to_none, "set_to_none")
        for name in ("weight_grad", "bias_grad"):
            grad = getattr(self, name)
            if set_to_none or grad is None:
                setattr(self, name, None)
            else:
                grad.fill(0)

    def _require_saved(self, saved: _T | None) -> _T:
        """What the last forward pass saved, or the RuntimeError of a backward
        pass without its forward pass."""
        if saved is None:
            only = self._saves_in_training_only
            mode, kept = (
                ("training-mode ", " in training mode, and only") if only else ("", "")
            )
            raise RuntimeError(
                f"backward() needs a {mode}forward() first: the input is kept only"
                f"{kept} until one backward()"
            )
        return saved

    def _reset_affine(self) -> None:
        """gamma = 1, beta = 0."""
        if self.weight is not None:
            self.weight.fill(1)
        if self.bias is not None:
            self.bias.fill(0)

    def _add_grads(
        self, dx: NDArray[Any], dw: NDArray[Any], db: NDArray[Any] | None
    ) -> NDArray[Any]:
        """Add ``dl/dgamma`` and ``dl/dbeta`` (None: no bias gradient) into the
        gradients of the parameters the layer has, in its dtype; return ``dx``."""
        if self.weight is not None:
            self.weight_grad = accumulate(self.weight_grad, dw.astype(self.dtype))
        if self.bias is not None and db is not None:
            self.bias_grad = accumulate(self.bias_grad, db.astype(self.dtype))
        return dx
