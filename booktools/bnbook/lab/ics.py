"""Internal covariate shift, measured: Santurkar et al. (2018)'s tools.

For the chapter "Covariate shift": :func:`gradient_shift` measures internal
covariate shift the way Santurkar et al. define it, as how much the gradient of
one layer's weights changes when all the layers before it take their SGD step
first (same batch, same loss); :class:`GradientShiftTracker` records it during
training. Their "noisy BatchNorm" network is in :mod:`bnbook.lab.noisy_bn`.

Importing this module needs torch.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

__all__ = [
    "GradientShift",
    "GradientShiftTracker",
    "gradient_shift",
    "linear_positions",
]


@dataclass(frozen=True)
class GradientShift:
    """What :func:`gradient_shift` measured, one entry per measured layer.

    Attributes
    ----------
    layers : tuple of int
        Which linear layers (counted from 0) were measured.
    distance : ndarray, shape ``(n_layers,)``
        ``||G - G'||``, the Frobenius norm of the gradient change.
    relative : ndarray, shape ``(n_layers,)``
        ``||G - G'|| / ||G||``.
    cosine : ndarray, shape ``(n_layers,)``
        ``cos(G, G')``; 1 means the gradient direction did not move.
    """

    layers: tuple[int, ...]
    distance: np.ndarray
    relative: np.ndarray
    cosine: np.ndarray


def linear_positions(model: nn.Sequential) -> list[int]:
    """Positions in ``model`` of its ``nn.Linear`` modules, in order."""
    if not isinstance(model, nn.Sequential):
        raise TypeError(
            f"model must be a torch.nn.Sequential, got {type(model).__name__}"
        )
    return [i for i, m in enumerate(model) if isinstance(m, nn.Linear)]


def _all_grads(model: nn.Sequential, x, y) -> list[torch.Tensor]:
    """Gradients of the cross-entropy on ``(x, y)`` w.r.t. all parameters."""
    loss = nn.functional.cross_entropy(model(x), y)
    return list(torch.autograd.grad(loss, list(model.parameters())))


def _check_batch(x: torch.Tensor, y: torch.Tensor, lr: float) -> None:
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(
            f"x and y must be torch.Tensors, got {type(x).__name__}, {type(y).__name__}"
        )
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(
            f"x must have shape (N, D) and y shape (N,), got {tuple(x.shape)}, "
            f"{tuple(y.shape)}"
        )
    if not lr >= 0:
        raise ValueError(f"lr must be >= 0, got {lr}")


class _BatchSampler:
    """Random batches of ``(x, y)``, drawn with a generator of their own.

    Trackers use it so that measuring during training does not disturb the order
    in which :func:`bnbook.lab.experiments.train` draws its batches.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int):
        _check_batch(x, y, 0.0)
        if not 1 < batch_size <= len(y):
            raise ValueError(f"batch_size must be in 2..{len(y)}, got {batch_size}")
        self.x, self.y, self.batch_size = x, y, batch_size
        self._rng = np.random.default_rng(seed)

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self._rng.choice(len(self.y), size=self.batch_size, replace=False)
        idx_t = torch.from_numpy(idx)
        return self.x[idx_t], self.y[idx_t]


