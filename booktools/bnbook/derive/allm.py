"""Every identity the book proves for all sizes, by name.

``IDENTITIES`` maps a name to a function returning ``(lhs, rhs)`` pairs;
:func:`prove` proves all pairs of one name with
:func:`bnbook.derive.proof.prove_equal`. The gradient identities come from
:mod:`bnbook.derive.general` (a batch of symbolic size ``m``), the others from
:mod:`bnbook.derive.identities`.

Importing this module needs SymPy.
"""

from __future__ import annotations

from collections.abc import Callable

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
    projection_entry,
    staged_stages,
)
from bnbook.derive.ledger import verified
from bnbook.derive.proof import Proof, prove_equal

__all__ = ["IDENTITIES", "local_partials", "prove", "prove_and_record"]

Pairs = tuple[tuple[sp.Expr, sp.Expr], ...]


def local_partials(bn: GeneralBatch | None = None) -> Pairs:
    """The table of local partials: ``dmu/dx_i = 1/m``, ``dvar/dx_i = 2(x_i - mu)/m``
    (``mu`` held), ``dx_hat_i/dmu = -1/s``, ``dx_hat_i/dvar = -(x_i - mu)/(2 s^3)``,
    ``dvar/dmu = 0`` (at the mean) and ``dx_hat_i/dx_i = 1/s`` (``mu``, ``var``
    held)."""
    bn = bn or general_batch()
    mu_h, var_h = sp.Symbol("M"), sp.Symbol("V", positive=True)
    var_mu_held = (bn.sxx - 2 * mu_h * bn.sx + bn.m * mu_h**2) / bn.m
    xhat = (bn.xi - mu_h) / sp.sqrt(var_h + bn.eps)
    held = {mu_h: bn.mu, var_h: bn.var}

    def local(expr: sp.Expr, v: sp.Symbol) -> sp.Expr:
        return bn.rational(sp.diff(expr, v).xreplace(held))

    return (
        (sp.diff(bn.mu, bn.xi), 1 / bn.m),
        (sp.diff(var_mu_held, bn.xi).xreplace(held), 2 * (bn.xi - bn.mu) / bn.m),
        (local(xhat, mu_h), -1 / bn.s),
        (local(xhat, var_h), -(bn.xi - bn.mu) / (2 * bn.s**3)),
        (sp.diff(var_mu_held, mu_h).xreplace(held), 0),
        (local(xhat, bn.xi), 1 / bn.s),
    )


def _gradients(bn: GeneralBatch) -> Pairs:
    dx, dgamma, dbeta = exact_gradients(bn)
    compact = compact_dx(bn, bn.gi, bn.x_hat(bn.xi))
    return ((dx, compact), (dgamma, bn.sum_g_xhat), (dbeta, bn.sg))


def _staged() -> Pairs:
    """Every stage of the paper's pass, each the partial derivative it names:
    ``dl/dx_hat_i``, ``dl/dvar``, ``dl/dmu`` and ``dl/dx_i``, for every ``m``."""
    bn = general_batch()
    return tuple(zip(exact_stages(bn), staged_stages(bn), strict=True))


def _sums(bn: GeneralBatch) -> tuple[sp.Expr, sp.Expr]:
    xk, gk = sp.Symbol("x_k"), sp.Symbol("g_k")
    dxk = compact_dx(bn, gk, bn.x_hat(xk))
    sums = batch_sums(bn)
    return batch_sum(dxk, (xk, gk), sums), batch_sum(bn.x_hat(xk) * dxk, (xk, gk), sums)


def _orthogonal() -> Pairs:
    """Sum zero; ``sum dx_k x_hat_k = gamma eps / s^3 sum g_k x_hat_k``."""
    bn = general_batch()
    total, dot = _sums(bn)
    eps = bn.s**2 - bn.var
    return ((total, 0), (dot, bn.gamma * eps / bn.s**3 * bn.sum_g_xhat))


