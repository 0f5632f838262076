"""BatchNorm's gradients, derived and proved with SymPy.

The forward pass over a batch of ``n`` scalars is written as SymPy expressions with
symbolic ``gamma``, ``beta``, ``eps`` and a generic upstream gradient ``g_1..g_n``
(the loss is ``l = sum_i g_i y_i``, so ``dl/dy_i = g_i``). Three versions of the
gradients can then be compared: the exact derivatives SymPy computes by
differentiation, the paper's staged equations, and the compact closed form.
:func:`bnlib.proof.prove_equal` decides whether two of them agree and says how
it decided. The chapter :ref:`gradients` is built on these functions.

Importing this module needs SymPy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sympy as sp

from bnlib.proof import Proof, prove_equal

__all__ = [
    "BatchNormGraph",
    "Gradients",
    "Proof",
    "StagedGradients",
    "batch_norm_graph",
    "compact_gradients",
    "exact_gradients",
    "mistaken_dx",
    "note_parameter_gradients",
    "prove_equal",
    "stage_derivatives",
    "staged_gradients",
]

Exprs = tuple[sp.Expr, ...]


@dataclass(frozen=True)
class BatchNormGraph:
    """BatchNorm's forward pass over ``n`` scalars as SymPy expressions.

    ``x`` are the inputs (symbols ``x1..xn`` or given expressions), ``g`` the
    upstream gradients ``dl/dy_i``; ``mu``, ``var``, ``sigma = sqrt(var + eps)``,
    ``x_hat`` and ``y`` are expressions in them; ``loss = sum_i g_i y_i``.
    """

    x: Exprs
    g: Exprs
    gamma: sp.Symbol
    beta: sp.Symbol
    eps: sp.Expr
    mu: sp.Expr
    var: sp.Expr
    sigma: sp.Expr
    x_hat: Exprs
    y: Exprs
    loss: sp.Expr

    @property
    def n(self) -> int:
        """The batch size."""
        return len(self.x)


@dataclass(frozen=True)
class Gradients:
    """``dl/dx_i`` (one per example), ``dl/dgamma`` and ``dl/dbeta``."""

    dx: Exprs
    dgamma: sp.Expr
    dbeta: sp.Expr


def _upstream(n: int, equal_upstream: bool) -> Exprs:
    if equal_upstream:
        return (sp.Symbol("g", real=True),) * n
    return sp.symbols(f"g1:{n + 1}", real=True)


def batch_norm_graph(
    n: int = 3,
    *,
    x: Sequence[sp.Expr] | None = None,
    eps: bool = True,
    equal_upstream: bool = False,
) -> BatchNormGraph:
    """Build BatchNorm's forward pass and loss over a batch of ``n`` scalars.

    Parameters
    ----------
    n : int
        Batch size, at least 2 (ignored when ``x`` is given).
    x : sequence of sympy expressions, optional
        The inputs; default the real symbols ``x1..xn``.
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
    ``mu = (1/n) sum x_i``, ``var = (1/n) sum (x_i - mu)**2``,
    ``x_hat_i = (x_i - mu) / sqrt(var + eps)``, ``y_i = gamma x_hat_i + beta``,
    ``l = sum_i g_i y_i``.

    See Also
    --------
    exact_gradients : what SymPy's differentiation makes of ``loss``.
    """
    if x is None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ValueError(f"n must be an integer >= 2, got {n!r}")
        x = sp.symbols(f"x1:{n + 1}", real=True)
    x = tuple(sp.sympify(xi) for xi in x)
    if len(x) < 2:
        raise ValueError(f"x must hold at least 2 inputs, got {len(x)}")
    n = len(x)
    g = _upstream(n, equal_upstream)
    gamma, beta = sp.symbols("gamma beta", real=True)
    eps_expr = sp.Symbol("epsilon", positive=True) if eps else sp.Integer(0)
    mu = sp.Add(*x) / n
    var = sp.Add(*[(xi - mu) ** 2 for xi in x]) / n
    sigma = sp.sqrt(var + eps_expr)
    x_hat = tuple((xi - mu) / sigma for xi in x)
    y = tuple(gamma * h + beta for h in x_hat)
    loss = sp.Add(*[gi * yi for gi, yi in zip(g, y, strict=True)])
    return BatchNormGraph(x, g, gamma, beta, eps_expr, mu, var, sigma, x_hat, y, loss)


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
    bad = [xi for xi in bn.x if not isinstance(xi, sp.Symbol)]
    if bad:
        raise TypeError(f"exact_gradients needs symbolic inputs x, got {bad[0]}")
    dx = tuple(sp.diff(bn.loss, xi) for xi in bn.x)
    return Gradients(dx, sp.diff(bn.loss, bn.gamma), sp.diff(bn.loss, bn.beta))


def _dot(a: Sequence[sp.Expr], b: Sequence[sp.Expr]) -> sp.Expr:
    return sp.Add(*[ai * bi for ai, bi in zip(a, b, strict=True)])


def compact_gradients(bn: BatchNormGraph) -> Gradients:
    """The compact closed form of BatchNorm's gradients.

    Returns
    -------
    Gradients

    Notes
    -----
    With ``sigma = sqrt(var + eps)`` and ``dy_i = g_i``:

    .. math::

        \\frac{\\partial l}{\\partial x_i} = \\frac{\\gamma}{n\\sigma}
        \\Big(n\\,dy_i - \\sum_j dy_j - \\hat{x}_i \\sum_j dy_j \\hat{x}_j\\Big),\\quad
        \\frac{\\partial l}{\\partial \\gamma} = \\sum_i dy_i \\hat{x}_i,\\quad
        \\frac{\\partial l}{\\partial \\beta} = \\sum_i dy_i .

    See Also
    --------
    bnlib.batch_norm_backward : the same formula on numpy arrays.
    """
    n, g, x_hat = bn.n, bn.g, bn.x_hat
    sum_g, sum_gx = sp.Add(*g), _dot(g, x_hat)
    k = bn.gamma / (n * bn.sigma)
    dx = tuple(k * (n * g[i] - sum_g - x_hat[i] * sum_gx) for i in range(n))
    return Gradients(dx, sum_gx, sum_g)


def note_parameter_gradients(bn: BatchNormGraph) -> tuple[Exprs, Exprs]:
    """The seed note's ``dl/dgamma = dl/dy * x_hat`` and ``dl/dbeta = dl/dy``.

    Returns
    -------
    dgamma, dbeta : tuple of n expressions each
        One per example, ``g_i * x_hat_i`` and ``g_i``: the sum over the batch is
        missing, so there are ``n`` values where the parameter has one.
    """
    return tuple(gi * h for gi, h in zip(bn.g, bn.x_hat, strict=True)), bn.g


def mistaken_dx(bn: BatchNormGraph) -> dict[str, Exprs]:
    """Plausible wrong formulas for ``dl/dx``, each missing one piece.

    Returns
    -------
    dict
        ``"no 1/n"`` drops the factor ``1/n``; ``"no mean path"`` forgets that
        ``mu`` depends on ``x`` (no ``- sum dy``); ``"no variance path"`` forgets
        that ``var`` does (no ``x_hat`` term); ``"constant statistics"`` treats both
        as constants, ``gamma dy_i / sigma``.
    """
    n, g, x_hat = bn.n, bn.g, bn.x_hat
    sum_g, sum_gx = sp.Add(*g), _dot(g, x_hat)
    k = bn.gamma / (n * bn.sigma)
    idx = range(n)
    return {
        "no 1/n": tuple(n * k * (n * g[i] - sum_g - x_hat[i] * sum_gx) for i in idx),
        "no mean path": tuple(k * (n * g[i] - x_hat[i] * sum_gx) for i in idx),
        "no variance path": tuple(k * (n * g[i] - sum_g) for i in idx),
        "constant statistics": tuple(bn.gamma * g[i] / bn.sigma for i in idx),
    }


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
    With ``c_i = x_i - mu`` and ``m = n``:
    ``dx_hat_i = g_i gamma``;
    ``dvar = sum_i dx_hat_i c_i * (-1/2) (var + eps)**(-3/2)``;
    ``dmu = sum_i dx_hat_i * (-1 / sqrt(var + eps)) + dvar * sum_i (-2 c_i) / m``;
    ``dx_i = dx_hat_i / sqrt(var + eps) + dvar * 2 c_i / m + dmu / m``;
    ``dgamma = sum_i g_i x_hat_i``; ``dbeta = sum_i g_i``.
    """
    m, s = bn.n, bn.sigma
    c = [xi - bn.mu for xi in bn.x]
    dx_hat = tuple(gi * bn.gamma for gi in bn.g)
    inv_std3 = (bn.var + bn.eps) ** sp.Rational(-3, 2)
    dvar = _dot(dx_hat, c) * sp.Rational(-1, 2) * inv_std3
    dmu = sp.Add(*[-d / s for d in dx_hat]) + dvar * sp.Add(*[-2 * ci for ci in c]) / m
    dx = tuple(dx_hat[i] / s + dvar * 2 * c[i] / m + dmu / m for i in range(m))
    return StagedGradients(dx_hat, dvar, dmu, dx, _dot(bn.g, bn.x_hat), sp.Add(*bn.g))


