"""BatchNorm's gradients, derived and proved with SymPy.

The forward pass over a batch of ``m`` scalars is written as SymPy expressions with
symbolic ``gamma``, ``beta``, ``eps`` and a generic upstream gradient ``g_1..g_m``
(the loss is ``l = sum_i g_i y_i``, so ``dl/dy_i = g_i``). Three versions of the
gradients can then be compared: the exact derivatives SymPy computes by
differentiation, the paper's staged equations, and the compact closed form
(:mod:`bnbook.derive.mistakes` adds wrong ones).
:func:`bnbook.derive.proof.prove_equal` decides whether two of them agree and says how
it decided. The chapter :ref:`gradients` is built on these functions.

Importing this module needs SymPy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sympy as sp

from bnbook.derive.proof import Proof, prove_equal

__all__ = [
    "BatchNormGraph",
    "CompactTerms",
    "EvalGradients",
    "Gradients",
    "Proof",
    "StagedGradients",
    "batch_norm_graph",
    "compact_gradients",
    "compact_terms",
    "eval_gradients",
    "exact_gradients",
    "prove_equal",
    "stage_derivatives",
    "staged_gradients",
]

Exprs = tuple[sp.Expr, ...]


@dataclass(frozen=True)
class BatchNormGraph:
    """BatchNorm's forward pass over ``m`` scalars as SymPy expressions.

    ``x`` are the inputs (symbols ``x1..xm`` or given expressions), ``g`` the
    upstream gradients ``dl/dy_i``; ``mu`` (the batch mean), ``var`` (the batch
    variance), ``s = sqrt(var + eps)`` (the normaliser), ``x_hat`` and ``y`` are
    expressions in them; ``loss = sum_i g_i y_i``.
    """

    x: Exprs
    g: Exprs
    gamma: sp.Symbol
    beta: sp.Symbol
    eps: sp.Expr
    mu: sp.Expr
    var: sp.Expr
    s: sp.Expr
    x_hat: Exprs
    y: Exprs
    loss: sp.Expr

    @property
    def m(self) -> int:
        """The batch size: the number of values in the statistics."""
        return len(self.x)


@dataclass(frozen=True)
class Gradients:
    """``dl/dx_i`` (one per example), ``dl/dgamma`` and ``dl/dbeta``."""

    dx: Exprs
    dgamma: sp.Expr
    dbeta: sp.Expr


def _upstream(m: int, equal_upstream: bool) -> Exprs:
    if equal_upstream:
        return (sp.Symbol("g", real=True),) * m
    return sp.symbols(f"g1:{m + 1}", real=True)


def batch_norm_graph(
    m: int = 3,
    *,
    x: Sequence[sp.Expr] | None = None,
    eps: bool = True,
    equal_upstream: bool = False,
) -> BatchNormGraph:
    """Build BatchNorm's forward pass and loss over a batch of ``m`` scalars.

    Parameters
    ----------
    m : int
        Batch size, at least 2 (ignored when ``x`` is given).
    x : sequence of sympy expressions, optional
        The inputs; default the real symbols ``x1..xm``.
    eps : bool
        A positive symbol ``epsilon`` (True) or exactly 0 (False).
    equal_upstream : bool
        Every ``g_i`` is the same symbol ``g``: the loss is a multiple of
        ``sum_i y_i``, a trap that makes the true ``dl/dx`` vanish.

    Returns
    -------
    BatchNormGraph

    Notes
    -----
    ``mu = (1/m) sum x_i``, ``var = (1/m) sum (x_i - mu)**2``,
    ``s = sqrt(var + eps)``, ``x_hat_i = (x_i - mu) / s``,
    ``y_i = gamma x_hat_i + beta``, ``l = sum_i g_i y_i``.

    See Also
    --------
    exact_gradients : what SymPy's differentiation makes of ``loss``.
    """
    if x is None:
        if isinstance(m, bool) or not isinstance(m, int) or m < 2:
            raise ValueError(f"m must be an integer >= 2, got {m!r}")
        x = sp.symbols(f"x1:{m + 1}", real=True)
    x = tuple(sp.sympify(xi) for xi in x)
    if len(x) < 2:
        raise ValueError(f"x must hold at least 2 inputs, got {len(x)}")
    m = len(x)
    g = _upstream(m, equal_upstream)
    gamma, beta = sp.symbols("gamma beta", real=True)
    eps_expr = sp.Symbol("epsilon", positive=True) if eps else sp.Integer(0)
    mu = sp.Add(*x) / m
    var = sp.Add(*[(xi - mu) ** 2 for xi in x]) / m
    s = sp.sqrt(var + eps_expr)
    x_hat = tuple((xi - mu) / s for xi in x)
    y = tuple(gamma * h + beta for h in x_hat)
    loss = sp.Add(*[gi * yi for gi, yi in zip(g, y, strict=True)])
    return BatchNormGraph(x, g, gamma, beta, eps_expr, mu, var, s, x_hat, y, loss)


def _require_symbols(bn: BatchNormGraph, caller: str) -> None:
    bad = [xi for xi in bn.x if not isinstance(xi, sp.Symbol)]
    if bad:
        raise TypeError(f"{caller} needs symbolic inputs x, got {bad[0]}")


def exact_gradients(bn: BatchNormGraph) -> Gradients:
    """The gradients of ``bn.loss`` as SymPy differentiates them.

    Parameters
    ----------
    bn : BatchNormGraph
        Its inputs ``x`` must be symbols.

    Returns
    -------
    Gradients
        ``dx[i] = diff(loss, x_i)``, ``dgamma = diff(loss, gamma)``,
        ``dbeta = diff(loss, beta)``.
    """
    _require_symbols(bn, "exact_gradients")
    dx = tuple(sp.diff(bn.loss, xi) for xi in bn.x)
    return Gradients(dx, sp.diff(bn.loss, bn.gamma), sp.diff(bn.loss, bn.beta))


def _dot(a: Sequence[sp.Expr], b: Sequence[sp.Expr]) -> sp.Expr:
    return sp.Add(*[ai * bi for ai, bi in zip(a, b, strict=True)])


@dataclass(frozen=True)
class CompactTerms:
    """The three terms of the compact ``dl/dx_i``, one tuple of ``m`` each."""

    direct: Exprs
    mean: Exprs
    variance: Exprs


def compact_terms(bn: BatchNormGraph) -> CompactTerms:
    """The compact ``dl/dx_i`` split into its direct, mean and variance terms.

    Notes
    -----
    With ``k = gamma / (m s)`` and ``dy_i = g_i``: ``direct_i = k m dy_i`` (through
    ``x_hat_i`` alone), ``mean_i = -k sum_j dy_j`` (through ``mu``) and
    ``variance_i = -k x_hat_i sum_j dy_j x_hat_j`` (through ``var``).

    See Also
    --------
    compact_gradients : the three terms summed and factored.
    """
    m, g, x_hat = bn.m, bn.g, bn.x_hat
    sum_g, sum_gx = sp.Add(*g), _dot(g, x_hat)
    k = bn.gamma / (m * bn.s)
    return CompactTerms(
        tuple(k * m * gi for gi in g),
        (-k * sum_g,) * m,
        tuple(-k * h * sum_gx for h in x_hat),
    )


def compact_gradients(bn: BatchNormGraph) -> Gradients:
    """The compact closed form of BatchNorm's gradients.

    Returns
    -------
    Gradients

    Notes
    -----
    With ``s = sqrt(var + eps)`` and ``dy_i = g_i``:

    .. math::

        \\begin{aligned}
        \\frac{\\partial l}{\\partial x_i} &= \\frac{\\gamma}{m s}
        \\Big(m\\,dy_i - \\sum_j dy_j - \\hat{x}_i \\sum_j dy_j \\hat{x}_j\\Big),\\\\
        \\frac{\\partial l}{\\partial \\gamma} &= \\sum_i dy_i \\hat{x}_i,\\qquad
        \\frac{\\partial l}{\\partial \\beta} = \\sum_i dy_i .
        \\end{aligned}

    See Also
    --------
    compact_terms : the three terms of ``dl/dx_i`` one by one.
    bnlib.batch_norm_backward : the same formula on numpy arrays.
    """
    m, g, x_hat = bn.m, bn.g, bn.x_hat
    sum_g, sum_gx = sp.Add(*g), _dot(g, x_hat)
    k = bn.gamma / (m * bn.s)
    dx = tuple(k * (m * g[i] - sum_g - x_hat[i] * sum_gx) for i in range(m))
    return Gradients(dx, sum_gx, sum_g)


@dataclass(frozen=True)
class StagedGradients:
    """The paper's intermediate gradients and the three results."""

    dx_hat: Exprs
    dvar: sp.Expr
    dmu: sp.Expr
    dx: Exprs
    dgamma: sp.Expr
    dbeta: sp.Expr


