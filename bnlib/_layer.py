"""What every numpy layer shares: modes, the saved input, and gradients that add up.

:class:`Layer` is the base of the BatchNorm layers (with running statistics, in
:mod:`bnlib.modules`) and of the layers without them (:mod:`bnlib._stateless`).

Threads: what a forward pass saves for its backward pass is kept per thread, and
the updates of the running statistics and of the gradients hold the layer's lock.
So several threads may share one layer: each thread's ``backward`` follows its own
``forward``, the running statistics take every batch (in the order the threads
come), and ``weight_grad`` adds up every thread's gradient. A ``backward`` must run
in the thread that ran its ``forward``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, TypeVar

from numpy.typing import NDArray

from bnlib._checks import check_bool
from bnlib._state import StateDictMixin
from bnlib.grad_mode import is_grad_enabled

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["Layer", "accumulate"]

_T = TypeVar("_T")
_MAKING = threading.Lock()  # guards the lazy creation of each layer's lock and store
_UNPICKLED = ("_per_thread", "_layer_lock")  # rebuilt on first use, never pickled


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

    def _made(self, key: str, make: Any) -> Any:
        """``self.__dict__[key]``, made by ``make()`` the first time."""
        found = self.__dict__.get(key)
        if found is None:
            with _MAKING:
                found = self.__dict__.setdefault(key, make())
        return found

    def _lock(self) -> threading.RLock:
        """The layer's lock: held while running statistics or gradients change."""
        lock: threading.RLock = self._made("_layer_lock", threading.RLock)
        return lock

    @property
    def _saved(self) -> Any:
        """What this thread's last forward pass kept for its backward pass."""
        return getattr(self._made("_per_thread", threading.local), "saved", None)

    @_saved.setter
    def _saved(self, value: Any) -> None:
        self._made("_per_thread", threading.local).saved = value

    def _keep(self, value: Any) -> None:
        """Save ``value`` for one backward pass, unless inside :func:`bnlib.no_grad`."""
        self._saved = value if is_grad_enabled() else None

    def __getstate__(self) -> dict[str, Any]:
        """Parameters, buffers and settings; never a saved input, lock or store."""
        return {k: v for k, v in self.__dict__.items() if k not in _UNPICKLED}

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
            raise RuntimeError(
                "backward() needs a forward() first, in the same thread and outside "
                "bnlib.no_grad(): the input is kept only until one backward()"
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
        with self._lock():
            if self.weight is not None:
                self.weight_grad = accumulate(self.weight_grad, dw.astype(self.dtype))
            if self.bias is not None and db is not None:
                self.bias_grad = accumulate(self.bias_grad, db.astype(self.dtype))
        return dx