def gradient_shift(
    model: nn.Sequential,
    x: torch.Tensor,
    y: torch.Tensor,
    lr: float,
    layers: Sequence[int] | None = None,
) -> GradientShift:
    """Santurkar et al.'s internal covariate shift of some linear layers.

    Parameters
    ----------
    model : nn.Sequential
        The network; it is not modified (the measurement runs on copies, in
        training mode, so BatchNorm uses the batch's statistics).
    x : Tensor, shape ``(N, D)``
    y : Tensor, shape ``(N,)``
        One batch and its integer labels; the loss is the cross-entropy.
    lr : float
        The SGD learning rate of the update the earlier layers take.
    layers : sequence of int, optional
        Which linear layers to measure, counted from 0; by default all but the
        first (which has no earlier layer).

    Returns
    -------
    GradientShift
        ``||G - G'||``, ``||G - G'|| / ||G||`` and ``cos(G, G')`` per layer.

    Notes
    -----
    For layer :math:`i` with weights :math:`W_i`,

    .. math::
        \\begin{aligned}
        G &= \\nabla_{W_i} L(W_1, \\dots, W_k), \\\\
        G' &= \\nabla_{W_i} L(W_1 - \\eta \\nabla_{W_1} L, \\dots,
        W_{i-1} - \\eta \\nabla_{W_{i-1}} L, W_i, \\dots, W_k),
        \\end{aligned}

    both on the same batch: :math:`G'` is the gradient layer :math:`i` would see
    if the layers before it moved first, so it isolates the shift of layer
    :math:`i`'s inputs. Every parameter before layer :math:`i` (BatchNorm's
    ``weight`` and ``bias`` included) takes its step.
    """
    _check_batch(x, y, lr)
    positions = linear_positions(model)
    chosen = list(range(1, len(positions))) if layers is None else list(layers)
    if not chosen or any(not 0 <= i < len(positions) for i in chosen):
        raise ValueError(
            f"layers must be indices in 0..{len(positions) - 1} of the model's "
            f"{len(positions)} linear layers, got {layers}"
        )
    base = copy.deepcopy(model).train()
    grads = dict(zip(base.parameters(), _all_grads(base, x, y), strict=True))
    rows = [_one_layer(model, base, grads, positions[i], x, y, lr) for i in chosen]
    distance, relative, cosine = (np.array(col) for col in zip(*rows, strict=True))
    return GradientShift(tuple(chosen), distance, relative, cosine)


def _one_layer(model, base, grads, position, x, y, lr) -> tuple[float, float, float]:
    """``||G - G'||``, ``||G - G'|| / ||G||`` and cosine for one linear layer."""
    g = grads[base[position].weight].double()
    moved = copy.deepcopy(model).train()
    with torch.no_grad():
        earlier = zip(
            base[:position].parameters(), moved[:position].parameters(), strict=True
        )
        for p_base, p_moved in earlier:
            p_moved.sub_(lr * grads[p_base])
    loss = nn.functional.cross_entropy(moved(x), y)
    (g_moved,) = torch.autograd.grad(loss, [moved[position].weight])
    g_moved = g_moved.double()
    distance = (g - g_moved).norm().item()
    cosine = torch.nn.functional.cosine_similarity(g.flatten(), g_moved.flatten(), 0)
    return distance, distance / g.norm().item(), cosine.item()


@dataclass
class GradientShiftTracker:
    """:func:`bnbook.lab.experiments.train`: records :func:`gradient_shift`.

    At each call it draws a fresh batch of ``batch_size`` training examples (with
    its own generator, so the training run is not disturbed) and measures the
    gradient shift of ``layers`` for a step of size ``lr``.
    """

    x: torch.Tensor
    y: torch.Tensor
    lr: float
    layers: Sequence[int] | None = None
    batch_size: int = 60
    seed: int = 0
    steps: list[int] = field(default_factory=list)
    records: list[GradientShift] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_batch(self.x, self.y, self.lr)
        self._batches = _BatchSampler(self.x, self.y, self.batch_size, self.seed)

    def __call__(self, step: int, model: nn.Sequential) -> None:
        x, y = self._batches()
        self.records.append(gradient_shift(model, x, y, self.lr, self.layers))
        self.steps.append(step)

    def as_array(self, name: str) -> np.ndarray:
        """One measure over the run, shape ``(n_records, n_layers)``.

        ``name`` is "distance", "relative" or "cosine" (see :class:`GradientShift`).
        """
        if name not in ("distance", "relative", "cosine"):
            raise ValueError(
                f"name must be 'distance', 'relative' or 'cosine', got {name!r}"
            )
        return np.array([getattr(r, name) for r in self.records])