def stage_derivatives(bn: BatchNormGraph) -> StagedGradients:
    """The same stages computed by SymPy, each intermediate made a free symbol.

    ``dx_hat_i`` differentiates ``l`` with ``x_hat_i`` free; ``dvar`` holds ``x``
    and ``mu`` fixed; ``dmu`` lets ``var`` follow ``mu`` (as the paper does) but not
    ``x``; ``dx``, ``dgamma``, ``dbeta`` are :func:`exact_gradients`. Symbols are
    then replaced by their expressions in ``x``.
    """
    exact = exact_gradients(bn)
    free_x_hat = sp.symbols(f"xhat1:{bn.n + 1}", real=True)
    l_x_hat = _dot(bn.g, [bn.gamma * h + bn.beta for h in free_x_hat])
    dx_hat = tuple(sp.diff(l_x_hat, h) for h in free_x_hat)
    mu_s, var_s = sp.Symbol("mu", real=True), sp.Symbol("var", nonnegative=True)
    inv_std = 1 / sp.sqrt(var_s + bn.eps)
    l_stats = _dot(bn.g, [bn.gamma * (xi - mu_s) * inv_std + bn.beta for xi in bn.x])
    dvar = sp.diff(l_stats, var_s).subs({mu_s: bn.mu, var_s: bn.var})
    var_of_mu = sp.Add(*[(xi - mu_s) ** 2 for xi in bn.x]) / bn.n
    dmu = sp.diff(l_stats.subs(var_s, var_of_mu), mu_s).subs(mu_s, bn.mu)
    return StagedGradients(dx_hat, dvar, dmu, exact.dx, exact.dgamma, exact.dbeta)
