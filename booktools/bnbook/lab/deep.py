"""Probes of deep networks at initialization: gradient norms and representation rank.

- :func:`deep_mlp`: ``depth`` blocks ``Linear -> [norm] -> ReLU`` with He
  initialization, then a linear read-out; the norm is none, BatchNorm (bnlib's) or
  LayerNorm.
- :func:`layer_grad_norms`: the norm of the loss gradient for each hidden layer's
  weight, at one batch (Yang et al. 2019 find it explodes toward the input in deep
  BatchNorm networks).
- :func:`stable_rank` and :func:`representation_ranks`: how many directions the
  batch's representations still span, layer by layer (Daneshmand et al. 2020).
- :func:`depth_probe`: both, over depths, norms and seeds.

The chapter :ref:`deep-networks` draws its first figure with them. Importing this
module needs torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from bnlib.torch.batchnorm import BatchNorm1d

__all__ = [
    "NORMS",
    "deep_mlp",
    "depth_probe",
    "layer_grad_norms",
    "representation_ranks",
    "stable_rank",
]

NORMS = ("none", "batch", "layer")


def deep_mlp(
    depth: int,
    norm: str = "none",
    width: int = 64,
    in_features: int = 64,
    out_features: int = 10,
    seed: int = 0,
) -> nn.Sequential:
    """``depth`` hidden blocks ``Linear -> [norm] -> ReLU``, then ``Linear``.

    Parameters
    ----------
    depth : int
        Number of hidden blocks (>= 1).
    norm : {"none", "batch", "layer"}
        Normalization before each ReLU: none, :class:`bnlib.torch.BatchNorm1d` or
        :class:`torch.nn.LayerNorm` (both with gamma 1 and beta 0). Normalized blocks
        have no linear bias.
    width, in_features, out_features : int
    seed : int
        Seed of the weights: He initialization, ``N(0, 2 / fan_in)``, biases 0.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    weights = _he_weights(depth, width, in_features, out_features, seed)
    layers: list[nn.Module] = []
    for w in weights[:-1]:
        layers.append(_linear(w, bias=norm == "none"))
        if norm == "batch":
            layers.append(BatchNorm1d(width))
        elif norm == "layer":
            layers.append(nn.LayerNorm(width))
        layers.append(nn.ReLU())
    layers.append(_linear(weights[-1], bias=True))
    return nn.Sequential(*layers)


def _he_weights(depth, width, in_features, out_features, seed) -> list[torch.Tensor]:
    """Hidden weights ``N(0, 2 / fan_in)``, read-out ``N(0, 1 / fan_in)``: (out, in)."""
    gen = torch.Generator().manual_seed(seed)
    shapes = [(width, in_features)] + [(width, width)] * (depth - 1)
    gains = [2.0] * depth + [1.0]
    shapes.append((out_features, width))
    return [
        torch.randn(shape, generator=gen) * (g / shape[1]) ** 0.5
        for shape, g in zip(shapes, gains, strict=True)
    ]


def _linear(w: torch.Tensor, bias: bool) -> nn.Linear:
    layer = nn.Linear(w.shape[1], w.shape[0], bias=bias)
    with torch.no_grad():
        layer.weight.copy_(w)
        if bias:
            layer.bias.zero_()
    return layer


def _hidden_linears(model: nn.Sequential) -> list[nn.Linear]:
    return [m for m in model if isinstance(m, nn.Linear)][:-1]


def layer_grad_norms(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor):
    """Frobenius norm of the cross-entropy's gradient for each hidden weight.

    The model runs in training mode (batch statistics) on the batch ``x``, labels
    ``y``. Returns an array of shape ``(depth,)``, input layer first.
    """
    weights = [m.weight for m in _hidden_linears(model)]
    model.train()
    loss = nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, weights)
    return np.array([g.norm().item() for g in grads])


