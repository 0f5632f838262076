"""Measurements on a :class:`bnbook.lab.seeds.SeedMLP`, one number per slot.

- :func:`first_step_at`: the first recorded step at which each slot reaches an
  accuracy (time to a level, per seed).
- :func:`gradient_probe`: the loss along the negative gradient on a batch, with the
  actual step length ``eta * ||g||`` and the weight norms, per slot (the loss
  landscape of Santurkar et al. 2018).
- :func:`sigmoid_slope` and :class:`SlopeRecorder`: how saturated the sigmoids of
  the last hidden layer are, at the end of training or early in it.
- :func:`mc_batchnorm_probs`: Monte Carlo BatchNorm (Teye et al. 2018): predictive
  probabilities averaged over batches of random training examples whose statistics
  normalize the test inputs.

Importing this module needs torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from bnbook.lab.seeds import SeedMLP, _slot_loss

__all__ = [
    "GradientProbe",
    "SeedTracker",
    "SlopeRecorder",
    "batchmate_logits",
    "first_step_at",
    "gradient_probe",
    "gradient_shift",
    "mc_batchnorm_probs",
    "sigmoid_slope",
]


def first_step_at(steps: Sequence[int], acc: np.ndarray, level: float) -> np.ndarray:
    """First step in ``steps`` with ``acc >= level``, per slot (``nan`` if never).

    Parameters
    ----------
    steps : sequence of int, length R
    acc : ndarray, shape ``(R, K)``
    level : float in [0, 1]

    Returns
    -------
    ndarray of float, shape ``(K,)``
    """
    acc = np.asarray(acc)
    if not 0 <= level <= 1 or acc.ndim != 2 or acc.shape[0] != len(steps):
        raise ValueError(
            f"need level in [0, 1] and acc of shape ({len(steps)}, K), got {level} "
            f"and {acc.shape}"
        )
    reached = acc >= level
    first = np.argmax(reached, axis=0)
    out = np.asarray(steps, dtype=np.float64)[first]
    out[~reached.any(axis=0)] = np.nan
    return out


@dataclass(frozen=True)
class GradientProbe:
    """Loss along ``w - eta g`` per slot; arrays have one row per slot.

    ``loss`` ``(K, E)``; ``base_loss``, ``grad_norm`` ``(K,)``; ``step_length``
    ``(K, E)`` is ``eta * ||g||``; ``beta`` ``(K,)`` is the effective smoothness
    ``max_eta ||grad L(w - eta g) - g|| / (eta ||g||)``; ``weight_norm`` and
    ``relative_step`` ``(K, L)`` hold ``||W_l||`` and ``eta_0 ||g_l|| / ||W_l||``
    per weight matrix, at the first step size ``eta_0``.
    """

    step_sizes: np.ndarray
    base_loss: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray
    step_length: np.ndarray
    beta: np.ndarray
    weight_norm: np.ndarray
    relative_step: np.ndarray


def gradient_probe(
    net: SeedMLP, x: torch.Tensor, y: torch.Tensor, step_sizes: Sequence[float]
) -> GradientProbe:
    """Walk along each slot's negative gradient on its batch ``x`` ``(K, B, in)``.

    All evaluations are in training mode without noise or dropout draws that
    differ between step sizes (the generator is reseeded for each).

    Notes
    -----
    With :math:`g = \\nabla L(w)`, the probe records :math:`L(w - \\eta g)` and the
    distance moved, :math:`\\eta \\lVert g \\rVert`. For a weight matrix in front of
    BatchNorm the loss is invariant to its scale, so the change that matters is
    relative, :math:`\\eta \\lVert g_l \\rVert / \\lVert W_l \\rVert`.
    """
    etas = np.asarray(step_sizes, dtype=np.float64)
    if etas.ndim != 1 or etas.size == 0 or (etas <= 0).any():
        raise ValueError(f"step_sizes must be positive, got {step_sizes}")
    base = _loss(net, x, y, net.params)
    grads = torch.autograd.grad(base.sum(), net.params)
    g_norm = _slot_norm(torch.cat([g.flatten(1) for g in grads], dim=1))
    losses, change = _walk(net, x, y, grads, etas)
    weights = net.layer_weights()
    index = [next(i for i, p in enumerate(net.params) if p is w) for w in weights]
    w_norm = np.stack([_slot_norm(w.detach()) for w in weights], axis=1)
    gl_norm = np.stack([_slot_norm(grads[i]) for i in index], axis=1)
    return GradientProbe(
        etas,
        base.detach().double().numpy(),
        losses,
        g_norm,
        etas[None, :] * g_norm[:, None],
        np.max(change / (etas[None, :] * g_norm[:, None]), axis=1),
        w_norm,
        etas[0] * gl_norm / w_norm,
    )


def _slot_norm(t: torch.Tensor) -> np.ndarray:
    return t.flatten(1).norm(dim=1).double().numpy()


def _walk(net, x, y, grads, etas) -> tuple[np.ndarray, np.ndarray]:
    """Loss at ``w - eta g`` and ``||grad L(w - eta g) - g||``, each ``(K, E)``."""
    losses, change = [], []
    for eta in etas:
        moved = [
            (p - eta * g).detach().requires_grad_(True)
            for p, g in zip(net.params, grads, strict=True)
        ]
        loss = _loss(net, x, y, moved)
        new = torch.autograd.grad(loss.sum(), moved)
        diff = torch.cat(
            [(a - b).flatten(1) for a, b in zip(new, grads, strict=True)], 1
        )
        losses.append(loss.detach().double().numpy())
        change.append(diff.norm(dim=1).double().numpy())
    return np.stack(losses, axis=1), np.stack(change, axis=1)


def _loss(net, x, y, params) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return _slot_loss(net.forward(x, training=True, gen=gen, params=params), y)


def batchmate_logits(
    net: SeedMLP,
    pool: torch.Tensor,
    x: torch.Tensor,
    n_samples: int,
    batch_size: int,
    seed: int = 0,
) -> torch.Tensor:
    """Logits of ``x`` normalized with the statistics of random training batches.

    For each of ``n_samples`` draws, every slot takes ``batch_size`` distinct rows
    of ``pool`` (training inputs); their batch statistics normalize the inputs
    ``x`` ``(N, in)`` at every BatchNorm layer (no dropout or noise).

    Returns
    -------
    Tensor, shape ``(n_samples, K, N, C)``
    """
    if not net.batch_norm or n_samples < 1 or not 1 < batch_size <= len(pool):
        raise ValueError(
            f"need a BatchNorm net, n_samples >= 1 and batch_size in 2..{len(pool)}; "
            f"got {net.batch_norm}, {n_samples}, {batch_size}"
        )
    gen = torch.Generator().manual_seed(seed)
    draws = []
    with torch.no_grad():
        for _ in range(n_samples):
            idx = torch.rand(net.n_slots, len(pool), generator=gen).argsort(dim=1)
            mates = pool[idx[:, :batch_size]]
            rows = torch.cat([mates, x.expand(net.n_slots, *x.shape)], dim=1)
            logits = net.forward(rows, training=False, stats_rows=batch_size)
            draws.append(logits[:, batch_size:])
    return torch.stack(draws)


def mc_batchnorm_probs(
    net: SeedMLP,
    pool: torch.Tensor,
    x: torch.Tensor,
    n_samples: int,
    batch_size: int,
    seed: int = 0,
) -> torch.Tensor:
    """Monte Carlo BatchNorm: class probabilities averaged over sampled batches.

    The softmax of :func:`batchmate_logits`, averaged over the draws.

    Returns
    -------
    Tensor, shape ``(K, N, C)``

    Notes
    -----
    Teye et al. (2018): :math:`p(y \\mid x) \\approx \\frac1T \\sum_{t=1}^T
    \\operatorname{softmax} f(x; \\mu_{B_t}, \\sigma_{B_t})`.
    """
    logits = batchmate_logits(net, pool, x, n_samples, batch_size, seed)
    return torch.softmax(logits, dim=-1).mean(0)


def gradient_shift(
    net: SeedMLP, x: torch.Tensor, y: torch.Tensor, lr: float
) -> tuple[np.ndarray, np.ndarray]:
    """Santurkar et al.'s internal covariate shift of the output layer, per slot.

    ``G`` is the gradient of the output weights on the batch; ``G'`` the same after
    every parameter below them took an SGD step of size ``lr`` on that batch. The
    same noise draw is used for both (the generator is reseeded).

    Returns
    -------
    cosine, relative : ndarray, shape ``(K,)``
        :math:`\\cos(G, G')` and :math:`\\lVert G - G' \\rVert / \\lVert G \\rVert`.
    """
    grads = torch.autograd.grad(_loss(net, x, y, net.params).sum(), net.params)
    below = len(net.params) - 2
    moved = [
        (p - lr * g if i < below else p).detach().requires_grad_(i == below)
        for i, (p, g) in enumerate(zip(net.params, grads, strict=True))
    ]
    (g_new,) = torch.autograd.grad(_loss(net, x, y, moved).sum(), [moved[below]])
    g_old, g_new = grads[below].flatten(1), g_new.flatten(1)
    cos = (g_old * g_new).sum(1) / (g_old.norm(dim=1) * g_new.norm(dim=1))
    rel = (g_old - g_new).norm(dim=1) / g_old.norm(dim=1)
    return cos.double().numpy(), rel.double().numpy()


@dataclass
class SeedTracker:
    """A :func:`bnbook.lab.seeds.train_seeds` callback for chapter 1's measurements.

    Every ``every`` steps it records, per slot: the percentiles ``q`` of the input
    to unit ``unit`` of the last hidden activation on ``x_probe``, in training mode
    (batch statistics of ``x_probe``, a fresh noise draw); and, at steps
    ``>= after`` that are multiples of ``probe_every``, on a fresh training batch
    per slot, :func:`gradient_shift` at ``lr`` and a :func:`gradient_probe` with
    ``step_sizes``.
    """

    x_probe: torch.Tensor
    x_train: torch.Tensor
    y_train: torch.Tensor
    every: int
    after: int
    lr: float
    step_sizes: Sequence[float]
    batch_size: int = 60
    probe_every: int = 40
    unit: int = 0
    q: tuple[float, ...] = (15.0, 50.0, 85.0)
    seed: int = 1
    steps: list[int] = field(default_factory=list)
    percentiles: list[np.ndarray] = field(default_factory=list)
    probe_steps: list[int] = field(default_factory=list)
    shifts: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    probes: list[GradientProbe] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._gen = torch.Generator().manual_seed(self.seed)

    def __call__(self, step: int, net: SeedMLP) -> None:
        if step % self.every:
            return
        seen: list[torch.Tensor] = []
        with torch.no_grad():
            net.forward(self.x_probe, training=True, gen=self._gen, collect=seen)
        z = seen[-1][:, :, self.unit].double().numpy()
        self.steps.append(step)
        self.percentiles.append(np.percentile(z, self.q, axis=1).T)  # (K, len(q))
        if step < self.after or step % self.probe_every:
            return
        n = len(self.y_train)
        idx = torch.rand(net.n_slots, n, generator=self._gen).argsort(dim=1)
        idx = idx[:, : self.batch_size]
        xb, yb = self.x_train[idx], self.y_train[idx]
        self.probe_steps.append(step)
        self.shifts.append(gradient_shift(net, xb, yb, self.lr))
        self.probes.append(gradient_probe(net, xb, yb, self.step_sizes))

    def as_array(self) -> np.ndarray:
        """Percentiles, shape ``(n_records, K, len(q))``."""
        return np.stack(self.percentiles)


def sigmoid_slope(net: SeedMLP, x: torch.Tensor) -> np.ndarray:
    """Mean slope of the last hidden sigmoids on ``x``, as a share of the steepest.

    Evaluation mode (population statistics must be set). The mean runs over the
    examples of ``x`` ``(N, in)`` and the units of the last hidden layer.

    Returns
    -------
    ndarray, shape ``(K,)``, in (0, 1]; 1 means no unit is saturated.

    Notes
    -----
    The sigmoid's slope is :math:`\\sigma'(z) = \\sigma(z)\\,\\sigma(-z)`, at most
    :math:`1/4` (at :math:`z = 0`); the share is :math:`4\\sigma(z)\\sigma(-z)`.
    """
    if net.activation != "sigmoid":
        raise ValueError(f"need a sigmoid network, got {net.activation!r}")
    seen: list[torch.Tensor] = []
    with torch.no_grad():
        net.forward(x, training=False, collect=seen)
    z = seen[-1]
    return (4 * torch.sigmoid(z) * torch.sigmoid(-z)).mean((1, 2)).double().numpy()


@dataclass
class SlopeRecorder:
    """A :func:`bnbook.lab.seeds.train_seeds` callback: :func:`sigmoid_slope` on
    ``x`` at every evaluation step ``1 <= step <= until`` (the early phase)."""

    x: torch.Tensor
    until: int
    steps: list[int] = field(default_factory=list)
    slopes: list[np.ndarray] = field(default_factory=list)

    def __call__(self, step: int, net: SeedMLP) -> None:
        if 1 <= step <= self.until:
            self.steps.append(step)
            self.slopes.append(sigmoid_slope(net, self.x))

    def mean(self) -> np.ndarray:
        """Mean over the recorded steps, per slot: ``(K,)``."""
        if not self.slopes:
            raise ValueError(f"no step in 1..{self.until} was recorded")
        return np.mean(self.slopes, axis=0)
