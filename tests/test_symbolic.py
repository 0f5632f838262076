"""bnbook.derive.symbolic: the gradients of BatchNorm derived and proved with SymPy.

The symbolic forward pass is checked against PyTorch at a random point, so that the
proofs below are about the right function. Each proof is a real one (simplify) and
each wrong formula is caught by a counterexample. Upstream gradients are generic
symbols g_1..g_m except in the test of the sum-loss trap.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch
import torch.nn.functional as F

from bnbook.derive import symbolic as S


def _point(bn, rng):
    """Random numbers for every symbol of ``bn``: a float64 point."""
    values = {xi: rng.normal(1.0, 2.0) for xi in bn.x}
    values |= {gi: rng.normal() for gi in set(bn.g)}
    values |= {bn.gamma: rng.normal(), bn.beta: rng.normal()}
    if bn.eps != 0:
        values[bn.eps] = 0.3
    return values


def _torch_at(bn, values):
    """y and (dl/dx, dl/dgamma, dl/dbeta) of torch's batch_norm at ``values``."""
    f64 = {"dtype": torch.float64}
    x = torch.tensor([[values[xi]] for xi in bn.x], **f64, requires_grad=True)
    w = torch.tensor([values[bn.gamma]], **f64, requires_grad=True)
    b = torch.tensor([values[bn.beta]], **f64, requires_grad=True)
    eps = float(values.get(bn.eps, 0.0))
    y = F.batch_norm(x, None, None, w, b, training=True, eps=eps)
    y.backward(torch.tensor([[values[gi]] for gi in bn.g], **f64))
    return y.detach().numpy().ravel(), (x.grad.numpy().ravel(), w.grad, b.grad)


def _num(expr, values):
    return float(sp.sympify(expr).xreplace(values).evalf())


def test_batch_norm_graph_forward_matches_torch(bn3, rng):
    values = _point(bn3, rng)
    y_ref, _ = _torch_at(bn3, values)
    y = [_num(yi, values) for yi in bn3.y]
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-12)


def test_exact_gradients_match_torch_autograd(bn3, exact3, rng):
    values = _point(bn3, rng)
    _, (dx_ref, dgamma_ref, dbeta_ref) = _torch_at(bn3, values)
    dx = [_num(d, values) for d in exact3.dx]
    np.testing.assert_allclose(dx, dx_ref, rtol=0, atol=1e-12)
    assert abs(_num(exact3.dgamma, values) - dgamma_ref.item()) < 1e-12
    assert abs(_num(exact3.dbeta, values) - dbeta_ref.item()) < 1e-12


def test_batch_norm_graph_has_the_requested_pieces():
    bn = S.batch_norm_graph(4, eps=False, equal_upstream=True)
    assert bn.m == 4 and bn.eps == 0
    assert len(set(bn.g)) == 1
    assert len(set(S.batch_norm_graph(4).g)) == 4


@pytest.mark.parametrize("m", [1, 0, 2.0, True, "3"])
def test_batch_norm_graph_rejects_bad_m(m):
    with pytest.raises(ValueError, match="m must be an integer >= 2"):
        S.batch_norm_graph(m)


def test_batch_norm_graph_rejects_a_single_input():
    with pytest.raises(ValueError, match="at least 2 inputs, got 1"):
        S.batch_norm_graph(x=[sp.Symbol("z")])


def test_exact_gradients_reject_expression_inputs():
    z = sp.symbols("z1:4")
    bn = S.batch_norm_graph(x=[2 * zi for zi in z])
    with pytest.raises(TypeError, match="needs symbolic inputs x, got 2\\*z1"):
        S.exact_gradients(bn)


@pytest.mark.parametrize("eps", [True, False])
def test_compact_gradients_equal_exact(eps):
    bn = S.batch_norm_graph(3, eps=eps)
    exact, compact = S.exact_gradients(bn), S.compact_gradients(bn)
    for field in ("dx", "dgamma", "dbeta"):
        proof = S.prove_equal(getattr(compact, field), getattr(exact, field))
        assert proof.holds and proof.method == "simplify", (field, proof)


def test_compact_gradients_equal_exact_for_four_examples():
    bn = S.batch_norm_graph(4)
    proof = S.prove_equal(S.compact_gradients(bn).dx[0], S.exact_gradients(bn).dx[0])
    assert proof.holds and proof.method == "simplify"


@pytest.mark.parametrize("field", ["dx_hat", "dvar", "dmu", "dx", "dgamma", "dbeta"])
def test_staged_gradients_equal_stage_derivatives(bn3, field):
    staged, reference = S.staged_gradients(bn3), S.stage_derivatives(bn3)
    proof = S.prove_equal(getattr(staged, field), getattr(reference, field))
    assert proof.holds and proof.method == "simplify", proof


def test_staged_gradients_dmu_has_a_vanishing_variance_term(bn3):
    """The paper's dl/dmu carries dl/dvar * sum(-2 (x_i - mu)) / m, which is 0."""
    staged = S.staged_gradients(bn3)
    direct = sp.Add(*[-d / bn3.s for d in staged.dx_hat])
    assert S.prove_equal(staged.dmu, direct)


