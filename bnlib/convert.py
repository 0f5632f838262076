"""Porting a Keras BatchNormalization layer to PyTorch's convention.

Keras and PyTorch store the same four arrays under other names, and they disagree on
two numbers: Keras's ``momentum`` is the weight of the *old* running value (default
0.99), PyTorch's the weight of the *new* batch (default 0.1), and Keras's default
``epsilon`` is 1e-3 where PyTorch's ``eps`` is 1e-5. A port that copies the arrays but
keeps PyTorch's defaults computes another function. The book's chapter
:ref:`normalization` sets the conventions side by side; :ref:`pitfalls` reproduces the
port that goes wrong.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from bnlib._checks import as_channel_vector

__all__ = ["TorchBatchNorm", "from_keras"]


class TorchBatchNorm(NamedTuple):
    """A BatchNorm layer in PyTorch's convention (see :func:`bnlib.from_keras`).

    Attributes
    ----------
    state_dict : dict of str to ndarray
        ``weight``, ``bias``, ``running_mean``, ``running_var`` (shape ``(C,)``) and
        ``num_batches_tracked`` (a 0-d int64 array): the keys of
        ``torch.nn.BatchNorm1d.state_dict()``.
    momentum : float
        PyTorch's ``momentum``, the weight of the new batch.
    eps : float
        PyTorch's ``eps``.
    """

    state_dict: dict[str, np.ndarray]
    momentum: float
    eps: float


def _check_real(v: Any, name: str, low: float, high: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(v).__name__}")
    if not low <= v <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {v}")
    return float(v)


def _vectors(
    gamma: Any, beta: Any, moving_mean: Any, moving_variance: Any
) -> list[np.ndarray]:
    mean = np.asarray(moving_mean)
    if not np.issubdtype(mean.dtype, np.floating) or mean.ndim != 1:
        raise TypeError(
            "moving_mean must be a floating array of shape (C,), got dtype "
            f"{mean.dtype} and shape {mean.shape}"
        )
    c, dt = mean.shape[0], mean.dtype
    gamma = np.ones(c, dt) if gamma is None else gamma
    beta = np.zeros(c, dt) if beta is None else beta
    arrays = [gamma, beta, mean, moving_variance]
    names = ["gamma", "beta", "moving_mean", "moving_variance"]
    out = [
        as_channel_vector(a, n, c, dt).copy()
        for a, n in zip(arrays, names, strict=True)
    ]
    if not np.all(out[3] >= 0):
        raise ValueError("moving_variance must be non-negative everywhere")
    return out


def from_keras(
    gamma: Any,
    beta: Any,
    moving_mean: Any,
    moving_variance: Any,
    momentum: float = 0.99,
    epsilon: float = 1e-3,
) -> TorchBatchNorm:
    """A Keras ``BatchNormalization`` layer's weights in PyTorch's convention.

    Parameters
    ----------
    gamma, beta : array_like, shape ``(C,)``, or None
        Keras's scale and offset, in the order of ``layer.get_weights()``; None for a
        layer built with ``scale=False`` or ``center=False`` (then 1 and 0).
    moving_mean, moving_variance : array_like, shape ``(C,)``
        Keras's running statistics; floating, the variance non-negative. The result
        has ``moving_mean``'s dtype.
    momentum : float
        Keras's ``momentum`` in [0, 1], the weight of the old running value.
    epsilon : float
        Keras's ``epsilon``, non-negative.

    Returns
    -------
    TorchBatchNorm
        ``state_dict`` for ``torch.nn.BatchNorm*d.load_state_dict`` (after
        ``torch.from_numpy``), with ``momentum = 1 - momentum`` and ``eps = epsilon``
        for the layer's constructor. The inputs are copied, never shared.

    Notes
    -----
    Both libraries update a running statistic :math:`r` with a batch statistic
    :math:`s` as :math:`r \\leftarrow (1 - w)\\,r + w\\,s`; Keras names :math:`1 - w`
    its momentum, PyTorch :math:`w`. At inference both compute
    :math:`\\gamma (x - \\mu_{run}) / \\sqrt{\\sigma^2_{run} + \\epsilon} + \\beta`,
    so the converted layer reproduces the Keras layer exactly in evaluation mode and
    in training mode. One difference cannot be converted: while training, Keras
    averages the biased batch variance and PyTorch the unbiased one, so the running
    variances of further training drift apart by the factor :math:`m/(m-1)`.

    See Also
    --------
    bnlib.BatchNorm1d : takes the same ``momentum`` and ``eps`` as PyTorch.
    """
    w = 1.0 - _check_real(momentum, "momentum", 0.0, 1.0)
    eps = _check_real(epsilon, "epsilon", 0.0, np.inf)
    weight, bias, mean, var = _vectors(gamma, beta, moving_mean, moving_variance)
    state = {
        "weight": weight,
        "bias": bias,
        "running_mean": mean,
        "running_var": var,
        "num_batches_tracked": np.array(0, dtype=np.int64),
    }
    return TorchBatchNorm(state, w, eps)
