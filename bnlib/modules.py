"""Stateful BatchNorm layers in numpy, with PyTorch's constructor, buffers and modes.

``BatchNorm1d``, ``BatchNorm2d`` and ``BatchNorm3d`` differ only in the input ranks
they accept. Each layer has a hand-written ``backward`` so that it can be used in a
numpy network without autograd.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bnlib._checks import as_float_input, check_same_shape
from bnlib.batchnorm import (
    batch_norm,
    batch_norm_backward,
    batch_norm_eval_backward,
)

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d"]


def _check_constructor(num_features: Any, eps: Any, momentum: Any, dtype: Any) -> None:
    if isinstance(num_features, bool) or not isinstance(
        num_features, (int, np.integer)
    ):
        raise TypeError(
            f"num_features must be an int, got {type(num_features).__name__}"
        )
    if num_features < 1:
        raise ValueError(f"num_features must be positive, got {num_features}")
    if not isinstance(eps, (int, float, np.floating)) or isinstance(eps, bool):
        raise TypeError(f"eps must be a real number, got {type(eps).__name__}")
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    if momentum is not None and (
        isinstance(momentum, bool)
        or not isinstance(momentum, (int, float, np.floating))
    ):
        raise TypeError(
            f"momentum must be a real number or None, got {type(momentum).__name__}"
        )
    if not np.issubdtype(np.dtype(dtype), np.floating):
        raise TypeError(f"dtype must be a floating dtype, got {np.dtype(dtype)}")


class _BatchNorm:
    """Common code of the BatchNorm layers; see :class:`BatchNorm1d`."""

    _ranks: tuple[int, ...] = ()
    _rank_text: str = ""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        dtype: Any = np.float32,
    ) -> None:
        _check_constructor(num_features, eps, momentum, dtype)
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.momentum = None if momentum is None else float(momentum)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        self.dtype = np.dtype(dtype)
        self.training = True
        c, dt = self.num_features, self.dtype
        self.weight = np.ones(c, dt) if self.affine else None
        self.bias = np.zeros(c, dt) if self.affine else None
        self.weight_grad: np.ndarray | None = None
        self.bias_grad: np.ndarray | None = None
        self.running_mean = np.zeros(c, dt) if self.track_running_stats else None
        self.running_var = np.ones(c, dt) if self.track_running_stats else None
        self.num_batches_tracked = (
            np.array(0, dtype=np.int64) if self.track_running_stats else None
        )
        self._saved: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.num_features}, eps={self.eps}, "
            f"momentum={self.momentum}, affine={self.affine}, "
            f"track_running_stats={self.track_running_stats})"
        )

    # -- modes and resets -------------------------------------------------------
    def train(self, mode: bool = True) -> _BatchNorm:
        """Set training mode (batch statistics) or eval mode; returns self."""
        if not isinstance(mode, (bool, np.bool_)):
            raise TypeError(f"training mode must be a bool, got {type(mode).__name__}")
        self.training = bool(mode)
        return self

    def eval(self) -> _BatchNorm:
        """Set eval mode (running statistics); returns self."""
        return self.train(False)

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, no batches tracked."""
        if self.track_running_stats:
            self.running_mean.fill(0)
            self.running_var.fill(1)
            self.num_batches_tracked.fill(0)

    def reset_parameters(self) -> None:
        """Reset the running statistics and set gamma = 1, beta = 0."""
        self.reset_running_stats()
        if self.affine:
            self.weight.fill(1)
            self.bias.fill(0)

    # -- forward and backward ---------------------------------------------------
    def _check_input(self, input: Any) -> np.ndarray:
        ndim = np.ndim(input)
        if ndim not in self._ranks:
            raise ValueError(f"expected {self._rank_text} input (got {ndim}D input)")
        x = as_float_input(input)
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"expected input with {self.num_features} channels on axis 1, "
                f"got {x.shape[1]} (input shape {x.shape})"
            )
        if self.training and x.size // x.shape[1] == 1:
            raise ValueError(
                "Expected more than 1 value per channel when training, "
                f"got input of shape {x.shape}"
            )
        return x

    def _momentum_for_step(self) -> float:
        """Count the batch and return this step's averaging factor."""
        if not (self.training and self.track_running_stats):
            return 0.0
        self.num_batches_tracked += 1
        if self.momentum is None:
            return 1.0 / float(self.num_batches_tracked)
        return self.momentum

    def forward(self, input: Any) -> np.ndarray:
        """Normalize ``input`` of shape ``(N, C, *)``; see :func:`bnlib.batch_norm`.

        Training mode (or a layer without running statistics) uses the batch
        statistics and updates the running ones; eval mode uses the running ones.
        """
        x = self._check_input(input)
        factor = self._momentum_for_step()
        use_batch = self.training or not self.track_running_stats
        running = not self.training or self.track_running_stats
        y = batch_norm(
            x,
            self.running_mean if running else None,
            self.running_var if running else None,
            self.weight,
            self.bias,
            use_batch,
            factor,
            self.eps,
        )
        self._saved = {
            "input": x,
            "use_batch": use_batch,
            "weight": None if self.weight is None else self.weight.copy(),
            "mean": None if use_batch else self.running_mean.copy(),
            "var": None if use_batch else self.running_var.copy(),
        }
        return y

    __call__ = forward

    def backward(self, grad_output: Any) -> np.ndarray:
        """Gradient of the last forward pass; sets ``weight_grad`` and ``bias_grad``.

        Parameters
        ----------
        grad_output : ndarray, shape ``(N, C, *)``
            ``dl/dy`` for the output of the last call.

        Returns
        -------
        ndarray, shape ``(N, C, *)``
            ``dl/dx``. Batch statistics are differentiated through when they were
            used; in eval mode the layer is a per-channel affine map.
        """
        if self._saved is None:
            raise RuntimeError(
                "backward() called before forward(): nothing to differentiate"
            )
        s = self._saved
        dy = as_float_input(grad_output, "grad_output")
        check_same_shape(dy, s["input"], "grad_output", "the last forward input")
        if s["use_batch"]:
            dx, dgamma, dbeta = batch_norm_backward(
                dy, s["input"], s["weight"], self.eps
            )
        else:
            dx, dgamma, dbeta = batch_norm_eval_backward(
                dy, s["input"], s["mean"], s["var"], s["weight"], self.eps
            )
        if self.affine:
            self.weight_grad = dgamma.astype(self.dtype)
            self.bias_grad = dbeta.astype(self.dtype)
        return dx

    # -- state dict -------------------------------------------------------------
    def _state_keys(self) -> list[str]:
        keys = ["weight", "bias"] if self.affine else []
        if self.track_running_stats:
            keys += ["running_mean", "running_var", "num_batches_tracked"]
        return keys

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the parameters and buffers, under PyTorch's key names."""
        return {k: np.array(getattr(self, k), copy=True) for k in self._state_keys()}

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True) -> None:
        """Load parameters and buffers, e.g. from ``torch.nn.BatchNorm2d.state_dict()``.

        Values may be numpy arrays or CPU tensors. Everything is validated before
        anything is written, so a bad state dict leaves the layer unchanged. As in
        PyTorch, a missing ``num_batches_tracked`` (older state dicts) is allowed
        and leaves the count as it is.

        Parameters
        ----------
        state_dict : dict
            Keys as returned by :meth:`state_dict`.
        strict : bool
            Raise ``ValueError`` on missing or unexpected keys.
        """
        if not isinstance(state_dict, dict):
            raise TypeError(
                f"state_dict must be a dict, got {type(state_dict).__name__}"
            )
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

    def _checked_entry(self, key: str, value: Any) -> np.ndarray:
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
        if arr.shape != (self.num_features,):
            raise ValueError(
                f"{key} must have shape ({self.num_features},), got {arr.shape}"
            )
        return arr


