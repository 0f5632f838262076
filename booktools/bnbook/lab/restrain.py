"""Training and probing the slot-batched residual nets of :mod:`bnbook.lab.resnets`.

- :func:`standardize`: the digits with pixel mean 0 and variance 1 (one scalar
  mean and std from the training images), the input every arm gets.
- :func:`train_slots`: SGD with momentum for all slots at once, each slot with
  its own learning rate and batch order, optionally with adaptive gradient
  clipping; it records every step's batch loss and, at the end, test accuracy.
- :func:`steps_to_loss`: the first step where the smoothed batch loss reaches a
  target, per slot.
- :func:`branch_shares`: the residual branch's share of the variance, per block,
  at one batch (De & Smith 2020).

Importing this module needs torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from bnbook.lab import experiments as ex
from bnbook.lab.nf import agc_
from bnbook.lab.resnets import SlotResNet

__all__ = ["ResHistory", "branch_shares", "standardize", "steps_to_loss", "train_slots"]

_CONV = ("stem", ".1", ".2")  # names of convolution weights end so (AGC's targets)


def standardize(split: ex.Split) -> ex.Split:
    """Pixels shifted and scaled by the training images' overall mean and std."""
    mean, std = split.x_train.mean(), split.x_train.std()
    return ex.Split(
        (split.x_train - mean) / std,
        split.y_train,
        (split.x_test - mean) / std,
        split.y_test,
    )


@dataclass
class ResHistory:
    """``batch_loss`` ``(steps, K)``; ``test_acc`` and ``diverged`` ``(K,)``."""

    batch_loss: np.ndarray
    test_acc: np.ndarray
    diverged: np.ndarray


def train_slots(
    net: SlotResNet,
    split: ex.Split,
    *,
    steps: int,
    lr,
    batch_size: int,
    seeds: Sequence[int],
    momentum: float = 0.9,
    agc: float | None = None,
) -> ResHistory:
    """SGD (PyTorch's momentum rule) for every slot; slot k draws batches from seed k.

    ``lr`` is a float or one per slot; ``agc`` is the clipping ratio of adaptive
    gradient clipping on the convolution weights (``None``: no clipping). A slot
    whose batch loss stops being finite, or passes 100, is frozen and marked
    diverged; the others go on unaffected.
    """
    k = net.n_slots
    if len(seeds) != k or steps < 1 or batch_size < 2:
        raise ValueError(
            f"need {k} seeds, steps >= 1 and batch_size >= 2; got {len(seeds)}, "
            f"{steps}, {batch_size}"
        )
    lrs = torch.as_tensor(lr, dtype=torch.float32).expand(k).clone()
    orders = [ex._batch_indices(len(split.y_train), batch_size, int(s)) for s in seeds]
    names = list(net.params)
    bufs: dict[str, torch.Tensor] = {}
    diverged = torch.zeros(k, dtype=torch.bool)
    losses = []
    for _ in range(steps):
        idx = torch.stack([next(o) for o in orders])
        logits = net.forward(split.x_train[idx], training=True)
        loss = _slot_loss(logits, split.y_train[idx])
        diverged |= ~torch.isfinite(loss) | (loss > 100)
        losses.append(torch.where(diverged, torch.nan, loss).detach().numpy())
        total = torch.where(diverged, 0.0, loss).sum()
        grads = torch.autograd.grad(total, [net.params[n] for n in names])
        _step(net, names, grads, bufs, torch.where(diverged, 0.0, lrs), momentum, agc)
    return ResHistory(np.stack(losses), _accuracy(net, split), diverged.numpy())


def _slot_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    k, b, c = logits.shape
    flat = F.cross_entropy(logits.reshape(k * b, c), y.reshape(k * b), reduction="none")
    return flat.reshape(k, b).mean(1)


@torch.no_grad()
def _step(net, names, grads, bufs, lrs, momentum, agc) -> None:
    for name, g in zip(names, grads, strict=True):
        p = net.params[name]
        g = torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
        if agc is not None and name.endswith(_CONV):
            agc_(p, g, agc, unit_dims=2)
        bufs[name] = g if name not in bufs else momentum * bufs[name] + g
        p -= lrs.reshape(-1, *(1,) * (p.ndim - 1)) * bufs[name]


@torch.no_grad()
def _accuracy(net: SlotResNet, split: ex.Split) -> np.ndarray:
    logits = net.forward(split.x_test, training=False)
    return (logits.argmax(-1) == split.y_test).double().mean(1).numpy()


def steps_to_loss(batch_loss: np.ndarray, target: float, window: int = 10):
    """First step (1-based count) where the mean of the last ``window`` batch losses
    is ``<= target``, per slot; NaN where it never is. ``batch_loss``: ``(steps, K)``.
    """
    if batch_loss.ndim != 2 or not 1 <= window <= len(batch_loss):
        raise ValueError(
            f"need batch_loss (steps, K) and 1 <= window <= steps; got shape "
            f"{batch_loss.shape}, window {window}"
        )
    kernel = np.ones(window) / window
    smooth = np.stack(
        [np.convolve(col, kernel, mode="valid") for col in batch_loss.T], 1
    )  # row i: the mean of steps i..i+window-1
    hit = smooth <= target  # NaN (diverged) compares False
    first = np.where(hit.any(0), hit.argmax(0) + window, np.nan)
    return first.astype(float)


@torch.no_grad()
def branch_shares(net: SlotResNet, x: torch.Tensor) -> np.ndarray:
    """Var(branch) / Var(block output) for every block at the batch ``x``: ``(K, L)``.

    Variances are per channel over examples and positions, averaged over channels;
    training mode (batch statistics), at whatever weights the net has.
    """
    pairs: list = []
    net.forward(x, training=True, collect=pairs)
    out = []
    for h, r in pairs:
        var_r = r.var(dim=(1, 3, 4), correction=0).mean(1)
        var_out = (h + r).var(dim=(1, 3, 4), correction=0).mean(1)
        out.append((var_r / var_out).numpy())
    return np.stack(out, 1)
