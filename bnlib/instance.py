"""Instance normalization: a z-score per example and channel, with BatchNorm's state.

:func:`instance_norm` mirrors ``torch.nn.functional.instance_norm``: statistics over
the spatial axes of each ``(example, channel)`` pair, and, like
:func:`bnlib.batch_norm`, running statistics updated in place (the average over the
batch of the per-instance statistics). The layers :class:`InstanceNorm1d`,
:class:`InstanceNorm2d` and :class:`InstanceNorm3d` have torch's constructors,
defaults (no affine map, no running statistics) and state-dict keys.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bnlib._checks import check_momentum, check_running_buffer, check_stats_pair
from bnlib.batchnorm import batch_norm, batch_norm_eval_backward
from bnlib.family import check_affine_dtypes, float_input, param
from bnlib.modules import _BatchNorm
from bnlib.zscore import check_eps, standardized, standardized_backward

__all__ = [
    "InstanceNorm1d",
    "InstanceNorm2d",
    "InstanceNorm3d",
    "instance_norm",
    "instance_norm_backward",
]


def _spatial(x: np.ndarray) -> np.ndarray:
    """``(N, C, *)`` as ``(N, C, L)``, with ``L > 1`` values per instance."""
    x3 = x.reshape(x.shape[0], x.shape[1], int(np.prod(x.shape[2:])))  # N may be 0
    if x3.shape[2] <= 1:
        raise ValueError(
            "Expected more than 1 spatial element when training, "
            f"got input of shape {x.shape}"
        )
    return x3


def _update(rm: np.ndarray, rv: np.ndarray, x3: np.ndarray, m: float) -> None:
    """Running averages of the batch-mean instance statistics, in place."""
    x64 = x3.astype(np.float64)
    mu = x64.mean(axis=2)
    var = x64.var(axis=2, ddof=1)
    rm *= 1 - m
    rm += m * mu.mean(axis=0)
    rv *= 1 - m
    rv += m * var.mean(axis=0)


def instance_norm(
    input: Any,
    running_mean: np.ndarray | None = None, running_var: np.ndarray | None = None,
    weight: Any = None, bias: Any = None,
    use_input_stats: bool = True, momentum: float = 0.1, eps: float = 1e-5,
) -> np.ndarray:  # fmt: skip
    """Instance normalization, as ``torch.nn.functional.instance_norm``.

    Parameters
    ----------
    input : ndarray, shape ``(N, C, *)``
        At least one spatial axis; never modified.
    running_mean, running_var : ndarray, shape ``(C,)``, or None
        Updated **in place** when ``use_input_stats`` is True; used for the
        normalization when it is False.
    weight, bias : array_like, shape ``(C,)``, optional
    use_input_stats : bool
        Normalize with each instance's statistics (True) or the running ones.
    momentum : float
    eps : float
        > 0.

    Returns
    -------
    ndarray, shape and dtype of ``input``

    Notes
    -----
    Statistics per example ``n`` and channel ``c`` over the ``L = prod(*)``
    spatial values. The running statistics move towards the batch averages
    ``mean_n(mu_nc)`` and ``mean_n(sigma_nc**2 L / (L - 1))``.

    See Also
    --------
    instance_norm_backward, InstanceNorm2d
    """
    x = float_input(input, min_ndim=2)
    c = (x.shape[1],)
    check_stats_pair(running_mean, running_var, bool(use_input_stats))
    if running_mean is not None:
        updated = bool(use_input_stats)
        check_running_buffer(running_mean, "running_mean", c[0], updated)
        check_running_buffer(running_var, "running_var", c[0], updated)
    w, b = param(weight, "weight", c), param(bias, "bias", c)
    check_affine_dtypes(weight, bias, x.dtype)
    eps = check_eps(eps)
    if not use_input_stats:
        return batch_norm(x, running_mean, running_var, w, b, False, 0.0, eps)
    momentum = check_momentum(momentum)
    x3 = _spatial(x)
    if running_mean is not None and running_var is not None and x3.shape[0]:
        _update(running_mean, running_var, x3, momentum)  # an empty batch: no change
    x_hat, _ = standardized(x3, (2,), eps)
    y = x_hat if w is None else x_hat * w[:, None]
    y = y if b is None else y + b[:, None]
    return y.reshape(x.shape).astype(x.dtype)


def instance_norm_backward(
    grad_output: Any, input: Any, weight: Any = None, eps: float = 1e-5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`instance_norm` with input statistics.

    Returns
    -------
    grad_input : ndarray, shape ``(N, C, *)``
    grad_weight, grad_bias : ndarray, shape ``(C,)``
        ``sum(dy * x_hat)`` and ``sum(dy)`` over every axis but 1; returned even
        when ``weight`` is None.

    Notes
    -----
    :func:`bnlib.normalize_backward` over the spatial axes of each
    instance, applied to ``g = gamma * dy``.
    """
    x = float_input(input, min_ndim=2)
    w = param(weight, "weight", (x.shape[1],))
    dy = float_input(grad_output, "grad_output")
    if dy.shape != x.shape:
        raise ValueError(
            f"grad_output must have the same shape as input {x.shape}, got {dy.shape}"
        )
    x3 = _spatial(x)
    x_hat, rstd = standardized(x3, (2,), check_eps(eps))
    dy3 = dy.reshape(x3.shape).astype(np.float64)
    g = dy3 if w is None else dy3 * w[:, None]
    dx = standardized_backward(g, x_hat, rstd, (2,))
    dw = (dy3 * x_hat).sum(axis=(0, 2))
    db = dy3.sum(axis=(0, 2))
    return dx.reshape(x.shape).astype(x.dtype), dw.astype(x.dtype), db.astype(x.dtype)


