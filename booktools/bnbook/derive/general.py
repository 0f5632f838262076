"""BatchNorm's gradients for a symbolic batch size ``m``: proofs for every ``m``.

The batch is written with two examples ``i`` and ``j`` explicit and the other
``m - 2`` examples only through their sums: ``rest_x = sum x_k``, ``rest_xx = sum
x_k^2``, ``rest_g = sum g_k`` and ``rest_gx = sum g_k x_k`` (``k`` not ``i``, ``j``).
Every quantity of the forward pass (mean, variance, ``x_hat_i``, the loss
``l = sum_k g_k y_k``) is then a closed-form expression in ``m``, and
``dl/dx_i`` is an ordinary derivative: the rest sums do not depend on ``x_i``.
After differentiating, ``eps`` is eliminated through ``s^2 = var + eps`` (a
positive symbol ``s``), so that every identity is one between rational functions,
decided exactly by :func:`bnbook.derive.proof.prove_equal`.

:func:`batch_sum` sums a per-example expression over the whole batch (a polynomial in
``x_k``, ``g_k`` becomes one in the power sums), which proves the sum-zero and
orthogonality identities; :func:`instance` maps a general expression back to a batch
of a given size, where a wrong formula can be caught by a counterexample.

Importing this module needs SymPy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sympy as sp

from bnbook.derive.proof import Proof, prove_equal

__all__ = [
    "GeneralBatch",
    "batch_sum",
    "compact_dx",
    "exact_gradients",
    "exact_stages",
    "failing_sizes",
    "general_batch",
    "instance",
    "projection_entry",
    "staged_dx",
    "staged_stages",
]

_pos = {"positive": True}


@dataclass(frozen=True)
class GeneralBatch:
    """BatchNorm's forward pass over a batch of symbolic size ``m``.

    ``xi, xj, gi, gj`` are the two explicit examples and their upstream gradients;
    ``rest`` maps ``"x", "xx", "g", "gx"`` to the sums over the other ``m - 2``
    examples. ``sx, sxx, sg, sgx`` are the sums over the whole batch, ``mu`` and
    ``var`` the batch statistics, ``s`` the positive symbol with
    ``s^2 = var + eps``, ``x_hat_i = (xi - mu) / s``. ``loss`` is
    ``sum_k g_k y_k`` written with ``sqrt(var + eps)``, ready to differentiate.
    """

    m: sp.Expr
    gamma: sp.Symbol
    beta: sp.Symbol
    eps: sp.Symbol
    s: sp.Symbol
    xi: sp.Symbol
    xj: sp.Symbol
    gi: sp.Symbol
    gj: sp.Symbol
    rest: dict[str, sp.Symbol]
    sx: sp.Expr
    sxx: sp.Expr
    sg: sp.Expr
    sgx: sp.Expr
    mu: sp.Expr
    var: sp.Expr
    loss: sp.Expr

    def x_hat(self, x: sp.Expr) -> sp.Expr:
        """``(x - mu) / s`` for an example with input ``x``."""
        return (x - self.mu) / self.s

    @property
    def sum_g_xhat(self) -> sp.Expr:
        """``sum_k g_k x_hat_k = (sgx - mu sg) / s``."""
        return (self.sgx - self.mu * self.sg) / self.s

    def rational(self, expr: sp.Expr) -> sp.Expr:
        """``expr`` with ``sqrt(var + eps)`` written as ``s`` (``eps = s^2 - var``)."""
        expr = expr.xreplace({self.var + self.eps: self.s**2})
        return sp.sympify(expr).subs(self.eps, self.s**2 - self.var)

    def at_eps_zero(self, expr: sp.Expr) -> sp.Expr:
        """``expr`` (rational, in ``s``) at ``eps = 0``: ``rest_xx`` chosen so that
        ``var = s^2``."""
        rxx = self.m * (self.s**2 + self.mu**2) - self.xi**2 - self.xj**2
        return expr.subs(self.rest["xx"], rxx)


def general_batch(size: sp.Expr | None = None) -> GeneralBatch:
    """The batch of :class:`GeneralBatch`, of size ``size`` (default: a symbol ``m``).

    ``size`` may be any positive expression, for example ``N * L`` for a
    convolutional channel (``N`` examples of ``L`` positions each).
    """
    m = sp.Symbol("m", **_pos) if size is None else sp.sympify(size)
    gamma, beta = sp.symbols("gamma beta")
    eps, s = sp.Symbol("epsilon", **_pos), sp.Symbol("s", **_pos)
    xi, xj, gi, gj = sp.symbols("x_i x_j g_i g_j")
    rest = {k: sp.Symbol(f"R_{k}") for k in ("x", "xx", "g", "gx")}
    sx, sxx = xi + xj + rest["x"], xi**2 + xj**2 + rest["xx"]
    sg, sgx = gi + gj + rest["g"], gi * xi + gj * xj + rest["gx"]
    mu = sx / m
    var = sxx / m - mu**2
    root = sp.sqrt(var + eps)
    loss = gamma * (sgx - mu * sg) / root + beta * sg
    return GeneralBatch(
        m, gamma, beta, eps, s, xi, xj, gi, gj, rest, sx, sxx, sg, sgx, mu, var, loss
    )


def exact_gradients(bn: GeneralBatch) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    """``dl/dx_i``, ``dl/dgamma`` and ``dl/dbeta`` by SymPy's differentiation,
    written with ``s``."""
    return tuple(bn.rational(sp.diff(bn.loss, v)) for v in (bn.xi, bn.gamma, bn.beta))  # type: ignore[return-value]


def compact_dx(bn: GeneralBatch, g: sp.Expr, x_hat: sp.Expr) -> sp.Expr:
    """The compact form ``gamma / (m s) (m g - sum g - x_hat sum g x_hat)``
    for one example with upstream gradient ``g`` and normalized input ``x_hat``."""
    return bn.gamma / (bn.m * bn.s) * (bn.m * g - bn.sg - x_hat * bn.sum_g_xhat)


Stages = tuple[sp.Expr, sp.Expr, sp.Expr, sp.Expr]


def exact_stages(bn: GeneralBatch) -> Stages:
    """The staged pass's four partial derivatives, by SymPy's differentiation.

    ``(dl/dx_hat_i, dl/dvar, dl/dmu, dl/dx_i)`` in the paper's graph, where
    ``x_hat``, ``var`` and ``mu`` are nodes of their own (Ioffe & Szegedy 2015,
    sec. 3): ``dl/dx_hat_i`` holds the other ``x_hat_k``; ``dl/dvar`` holds ``x``
    and ``mu``; ``dl/dmu`` holds ``x`` and follows ``mu`` through ``x_hat`` and
    through ``var = sum_k (x_k - mu)^2 / m``; ``dl/dx_i`` is the total derivative.
    Each is written with ``s`` (rational), for a symbolic batch size.
    """
    xh_i, rest = sp.Symbol("xhat_i"), sp.Symbol("R_gxhat")  # rest: sum g_k x_hat_k
    d_xhat = sp.diff(bn.gamma * (bn.gi * xh_i + rest) + bn.beta * bn.sg, xh_i)
    mu_h, var_h = sp.Symbol("M"), sp.Symbol("V", positive=True)
    loss = bn.gamma * (bn.sgx - mu_h * bn.sg) / sp.sqrt(var_h + bn.eps)
    loss += bn.beta * bn.sg
    var_of_mu = (bn.sxx - 2 * mu_h * bn.sx + bn.m * mu_h**2) / bn.m
    at = {mu_h: bn.mu, var_h: bn.var}
    d_var = sp.diff(loss, var_h)
    d_mu = sp.diff(loss, mu_h) + d_var * sp.diff(var_of_mu, mu_h)
    d_var, d_mu = (bn.rational(e.xreplace(at)) for e in (d_var, d_mu))
    return d_xhat, d_var, d_mu, exact_gradients(bn)[0]


def staged_stages(bn: GeneralBatch, var_factor: int = 1) -> Stages:
    """The four stages as the paper writes them (Ioffe & Szegedy 2015, sec. 3).

    ``dx_hat_k = g_k gamma``; ``dvar = -1/2 s^-3 sum_k dx_hat_k (x_k - mu)``;
    ``dmu = -sum_k dx_hat_k / s + dvar sum_k -2 (x_k - mu) / m``;
    ``dx_i = dx_hat_i / s + dvar 2 (x_i - mu) / m + dmu / m``. Each sum over the
    batch is taken by :func:`batch_sum` of the per-example stage.

    ``var_factor`` multiplies ``dvar`` and divides its term in ``dx_i`` (a
    compensated mistake, for tests): with 2 the last stage is still right, the
    second is not.
    """
    m, s, mu = bn.m, bn.s, bn.mu
    xk, gk = sp.Symbol("x_k"), sp.Symbol("g_k")
    sums = batch_sums(bn)

    def total(expr: sp.Expr) -> sp.Expr:
        return batch_sum(expr, (xk, gk), sums)

    d_xhat_k = bn.gamma * gk
    d_var = var_factor * -total(d_xhat_k * (xk - mu)) / (2 * s**3)
    d_mu = -total(d_xhat_k) / s + d_var * -2 * total(xk - mu) / m
    d_xhat_i = d_xhat_k.xreplace({gk: bn.gi})
    d_x = d_xhat_i / s + d_var / var_factor * 2 * (bn.xi - mu) / m + d_mu / m
    return d_xhat_i, d_var, d_mu, d_x


def staged_dx(bn: GeneralBatch) -> sp.Expr:
    """``dl/dx_i`` by the paper's four stages: the last of :func:`staged_stages`."""
    return staged_stages(bn)[3]


