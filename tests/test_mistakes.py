"""bnbook.derive.mistakes: wrong gradient formulas are caught, except in the two traps.

Each wrong formula is compared with SymPy's own derivative of the loss
(:func:`bnbook.derive.symbolic.exact_gradients`), with generic upstream gradients
g_1..g_m
except in the test of the sum-loss trap.
"""

from __future__ import annotations

import pytest
import sympy as sp

from bnbook.derive import mistakes as M
from bnbook.derive import symbolic as S


def test_note_parameter_gradients_fail_the_proof(bn3, exact3):
    dgamma, dbeta = M.note_parameter_gradients(bn3)
    assert len(dgamma) == len(dbeta) == bn3.m  # m values for one parameter
    for i in range(bn3.m):
        for note, exact in ((dgamma[i], exact3.dgamma), (dbeta[i], exact3.dbeta)):
            proof = S.prove_equal(note, exact)
            assert not proof.holds and proof.method == "counterexample", proof


def test_note_parameter_gradients_cannot_be_compared_with_a_scalar(bn3, exact3):
    dgamma, _ = M.note_parameter_gradients(bn3)
    with pytest.raises(
        ValueError, match="a sequence of 3 expressions with one expression"
    ):
        S.prove_equal(dgamma, exact3.dgamma)


def test_note_parameter_gradients_summed_over_the_batch_are_right(bn3, exact3):
    dgamma, dbeta = M.note_parameter_gradients(bn3)
    assert S.prove_equal(sp.Add(*dgamma), exact3.dgamma)
    assert S.prove_equal(sp.Add(*dbeta), exact3.dbeta)


@pytest.mark.parametrize(
    "name", ["no 1/m", "no mean path", "no variance path", "constant statistics"]
)
def test_mistaken_dx_fail_the_proof(bn3, exact3, name):
    proof = S.prove_equal(M.mistaken_dx(bn3)[name], exact3.dx)
    assert not proof.holds and proof.method == "counterexample", proof


def test_mistaken_dx_missing_a_term_fails_also_with_eps_zero():
    bn = S.batch_norm_graph(3, eps=False)
    proof = S.prove_equal(
        M.mistaken_dx(bn)["no variance path"], S.exact_gradients(bn).dx
    )
    assert not proof.holds


def test_mistaken_dx_wrong_scale_passes_for_two_examples_without_eps():
    bn = S.batch_norm_graph(2, eps=False)
    exact, mistakes = S.exact_gradients(bn), M.mistaken_dx(bn)
    assert S.prove_equal(mistakes["no 1/m"], exact.dx).method == "simplify"
    flipped = [-d for d in S.compact_gradients(bn).dx]
    assert S.prove_equal(flipped, exact.dx)
    assert not S.prove_equal(mistakes["no variance path"], exact.dx)


def test_mistaken_dx_sum_loss_trap_hides_missing_terms():
    """With g_i all equal the true dl/dx is 0 and two wrong formulas agree."""
    bn = S.batch_norm_graph(3, equal_upstream=True)
    exact, mistakes = S.exact_gradients(bn), M.mistaken_dx(bn)
    assert S.prove_equal(exact.dx, [0, 0, 0])
    assert S.prove_equal(mistakes["no 1/m"], exact.dx)
    assert S.prove_equal(mistakes["no variance path"], exact.dx)
    assert not S.prove_equal(mistakes["no mean path"], exact.dx)
    assert not S.prove_equal(mistakes["constant statistics"], exact.dx)
