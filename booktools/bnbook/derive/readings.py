"""What each symbol of a checked display means: the settings of the proofs.

:mod:`bnbook.derive.display` parses a display; a :class:`Reading` then gives every
parsed symbol its expression in the setting where the equation was proved (a batch of
symbolic size ``m`` in training mode, eval mode, the sigmoid, expectations over
batches). ``READINGS`` maps each checked label to its reading; ``BY_HAND`` names the
SymPy-backed labels whose display is checked by hand, with the reason.

Importing this module needs SymPy.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import sympy as sp

from bnbook.derive import identities
from bnbook.derive.general import (
    GeneralBatch,
    batch_sum,
    batch_sums,
    compact_dx,
    exact_gradients,
    exact_stages,
    general_batch,
)

__all__ = ["BY_HAND", "READINGS", "Reading"]


@dataclass
class Reading:
    """What each parsed symbol means in one proved setting.

    ``scalars`` maps a symbol's name to its expression; ``per_example(name, index)``
    gives the expression of an indexed symbol (``x_{i}``, ``\\xi_{k}``); sums over the
    batch are taken by :func:`~bnbook.derive.general.batch_sum`. A relation whose
    left side is a name in ``defines`` defines that name for the others (it is
    substituted, not proved).
    """

    bn: GeneralBatch
    scalars: dict[str, sp.Expr]
    per_example: Callable[[str, str], sp.Expr]
    renames: tuple[tuple[str, str], ...] = field(default=())
    defines: tuple[str, ...] = field(default=())

    def meaning(self, expr: sp.Expr) -> sp.Expr:
        """``expr`` (parsed) in the setting: sums taken, symbols replaced.

        The map is made from the parsed symbols before anything is replaced, so
        the setting's own symbols are never read as parsed ones.
        """
        xk, gk = sp.Symbol("x_k"), sp.Symbol("g_k")
        outer = self._symbols(expr.free_symbols, None)

        def take_sum(body: sp.Expr, limits: tuple) -> sp.Expr:
            index, lo, hi = limits
            if lo != 1 or self.scalars.get(str(hi)) != self.bn.m:
                raise ValueError(f"a sum must run from 1 to m, got {lo}..{hi}")
            inner = self._symbols(body.free_symbols, str(index))
            sums = batch_sums(self.bn)
            return batch_sum(body.xreplace(inner), (xk, gk), sums)

        summed = expr.replace(
            lambda e: isinstance(e, sp.Sum), lambda e: take_sum(e.function, e.limits[0])
        )
        result = summed.xreplace(outer)
        if left := [str(v) for v in result.free_symbols if "{" in str(v)]:
            raise ValueError(f"symbols outside any sum over their index: {left}")
        return result

    def _symbols(self, symbols: set, bound: str | None) -> dict:
        """Parsed symbol -> its meaning; ``bound`` is a sum's index (its examples are
        the generic ``k``), None outside sums (index ``i``, the example itself)."""
        values = {}
        for sym in symbols:
            name = sym.name
            if match := re.fullmatch(r"(\w+)_\{(\w)\}", name):
                base, index = match.groups()
                if index == bound:
                    values[sym] = self.per_example(base, "k")
                    continue
                if bound is None:
                    if index == "i":
                        values[sym] = self.per_example(base, "i")
                    continue  # another index: bound by a sum, read there
            if name in self.scalars:
                values[sym] = self.scalars[name]
            elif bound is None:
                raise ValueError(f"the symbol {name!r} has no meaning here")
        return values


def _training(size: sp.Expr | None = None, renames: tuple = ()) -> Reading:
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


def _eval_mode() -> Reading:
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


def _var_xhat() -> Reading:
    """The batch variance of ``x_hat`` (eq-norm-var-xhat), one feature ``k``."""
    bn = general_batch()
    (_, _), (var_xhat, _) = identities.var_xhat(bn)
    scalars = {"nu": var_xhat, "phi": bn.var, "epsilon": bn.s**2 - bn.var}
    renames = ((r"\operatorname{Var}_B(\hat{x})", r"\nu"),)
    return Reading(bn, scalars, _no_examples, renames)


def _population() -> Reading:
    """Expectations over batches of ``m`` independent draws (eq-norm-population,
    eq-norm-bessel): ``E[x]``, ``Var[x]``, ``E_B[mu_B]``, ``E_B[sigma_B^2]``."""
    t = identities.bessel_terms()
    scalars = {
        "m": t["m"], "mu": t["mu"], "phi": t["var"], "alpha": t["mean_b"],
        "nu": t["var_b"],
    }  # fmt: skip
    renames = (
        (r"\mathrm{E}_B[\mu_B]", r"\alpha"),
        (r"\mathrm{E}_B[\sigma_B^2]", r"\nu"),
        (r"\mathrm{E}_B\bigl[\sigma_B^2\bigr]", r"\nu"),
        (r"\mathrm{E}[x]", r"\mu"),
        (r"\mathrm{Var}[x]", r"\sigma^2"),
    )
    return Reading(general_batch(), scalars, _no_examples, renames)


def _no_examples(base: str, index: str) -> sp.Expr:
    raise ValueError(f"the symbol {base}_{index} has no meaning here")


def _sigmoid() -> Reading:
    """The sigmoid ``sig(z) = 1 / (1 + e^-z)`` and its slope ``sig'(z)``."""
    z = sp.Symbol("z", real=True)
    sig = 1 / (1 + sp.exp(-z))
    scalars = {"z": z, "e": sp.E, "psi": sp.diff(sig, z)}
    renames = (
        (r"\operatorname{sig}'(z)", r"\psi"),
        (r"\operatorname{sig}(z)", r"\frac{1}{1 + e^{-z}}"),
    )
    return Reading(general_batch(), scalars, _no_examples, renames)


