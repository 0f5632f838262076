"""A wrong formula for every "SymPy, all sizes" proof, and the proof rejects it.

Each mutation replaces one right-hand side of a proof in :mod:`bnbook.derive` by a
plausible slip. Where the slip is right at one fixed size or value (``m = 3``,
``L = 1``, ``t = 1``, ...), the test shows that too: a check at that size alone
would have let it through, the proof for every size does not. Mutations of the
proofs tested elsewhere are named in ``ELSEWHERE``; a final test sees that every
label a chapter records with the kind ``"sympy-all-m"`` has one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import sympy as sp

from bnbook.derive import merge, moments
from bnbook.derive.allm import IDENTITIES
from bnbook.derive.family import group_backward
from bnbook.derive.general import general_batch, instance
from bnbook.derive.proof import prove_equal

ROOT = Path(__file__).resolve().parents[1]
BN = general_batch()  # the symbols of every identity built on general_batch()
M = BN.m


def _sym(expr: sp.Expr, name: str) -> sp.Symbol:
    """The free symbol of ``expr`` called ``name``."""
    return next(s for s in expr.free_symbols if s.name == name)


def _m_at(size: int) -> Callable[[sp.Expr], sp.Expr]:
    return lambda e: instance(BN, e, size)


def _at(name: str, value: int) -> Callable[[sp.Expr], sp.Expr]:
    return lambda e: (
        e.subs(_sym(e, name), value) if name in map(str, e.free_symbols) else e
    )


def _two_over_m_m1(expr: sp.Expr) -> sp.Expr:
    """Every ``1/m`` -> ``2 / (m (m - 1))``: equal at ``m = 3`` only."""
    return expr.xreplace({1 / M: 2 / (M * (M - 1))})


def _eta_lam(expr: sp.Expr) -> sp.Expr:
    return _sym(expr, "eta") * _sym(expr, "lambda")


# slip -> (label, identity, pair, wrong rhs from (lhs, rhs), where it is right)
Mutation = tuple[str, str, int, Callable, Callable | None]
MUTATIONS: dict[str, Mutation] = {
    "dbeta is the mean of g, not the sum": (
        "eq-grad-gamma-beta", "gradients", 2, lambda a, b: b / M, None),
    "dvar/dx_i with 1/(m - 1), the unbiased slip": (
        "(local partials)", "local partials", 1, lambda a, b: b * M / (M - 1), None),
    "projection entry with 2/(m(m-1)) for 1/m": (
        "eq-grad-projection", "projection", 0, lambda a, b: _two_over_m_m1(b),
        _m_at(3)),
    "norm drop with 2/(m(m-1)) for 1/m": (
        "eq-grad-norm", "projection", 4, lambda a, b: _two_over_m_m1(b), _m_at(3)),
    "eval backward keeps training mode's mean path": (
        "eq-eval-backward", "eval backward", 0,
        lambda a, b: b * (1 - BN.sg / (M * BN.gi)), None),
    "convolution normalizes over N, not N L": (
        "eq-grad-conv", "convolution", 0, lambda a, b: b.subs(_sym(b, "L"), 1),
        _at("L", 1)),
    "variance of x_hat is 1, eps forgotten": (
        "eq-norm-var-xhat", "var x_hat", 1, lambda a, b: sp.Integer(1),
        BN.at_eps_zero),
    "E[sigma_B^2] = sigma^2 / m": (
        "eq-norm-bessel", "bessel", 1, lambda a, b: _sym(b, "s") ** 2 / _sym(b, "m"),
        _at("m", 2)),
    "E[sigma_B^2] = sigma^2, the unbiased slip": (
        "eq-norm-population", "bessel", 1, lambda a, b: _sym(b, "s") ** 2, None),
    "fold forgets to scale the bias": (
        "eq-norm-fold", "fold", 0,
        lambda a, b: b - _sym(b, "a") * _sym(b, "c") + _sym(b, "c"), _at("a", 1)),
    "scaled inputs leave the gradient unchanged": (
        "eq-scale-invariance", "scale invariance", 1,
        lambda a, b: b * _sym(b, "alpha"), _at("alpha", 1)),
    "weight decay to first order in eta lambda": (
        "eq-weight-decay", "weight decay", 0,
        lambda a, b: b - _eta_lam(b) ** 2 * _sym(b, "S_ww"), None),
}  # fmt: skip

# labels whose mutation is tested in another file
ELSEWHERE = {
    "eq-compact": "test_general.py: 2/(m(m-1)) for 1/m, right at m = 3",
    "eq-staged": "test_general.py: dl/dvar doubled, halved again in dl/dx",
    "eq-orthogonal": "test_general.py: the sum against x_hat is 0 only at eps = 0",
    "eq-md-chan": "test_general.py: n_a n_b / n^2, which breaks the induction",
    "eq-family-backward": "test_derive_family.py: a stray mean(h) term",
    "eq-reg-var-mean": "test_display.py: sigma^2 / (m - 1) on the page",
}


@pytest.mark.parametrize("slip", sorted(MUTATIONS))
def test_the_proof_rejects_the_slip(slip):
    _, name, index, wrong_of, right_at = MUTATIONS[slip]
    a, b = IDENTITIES[name]()[index]
    wrong = wrong_of(a, b)
    verdict = prove_equal(a, wrong)
    assert not verdict.holds and verdict.method == "counterexample", str(verdict)
    if right_at is not None:  # ... though a check there alone would pass it
        assert prove_equal(right_at(a), right_at(wrong)).holds


def test_momentum_linear_decay_is_right_at_one_step_only():
    """``b + (1 - t p)(r_0 - b)``: the update's solution at ``t = 1``, not after."""
    (_, _), (_, _), (step, closed) = IDENTITIES["momentum"]()
    t, q, b, r0 = (_sym(closed, n) for n in ("t", "q", "b", "r_0"))
    wrong = b + (1 - t * (1 - q)) * (r0 - b)
    wrong_step = q * wrong.subs(t, t - 1) + (1 - q) * b
    assert not prove_equal(wrong_step, wrong).holds
    assert prove_equal(wrong_step.subs(t, 1), wrong.subs(t, 1)).holds
    assert prove_equal(step, closed).holds