def test_staged_gradients_wrong_dvar_exponent_fails(bn3):
    staged, reference = S.staged_gradients(bn3), S.stage_derivatives(bn3)
    wrong = staged.dvar * (bn3.var + bn3.eps)  # (var+eps)**(-1/2) for (-3/2)
    proof = S.prove_equal(wrong, reference.dvar)
    assert not proof.holds and proof.method == "counterexample"


def test_exact_gradients_input_gradient_sums_to_zero(bn3, exact3):
    assert S.prove_equal(sp.Add(*exact3.dx), 0).method == "simplify"


def test_exact_gradients_dot_x_hat_is_proportional_to_eps(bn3, exact3):
    dot = sp.Add(*[d * h for d, h in zip(exact3.dx, bn3.x_hat, strict=True)])
    expected = bn3.gamma * bn3.eps * exact3.dgamma / bn3.s**3
    assert S.prove_equal(dot, expected)
    assert not S.prove_equal(dot, 0)
    bn0 = S.batch_norm_graph(3, eps=False)
    dot0 = [d * h for d, h in zip(S.exact_gradients(bn0).dx, bn0.x_hat, strict=True)]
    assert S.prove_equal(sp.Add(*dot0), 0)


def test_batch_norm_graph_is_scale_invariant_only_without_eps():
    a = sp.Symbol("a", positive=True)
    z = sp.symbols("z1:4", real=True)
    for eps, invariant in ((False, True), (True, False)):
        bn = S.batch_norm_graph(x=z, eps=eps)
        scaled = S.batch_norm_graph(x=[a * zi for zi in z], eps=eps)
        assert S.prove_equal(scaled.y, bn.y).holds is invariant


def test_exact_gradients_vanish_for_two_examples_without_eps():
    """The m = 2, eps = 0 trap: x_hat = +-1 whatever x is, so dl/dx = 0."""
    bn = S.batch_norm_graph(2, eps=False)
    assert S.prove_equal([h**2 for h in bn.x_hat], [1, 1])
    assert S.prove_equal(S.exact_gradients(bn).dx, [0, 0])


def test_compact_terms_are_the_paper_s_three_paths(bn3):
    """direct = dl/dx_hat_i / s, mean = dl/dmu / m, variance = dl/dvar 2 c_i / m.

    The references are SymPy's derivatives with mu and var made free symbols.
    """
    terms, ref = S.compact_terms(bn3), S.stage_derivatives(bn3)
    m, s = bn3.m, bn3.s
    paths = {
        "direct": [d / s for d in ref.dx_hat],
        "mean": [ref.dmu / m] * m,
        "variance": [ref.dvar * 2 * (xi - bn3.mu) / m for xi in bn3.x],
    }
    for name, expected in paths.items():
        proof = S.prove_equal(getattr(terms, name), expected)
        assert proof.holds and proof.method == "simplify", (name, proof)


def test_compact_terms_a_swapped_pair_fails(bn3):
    terms, ref = S.compact_terms(bn3), S.stage_derivatives(bn3)
    proof = S.prove_equal(terms.mean, [d / bn3.s for d in ref.dx_hat])
    assert not proof.holds and proof.method == "counterexample"


def _torch_eval_at(bn, ev, values):
    """y and the gradients of torch's batch_norm in evaluation mode."""
    f64 = {"dtype": torch.float64}
    x = torch.tensor([[values[xi]] for xi in bn.x], **f64, requires_grad=True)
    w = torch.tensor([values[bn.gamma]], **f64, requires_grad=True)
    b = torch.tensor([values[bn.beta]], **f64, requires_grad=True)
    mean = torch.tensor([values[ev.running_mean]], **f64)
    var = torch.tensor([values[ev.running_var]], **f64)
    eps = float(values.get(bn.eps, 0.0))
    y = F.batch_norm(x, mean, var, w, b, training=False, eps=eps)
    y.backward(torch.tensor([[values[gi]] for gi in bn.g], **f64))
    return y.detach().numpy().ravel(), (x.grad.numpy().ravel(), w.grad, b.grad)


def test_eval_gradients_match_torch_eval_mode(bn3, rng):
    ev = S.eval_gradients(bn3)
    values = _point(bn3, rng)
    values |= {ev.running_mean: rng.normal(), ev.running_var: rng.uniform(0.5, 2)}
    y_ref, (dx_ref, dgamma_ref, dbeta_ref) = _torch_eval_at(bn3, ev, values)
    np.testing.assert_allclose([_num(y, values) for y in ev.y], y_ref, atol=1e-12)
    dx = [_num(d, values) for d in ev.dx]
    np.testing.assert_allclose(dx, dx_ref, rtol=0, atol=1e-12)
    assert abs(_num(ev.dgamma, values) - dgamma_ref.item()) < 1e-12
    assert abs(_num(ev.dbeta, values) - dbeta_ref.item()) < 1e-12


def test_eval_gradients_do_not_sum_to_zero(bn3):
    """Unlike training mode: the statistics are constants, so no path cancels."""
    proof = S.prove_equal(sp.Add(*S.eval_gradients(bn3).dx), 0)
    assert not proof.holds and proof.method == "counterexample"


def test_eval_gradients_reject_expression_inputs():
    z = sp.symbols("z1:4")
    bn = S.batch_norm_graph(x=[zi + 1 for zi in z])
    with pytest.raises(TypeError, match="eval_gradients needs symbolic inputs x"):
        S.eval_gradients(bn)