def projection_entry(bn: GeneralBatch, same: bool) -> sp.Expr:
    """Entry ``(i, j)`` of ``(gamma / s) (I - 11^T/m - x_hat x_hat^T / m)``;
    ``same`` picks the diagonal ``(i, i)``."""
    xh_i = bn.x_hat(bn.xi)
    xh_j = xh_i if same else bn.x_hat(bn.xj)
    return bn.gamma / bn.s * (int(same) - 1 / bn.m - xh_i * xh_j / bn.m)


def batch_sum(
    expr: sp.Expr,
    per_example: Iterable[sp.Symbol],
    sums: dict[tuple[int, ...], sp.Expr],
) -> sp.Expr:
    """``sum_k expr(k)`` for ``expr`` polynomial in the per-example symbols.

    Parameters
    ----------
    expr : sympy expression
        Polynomial in ``per_example`` (for example ``x_k``, ``g_k``); its
        coefficients must not depend on ``k``.
    per_example : symbols
        The symbols that vary with the example ``k``.
    sums : dict
        Exponent tuple -> the power sum, e.g. ``{(0, 0): m, (1, 0): sum x,
        (1, 1): sum g x}``. A monomial whose exponents are missing here raises
        ValueError.

    Notes
    -----
    Linearity: ``sum_k c x_k^a g_k^b = c sum_k x_k^a g_k^b``.
    """
    syms = tuple(per_example)
    poly = sp.Poly(sp.expand(expr), *syms)
    total = sp.Integer(0)
    for exps, coeff in poly.terms():
        if exps not in sums:
            raise ValueError(f"no power sum given for exponents {exps} of {syms}")
        total += coeff * sums[exps]
    return total


