"""Readings of the displays proved for a batch (or group) of symbolic size ``m``.

Each function returns the :class:`~bnbook.derive.reading.Reading` of one setting:
BatchNorm in training mode (the gradients chapter), in eval mode, the variance of
``x_hat``, the shifted one-pass statistics of the speed appendix, and the family's
z-score over a group (:mod:`bnbook.derive.family`).

Importing this module needs SymPy.
"""

from __future__ import annotations

import sympy as sp

from bnbook.derive import identities
from bnbook.derive.family import group_backward
from bnbook.derive.general import (
    compact_dx,
    exact_gradients,
    exact_stages,
    general_batch,
)
from bnbook.derive.reading import Reading

__all__ = ["conv", "eval_mode", "group", "shifted", "training", "var_xhat"]


def training(size: sp.Expr | None = None, renames: tuple = ()) -> Reading:
    """BatchNorm in training mode: every symbol of the gradients chapter."""
    bn = general_batch(size)
    d_xhat, d_var, d_mu, d_x = exact_stages(bn)
    _, d_gamma, d_beta = exact_gradients(bn)
    xk, gk = sp.Symbol("x_k"), sp.Symbol("g_k")
    scalars = {
        "mu": bn.mu, "s": bn.s, "m": bn.m, "gamma": bn.gamma, "phi": bn.var,
        "epsilon": bn.s**2 - bn.var, "tau": d_var, "kappa": d_mu,
        "theta": d_gamma, "rho": d_beta, "N": sp.Symbol("N", positive=True),
        "L": sp.Symbol("L", positive=True),
    }  # fmt: skip

    def per_example(base: str, index: str) -> sp.Expr:
        x, g = (bn.xi, bn.gi) if index == "i" else (xk, gk)
        table = {
            "x": x, "g": g, "xi": bn.x_hat(x),
            "psi": d_xhat.xreplace({bn.gi: g}),
            "omega": d_x if index == "i" else compact_dx(bn, g, bn.x_hat(x)),
        }  # fmt: skip
        if base not in table:
            raise ValueError(f"the symbol {base}_{index} has no meaning here")
        return table[base]

    return Reading(bn, scalars, per_example, renames)


_CONV = (
    (r"_{n,l}", "_i"), (r"_{n',l'}", "_k"), (r"\sum_{n',l'}", r"\sum_{k}"),
    (r"x_{n,l}", "x_i"), ("NL", "N L"),
)  # fmt: skip


def conv() -> Reading:
    """A convolutional channel: the training batch of size ``m = N L``."""
    size = sp.Symbol("N", positive=True) * sp.Symbol("L", positive=True)
    return training(size, _CONV)


def shifted() -> Reading:
    """The training batch with a shift ``K`` and ``d_i = x_i - K``; the speed
    appendix's ``dy_i`` is the upstream gradient ``g_i``."""
    reading = training(renames=((r"dy_i", r"g_i"),))
    shift = sp.Symbol("K", real=True)
    reading.scalars["K"] = shift
    plain = reading.per_example

    def per_example(base: str, index: str) -> sp.Expr:
        if base == "d":
            return plain("x", index) - shift
        return plain(base, index)

    reading.per_example = per_example
    return reading


def eval_mode() -> Reading:
    """Eval mode: ``mu_run``, ``s_run`` constants; ``l = sum g_k y_k``."""
    bn = general_batch()
    mu_r, s_r = sp.Symbol("mu_run"), sp.Symbol("s_run", positive=True)
    loss = bn.gamma * (bn.sgx - mu_r * bn.sg) / s_r + bn.beta * bn.sg
    xk, gk = sp.Symbol("x_k"), sp.Symbol("g_k")
    scalars = {
        "gamma": bn.gamma, "m": bn.m, "mu_{run}": mu_r, "s_{run}": s_r,
        "theta": sp.diff(loss, bn.gamma), "rho": sp.diff(loss, bn.beta),
    }  # fmt: skip

    def per_example(base: str, index: str) -> sp.Expr:
        x, g = (bn.xi, bn.gi) if index == "i" else (xk, gk)
        table = {"x": x, "g": g, "omega": sp.diff(loss, bn.xi)}
        if base not in table or (base == "omega" and index != "i"):
            raise ValueError(f"the symbol {base}_{index} has no meaning here")
        return table[base]

    return Reading(bn, scalars, per_example)


def var_xhat() -> Reading:
    """The batch variance of ``x_hat`` (eq-norm-var-xhat), one feature ``k``."""
    bn = general_batch()
    (_, _), (var_of_xhat, _) = identities.var_xhat(bn)
    scalars = {"nu": var_of_xhat, "phi": bn.var, "epsilon": bn.s**2 - bn.var}
    renames = ((r"\operatorname{Var}_B(\hat{x})", r"\nu"),)
    return Reading(bn, scalars, renames=renames)


def group(center: bool = True) -> Reading:
    """The family's z-score (``center``) or RMS over a group of symbolic size:
    ``dl/dx_i`` is SymPy's derivative of :func:`bnbook.derive.family.group_backward`;
    a bar is a mean over the group (``h`` is ``dl/dx_hat``)."""
    gb = group_backward(center)
    sym = {s.name: s for s in gb.exact.free_symbols | {gb.m}}
    h_i, m = sym["g_i"], gb.m
    scalars = {"epsilon": sym["epsilon"], "m": m, "phi": gb.var, "nu": gb.mean_hx}
    if center:
        scalars["alpha"] = (h_i + sym["G"]) / m  # the mean of h over the group
    table = {"omega": gb.exact, "h": h_i, "xi": gb.x_hat_i}

    def per_example(base: str, index: str) -> sp.Expr:
        if index != "i" or base not in table:
            raise ValueError(f"the symbol {base}_{index} has no meaning here")
        return table[base]

    renames = (
        (r"\overline{h\,\hat{x}}", r"\nu"), (r"\overline{h}", r"\alpha"),
        (r"\sigma_S^2", r"\sigma^2"), (r"\overline{x^2}", r"\sigma^2"),
    )  # fmt: skip
    return Reading(None, scalars, per_example, renames)