def _projection() -> Pairs:
    """``d(dl/dx_i)/dg_j`` is entry ``(i, j)`` of ``(gamma/s)(I - 11^T/m -
    x_hat x_hat^T/m)``; the matrix kills ``1`` and scales ``x_hat`` by
    ``eps / s^2``; at ``eps = 0`` the norm drops by ``((sum g)^2 + (sum g
    x_hat)^2) / m`` (times ``(gamma/s)^2``)."""
    bn = general_batch()
    dx = exact_gradients(bn)[0]
    xk, gk, sgg = sp.Symbol("x_k"), sp.Symbol("g_k"), sp.Symbol("S_gg")
    kx = {(0,): bn.m, (1,): bn.sx, (2,): bn.sxx}
    sum_xhat = batch_sum(bn.x_hat(xk), (xk,), kx)
    sum_xhat2 = batch_sum(bn.x_hat(xk) ** 2, (xk,), kx)
    xh = bn.x_hat(bn.xi)
    ones = 1 - 1 - xh * sum_xhat / bn.m  # (P 1)_i, times s / gamma
    on_xhat = xh - sum_xhat / bn.m - xh * sum_xhat2 / bn.m
    # At eps = 0 in the coordinates h_k = x_hat_k: sum h = 0, sum h^2 = m (var x_hat).
    hk, big_g, big_h = sp.Symbol("h_k"), sp.Symbol("S_g"), sp.Symbol("S_gh")
    hsums = {(0, 0): bn.m, (1, 0): 0, (2, 0): bn.m, (0, 1): big_g, (1, 1): big_h}
    pg = gk - big_g / bn.m - hk * big_h / bn.m  # (P g)_k, times s / gamma
    drop = sgg - batch_sum(pg**2, (hk, gk), {**hsums, (0, 2): sgg})
    return (
        (sp.diff(dx, bn.gj), projection_entry(bn, same=False)),
        (sp.diff(dx, bn.gi), projection_entry(bn, same=True)),
        (ones, 0),
        (on_xhat, (bn.s**2 - bn.var) / bn.s**2 * xh),
        (drop, (big_g**2 + big_h**2) / bn.m),
    )


def _eval_backward() -> Pairs:
    """Eval mode, running statistics ``mu_run``, ``var_run``: ``dx_i = gamma g_i /
    s_run``, ``dgamma = sum g x_hat``, ``dbeta = sum g``, for every ``m``."""
    bn = general_batch()
    mu_r, var_r = sp.Symbol("mu_run"), sp.Symbol("sigma2_run", positive=True)
    s_r = sp.sqrt(var_r + bn.eps)
    loss = bn.gamma * (bn.sgx - mu_r * bn.sg) / s_r + bn.beta * bn.sg
    d = [sp.diff(loss, v) for v in (bn.xi, bn.gamma, bn.beta)]
    return (
        (d[0], bn.gamma * bn.gi / s_r),
        (d[1], (bn.sgx - mu_r * bn.sg) / s_r),
        (d[2], bn.sg),
    )


def _conv() -> Pairs:
    """A channel of ``N`` examples with ``L`` positions each: the statistics run over
    ``m = N L`` values and every gradient is the dense one at that ``m``."""
    n, length = sp.Symbol("N", positive=True), sp.Symbol("L", positive=True)
    return _gradients(general_batch(size=n * length))


IDENTITIES: dict[str, Callable[[], Pairs]] = {
    "local partials": local_partials,
    "gradients": lambda: _gradients(general_batch()),
    "staged": _staged,
    "orthogonal": _orthogonal,
    "projection": _projection,
    "eval backward": _eval_backward,
    "convolution": _conv,
    "var x_hat": identities.var_xhat,
    "sigmoid slope": identities.sigmoid_slope,
    "bessel": identities.bessel,
    "momentum": identities.momentum,
    "eval affine": identities.eval_affine,
    "fold": identities.fold,
    "scale invariance": identities.scale_invariance,
    "weight decay": identities.weight_decay,
}


def prove(name: str) -> Proof:
    """Prove every pair of the identity ``name`` (a key of ``IDENTITIES``).

    Returns the :class:`~bnbook.derive.proof.Proof` of
    :func:`~bnbook.derive.proof.prove_equal` on all pairs: truthy when all hold.
    """
    if name not in IDENTITIES:
        raise ValueError(f"name must be one of {sorted(IDENTITIES)}, got {name!r}")
    pairs = IDENTITIES[name]()
    return prove_equal([a for a, _ in pairs], [b for _, b in pairs])


def prove_and_record(
    name: str,
    *labels: str,
    detail: str = "every batch size m",
    kind: str = "sympy-all-m",
) -> Proof:
    """Prove the identity ``name``, then record ``labels`` in the ledger.

    ``kind`` is ``"sympy-all-m"`` (the identity holds for a symbolic size) or
    ``"sympy-exact"`` (it involves no size).

    Raises
    ------
    AssertionError
        If the proof fails (a chapter's check cell then stops the build); nothing is
        recorded.
    ValueError
        If ``name`` is unknown or ``kind`` is not one of the two SymPy kinds.

    See Also
    --------
    bnbook.derive.ledger.verified : the record, with kind ``kind``.
    """
    if kind not in ("sympy-all-m", "sympy-exact"):
        raise ValueError(f"kind must be 'sympy-all-m' or 'sympy-exact', got {kind!r}")
    proof = prove(name)
    if not (proof.holds and proof.method == "simplify"):
        raise AssertionError(f"{name}: {proof}")
    for label in labels:
        verified(label, kind, detail)
    return proof
