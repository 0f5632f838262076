"""bnbook.derive.general and bnbook.derive.allm: proofs for a symbolic batch size m."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch

from bnbook.derive import ledger
from bnbook.derive.allm import IDENTITIES, prove, prove_and_record
from bnbook.derive.general import (
    batch_sum,
    compact_dx,
    exact_gradients,
    exact_stages,
    failing_sizes,
    general_batch,
    instance,
    staged_stages,
)
from bnbook.derive.proof import prove_equal


@pytest.fixture(scope="module")
def bn():
    return general_batch()


@pytest.fixture(scope="module")
def dx(bn):
    return exact_gradients(bn)[0]


def _wrong_mean_term(bn):
    """The compact form with 1/m replaced by 2/(m(m-1)) in the mean term."""
    m = bn.m
    return (
        bn.gamma
        / bn.s
        * (bn.gi - 2 / (m * (m - 1)) * bn.sg - bn.x_hat(bn.xi) * bn.sum_g_xhat / m)
    )


@pytest.mark.parametrize("name", sorted(IDENTITIES))
def test_prove_every_identity_holds(name):
    proof = prove(name)
    assert proof.holds and proof.method == "simplify", str(proof)


def test_prove_wrong_mean_term_passes_at_three_fails_for_all_m(bn, dx):
    wrong = _wrong_mean_term(bn)
    # the fixed-size proof at m = 3 lets it through ...
    at3 = prove_equal(instance(bn, dx, 3), instance(bn, wrong, 3))
    assert at3.holds and at3.method == "simplify"
    # ... the proof for a symbolic m rejects it with a counterexample ...
    general = prove_equal(dx, wrong)
    assert not general.holds and general.method == "counterexample"
    # ... and the next size up already fails.
    assert failing_sizes(bn, dx, wrong, range(3, 6)) == [4, 5]


def test_staged_compensated_mistake_is_rejected_at_its_stage(bn):
    """A doubled dl/dvar, halved again in dl/dx_i: the final gradient is right, so a
    proof of the last stage alone accepts it; the proof of every stage does not."""
    exact = exact_stages(bn)
    wrong = staged_stages(bn, var_factor=2)
    assert prove_equal(exact[3], wrong[3])  # the last line still agrees
    verdicts = [prove_equal(a, b) for a, b in zip(exact, wrong, strict=True)]
    assert [bool(v) for v in verdicts] == [True, False, True, True]
    assert verdicts[1].method == "counterexample"


def test_exact_stages_hold_the_paper_stages(bn):
    """The right stages, and each stage proved against the partial it names."""
    for a, b in zip(exact_stages(bn), staged_stages(bn), strict=True):
        proof = prove_equal(a, b)
        assert proof.holds and proof.method == "simplify", str(proof)


def test_exact_stage_dvar_matches_torch_at_size_four(bn, rng):
    """dl/dvar of the staged graph against autograd through var as a leaf."""
    size, eps, gamma = 4, 1e-2, 0.7
    x, g = rng.normal(size=size), rng.normal(size=size)
    xt = torch.tensor(x)
    mu_t = xt.mean().detach().requires_grad_()
    var_t = ((xt - mu_t) ** 2).mean().detach().requires_grad_()
    loss = (gamma * (xt - mu_t) / torch.sqrt(var_t + eps) * torch.tensor(g)).sum()
    loss.backward()
    xs, gs = sp.symbols("x3:5"), sp.symbols("g3:5")
    point = {bn.xi: x[0], bn.xj: x[1], bn.gi: g[0], bn.gj: g[1], bn.gamma: gamma}
    point |= dict(zip(xs, x[2:], strict=True)) | dict(zip(gs, g[2:], strict=True))
    point[bn.s] = float(np.sqrt(x.var() + eps))
    ours = float(instance(bn, exact_stages(bn)[1], size).xreplace(point))
    assert abs(ours - var_t.grad.item()) < 1e-10


def test_prove_weakened_orthogonality_fails(bn):
    xk, gk = sp.Symbol("x_k"), sp.Symbol("g_k")
    sums = {(0, 0): bn.m, (1, 0): bn.sx, (2, 0): bn.sxx, (0, 1): bn.sg}
    sums[(1, 1)] = bn.sgx
    dot = batch_sum(bn.x_hat(xk) * compact_dx(bn, gk, bn.x_hat(xk)), (xk, gk), sums)
    assert not prove_equal(dot, 0)  # only at eps = 0
    assert prove_equal(bn.at_eps_zero(dot), 0)


def test_exact_gradients_match_torch_at_size_five(bn, dx, rng):
    size, eps = 5, 1e-3
    x, g = rng.normal(size=size), rng.normal(size=size)
    gamma = 1.7
    s = float(np.sqrt(x.var() + eps))
    xs, gs = sp.symbols("x3:6"), sp.symbols("g3:6")
    point = {bn.xi: x[0], bn.xj: x[1], bn.gi: g[0], bn.gj: g[1], bn.gamma: gamma}
    point |= dict(zip(xs, x[2:], strict=True)) | dict(zip(gs, g[2:], strict=True))
    point[bn.s] = s
    ours = float(instance(bn, dx, size).xreplace(point))
    xt = torch.tensor(x[:, None], dtype=torch.float64, requires_grad=True)
    w = torch.tensor([gamma], dtype=torch.float64)
    y = torch.nn.functional.batch_norm(xt, None, None, w, None, True, 0.1, eps)
    (y[:, 0] * torch.tensor(g)).sum().backward()
    assert abs(ours - xt.grad[0, 0].item()) < 1e-10


def test_batch_sum_matches_an_explicit_sum():
    xk, gk = sp.symbols("x_k g_k")
    xs, gs = sp.symbols("x1:5"), sp.symbols("g1:5")
    expr = 3 * xk * gk - 2 * xk**2 + gk + 7
    sums = {
        (0, 0): 4,
        (1, 0): sum(xs),
        (2, 0): sum(x**2 for x in xs),
        (0, 1): sum(gs),
        (1, 1): sum(x * g for x, g in zip(xs, gs, strict=True)),
    }
    explicit = sum(expr.subs({xk: x, gk: g}) for x, g in zip(xs, gs, strict=True))
    assert sp.expand(batch_sum(expr, (xk, gk), sums) - explicit) == 0


def test_batch_sum_missing_power_sum_raises():
    xk = sp.Symbol("x_k")
    with pytest.raises(ValueError, match=r"no power sum given for exponents \(3,\)"):
        batch_sum(xk**3, (xk,), {(0,): 1, (1,): 0})


@pytest.mark.parametrize("size", [1, 0, 2.5, True])
def test_instance_rejects_bad_sizes(bn, dx, size):
    with pytest.raises(ValueError, match="size must be an integer >= 2"):
        instance(bn, dx, size)


def test_instance_of_size_two_has_no_rest(bn, dx):
    assert not set(bn.rest.values()) & instance(bn, dx, 2).free_symbols


def test_prove_unknown_name_raises():
    with pytest.raises(ValueError, match="name must be one of"):
        prove("no such identity")


def test_prove_and_record_records_after_the_proof(monkeypatch):
    monkeypatch.setattr(ledger, "_records", [])
    prove_and_record("fold", "eq-a", "eq-b", detail="any n")
    assert [r["label"] for r in ledger.records()] == ["eq-a", "eq-b"]
    assert {r["kind"] for r in ledger.records()} == {"sympy-all-m"}


def test_prove_and_record_records_nothing_when_the_proof_fails(monkeypatch):
    monkeypatch.setattr(ledger, "_records", [])
    monkeypatch.setitem(IDENTITIES, "broken", lambda: ((sp.Symbol("x"), 1),))
    with pytest.raises(AssertionError, match="broken: NOT equal"):
        prove_and_record("broken", "eq-a")
    assert ledger.records() == []


def test_merge_any_shards_proofs_hold():
    from bnbook.derive import merge

    for name, proof in merge.any_shards_proofs().items():
        assert proof.holds and proof.method == "simplify", (name, str(proof))


def test_merge_wrong_pair_weight_breaks_the_induction(monkeypatch):
    """n_a n_b / n^2 instead of / n: right when n = 1 and wrong in general, so the
    induction step (and associativity) must reject it."""
    from bnbook.derive import merge

    def wrong(a, b):
        n = a[0] + b[0]
        mean = (a[0] * a[1] + b[0] * b[1]) / n
        return n, mean, a[2] + b[2] + a[0] * b[0] / n**2 * (b[1] - a[1]) ** 2

    monkeypatch.setattr(merge, "merge_pair", wrong)
    proofs = merge.any_shards_proofs()
    assert not proofs["step"].holds and not proofs["associative"].holds