class BatchNorm1d(_BatchNorm):
    """Batch normalization over ``(N, C)`` or ``(N, C, L)`` input.

    Parameters
    ----------
    num_features : int
        ``C``, the number of channels (features).
    eps : float
        Added to the variance for numerical stability.
    momentum : float or None
        Weight of the new batch in the running averages; None for a cumulative
        average over all batches seen.
    affine : bool
        Learn ``weight`` (gamma) and ``bias`` (beta); if False they are None.
    track_running_stats : bool
        Keep ``running_mean``, ``running_var`` and ``num_batches_tracked``; if False
        they are None and batch statistics are used in eval mode too.
    dtype : numpy floating dtype
        dtype of the parameters and buffers.

    Notes
    -----
    ``y = gamma * (x - mu) / sqrt(var + eps) + beta`` per channel; see
    :func:`bnlib.batch_norm`.

    See Also
    --------
    BatchNorm2d, BatchNorm3d, torch.nn.BatchNorm1d
    """

    _ranks = (2, 3)
    _rank_text = "2D or 3D"


class BatchNorm2d(_BatchNorm):
    """Batch normalization over ``(N, C, H, W)`` input; see :class:`BatchNorm1d`."""

    _ranks = (4,)
    _rank_text = "4D"


class BatchNorm3d(_BatchNorm):
    """Batch normalization over ``(N, C, D, H, W)`` input; see :class:`BatchNorm1d`."""

    _ranks = (5,)
    _rank_text = "5D"
