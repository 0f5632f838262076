"""bnbook.derive.family: the family's backward for a symbolic group size."""

from __future__ import annotations

import pytest
import sympy as sp

import bnlib
from bnbook.derive.family import group_backward
from bnbook.derive.proof import prove_equal


@pytest.mark.parametrize("center", [True, False])
def test_group_backward_closed_form_is_proved_for_all_m(center):
    gb = group_backward(center)
    proof = prove_equal(gb.exact, gb.claimed)
    assert proof and proof.method == "simplify"
    assert gb.m in gb.exact.free_symbols


def test_group_backward_dropping_the_mean_term_is_refuted():
    gb = group_backward(True)
    g_i, big_g = sp.Symbol("g_i", real=True), sp.Symbol("G", real=True)
    wrong = gb.claimed + (g_i + big_g) / gb.m  # a stray mean(g) term
    assert not prove_equal(gb.exact, wrong)


@pytest.mark.parametrize("center", [True, False])
def test_group_backward_at_m_4_matches_normalize_backward(rng, center):
    x, g = rng.normal(size=4), rng.normal(size=4)
    gb = group_backward(center)
    names = {s.name: s for s in gb.exact.free_symbols}
    values = {
        "m": 4, "x_i": x[0], "g_i": g[0], "s_1": x[1:].sum(),
        "s_2": (x[1:] ** 2).sum(), "G": g[1:].sum(), "P": (g[1:] * x[1:]).sum(),
        "epsilon": 1e-5,
    }  # fmt: skip
    point = {names[k]: v for k, v in values.items() if k in names}
    expected = bnlib.normalize_backward(g, x, 0, 1e-5, center)[0]
    assert float(gb.exact.xreplace(point)) == pytest.approx(expected, abs=1e-10)