def staged_gradients(bn: BatchNormGraph) -> StagedGradients:
    """The backward pass as Ioffe & Szegedy (2015, section 3) stage it.

    Notes
    -----
    With ``c_i = x_i - mu``:
    ``dx_hat_i = g_i gamma``;
    ``dvar = sum_i dx_hat_i c_i * (-1/2) (var + eps)**(-3/2)``;
    ``dmu = sum_i dx_hat_i * (-1 / sqrt(var + eps)) + dvar * sum_i (-2 c_i) / m``;
    ``dx_i = dx_hat_i / sqrt(var + eps) + dvar * 2 c_i / m + dmu / m``;
    ``dgamma = sum_i g_i x_hat_i``; ``dbeta = sum_i g_i``.
    """
    m, s = bn.m, bn.s
    c = [xi - bn.mu for xi in bn.x]
    dx_hat = tuple(gi * bn.gamma for gi in bn.g)
    inv_std3 = (bn.var + bn.eps) ** sp.Rational(-3, 2)
    dvar = _dot(dx_hat, c) * sp.Rational(-1, 2) * inv_std3
    dmu = sp.Add(*[-d / s for d in dx_hat]) + dvar * sp.Add(*[-2 * ci for ci in c]) / m
    dx = tuple(dx_hat[i] / s + dvar * 2 * c[i] / m + dmu / m for i in range(m))
    return StagedGradients(dx_hat, dvar, dmu, dx, _dot(bn.g, bn.x_hat), sp.Add(*bn.g))


