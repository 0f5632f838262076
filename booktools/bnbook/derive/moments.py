"""Exact expectations over random batches and dropout masks, with SymPy.

The statistics appendix, the regularization chapter and the pitfalls page state
moments of batch statistics. Each function here derives one from the model's
definition, never from the formula to be checked:

- :func:`batch_mean_moments`: ``E[mu_B]`` and ``Var(mu_B)`` for ``m`` independent
  draws, ``m`` a symbol (sums over distinct indices;
  :func:`bnbook.derive.identities.bessel` builds ``E[sigma_B^2]`` on it);
- :func:`gaussian_variance_moments`: ``E[sigma_B^2]`` and ``Var(sigma_B^2)`` for a
  Gaussian batch of a given size, from ``E[z^p] = (p - 1)!!``;
- :func:`sampled_mean_variance`: ``Var(mu_B)`` averaged over every batch of a given
  size drawn without replacement from ``N`` symbolic values;
- :func:`dropout_variance`: the variance of ``x b / (1 - p)`` with a Bernoulli mask.

Importing this module needs SymPy.
"""

from __future__ import annotations

import itertools

import sympy as sp

__all__ = [
    "batch_mean_moments",
    "dropout_variance",
    "gaussian_expectation",
    "gaussian_variance_moments",
    "sampled_mean_variance",
]

_pos = {"positive": True}


def batch_mean_moments() -> dict[str, sp.Expr]:
    """``E[mu_B]`` and ``Var(mu_B)`` over ``m`` independent draws of ``x``.

    Returns
    -------
    dict
        ``m`` (a positive integer symbol), ``mu`` (``E[x]``), ``var``
        (``Var[x] = s^2``), ``mean_b`` (``E[mu_B] = m^-1 sum_k E[x_k]``) and
        ``var_mean_b`` (``E[mu_B^2] - E[mu_B]^2`` with ``E[x_k x_l] = mu^2 + s^2
        delta_kl``, both sums taken by SymPy up to the symbol ``m``).
    """
    m = sp.Symbol("m", positive=True, integer=True)
    k, l_ = sp.symbols("k l", positive=True, integer=True)
    mu, sd = sp.Symbol("mu", real=True), sp.Symbol("s", **_pos)
    inner = sp.Sum(mu**2 + sd**2 * sp.KroneckerDelta(k, l_), (l_, 1, m)).doit()
    inner = inner.subs(k <= m, True)  # k runs over 1..m
    second = sp.Sum(inner, (k, 1, m)).doit() / m**2
    mean = sp.Sum(mu, (k, 1, m)).doit() / m
    return {
        "m": m,
        "mu": mu,
        "var": sd**2,
        "mean_b": mean,
        "var_mean_b": second - mean**2,
    }


def gaussian_expectation(expr: sp.Expr, zs: tuple[sp.Symbol, ...]) -> sp.Expr:
    """Exact ``E[expr]`` for a polynomial in independent standard normals ``zs``."""
    poly = sp.Poly(sp.expand(expr), *zs)

    def moment(p: int) -> sp.Expr:
        return sp.Integer(0) if p % 2 else sp.factorial2(p - 1)

    terms = (c * sp.prod([moment(p) for p in powers]) for powers, c in poly.terms())
    return sp.expand(sp.Add(*terms))


def gaussian_variance_moments(size: int) -> dict[str, sp.Expr]:
    """``E[sigma_B^2]`` and ``Var(sigma_B^2)`` for ``size`` draws of
    ``N(mu, sigma^2)``, written ``x_k = mu + sigma z_k``.

    Returns
    -------
    dict
        ``sigma`` (the positive symbol), ``mean_var_b`` and ``var_var_b``.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        raise ValueError(f"size must be an integer >= 2, got {size!r}")
    mu, sigma = sp.Symbol("mu", real=True), sp.Symbol("sigma", **_pos)
    zs = sp.symbols(f"z1:{size + 1}")
    xs = [mu + sigma * z for z in zs]
    mean = sp.Add(*xs) / size
    var_b = sp.Add(*((x - mean) ** 2 for x in xs)) / size
    first = gaussian_expectation(var_b, zs)
    second = gaussian_expectation(var_b**2, zs)
    return {
        "sigma": sigma,
        "mean_var_b": first,
        "var_var_b": sp.expand(second - first**2),
    }


def sampled_mean_variance(n_pop: int, size: int) -> dict[str, sp.Expr]:
    """``Var(mu_B)`` over every batch of ``size`` of ``n_pop`` symbolic values.

    Returns
    -------
    dict
        ``var_mean_b``: the mean of ``(mu_B - mean)^2`` over all
        ``C(n_pop, size)`` batches, each equally likely; ``var``: the population
        variance ``mean((v - mean)^2)``.
    """
    if not 1 <= size <= n_pop:
        raise ValueError(f"size must be in 1..{n_pop}, got {size!r}")
    values = sp.symbols(f"v1:{n_pop + 1}", real=True)
    mean = sp.Add(*values) / n_pop
    var = sp.Add(*((v - mean) ** 2 for v in values)) / n_pop
    batches = list(itertools.combinations(values, size))
    spread = sp.Add(*((sp.Add(*b) / size - mean) ** 2 for b in batches))
    return {"var_mean_b": sp.expand(spread / len(batches)), "var": sp.expand(var)}


def dropout_variance() -> dict[str, sp.Expr]:
    """The variance, in training mode, of dropout's output ``x b / (1 - p)``.

    ``b ~ Bernoulli(1 - p)`` is independent of ``x``, which has mean ``mu`` and
    variance ``sigma2``. ``E[x b / (1 - p)] = mu``;
    ``E[(x b / (1 - p))^2] = (1 - p) E[x^2] / (1 - p)^2``.

    Returns
    -------
    dict
        ``p``, ``mu``, ``sigma2`` (symbols) and ``var_train``.
    """
    p, sigma2 = sp.Symbol("p", **_pos), sp.Symbol("sigma2", **_pos)
    mu = sp.Symbol("mu", real=True)
    keep = 1 - p  # P(b = 1)
    mean = keep * mu / (1 - p)
    second = keep * (sigma2 + mu**2) / (1 - p) ** 2
    return {"p": p, "mu": mu, "sigma2": sigma2, "var_train": second - mean**2}
