"""The family's backward pass, derived once for a symbolic group size ``m``.

A z-score over a group of ``m`` values ``x_1 .. x_m`` (any member of the family:
the group is a channel of a batch, an example, an instance or a channel group).
To let ``m`` be a symbol, one element ``x_i`` is kept explicit and the other
``m - 1`` enter only through their sums, which do not depend on ``x_i``:

- ``a_1 = sum_{k != i} x_k`` and ``a_2 = sum_{k != i} x_k**2`` (the statistics),
- ``b_1 = sum_{k != i} h_k`` and ``b_2 = sum_{k != i} h_k x_k`` (the loss
  ``l = sum_k h_k x_hat_k``, linear in ``x_hat``, with ``h_k = dl/dx_hat_k`` held
  fixed).

The names are the chapter's (normalization-family, "How SymPy handles a set of any
size"). The SymPy symbols for ``h_i``, ``a_1``, ``a_2``, ``b_1`` and ``b_2`` keep the
names ``g_i``, ``s_1``, ``s_2``, ``G`` and ``P``, which the tests look up.
Differentiating ``l`` by ``x_i`` then gives the exact gradient for every ``m``, and
:func:`bnbook.derive.proof.prove_equal` compares it with the closed form
``(h_i - mean(h) - x_hat_i mean(h x_hat)) / sigma``. With ``center=False`` the mean
is dropped (RMSNorm) and so is the ``mean(h)`` term. Importing this module needs
SymPy.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

__all__ = ["GroupBackward", "group_backward"]


@dataclass(frozen=True)
class GroupBackward:
    """SymPy's derivative ``exact`` of the loss and the closed form ``claimed``;
    ``var`` is the group's variance (its mean square for RMSNorm) and ``mean_hx``
    the mean of ``h x_hat`` over the group."""

    m: sp.Symbol
    exact: sp.Expr
    claimed: sp.Expr
    x_hat_i: sp.Expr
    var: sp.Expr
    mean_hx: sp.Expr


def group_backward(center: bool = True) -> GroupBackward:
    """``dl/dx_i`` of a z-score (or RMS) over ``m`` values, ``m`` a symbol.

    Parameters
    ----------
    center : bool
        Subtract the group mean (the z-score of BN, LN, IN and GN) or not (RMSNorm).

    Returns
    -------
    GroupBackward
        ``exact = diff(l, x_i)`` and ``claimed``, the closed form of
        :func:`bnlib.normalize_backward`; they are equal for every ``m``.
    """
    m = sp.Symbol("m", positive=True, integer=True)
    xi, gi, s1, s2, big_g, p = sp.symbols("x_i g_i s_1 s_2 G P", real=True)
    eps = sp.Symbol("epsilon", positive=True)
    mu = (xi + s1) / m if center else sp.Integer(0)
    var = (xi**2 + s2) / m - mu**2
    sigma = sp.sqrt(var + eps)
    x_hat_i = (xi - mu) / sigma
    rest = (p - mu * big_g) / sigma  # sum_{k != i} h_k (x_k - mu) / sigma
    loss = gi * x_hat_i + rest
    exact = sp.diff(loss, xi)
    mean_g = (gi + big_g) / m if center else sp.Integer(0)
    mean_gx = loss / m  # mean(h * x_hat) is the loss over m
    claimed = (gi - mean_g - x_hat_i * mean_gx) / sigma
    return GroupBackward(m, exact, claimed, x_hat_i, var, mean_gx)