def stable_rank(h: torch.Tensor) -> float:
    """``||h||_F^2 / ||h||_2^2`` of a batch of representations ``(B, width)``.

    Between 1 (every row along one direction) and ``min(B, width)``. Not
    centred: a batch whose rows all point the same way has stable rank 1.
    """
    if h.ndim != 2:
        raise ValueError(f"h must be (B, width), got shape {tuple(h.shape)}")
    s = torch.linalg.svdvals(h.double())
    if s[0] == 0:
        raise ValueError("h is all zeros: its stable rank is undefined")
    return float((s**2).sum() / s[0] ** 2)


def representation_ranks(model: nn.Sequential, x: torch.Tensor) -> np.ndarray:
    """Stable rank of each hidden block's output (after its ReLU) over the batch.

    Training mode; returns an array of shape ``(depth,)``, input side first.
    """
    ranks = []
    model.train()
    with torch.no_grad():
        h = x
        for m in model[:-1]:
            h = m(h)
            if isinstance(m, nn.ReLU):
                ranks.append(stable_rank(h))
    return np.array(ranks)


def depth_probe(
    depths: Sequence[int],
    seeds: Sequence[int],
    x: torch.Tensor,
    y: torch.Tensor,
    width: int = 64,
    norms: Sequence[str] = NORMS,
) -> dict[tuple[str, int], dict[str, np.ndarray]]:
    """Gradient norms and stable ranks at init for every (norm, depth), per seed.

    All seeds of one (norm, depth) run as one batched network in float64: slot
    ``k`` holds the weights of ``deep_mlp(depth, norm, width, seed=seeds[k])``, so
    the numbers equal :func:`layer_grad_norms` and :func:`representation_ranks` of
    those networks in float64. (In float32, rounding moves the gradient norms of
    deep BatchNorm networks by several percent.)

    Returns
    -------
    dict
        ``(norm, depth) -> {"grad": (n_seeds, depth)}``; for the largest depth also
        ``"rank": (n_seeds, depth)``, the stable rank after each block (the first
        ``l`` blocks of every depth share their weights, so this is also the rank at
        the end of a depth-``l`` network).
    """
    out = {}
    for norm in norms:
        for depth in depths:
            drawn = [_he_weights(depth, width, x.shape[1], 10, s) for s in seeds]
            weights = [
                torch.stack([w.T for w in ws]).double().requires_grad_(True)
                for ws in zip(*drawn, strict=True)
            ]
            deepest = depth == max(depths)
            out[norm, depth] = _slot_probe(
                weights[:-1], weights[-1].detach(), norm, x.double(), y, deepest
            )
    return out


def _slot_probe(weights, w_out, norm, x, y, ranks) -> dict[str, np.ndarray]:
    h = x.expand(len(w_out), *x.shape)
    hidden = []
    for w in weights:
        z = torch.bmm(h, w)  # normalized and plain nets alike start with bias 0
        if norm == "batch":
            var, mean = torch.var_mean(z, dim=1, correction=0, keepdim=True)
            z = (z - mean) * torch.rsqrt(var + 1e-5)
        elif norm == "layer":
            var, mean = torch.var_mean(z, dim=2, correction=0, keepdim=True)
            z = (z - mean) * torch.rsqrt(var + 1e-5)
        h = torch.relu(z)
        hidden.append(h)
    logits = torch.bmm(h, w_out)
    loss = nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), y.repeat(len(w_out)), reduction="sum"
    ) / len(y)
    grads = torch.autograd.grad(loss, weights)
    out = {"grad": torch.stack([g.flatten(1).norm(dim=1) for g in grads], 1).numpy()}
    if ranks:
        with torch.no_grad():
            h = torch.stack(hidden, 1)  # (K, L, B, width)
            eig = torch.linalg.eigvalsh(h.transpose(-1, -2) @ h)  # ascending
        out["rank"] = (eig.sum(-1) / eig[..., -1]).numpy()
    return out
