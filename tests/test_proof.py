"""bnbook.derive.proof.prove_equal: proofs, counterexamples, evidence, errors."""

from __future__ import annotations

import pytest
import sympy as sp

from bnbook.derive.proof import prove_equal

x, y = sp.symbols("x y", real=True)
t = sp.Symbol("t", positive=True)


def test_prove_equal_proves_an_identity_by_simplify():
    proof = prove_equal(sp.sin(x) ** 2 + sp.cos(x) ** 2, 1)
    assert proof.holds and bool(proof)
    assert proof.method == "simplify" and proof.residual == 0
    assert "equal (simplify)" in str(proof)


def test_prove_equal_uses_symbol_assumptions():
    assert prove_equal(sp.sqrt(t**2), t)
    assert not prove_equal(sp.sqrt(x**2), x)


def test_prove_equal_counterexample_is_a_real_one():
    a, b = (x + y) ** 2, x**2 + y**2
    proof = prove_equal(a, b)
    assert not proof.holds and not bool(proof)
    assert proof.method == "counterexample"
    value = (a - b).xreplace(proof.point)
    assert value != 0 and abs(float(value) - float(proof.residual)) < 1e-12
    assert "NOT equal" in str(proof)


def test_prove_equal_counterexample_respects_positive_symbols():
    proof = prove_equal(sp.sqrt(t) * x, 1)
    assert proof.method == "counterexample" and proof.point[t] > 0


def test_prove_equal_constant_difference():
    assert prove_equal(sp.sqrt(2) * sp.sqrt(3), sp.sqrt(6)).method == "simplify"
    proof = prove_equal(1, 2)
    assert not proof.holds and proof.method == "counterexample"


def test_prove_equal_numeric_is_labelled_evidence():
    proof = prove_equal((x + y) ** 2, x**2 + 2 * x * y + y**2, method="numeric")
    assert proof.holds and proof.method == "numeric"
    assert proof.points_checked == 9  # 1 quick point and the 8 asked for


def test_prove_equal_numeric_is_evidence_not_proof():
    """sin(420 pi x) vanishes at every sampled rational (denominators 2..7 divide
    420) but not everywhere: numeric evidence is fooled, simplify is not."""
    fooled = prove_equal(sp.sin(420 * sp.pi * x), 0, method="numeric")
    assert fooled.holds and fooled.method == "numeric"
    honest = prove_equal(sp.sin(420 * sp.pi * x), 0)
    assert not honest.holds and honest.method == "undecided"


def test_prove_equal_numeric_finds_counterexample():
    proof = prove_equal(x**3, x, method="numeric")
    assert not proof.holds and proof.method == "counterexample"


def test_prove_equal_auto_switches_on_size():
    big = sp.expand((x + y + 1) ** 6)
    small = prove_equal(big, (x + y + 1) ** 6, method="auto")
    assert small.method == "simplify"
    large = prove_equal(big, (x + y + 1) ** 6, method="auto", max_ops=5)
    assert large.method == "numeric"


def test_prove_equal_sequences_report_the_failing_element():
    proof = prove_equal([x, x + 1, y], [x, x, y])
    assert not proof.holds and float(proof.residual) == 1.0


def test_prove_equal_sequences_never_report_evidence_as_proof():
    proof = prove_equal([x, x * y], [x, y * x], method="numeric")
    assert proof.method == "numeric"
    assert prove_equal([x, x * y], [x, y * x]).method == "simplify"


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        ([x, y], x, "cannot compare a sequence of 2 expressions with one expr"),
        (x, (x, y), "cannot compare one expression with a sequence of 2 expr"),
        ([x, y], [x], "of 2 expressions with a sequence of 1 expressions"),
    ],
)
def test_prove_equal_rejects_mismatched_shapes(a, b, message):
    with pytest.raises(ValueError, match=message):
        prove_equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "guess"}, "method must be one of"),
        ({"points": 0}, "points must be a positive integer, got 0"),
        ({"points": 2.5}, "points must be a positive integer, got 2.5"),
        ({"points": True}, "points must be a positive integer, got True"),
    ],
)
def test_prove_equal_rejects_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        prove_equal(x, x, **kwargs)
