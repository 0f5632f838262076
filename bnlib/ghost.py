"""Ghost Batch Normalization: batch statistics over small virtual batches.

Hoffer, Hubara & Soudry (2017) split a large batch of ``N`` examples into
``N / g`` "ghost" batches of ``g`` examples and normalize each with its own mean and
variance. The gradient still averages over all ``N`` examples, but the
normalization is as noisy as with a batch of ``g``: the two knobs that a plain
batch size ties together come apart.

:func:`ghost_batch_norm` and :func:`ghost_batch_norm_backward` are the numpy
definition, built chunk by chunk on :func:`bnlib.batch_norm` and
:func:`bnlib.batch_norm_backward`; numpy only. The PyTorch layer
:class:`bnlib.torch.GhostBatchNorm1d` and :func:`bnlib.torch.to_ghost` live in
``bnlib.torch.ghost``.

Running statistics: one training call updates the running averages once per ghost
batch, in order, exactly as a plain BatchNorm layer fed the ghost batches one after
another would (``num_batches_tracked`` grows by ``N / g``). Evaluation mode uses the
running statistics and accepts any batch size. In training, ``g`` must divide the
batch: a smaller last ghost batch would be noisier than the rest, silently.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bnlib._checks import as_float_input
from bnlib.batchnorm import batch_norm, batch_norm_backward

__all__ = [
    "check_ghost_size",
    "ghost_batch_norm",
    "ghost_batch_norm_backward",
    "num_ghosts",
]


def check_ghost_size(ghost_size: Any) -> int:
    """``ghost_size`` as a positive int, or a TypeError/ValueError saying why not."""
    if isinstance(ghost_size, bool) or not isinstance(ghost_size, (int, np.integer)):
        raise TypeError(f"ghost_size must be an int, got {type(ghost_size).__name__}")
    if ghost_size < 1:
        raise ValueError(f"ghost_size must be >= 1, got {ghost_size}")
    return int(ghost_size)


def num_ghosts(shape: tuple[int, ...], ghost_size: Any) -> int:
    """How many ghost batches of ``ghost_size`` a training batch of ``shape`` holds.

    Raises ``ValueError`` unless ``ghost_size`` divides ``N = shape[0]`` and each
    ghost batch has more than one value per channel.
    """
    g = check_ghost_size(ghost_size)
    if shape[0] % g:
        raise ValueError(
            f"ghost_size must divide the batch size: got ghost_size {g} "
            f"for a batch of {shape[0]} examples"
        )
    if shape[0] and g * int(np.prod(shape[2:])) == 1:
        raise ValueError(
            "Expected more than 1 value per channel in each ghost batch when "
            f"training, got ghost_size 1 for input of shape {tuple(shape)}"
        )
    return shape[0] // g


def ghost_batch_norm(
    input: ArrayLike, ghost_size: int,
    running_mean: NDArray[Any] | None, running_var: NDArray[Any] | None,
    weight: ArrayLike | None = None, bias: ArrayLike | None = None,
    training: bool = False, momentum: float = 0.1, eps: float = 1e-5,
) -> NDArray[Any]:  # fmt: skip
    """Batch normalization with statistics over ghost batches of ``ghost_size``.

    Parameters
    ----------
    input : ndarray, shape ``(N, C, *)``
        In training, ``N`` must be a multiple of ``ghost_size``.
    ghost_size : int
        Examples per ghost batch, ``g``. With ``g = N`` this is
        :func:`bnlib.batch_norm`.
    running_mean, running_var, weight, bias, training, momentum, eps
        As in :func:`bnlib.batch_norm`. In training the running statistics are
        updated in place once per ghost batch, in order.

    Returns
    -------
    ndarray, shape ``(N, C, *)``

    Notes
    -----
    Ghost batch ``l`` holds rows ``l g, ..., (l + 1) g - 1``. Each is normalized
    with its own statistics: for ``i`` in ghost batch ``l``,
    ``y_i = gamma (x_i - mu_l) / sqrt(var_l + eps) + beta``. In evaluation mode
    ``ghost_size`` is checked but plays no role.

    See Also
    --------
    ghost_batch_norm_backward : its gradients.
    """
    x = as_float_input(input)
    if not training:
        check_ghost_size(ghost_size)
        return batch_norm(x, running_mean, running_var, weight, bias, False, eps=eps)
    k = num_ghosts(x.shape, ghost_size)
    if k == 0:
        return batch_norm(
            x, running_mean, running_var, weight, bias, True, momentum, eps
        )
    chunks = np.split(x, k)
    args = (running_mean, running_var, weight, bias, True, momentum, eps)
    return np.concatenate([batch_norm(chunk, *args) for chunk in chunks])


def ghost_batch_norm_backward(
    grad_output: ArrayLike, input: ArrayLike, ghost_size: int,
    weight: ArrayLike | None = None, eps: float = 1e-5,
) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any]]:  # fmt: skip
    """Gradients of training-mode :func:`ghost_batch_norm`.

    Parameters
    ----------
    grad_output, input : ndarray, shape ``(N, C, *)``
    ghost_size : int
        Must divide ``N``.
    weight, eps
        As in :func:`bnlib.batch_norm_backward`.

    Returns
    -------
    grad_input : ndarray, shape of ``input``
    grad_weight, grad_bias : ndarray, shape ``(C,)``
        Sums over the ghost batches.

    Notes
    -----
    The ghost batches do not interact, so ``dx`` is
    :func:`bnlib.batch_norm_backward` applied to each ghost batch, and
    ``dgamma``, ``dbeta`` are the sums of the ghost batches' gradients.
    """
    x = as_float_input(input)
    dy = as_float_input(grad_output, "grad_output")
    if dy.shape != x.shape:
        raise ValueError(
            f"grad_output must have the same shape as input {x.shape}, got {dy.shape}"
        )
    k = num_ghosts(x.shape, ghost_size)
    if k == 0:
        return batch_norm_backward(dy, x, weight, eps)
    parts = [
        batch_norm_backward(d, c, weight, eps)
        for d, c in zip(np.split(dy, k), np.split(x, k), strict=True)
    ]
    dx, dgamma, dbeta = (np.stack(g) for g in zip(*parts, strict=True))
    return dx.reshape(x.shape), dgamma.sum(axis=0), dbeta.sum(axis=0)
