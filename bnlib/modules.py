"""Stateful BatchNorm layers in numpy, with PyTorch's constructor, buffers and modes.

``BatchNorm1d``, ``BatchNorm2d`` and ``BatchNorm3d`` differ only in the input ranks
they accept. Each layer has a hand-written ``backward`` so that it can be used in a
numpy network without autograd.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bnlib._checks import (
    MixedDtypeError,
    as_float_input,
    check_device,
    check_layer_args,
    check_same_shape,
    float_dtype,
)
from bnlib._layer import Layer
from bnlib._state import IncompatibleKeys
from bnlib.batchnorm import batch_norm, batch_norm_backward, batch_norm_eval_backward

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "IncompatibleKeys"]


class _BatchNorm(Layer):
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
        device: Any = None,
        dtype: Any = None,
        *,
        bias: bool = True,
    ) -> None:
        check_layer_args(num_features, eps, momentum)
        check_device(device)
        self.dtype = float_dtype(dtype)
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.momentum = None if momentum is None else float(momentum)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        self.training = True
        c, dt = self.num_features, self.dtype
        self.weight = np.ones(c, dt) if self.affine else None
        self.bias = np.zeros(c, dt) if self.affine and bias else None
        self.weight_grad: NDArray[Any] | None = None
        self.bias_grad: NDArray[Any] | None = None
        self.running_mean = np.zeros(c, dt) if self.track_running_stats else None
        self.running_var = np.ones(c, dt) if self.track_running_stats else None
        self.num_batches_tracked = (
            np.array(0, dtype=np.int64) if self.track_running_stats else None
        )
        self._saved = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.num_features}, eps={self.eps}, "
            f"momentum={self.momentum}, affine={self.affine}, "
            f"bias={self.bias is not None}, "
            f"track_running_stats={self.track_running_stats})"
        )

    # -- resets ----------------------------------------------------------------
    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, no batches tracked."""
        for buf, value in (
            (self.running_mean, 0),
            (self.running_var, 1),
            (self.num_batches_tracked, 0),
        ):
            if buf is not None:
                buf.fill(value)

    def reset_parameters(self) -> None:
        """Reset the running statistics and set gamma = 1, beta = 0."""
        self.reset_running_stats()
        self._reset_affine()

    # -- forward and backward ---------------------------------------------------
    def _check_input(self, input: ArrayLike) -> NDArray[Any]:
        ndim = np.ndim(input)
        if ndim not in self._ranks:
            raise ValueError(f"expected {self._rank_text} input (got {ndim}D input)")
        x = as_float_input(input)
        stateful = self.weight is not None or self.running_mean is not None
        if stateful and x.shape[1] != self.num_features:
            raise ValueError(
                f"expected input with {self.num_features} channels on axis 1, "
                f"got {x.shape[1]} (input shape {x.shape})"
            )
        if self.training and x.shape[1] and x.size // x.shape[1] == 1:
            raise ValueError(
                "Expected more than 1 value per channel when training, "
                f"got input of shape {x.shape}"
            )
        self._check_dtype(x.dtype)
        return x

    def _check_dtype(self, dtype: np.dtype[Any]) -> None:
        """As in PyTorch: a layer with parameters or buffers takes its own dtype
        (and float16 into float32), a layer with neither any dtype."""
        stateful = self.weight is not None or self.running_mean is not None
        half = dtype == np.float16 and self.dtype == np.float32
        if stateful and dtype != self.dtype and not half:
            raise MixedDtypeError(
                f"mixed dtype: the layer's parameters and buffers are {self.dtype}, "
                f"the input is {dtype}; convert one to the other"
            )

    def _momentum_for_step(self) -> float:
        """This step's averaging factor; :meth:`_count_batch` counts the batch once
        it has been used, so that a call that raises leaves the count as it was."""
        count = self.num_batches_tracked
        if not (self.training and count is not None):
            return 0.0
        if self.momentum is None:
            return 1.0 / float(count + 1)
        return self.momentum

    def _count_batch(self) -> None:
        """One more batch tracked (training mode, with running statistics)."""
        if self.training and self.num_batches_tracked is not None:
            self.num_batches_tracked += 1

    def __call__(self, input: ArrayLike) -> NDArray[Any]:
        """``self.forward(input)``, so that a subclass's ``forward`` runs."""
        return self.forward(input)

    def forward(self, input: ArrayLike) -> NDArray[Any]:
        """Normalize ``input`` of shape ``(N, C, *)``; see :func:`bnlib.batch_norm`.

        Training mode (or a layer without running statistics) uses the batch
        statistics and updates the running ones; eval mode uses the running ones.
        In either mode the input is kept for one :meth:`backward` (not inside
        :func:`bnlib.no_grad`).
        """
        x = self._check_input(input)
        use_batch = self.training or not self.track_running_stats
        if use_batch and self.eps == 0:  # checked before the batch is counted
            raise ValueError("eps must be positive in training, got 0.0")
        with self._lock():
            y = self._normalize(x, use_batch)
            w, rm, rv = self.weight, self.running_mean, self.running_var
            fixed = not use_batch and rm is not None and rv is not None
            self._keep({
                "input": x,
                "weight": None if w is None else w.copy(),
                "stats": (rm.copy(), rv.copy()) if fixed and rm is not None
                and rv is not None else None,
            })  # fmt: skip
        return y

    def _normalize(self, x: NDArray[Any], use_batch: bool) -> NDArray[Any]:
        """:func:`bnlib.batch_norm` with the layer's state; counts the batch."""
        running = not self.training or self.track_running_stats
        rm = self.running_mean if running else None
        rv = self.running_var if running else None
        factor = self._momentum_for_step()
        y = batch_norm(x, rm, rv, self.weight, self.bias, use_batch, factor, self.eps)
        self._count_batch()
        return y

    def backward(self, grad_output: ArrayLike) -> NDArray[Any]:
        """Gradient of this thread's last forward pass, in either mode.

        After a training-mode forward the gradient runs through the batch
        statistics; after an eval-mode one the running statistics are constants
        (as in PyTorch: a frozen BatchNorm). Adds ``dl/dgamma`` and ``dl/dbeta``
        into ``weight_grad`` and ``bias_grad`` (as PyTorch adds into ``.grad``;
        clear them with :meth:`zero_grad`) and frees the saved input: one backward
        per forward.

        Parameters
        ----------
        grad_output : array_like, shape ``(N, C, *)``
            ``dl/dy`` for the output of the last call.

        Returns
        -------
        ndarray, shape ``(N, C, *)``
            ``dl/dx``.
        """
        s = self._require_saved(self._saved)
        dy = as_float_input(grad_output, "grad_output")
        check_same_shape(dy, s["input"], "grad_output", "the last forward input")
        if s["stats"] is None:
            dx, dgamma, dbeta = batch_norm_backward(
                dy, s["input"], s["weight"], self.eps
            )
        else:
            rm, rv = s["stats"]
            dx, dgamma, dbeta = batch_norm_eval_backward(
                dy, s["input"], rm, rv, s["weight"], self.eps
            )
        self._saved = None
        return self._add_grads(dx, dgamma, dbeta)


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
    device : None or "cpu"
        For PyTorch's signature; bnlib computes on the CPU.
    dtype : numpy or torch floating dtype, optional
        dtype of the parameters and buffers (default float32). ``torch.float64``
        means ``numpy.float64``. Inputs must have this dtype (float16 input is
        accepted by a float32 layer), as in PyTorch.
    bias : bool, keyword-only
        With ``affine``, learn ``bias``; if False it is None (PyTorch 2.13).

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