def _eval_affine() -> Reading:
    """Eval-mode BatchNorm of one value ``x``, its slope ``a`` and offset ``b``
    defined by the display itself."""
    x, gamma, beta, mu_r = sp.symbols("x gamma beta mu_run", real=True)
    var_r, eps = sp.Symbol("sigma2_run", positive=True), sp.Symbol("eps", positive=True)
    y = gamma * (x - mu_r) / sp.sqrt(var_r + eps) + beta
    scalars = {
        "x": x, "y": y, "gamma": gamma, "beta": beta, "mu_{run}": mu_r,
        "phi_{run}": var_r, "epsilon": eps,
    }  # fmt: skip
    return Reading(general_batch(), scalars, _no_examples, defines=("a", "b"))


_CONV = (
    (r"_{n,l}", "_i"), (r"_{n',l'}", "_k"), (r"\sum_{n',l'}", r"\sum_{k}"),
    (r"x_{n,l}", "x_i"), ("NL", "N L"),
)  # fmt: skip

READINGS: dict[str, Callable[[], Reading]] = {
    "eq-grad-gamma-beta": _training,
    "eq-staged": _training,
    "eq-compact": _training,
    "eq-orthogonal": _training,
    "eq-grad-conv": lambda: _training(
        sp.Symbol("N", positive=True) * sp.Symbol("L", positive=True), _CONV
    ),
    "eq-eval-backward": _eval_mode,
    "eq-norm-var-xhat": _var_xhat,
    "eq-norm-population": _population,
    "eq-norm-bessel": _population,
    "eq-norm-sigmoid-slope": _sigmoid,
    "eq-norm-eval-affine": _eval_affine,
}

_VECTORS = "vectors and matrices, which the LaTeX parser does not read"
BY_HAND: dict[str, str] = {
    "eq-grad-projection": f"{_VECTORS} (P, 1, x̂ x̂ᵀ)",
    "eq-grad-norm": f"{_VECTORS} (norms)",
    "eq-scale-invariance": "evaluation bars and ε as a subscript of x̂",
    "eq-weight-decay": f"{_VECTORS} (norms, the fixed point ⋆)",
    "eq-norm-zsat": "an inequality with arccosh",
    "eq-norm-identity": "an implication (⟹), not an equation",
    "eq-norm-ema": "a recurrence in the step t",
    "eq-norm-fold": f"{_VECTORS} (diag, ⊙)",
}
