"""The book's other BatchNorm identities, as SymPy pairs that hold for every size.

Each function returns a tuple of ``(lhs, rhs)`` pairs of SymPy expressions; the
identity holds when :func:`bnbook.derive.proof.prove_equal` proves every pair equal.
Sums over a batch (or over a layer's inputs) of symbolic size are taken with
:func:`bnbook.derive.general.batch_sum` or with ``sympy.Sum`` over distinct indices,
so no identity depends on a fixed size. :mod:`bnbook.derive.allm` names them all.

Importing this module needs SymPy.
"""

from __future__ import annotations

import sympy as sp

from bnbook.derive.general import (
    GeneralBatch,
    batch_sum,
    batch_sums,
    compact_dx,
    exact_gradients,
    general_batch,
)
from bnbook.derive.moments import batch_mean_moments

__all__ = [
    "bessel",
    "bessel_terms",
    "eval_affine",
    "fold",
    "momentum",
    "scale_invariance",
    "sigmoid_slope",
    "var_xhat",
    "weight_decay",
]

Pairs = tuple[tuple[sp.Expr, sp.Expr], ...]
_pos = {"positive": True}


def var_xhat(bn: GeneralBatch | None = None) -> Pairs:
    """Batch mean of ``x_hat`` is 0, batch variance ``var / (var + eps)``."""
    bn = bn or general_batch()
    xk = sp.Symbol("x_k")
    sums = {(0,): bn.m, (1,): bn.sx, (2,): bn.sxx}
    mean = batch_sum(bn.x_hat(xk), (xk,), sums) / bn.m
    second = batch_sum(bn.x_hat(xk) ** 2, (xk,), sums) / bn.m
    return ((mean, 0), (second - mean**2, bn.var / bn.s**2))


def sigmoid_slope() -> Pairs:
    """``g' = g (1 - g) = 1 / (4 cosh^2(z/2))`` and the saturation threshold.

    ``g'(z_sat) = f / 4`` at ``z_sat = 2 arccosh(1 / sqrt(f))`` (``0 < f <= 1``);
    ``g'`` is even and strictly decreasing for ``z > 0`` (the sign of its
    derivative is -1), so ``g'(z) < f / 4`` exactly when ``|z| > z_sat``.
    """
    z, f = sp.Symbol("z", real=True), sp.Symbol("f", **_pos)
    g = 1 / (1 + sp.exp(-z))
    slope = sp.diff(g, z)
    z_sat = 2 * sp.acosh(1 / sp.sqrt(f))
    at_sat = (1 / (4 * sp.cosh(z / 2) ** 2)).subs(z, z_sat)
    cosh_form = (1 / (4 * sp.cosh(z / 2) ** 2)).rewrite(sp.exp)
    zp = sp.Symbol("z_pos", positive=True)
    falling = sp.sign(sp.diff(1 / (4 * sp.cosh(zp / 2) ** 2), zp))
    return (
        (slope, g * (1 - g)),
        (slope, cosh_form),
        (sp.simplify(at_sat), f / 4),
        (slope.subs(z, -z), slope),
        (falling, -1),
    )


def bessel() -> Pairs:
    """``E[mu_B] = E[x]`` and ``E[sigma_B^2] = (m - 1)/m Var[x]``, from
    ``E[x_k] = mu`` and ``E[x_k x_l] = mu^2 + s^2 delta_kl``.

    Notes
    -----
    ``E[mu_B]`` and ``E[x_bar^2] = m^-2 sum_k sum_l E[x_k x_l]`` come from
    :func:`bnbook.derive.moments.batch_mean_moments`, which sums over distinct indices
    up to a symbolic ``m``; here ``E[sigma_B^2] = E[x^2] - E[x_bar^2]``.
    """
    t = batch_mean_moments()
    m, mu, e_mean = t["m"], t["mu"], t["mean_b"]
    sd2 = t["var"]
    e_xbar2 = t["var_mean_b"] + e_mean**2
    e_var = (mu**2 + sd2) - e_xbar2
    return (
        (e_mean, mu),
        (e_var, (m - 1) / m * sd2),
        (m / (m - 1) * e_var, sd2),
    )


def bessel_terms() -> dict[str, sp.Expr]:
    """The quantities of :func:`bessel` by name: ``m``, ``mu`` (``E[x]``), ``var``
    (``Var[x]``), ``mean_b`` (``E[mu_B]``) and ``var_b`` (``E[sigma_B^2]``)."""
    (mean_b, mu), (var_b, rhs), _ = bessel()
    m = next(s for s in rhs.free_symbols if s.name == "m")
    sd = next(s for s in rhs.free_symbols if s.name == "s")
    return {"m": m, "mu": mu, "var": sd**2, "mean_b": mean_b, "var_b": var_b}


def momentum() -> Pairs:
    """The running-average conventions as recurrences, for every step ``t``.

    PyTorch: ``r_t = (1 - p) r_{t-1} + p b_t``; Keras and CS231n:
    ``r_t = d r_{t-1} + (1 - d) b_t``: the same update at ``d = 1 - p``. Unrolled,
    batch ``t - j`` has weight ``p (1 - p)^j`` and ``r_0`` keeps ``(1 - p)^t``:
    the weights sum to one.
    """
    p, r, b = sp.Symbol("p", **_pos), sp.Symbol("r"), sp.Symbol("b")
    q = sp.Symbol("q", **_pos)  # q = 1 - p, the weight of the old value
    t = sp.Symbol("t", positive=True, integer=True)
    j = sp.Symbol("j", nonnegative=True, integer=True)
    torch_step = (1 - p) * r + p * b
    keras_step = (lambda d: d * r + (1 - d) * b)(1 - p)
    weights = sp.Sum((1 - q) * q**j, (j, 0, t - 1)).doit() + q**t
    r0 = sp.Symbol("r_0")
    closed = b + q**t * (r0 - b)  # constant batches b: the closed form ...
    step = q * closed.subs(t, t - 1) + (1 - q) * b  # ... solves the recurrence
    return ((torch_step, keras_step), (weights, 1), (step, closed))