class _InstanceNorm(_BatchNorm):
    """Common code of the InstanceNorm layers; see :class:`InstanceNorm2d`."""

    def __init__(
        self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
        affine: bool = False, track_running_stats: bool = False,
        device: Any = None, dtype: Any = None, *, bias: bool = True,
    ) -> None:  # fmt: skip
        check_eps(eps)
        args = (num_features, eps, momentum, affine, track_running_stats)
        super().__init__(*args, device=device, dtype=dtype, bias=bias)

    def _check_input(self, input: Any) -> np.ndarray:
        ndim = np.ndim(input)
        if ndim not in self._ranks:
            raise ValueError(f"expected {self._rank_text} input (got {ndim}D input)")
        x = float_input(input)
        if ndim == self._ranks[0]:  # unbatched, as torch allows
            x = x[None]
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"expected input with {self.num_features} channels on axis "
                f"{1 if ndim == self._ranks[1] else 0}, got {x.shape[1]} "
                f"(input shape {np.shape(input)})"
            )
        spatial = int(np.prod(x.shape[2:]))
        if (self.training or not self.track_running_stats) and spatial <= 1:
            raise ValueError(
                "Expected more than 1 spatial element when training, "
                f"got input of shape {np.shape(input)}"
            )
        self._check_dtype(x.dtype)
        return x

    def forward(self, input: Any) -> np.ndarray:
        """Normalize each instance; see :func:`instance_norm`.

        Input statistics are used in training mode and whenever the layer keeps
        no running statistics; those are updated in training mode.
        """
        x = self._check_input(input)
        use_input = self.training or not self.track_running_stats
        momentum = 0.0 if self.momentum is None else self.momentum
        with self._lock():
            y = instance_norm(x, self.running_mean, self.running_var, self.weight,
                              self.bias, use_input, momentum, self.eps)  # fmt: skip
            rm, rv = self.running_mean, self.running_var
            unbatched = np.ndim(input) == self._ranks[0]
            self._keep({
                "input": x,
                "unbatched": unbatched,
                "use_input": use_input,
                "weight": None if self.weight is None else self.weight.copy(),
                "mean": None if use_input or rm is None else rm.copy(),
                "var": None if use_input or rv is None else rv.copy(),
            })  # fmt: skip
        return y[0] if unbatched else y

    def backward(self, grad_output: Any) -> np.ndarray:
        """``dl/dx`` of the last forward pass (training or eval mode); adds into
        ``weight_grad`` and ``bias_grad`` and frees the saved input."""
        s = self._require_saved(self._saved)
        dy = float_input(grad_output, "grad_output")
        dy = dy[None] if s["unbatched"] else dy
        if dy.shape != s["input"].shape:
            raise ValueError(
                f"grad_output must have the shape of the last forward input, "
                f"got {dy.shape} for input {s['input'].shape}"
            )
        if s["use_input"]:
            dx, dw, db = instance_norm_backward(dy, s["input"], s["weight"], self.eps)
        else:
            dx, dw, db = batch_norm_eval_backward(
                dy, s["input"], s["mean"], s["var"], s["weight"], self.eps
            )
        self._saved = None
        dx = self._add_grads(dx, dw, db)
        return dx[0] if s["unbatched"] else dx


class InstanceNorm1d(_InstanceNorm):
    """Instance normalization over ``(N, C, L)`` or unbatched ``(C, L)`` input.

    Parameters
    ----------
    num_features : int
        ``C``.
    eps : float
        > 0.
    momentum : float or None
        Weight of each batch in the running averages (None: 0, as in torch).
    affine : bool
        Learn per-channel ``weight`` and ``bias`` (default False, as in torch).
    track_running_stats : bool
        Keep ``running_mean``, ``running_var`` and ``num_batches_tracked`` (default
        False); eval mode then normalizes with them.
    device : None or "cpu"
        For PyTorch's signature; bnlib computes on the CPU.
    dtype : numpy or torch floating dtype, optional
        dtype of the parameters and buffers (default float32).

    Notes
    -----
    Input with a channel count other than ``num_features`` raises ``ValueError``,
    also without ``affine`` (where torch only warns). ``num_batches_tracked`` is
    kept in the state dict but, as in torch, never counted up. Unlike
    :class:`bnlib.BatchNorm1d`, :meth:`backward` also follows an eval-mode forward
    pass (through the running statistics if they are used).

    See Also
    --------
    instance_norm, torch.nn.InstanceNorm1d
    """

    _ranks = (2, 3)
    _rank_text = "2D (unbatched) or 3D (batched)"


class InstanceNorm2d(_InstanceNorm):
    """Instance normalization over ``(N, C, H, W)`` or ``(C, H, W)`` input."""

    _ranks = (3, 4)
    _rank_text = "3D (unbatched) or 4D (batched)"


class InstanceNorm3d(_InstanceNorm):
    """Instance normalization over ``(N, C, D, H, W)`` or ``(C, D, H, W)`` input."""

    _ranks = (4, 5)
    _rank_text = "4D (unbatched) or 5D (batched)"
