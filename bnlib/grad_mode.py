"""Inference without saved inputs: :func:`no_grad`, as ``torch.no_grad``.

A numpy layer keeps its input from ``forward`` until one ``backward``, so that the
backward pass can recompute the statistics. For inference nothing needs keeping:
inside ``with bnlib.no_grad():`` the layers keep nothing. The running statistics
still move in training mode, as in PyTorch, where ``no_grad`` only stops autograd
from recording. The setting is per thread, as PyTorch's is.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["is_grad_enabled", "no_grad"]

_state = threading.local()


def is_grad_enabled() -> bool:
    """Whether the layers keep their input for ``backward`` in this thread.

    Returns
    -------
    bool
        False inside :func:`no_grad`, True otherwise.
    """
    return bool(getattr(_state, "enabled", True))


@contextmanager
def no_grad() -> Iterator[None]:
    """A block (or, as a decorator, a function) in which layers keep no input.

    A ``backward`` after a forward pass inside the block raises ``RuntimeError``.
    Blocks nest; leaving one restores the setting it found. Also usable as a
    decorator, as ``torch.no_grad``.

    Examples
    --------
    >>> import numpy as np, bnlib
    >>> bn = bnlib.BatchNorm1d(3).eval()
    >>> with bnlib.no_grad():
    ...     y = bn(np.zeros((4, 3), np.float32))
    """
    before = is_grad_enabled()
    _state.enabled = False
    try:
        yield
    finally:
        _state.enabled = before