def stage_derivatives(bn: BatchNormGraph) -> StagedGradients:
    """The same stages computed by SymPy, each intermediate made a free symbol.

    ``dx_hat_i`` differentiates ``l`` with ``x_hat_i`` free; ``dvar`` makes ``var``
    free and holds ``x`` and ``mu`` fixed; ``dmu`` makes ``mu`` free and lets
    ``var`` follow it (as the paper does) but holds ``x`` fixed; ``dx``,
    ``dgamma``, ``dbeta`` are :func:`exact_gradients`. Symbols are then replaced
    by their expressions in ``x``.
    """
    exact = exact_gradients(bn)
    free_x_hat = sp.symbols(f"xhat1:{bn.m + 1}", real=True)
    l_x_hat = _dot(bn.g, [bn.gamma * h + bn.beta for h in free_x_hat])
    dx_hat = tuple(sp.diff(l_x_hat, h) for h in free_x_hat)
    mu_s, var_s = sp.Symbol("mu", real=True), sp.Symbol("var", nonnegative=True)
    inv_std = 1 / sp.sqrt(var_s + bn.eps)
    l_stats = _dot(bn.g, [bn.gamma * (xi - mu_s) * inv_std + bn.beta for xi in bn.x])
    dvar = sp.diff(l_stats, var_s).subs({mu_s: bn.mu, var_s: bn.var})
    var_of_mu = sp.Add(*[(xi - mu_s) ** 2 for xi in bn.x]) / bn.m
    dmu = sp.diff(l_stats.subs(var_s, var_of_mu), mu_s).subs(mu_s, bn.mu)
    return StagedGradients(dx_hat, dvar, dmu, exact.dx, exact.dgamma, exact.dbeta)


@dataclass(frozen=True)
class EvalGradients:
    """Evaluation mode: the running statistics, the outputs and their gradients."""

    running_mean: sp.Symbol
    running_var: sp.Symbol
    y: Exprs
    dx: Exprs
    dgamma: sp.Expr
    dbeta: sp.Expr


def eval_gradients(bn: BatchNormGraph) -> EvalGradients:
    """BatchNorm in evaluation mode on ``bn``'s inputs, differentiated by SymPy.

    Parameters
    ----------
    bn : BatchNormGraph
        Supplies ``x`` (symbols), ``g``, ``gamma``, ``beta`` and ``eps``; its batch
        statistics are not used.

    Returns
    -------
    EvalGradients
        New symbols ``mu_run`` and ``var_run`` for the running statistics, the
        outputs ``y`` and the exact ``dl/dx_i``, ``dl/dgamma``, ``dl/dbeta``.

    Notes
    -----
    ``y_i = gamma (x_i - mu_run) / sqrt(var_run + eps) + beta`` and
    ``l = sum_i g_i y_i``: the statistics are constants, not functions of ``x``.

    See Also
    --------
    bnlib.batch_norm_eval_backward : the same gradients on numpy arrays.
    """
    _require_symbols(bn, "eval_gradients")
    mean = sp.Symbol("mu_run", real=True)
    var = sp.Symbol("var_run", positive=True)
    y = tuple(bn.gamma * (xi - mean) / sp.sqrt(var + bn.eps) + bn.beta for xi in bn.x)
    loss = _dot(bn.g, y)
    dx = tuple(sp.diff(loss, xi) for xi in bn.x)
    dgamma, dbeta = sp.diff(loss, bn.gamma), sp.diff(loss, bn.beta)
    return EvalGradients(mean, var, y, dx, dgamma, dbeta)
