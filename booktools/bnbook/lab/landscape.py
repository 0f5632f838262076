"""How smooth is the loss along the gradient? Santurkar et al. (2018)'s probes.

At a point of training, take the gradient ``g`` of the loss on a batch and step
along ``-g`` by several step sizes. If the loss landscape is smooth, the loss
changes predictably and the gradient at the new point is close to ``g``; on a
rough landscape both jump. :func:`probe_gradient_direction` does one probe and
:class:`LandscapeTracker` records probes during :func:`bnbook.lab.experiments.train`.
Importing this module needs torch.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from bnbook.lab.ics import _BatchSampler, _check_batch

__all__ = ["LandscapeProbe", "LandscapeTracker", "probe_gradient_direction"]


@dataclass(frozen=True)
class LandscapeProbe:
    """The loss and gradient along ``-g`` for each step size.

    Attributes
    ----------
    step_sizes : ndarray, shape ``(k,)``
    loss : ndarray, shape ``(k,)``
        ``L(w - eta * g)`` for each step size ``eta``.
    grad_change : ndarray, shape ``(k,)``
        ``||grad L(w - eta * g) - g||`` over all parameters.
    grad_norm : float
        ``||g||``.
    base_loss : float
        ``L(w)``, the loss on the batch before any step.
    """

    step_sizes: np.ndarray
    loss: np.ndarray
    grad_change: np.ndarray
    grad_norm: float
    base_loss: float

    @property
    def beta(self) -> float:
        """Effective smoothness: the largest ``grad_change / (eta * ||g||)``."""
        return float(np.max(self.grad_change / (self.step_sizes * self.grad_norm)))


def _loss_and_grads(model: nn.Module, x, y) -> tuple[float, list[torch.Tensor]]:
    loss = nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    return loss.item(), [g.double() for g in grads]


def probe_gradient_direction(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, step_sizes: Sequence[float]
) -> LandscapeProbe:
    """Loss and gradient change along the negative gradient, on one batch.

    Parameters
    ----------
    model : nn.Module
        The network; it is not modified (probes run on copies in training mode).
    x : Tensor, shape ``(N, D)``
    y : Tensor, shape ``(N,)``
        The batch and its integer labels; the loss is the cross-entropy.
    step_sizes : sequence of float
        Positive step sizes ``eta``.

    Returns
    -------
    LandscapeProbe

    Notes
    -----
    With :math:`g = \\nabla L(w)` on the batch, for each step size :math:`\\eta`

    .. math:: L(w - \\eta g) \\quad\\text{and}\\quad
        \\lVert \\nabla L(w - \\eta g) - g \\rVert,

    and the effective smoothness, a lower bound on the gradient's Lipschitz
    constant along the path:

    .. math:: \\beta = \\max_\\eta
        \\lVert \\nabla L(w - \\eta g) - g\\rVert / (\\eta\\lVert g\\rVert).
    """
    _check_batch(x, y, 0.0)
    etas = np.asarray(step_sizes, dtype=np.float64)
    if etas.ndim != 1 or etas.size == 0 or not np.all(etas > 0):
        raise ValueError(
            f"step_sizes must be a non-empty list of numbers > 0, got {etas}"
        )
    base = copy.deepcopy(model).train()
    base_loss, g = _loss_and_grads(base, x, y)
    losses, changes = [], []
    for eta in etas:
        moved = copy.deepcopy(model).train()
        with torch.no_grad():
            for p, dp in zip(moved.parameters(), g, strict=True):
                p.sub_((eta * dp).to(p.dtype))
        loss, g_moved = _loss_and_grads(moved, x, y)
        losses.append(loss)
        changes.append(_norm([a - b for a, b in zip(g_moved, g, strict=True)]))
    return LandscapeProbe(
        etas, np.array(losses), np.array(changes), _norm(g), base_loss
    )


def _norm(tensors: list[torch.Tensor]) -> float:
    return float(torch.sqrt(sum((t**2).sum() for t in tensors)))


@dataclass
class LandscapeTracker:
    """A :func:`bnbook.lab.experiments.train` callback: gradient-direction probes.

    At each call it draws a fresh batch of ``batch_size`` training examples (with its
    own generator) and runs :func:`probe_gradient_direction` on it.
    """

    x: torch.Tensor
    y: torch.Tensor
    step_sizes: Sequence[float]
    batch_size: int = 60
    seed: int = 0
    steps: list[int] = field(default_factory=list)
    probes: list[LandscapeProbe] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._batches = _BatchSampler(self.x, self.y, self.batch_size, self.seed)

    def __call__(self, step: int, model: nn.Module) -> None:
        x, y = self._batches()
        self.probes.append(probe_gradient_direction(model, x, y, self.step_sizes))
        self.steps.append(step)

    def loss_range(self) -> np.ndarray:
        """Min and max loss along the gradient at each record, shape ``(n, 2)``."""
        return np.array([(p.loss.min(), p.loss.max()) for p in self.probes])

    def beta(self) -> np.ndarray:
        """Effective smoothness at each record, shape ``(n,)``."""
        return np.array([p.beta for p in self.probes])
