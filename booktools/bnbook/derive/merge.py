"""The merge of shard statistics, proved with SymPy for symbolic shard sizes.

A batch split into shards has the mean and the sum of squared deviations ``M2`` of
its concatenation computable from each shard's count ``n_k``, mean ``mu_k`` and
``M2_k`` (:func:`bnlib.merge_stats`). The proof here never fixes a size:

1. :func:`split_sum_proof`: a sum over a concatenation of ``n_a`` and ``n_b``
   values is the sum over the first part plus the sum over the second.
2. :func:`deviation_sum_proof`: over ``n`` values at any offset,
   ``sum (x - mu)**2 = Q - S**2 / n`` with ``S = sum x`` and ``Q = sum x**2``.
3. So a shard is fully described by ``(n_k, S_k, Q_k)``, and the concatenation by
   ``(sum n_k, sum S_k, sum Q_k)``; :func:`merge_proofs` shows that the merge
   formulas give its mean and ``M2`` for symbolic ``n_k``, ``S_k``, ``Q_k``.

Importing this module needs SymPy.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from bnbook.derive.proof import Proof, prove_equal

__all__ = [
    "ShardSymbols",
    "concatenation",
    "deviation_sum_proof",
    "merge_proofs",
    "merged_m2",
    "merged_mean",
    "pairwise_m2",
    "shard_symbols",
    "split_sum_proof",
]

_i = sp.Symbol("i", integer=True)
_x = sp.IndexedBase("x")


@dataclass(frozen=True)
class ShardSymbols:
    """A shard as symbols: its size ``n``, ``S = sum x`` and ``Q = sum x**2``."""

    n: sp.Symbol
    s: sp.Symbol
    q: sp.Symbol

    @property
    def mean(self) -> sp.Expr:
        return self.s / self.n

    @property
    def m2(self) -> sp.Expr:
        """``sum (x - mean)**2``, by :func:`deviation_sum_proof`."""
        return self.q - self.s**2 / self.n


def shard_symbols(k: int) -> list[ShardSymbols]:
    """``k`` shards with symbolic sizes ``n_1..n_k`` (positive integers)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    return [
        ShardSymbols(
            sp.Symbol(f"n_{j}", integer=True, positive=True),
            sp.Symbol(f"S_{j}", real=True),
            sp.Symbol(f"Q_{j}", real=True),
        )
        for j in range(1, k + 1)
    ]


def concatenation(shards: list[ShardSymbols]) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    """Size, mean and ``M2`` of the concatenated shards: sums of their sums."""
    n = sum(s.n for s in shards)
    s_all, q_all = sum(s.s for s in shards), sum(s.q for s in shards)
    return n, s_all / n, q_all - s_all**2 / n


def merged_mean(shards: list[ShardSymbols]) -> sp.Expr:
    """``mu = sum n_k mu_k / sum n_k``."""
    return sum(s.n * s.mean for s in shards) / sum(s.n for s in shards)


def merged_m2(shards: list[ShardSymbols]) -> sp.Expr:
    """``M2 = sum (M2_k + n_k (mu_k - mu)**2)``."""
    mu = merged_mean(shards)
    return sum(s.m2 + s.n * (s.mean - mu) ** 2 for s in shards)


def pairwise_m2(a: ShardSymbols, b: ShardSymbols) -> sp.Expr:
    """Chan et al.'s two-shard form: ``M2_a + M2_b + n_a n_b / n (mu_b - mu_a)**2``."""
    return a.m2 + b.m2 + a.n * b.n / (a.n + b.n) * (b.mean - a.mean) ** 2


def _by_simplify(a: sp.Expr, b: sp.Expr) -> Proof:
    """``simplify(a - b) == 0`` as a :class:`Proof`, without a numeric pre-check.

    :func:`prove_equal` first evaluates at a random point, which for sums with
    symbolic bounds would mean sums of a random rational number of terms.
    """
    residual = sp.simplify(a - b)
    return Proof(residual == 0, "simplify" if residual == 0 else "undecided", residual)


def split_sum_proof(power: int = 1) -> Proof:
    """``sum_{1..n_a+n_b} x**p = sum_{1..n_a} x**p + sum_{n_a+1..n_a+n_b} x**p``."""
    na, nb = sp.symbols("n_a n_b", integer=True, positive=True)
    term = _x[_i] ** power
    whole = sp.Sum(term, (_i, 1, na + nb))
    parts = sp.Sum(term, (_i, 1, na)) + sp.Sum(term, (_i, na + 1, na + nb))
    return _by_simplify(whole, parts)


def deviation_sum_proof() -> Proof:
    """``sum (x_i - mu)**2 = Q - S**2 / n`` over ``n`` values at offset ``a``."""
    a = sp.Symbol("a", integer=True, nonnegative=True)
    n = sp.Symbol("n", integer=True, positive=True)
    bounds = (_i, a + 1, a + n)
    s, q = sp.Sum(_x[_i], bounds), sp.Sum(_x[_i] ** 2, bounds)
    deviations = sp.Sum((_x[_i] - s / n) ** 2, bounds)
    return _by_simplify(sp.expand(deviations).doit(), q - s**2 / n)


def merge_proofs(k: int = 2) -> dict[str, Proof]:
    """The merge formulas against the concatenation, for ``k`` symbolic shards.

    Returns
    -------
    dict of str to Proof
        ``"mean"`` and ``"m2"`` (the ``k``-shard formulas) and, for ``k = 2``,
        ``"pairwise"`` (Chan et al.'s form).
    """
    shards = shard_symbols(k)
    _, mean, m2 = concatenation(shards)
    proofs = {
        "mean": prove_equal(merged_mean(shards), mean),
        "m2": prove_equal(merged_m2(shards), m2),
    }
    if k == 2:
        proofs["pairwise"] = prove_equal(pairwise_m2(*shards), m2)
    return proofs