def batch_sums(bn: GeneralBatch) -> dict[tuple[int, ...], sp.Expr]:
    """The power sums of ``(x_k, g_k)`` that ``bn`` knows: ``m, sx, sxx, sg, sgx``."""
    return {(0, 0): bn.m, (1, 0): bn.sx, (2, 0): bn.sxx, (0, 1): bn.sg, (1, 1): bn.sgx}


def instance(bn: GeneralBatch, expr: sp.Expr, size: int) -> sp.Expr:
    """``expr`` for a batch of ``size`` explicit examples (``size >= 2``).

    The rest sums become sums over fresh symbols ``x3..x_size``, ``g3..g_size``;
    ``m`` becomes ``size``. ``s`` stays a free positive symbol (it fixes ``eps``).
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        raise ValueError(f"size must be an integer >= 2, got {size!r}")
    xs = sp.symbols(f"x3:{size + 1}") if size > 2 else ()
    gs = sp.symbols(f"g3:{size + 1}") if size > 2 else ()
    r = bn.rest
    values = {
        r["x"]: sp.Add(*xs),
        r["xx"]: sp.Add(*(x**2 for x in xs)),
        r["g"]: sp.Add(*gs),
        r["gx"]: sp.Add(*(g * x for g, x in zip(gs, xs, strict=True))),
    }
    if isinstance(bn.m, sp.Symbol):
        values[bn.m] = sp.Integer(size)
    return sp.sympify(expr).xreplace(values)


def failing_sizes(
    bn: GeneralBatch, a: sp.Expr, b: sp.Expr, sizes: Iterable[int]
) -> list[int]:
    """The batch sizes among ``sizes`` at which ``a == b`` fails (by a proof or a
    counterexample of :func:`~bnbook.derive.proof.prove_equal` on :func:`instance`)."""
    fails = []
    for size in sizes:
        verdict: Proof = prove_equal(instance(bn, a, size), instance(bn, b, size))
        if not verdict.holds:
            fails.append(size)
    return fails
