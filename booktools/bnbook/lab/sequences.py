"""Toy token sequences for the question "why do transformers not use BatchNorm?".

- :func:`toy_sentences`: sentences of token embeddings; tokens follow a Zipf law
  over a vocabulary, and every sentence adds one shared *context* vector to all of
  its tokens, so that the tokens of one sentence are correlated as in text.
- :func:`pad`: sentences of different lengths as one zero-padded batch and mask.
- :func:`sequence_batch_norm`: BatchNorm over every (sentence, position) of a
  padded batch, counting the pads or masking them out.
- :func:`variance_spread`: how much a batch's variance wanders from batch to
  batch, relative to its mean.

The chapter :ref:`deep-networks` uses them. Importing this module needs torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["pad", "sequence_batch_norm", "toy_sentences", "variance_spread"]


def toy_sentences(
    n: int,
    length: int,
    *,
    dim: int = 16,
    vocab: int = 1000,
    zipf: float = 1.1,
    context: float = 0.5,
    seed: int = 0,
) -> torch.Tensor:
    """``n`` sentences of ``length`` token embeddings, ``(n, length, dim)`` float64.

    Token ``r`` (rank 1 is the most frequent) is drawn with probability
    proportional to ``r ** -zipf``; its embedding is a fixed ``N(0, I)`` vector of
    the seed's table. Each sentence adds its own ``N(0, context^2 I)`` vector to all
    its tokens.
    """
    if n < 1 or length < 1 or dim < 1 or vocab < 1 or context < 0:
        raise ValueError(
            f"need n, length, dim, vocab >= 1 and context >= 0; got {n}, {length}, "
            f"{dim}, {vocab}, {context}"
        )
    gen = torch.Generator().manual_seed(seed)
    table = torch.randn(vocab, dim, generator=gen, dtype=torch.float64)
    probs = torch.arange(1, vocab + 1, dtype=torch.float64) ** -zipf
    ids = torch.multinomial(probs, n * length, replacement=True, generator=gen)
    shared = torch.randn(n, 1, dim, generator=gen, dtype=torch.float64) * context
    return table[ids].reshape(n, length, dim) + shared


def pad(sentences: Sequence[torch.Tensor], length: int | None = None):
    """Stack ``(T_i, d)`` sentences into ``(B, T, d)`` with zeros after each end.

    ``length`` (default: the longest) is T. Returns the batch and a boolean mask
    ``(B, T)``, True on real tokens.
    """
    longest = max(len(s) for s in sentences)
    t = longest if length is None else length
    if t < longest:
        raise ValueError(f"length must be >= the longest sentence {longest}, got {t}")
    batch = sentences[0].new_zeros(len(sentences), t, sentences[0].shape[-1])
    mask = torch.zeros(len(sentences), t, dtype=torch.bool)
    for i, s in enumerate(sentences):
        batch[i, : len(s)] = s
        mask[i, : len(s)] = True
    return batch, mask


def sequence_batch_norm(
    x: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-5
) -> torch.Tensor:
    """BatchNorm (training mode, gamma 1, beta 0) of ``(B, T, d)`` over B and T.

    With ``mask`` ``(B, T)``, the mean and variance use only the True positions;
    without it, every position, pads included (what ``nn.BatchNorm1d`` does to a
    padded batch).
    """
    if mask is None:
        mask = torch.ones(x.shape[:2], dtype=torch.bool)
    w = mask[..., None].to(x.dtype)
    count = w.sum()
    mu = (x * w).sum((0, 1)) / count
    var = (((x - mu) ** 2) * w).sum((0, 1)) / count
    return (x - mu) / torch.sqrt(var + eps)


def variance_spread(batches: torch.Tensor) -> float:
    """Relative spread of the batch variance: ``sd / mean`` of ``sigma_B^2``.

    ``batches`` is ``(n_batches, m, d)``: m values of d features per batch. The
    spread is computed per feature over the batches, then averaged over features.
    For m independent Gaussian values it is ``sqrt(2 / (m - 1))``.
    """
    if batches.ndim != 3 or batches.shape[0] < 2 or batches.shape[1] < 2:
        raise ValueError(
            f"need (n_batches >= 2, m >= 2, d), got {tuple(batches.shape)}"
        )
    var = batches.var(1, correction=0)
    return float((var.std(0) / var.mean(0)).mean())
