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
4. :func:`any_shards_proofs`: any number of shards, by induction. The two-shard
   merge is exact for symbolic sizes and associative (so the order of merging, a
   tree of any shape, does not matter), and the ``k``-shard formula for ``K + 1``
   shards is the two-shard merge of its value for the first ``K`` with the last.

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
    "any_shards_proofs",
    "merge_pair",
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


Summary = tuple[sp.Expr, sp.Expr, sp.Expr]


def merge_pair(a: Summary, b: Summary) -> Summary:
    """Chan et al.'s merge of two summaries ``(n, mean, M2)``."""
    n = a[0] + b[0]
    mean = (a[0] * a[1] + b[0] * b[1]) / n
    return n, mean, a[2] + b[2] + a[0] * b[0] / n * (b[1] - a[1]) ** 2


def _summary(name: str) -> Summary:
    pos = {"positive": True}
    n = sp.Symbol(f"n_{name}", **pos)
    return n, sp.Symbol(f"mu_{name}", real=True), sp.Symbol(f"M_{name}", **pos)


def any_shards_proofs() -> dict[str, Proof]:
    """The merge for any number ``k`` of shards of symbolic sizes, by induction.

    Returns
    -------
    dict of str to Proof
        ``"pairwise"``: the two-shard merge of two shards gives their
        concatenation's ``M2`` (symbolic sizes); ``"associative"``: merging
        ``(a, b)`` then ``c`` equals ``a`` then ``(b, c)``, in every component;
        ``"step"``: the ``k``-shard formula (eq-md-merge) for ``K + 1`` shards equals
        the two-shard merge of its value for the first ``K`` shards with the last,
        where the first ``K`` shards enter only through ``A = sum n_k``,
        ``B = sum n_k mu_k`` and ``C = sum (M2_k + n_k mu_k^2)`` (symbols, so ``K``
        is any number). With the base case (one shard is its own summary) the
        formula holds for every ``k``.
    """
    a, b, c = (_summary(name) for name in "abc")
    left, right = merge_pair(merge_pair(a, b), c), merge_pair(a, merge_pair(b, c))
    big_a, big_b, big_c = sp.symbols("A B C", positive=True)

    def k_formula(n: sp.Expr, nmu: sp.Expr, m2_plus: sp.Expr) -> Summary:
        """eq-md-merge from its sums: ``n``, ``sum n_k mu_k``, ``sum (M2 + n mu^2)``."""
        return n, nmu / n, m2_plus - nmu**2 / n

    first = k_formula(big_a, big_b, big_c)
    n, mu, m2 = c
    grown = k_formula(big_a + n, big_b + n * mu, big_c + m2 + n * mu**2)
    step = merge_pair(first, c)
    return {
        "pairwise": merge_proofs(2)["pairwise"],
        "associative": prove_equal(list(left), list(right)),
        "step": prove_equal(list(grown), list(step)),
        "base": prove_equal(list(k_formula(n, n * mu, m2 + n * mu**2)), list(c)),
    }