def eval_affine() -> Pairs:
    """Eval-mode BatchNorm is ``a x + b`` with ``a = gamma / sqrt(var_run + eps)``,
    ``b = beta - a mu_run``."""
    x, gamma, beta, mu_r = sp.symbols("x gamma beta mu_run", real=True)
    var_r, eps = sp.Symbol("sigma2_run", **_pos), sp.Symbol("epsilon", **_pos)
    a = gamma / sp.sqrt(var_r + eps)
    return (
        (gamma * (x - mu_r) / sp.sqrt(var_r + eps) + beta, a * x + (beta - a * mu_r)),
    )


def fold() -> Pairs:
    """Folding: ``BN_eval(sum_d w_d u_d + c) = sum_d (a w_d) u_d + (a c + b)``
    for any number of inputs ``d`` (one output channel)."""
    w, u, c, b = sp.symbols("w_d u_d c b", real=True)
    a = sp.Symbol("a", real=True)
    n, swu = sp.Symbol("n", **_pos), sp.Symbol("S_wu")
    sums = {(0, 0): n, (1, 1): swu}
    layer_then_bn = a * (batch_sum(w * u, (w, u), sums) + c) + b
    folded = batch_sum((a * w) * u, (w, u), sums) + (a * c + b)
    return ((layer_then_bn, folded),)


def _scaled(bn: GeneralBatch, expr: sp.Expr, alpha: sp.Symbol) -> sp.Expr:
    """``expr`` (rational, at eps = 0) with every input scaled by ``alpha``."""
    r = bn.rest
    return expr.xreplace(
        {
            bn.xi: alpha * bn.xi,
            bn.xj: alpha * bn.xj,
            r["x"]: alpha * r["x"],
            r["gx"]: alpha * r["gx"],
            bn.s: alpha * bn.s,
        }
    )


def scale_invariance() -> Pairs:
    """Inputs scaled by ``alpha > 0``: ``x_hat`` with ``eps`` equals ``x_hat`` with
    ``eps / alpha^2``; at ``eps = 0`` the input gradient is divided by ``alpha``
    and orthogonal to the input (``sum_k x_k dl/dx_k = 0``), for every ``m``."""
    bn, alpha = general_batch(), sp.Symbol("alpha", **_pos)
    r, sums = bn.rest, batch_sums(bn)
    scale_x = {bn.xi: alpha * bn.xi, bn.xj: alpha * bn.xj, r["x"]: alpha * r["x"]}
    scale_x[r["xx"]] = alpha**2 * r["xx"]
    xhat = (bn.xi - bn.mu) / sp.sqrt(bn.var + bn.eps)
    xhat_scaled = xhat.xreplace(scale_x)
    xhat_eps = xhat.subs(bn.eps, bn.eps / alpha**2)
    dx0 = bn.at_eps_zero(exact_gradients(bn)[0])
    xk, gk = sp.Symbol("x_k"), sp.Symbol("g_k")
    dot = batch_sum(xk * compact_dx(bn, gk, bn.x_hat(xk)), (xk, gk), sums)
    return (
        (xhat_scaled, xhat_eps),
        (_scaled(bn, dx0, alpha), dx0 / alpha),
        (bn.at_eps_zero(dot), 0),
    )


def weight_decay() -> Pairs:
    """SGD with weight decay on a scale-invariant weight ``w`` (any dimension).

    With ``w . grad = 0``, one step ``w - eta (grad + lam w)`` gives
    ``|w'|^2 = (1 - eta lam)^2 |w|^2 + eta^2 |grad|^2``. If
    ``|grad| = G / |w|`` (``G``: the gradient norm at unit ``|w|``), the
    fixed point ``r2 = |w|^2`` has ``r2^2 = eta G^2 / (lam (2 - eta lam))``, where
    the squared sine of the turn, ``(eta |grad| / |w|)^2``, is
    ``eta lam (2 - eta lam)``, and its cosine ``w . w' / |w|^2`` is ``1 - eta lam``:
    the turn per step is ``arccos(1 - eta lam)``.
    """
    w, gr = sp.symbols("w_d G_d", real=True)
    eta, lam = sp.Symbol("eta", **_pos), sp.Symbol("lambda", **_pos)
    n, sww, sgg = sp.Symbol("n", **_pos), sp.Symbol("S_ww"), sp.Symbol("S_GG")
    sums = {(0, 0): n, (2, 0): sww, (1, 1): sp.Integer(0), (0, 2): sgg}
    after = batch_sum((w - eta * (gr + lam * w)) ** 2, (w, gr), sums)
    r2 = sp.Symbol("r2", **_pos)  # |w|^2 at the fixed point, so that ...
    g2 = r2**2 * lam * (2 - eta * lam) / eta  # ... G^2 = |w|^4 lam (2 - eta lam)/eta
    fixed = ((1 - eta * lam) ** 2 * r2 + eta**2 * g2 / r2, r2)
    angular = ((eta * sp.sqrt(g2 / r2) / sp.sqrt(r2)) ** 2, eta * lam * (2 - eta * lam))
    # the turn's cosine, w . w' / (|w| |w'|) with |w'| = |w|: 1 - eta lam
    dot = batch_sum(w * (w - eta * (gr + lam * w)), (w, gr), sums)
    cosine = (dot / sww, 1 - eta * lam)
    return ((after, (1 - eta * lam) ** 2 * sww + eta**2 * sgg), fixed, angular, cosine)