def test_merge_without_the_size_weights_is_right_for_single_values_only():
    """``M2 = sum (M2_k + (mu_k - mu)^2)``: right when every shard holds one value."""
    shards = merge.shard_symbols(3)
    _, mean, m2 = merge.concatenation(shards)
    wrong = sum(s.m2 + (s.mean - mean) ** 2 for s in shards)
    assert not prove_equal(wrong, m2).holds
    ones = {s.n: 1 for s in shards}
    assert prove_equal(wrong.subs(ones), m2.subs(ones)).holds
    assert prove_equal(merge.merged_m2(shards), m2).holds


def test_rms_backward_with_batchnorm_s_mean_term_is_rejected():
    """RMSNorm's gradient written with the z-score's ``- mean(h)`` term."""
    gb = group_backward(center=False)
    g_i, big_g = sp.Symbol("g_i", real=True), sp.Symbol("G", real=True)
    wrong = gb.claimed - (g_i + big_g) / gb.m / sp.sqrt(
        gb.var + _sym(gb.exact, "epsilon")
    )
    assert not prove_equal(gb.exact, wrong).holds


def test_var_of_the_batch_mean_with_m_minus_one_is_rejected():
    t = moments.batch_mean_moments()
    assert prove_equal(t["var_mean_b"], t["var"] / t["m"]).holds
    assert not prove_equal(t["var_mean_b"], t["var"] / (t["m"] - 1)).holds


def test_shifted_sums_without_their_correction_are_right_at_k_equal_mu_only():
    """eq-speed-shift's variance without ``- (mean of d)^2``, and eq-speed-dysum
    without ``- (mu - K) sum dy``: both right only when the shift ``K`` is the mean."""
    k = sp.Symbol("K", real=True)
    sum_d, sum_dd = BN.sx - M * k, BN.sxx - 2 * k * BN.sx + M * k**2
    sum_gd = BN.sgx - k * BN.sg  # sum of g_i (x_i - K), g the upstream gradient
    exact = (BN.sxx / M - BN.mu**2, BN.sgx - BN.mu * BN.sg)
    right = (sum_dd / M - (sum_d / M) ** 2, sum_gd - (BN.mu - k) * BN.sg)
    wrong = (sum_dd / M, sum_gd)
    for good, bad, want in zip(right, wrong, exact, strict=True):
        assert prove_equal(good, want).holds
        verdict = prove_equal(bad, want)
        assert not verdict.holds and verdict.method == "counterexample", str(verdict)
        assert prove_equal(bad.subs(k, BN.mu), want).holds


def _all_m_labels() -> set[str]:
    """Every label a chapter records with the kind "sympy-all-m"."""
    labels = set()
    for path in sorted((ROOT / "chapters").glob("*.md")):
        text = path.read_text()
        for call in re.findall(r"prove_and_record\((.*?)\)", text, re.S):
            if "sympy-exact" not in call:
                labels |= set(re.findall(r'"(eq-[\w-]+)"', call))
        labels |= set(re.findall(r'verified\("(eq-[\w-]+)", "sympy-all-m"', text))
    return labels


def test_every_all_sizes_proof_has_a_mutation():
    covered = {label for label, *_ in MUTATIONS.values()} | set(ELSEWHERE)
    covered |= {"eq-norm-ema", "eq-md-merge", "eq-rms-backward"}  # tests above
    covered |= {"eq-speed-shift", "eq-speed-dysum"}  # tests above
    labels = _all_m_labels()
    assert len(labels) >= 20 and labels <= covered, sorted(labels - covered)
