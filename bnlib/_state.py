"""State dicts of the numpy layers: PyTorch's keys and ``load_state_dict`` contract.

The keys are the layer's parameters and buffers that are not None, in PyTorch's
order: ``weight``, ``bias``, ``running_mean``, ``running_var``,
``num_batches_tracked``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from bnlib._checks import check_bool

__all__ = ["IncompatibleKeys", "StateDictMixin"]


class IncompatibleKeys(NamedTuple):
    """What :meth:`bnlib.BatchNorm1d.load_state_dict` returns, as PyTorch's
    ``_IncompatibleKeys``: the keys missing from the state dict and those it had
    that the layer does not know."""

    missing_keys: list[str]
    unexpected_keys: list[str]

    def __repr__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return (
            f"IncompatibleKeys(missing_keys={self.missing_keys}, "
            f"unexpected_keys={self.unexpected_keys})"
        )

    def __str__(self) -> str:
        return self.__repr__()


class StateDictMixin:
    """``state_dict`` and ``load_state_dict``; each entry must have the shape of the
    array it replaces."""

    def _state_keys(self) -> list[str]:
        names = ["weight", "bias", "running_mean", "running_var"]
        names.append("num_batches_tracked")
        return [k for k in names if getattr(self, k) is not None]

    def state_dict(self) -> dict[str, NDArray[Any]]:
        """Copies of the parameters and buffers, under PyTorch's key names."""
        return {k: np.array(getattr(self, k), copy=True) for k in self._state_keys()}

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True
    ) -> IncompatibleKeys:
        """Load parameters and buffers, e.g. from ``torch.nn.BatchNorm2d.state_dict()``.

        Values may be numpy arrays or CPU tensors. Everything is validated before
        anything is written, so a bad state dict leaves the layer unchanged. As in
        PyTorch, a missing ``num_batches_tracked`` (older state dicts) is allowed
        and leaves the count as it is.

        Parameters
        ----------
        state_dict : Mapping
            Keys as returned by :meth:`state_dict`.
        strict : bool
            Raise ``ValueError`` on missing or unexpected keys; otherwise load the
            keys that match and report the others.

        Returns
        -------
        IncompatibleKeys
            ``(missing_keys, unexpected_keys)``, as PyTorch returns.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                f"state_dict must be a Mapping, got {type(state_dict).__name__}"
            )
        check_bool(strict, "strict")
        expected = self._state_keys()
        # Like PyTorch, accept state dicts saved before num_batches_tracked existed:
        # the current count is kept.
        missing = [
            k for k in expected if k not in state_dict and k != "num_batches_tracked"
        ]
        unexpected = [k for k in state_dict if k not in expected]
        if strict and (missing or unexpected):
            raise ValueError(
                f"state_dict does not match {self!r}: missing keys {missing}, "
                f"unexpected keys {unexpected}"
            )
        staged = {
            k: self._checked_entry(k, state_dict[k])
            for k in expected
            if k in state_dict
        }
        for key, value in staged.items():
            getattr(self, key)[...] = value
        return IncompatibleKeys(missing, unexpected)

    def _checked_entry(self, key: str, value: Any) -> NDArray[Any]:
        arr = np.asarray(value)
        if key == "num_batches_tracked":
            if arr.shape not in ((), (1,)) or not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(
                    f"num_batches_tracked must be an integer scalar, got "
                    f"dtype {arr.dtype} and shape {arr.shape}"
                )
            return arr.reshape(())
        if not np.issubdtype(arr.dtype, np.floating):
            raise TypeError(f"{key} must have a floating dtype, got {arr.dtype}")
        shape = getattr(self, key).shape
        if arr.shape != shape:
            raise ValueError(f"{key} must have shape {shape}, got {arr.shape}")
        return arr
