"""Readings of the displays that involve no size: closed forms in a few symbols.

The sigmoid's slope, eval-mode BatchNorm as an affine map, the KL divergence of two
Gaussians and the largest importance weight (the statistics appendix), and the
variance that dropout adds in training mode (the pitfalls page).

Importing this module needs SymPy.
"""

from __future__ import annotations

import sympy as sp

from bnbook.derive import moments
from bnbook.derive.reading import Reading

__all__ = ["dropout", "eval_affine", "gaussian_kl", "max_weight", "sigmoid"]


def sigmoid() -> Reading:
    """The sigmoid ``sig(z) = 1 / (1 + e^-z)`` and its slope ``sig'(z)``."""
    z = sp.Symbol("z", real=True)
    sig = 1 / (1 + sp.exp(-z))
    scalars = {"z": z, "e": sp.E, "psi": sp.diff(sig, z)}
    renames = (
        (r"\operatorname{sig}'(z)", r"\psi"),
        (r"\operatorname{sig}(z)", r"\frac{1}{1 + e^{-z}}"),
    )
    return Reading(None, scalars, renames=renames)


def eval_affine() -> Reading:
    """Eval-mode BatchNorm of one value ``x``, its slope ``a`` and offset ``b``
    defined by the display itself."""
    x, gamma, beta, mu_r = sp.symbols("x gamma beta mu_run", real=True)
    var_r, eps = sp.Symbol("sigma2_run", positive=True), sp.Symbol("eps", positive=True)
    y = gamma * (x - mu_r) / sp.sqrt(var_r + eps) + beta
    scalars = {
        "x": x, "y": y, "gamma": gamma, "beta": beta, "mu_{run}": mu_r,
        "phi_{run}": var_r, "epsilon": eps,
    }  # fmt: skip
    return Reading(None, scalars, defines=("a", "b"))


def _two_gaussians(mu0, s0, mu1, s1) -> dict[str, sp.Expr]:
    """Parsed names of ``N(mu_0, sigma_0^2)`` and ``N(mu_1, sigma_1^2)``."""
    return {"mu_{0}": mu0, "mu_{1}": mu1, "upsilon_{0}": s0, "upsilon_{1}": s1}


def gaussian_kl() -> Reading:
    """``KL(p || q)`` as SymPy integrates it
    (:func:`bnbook.lab.shift.derive_gaussian_kl`)."""
    from bnbook.lab.shift import derive_gaussian_kl

    kl, (mu0, s0, mu1, s1) = derive_gaussian_kl()
    scalars = {"nu": kl, **_two_gaussians(mu0, s0, mu1, s1)}
    return Reading(None, scalars, renames=((r"\mathrm{KL}(p \,\|\, q)", r"\nu"),))


def max_weight() -> Reading:
    """``max_x q_1(x) / q_0(x)``: the log-ratio at its stationary point, found by
    SymPy (the log-ratio is a concave quadratic when ``sigma_1 < sigma_0``)."""
    x, mu0, mu1 = sp.symbols("x mu0 mu1", real=True)
    s0, s1 = sp.symbols("s0 s1", positive=True)
    log_w = -((x - mu1) ** 2) / (2 * s1**2) + (x - mu0) ** 2 / (2 * s0**2)
    log_w += sp.log(s0 / s1)
    (x_star,) = sp.solve(sp.diff(log_w, x), x)
    scalars = {"nu": sp.exp(log_w.subs(x, x_star)), **_two_gaussians(mu0, s0, mu1, s1)}
    return Reading(None, scalars, renames=((r"\max_x w(x)", r"\nu"),))


def dropout() -> Reading:
    """Dropout's training-mode variance
    (:func:`bnbook.derive.moments.dropout_variance`)."""
    t = moments.dropout_variance()
    scalars = {"p": t["p"], "mu": t["mu"], "phi": t["sigma2"], "nu": t["var_train"]}
    return Reading(
        None, scalars, renames=((r"\operatorname{Var}_{\text{train}}", r"\nu"),)
    )
