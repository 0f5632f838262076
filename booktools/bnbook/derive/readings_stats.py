"""Readings of the displays about batch statistics: expectations and shards.

Expectations over random batches (:mod:`bnbook.derive.identities` and
:mod:`bnbook.derive.moments`) and the merge of shard statistics
(:mod:`bnbook.derive.merge`). A display proved at fixed sizes only is read at each
of those sizes: its reading function returns one :class:`Reading` per size.

Importing this module needs SymPy.
"""

from __future__ import annotations

import sympy as sp

from bnbook.derive import identities, merge, moments
from bnbook.derive.reading import Reading

__all__ = [
    "CHI2_SIZES",
    "FPC_POPULATION",
    "batch_mean",
    "chan",
    "chi2",
    "fpc",
    "population",
    "shards",
]

CHI2_SIZES = range(2, 6)  # as the statistics appendix proves the law
FPC_POPULATION = 6  # the appendix's population of symbolic values


def population() -> Reading:
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
    return Reading(None, scalars, renames=renames)


def batch_mean() -> Reading:
    """``E[mu_B]`` and ``Var(mu_B)`` for ``m`` independent draws (eq-reg-var-mean)."""
    t = moments.batch_mean_moments()
    scalars = {
        "m": t["m"], "mu": t["mu"], "phi": t["var"], "alpha": t["mean_b"],
        "nu": t["var_mean_b"],
    }  # fmt: skip
    renames = ((r"E[\mu_B]", r"\alpha"), (r"\operatorname{Var}(\mu_B)", r"\nu"))
    return Reading(None, scalars, renames=renames)


def chi2() -> tuple[Reading, ...]:
    """``E[sigma_B^2]`` and ``Var(sigma_B^2)`` of a Gaussian batch, at each size of
    ``CHI2_SIZES`` (eq-reg-chi2; its first line, the law, is not an equation)."""
    readings = []
    for size in CHI2_SIZES:
        t = moments.gaussian_variance_moments(size)
        sigma = t["sigma"]
        scalars = {
            "m": sp.Integer(size), "phi": sigma**2, "upsilon": sigma,
            "alpha": t["mean_var_b"], "nu": t["var_var_b"],
        }  # fmt: skip
        renames = (
            (r"E[\sigma_B^2]", r"\alpha"),
            (r"\operatorname{Var}(\sigma_B^2)", r"\nu"),
        )
        readings.append(Reading(None, scalars, renames=renames, setting=f"m = {size}"))
    return tuple(readings)


def fpc() -> tuple[Reading, ...]:
    """``Var(mu_B)`` without replacement from ``FPC_POPULATION`` symbolic values, at
    every batch size (eq-reg-fpc)."""
    readings = []
    for size in range(1, FPC_POPULATION + 1):
        t = moments.sampled_mean_variance(FPC_POPULATION, size)
        scalars = {
            "m": sp.Integer(size), "N": sp.Integer(FPC_POPULATION),
            "phi": t["var"], "nu": t["var_mean_b"],
        }  # fmt: skip
        renames = ((r"\operatorname{Var}(\mu_B)", r"\nu"),)
        setting = f"N = {FPC_POPULATION}, m = {size}"
        readings.append(Reading(None, scalars, renames=renames, setting=setting))
    return tuple(readings)


_SHARD_RENAMES = (
    (r"M_{2,k}", r"W_{k}"), (r"M_{2,a}", r"W_{a}"), (r"M_{2,b}", r"W_{b}"),
)  # fmt: skip


def _shard_values(shard: merge.ShardSymbols) -> dict[str, sp.Expr]:
    return {"n": shard.n, "mu": shard.mean, "W": shard.m2}


def shards(count: int) -> Reading:
    """``count`` shards of symbolic sizes (eq-md-merge): a sum over ``k`` runs over
    the shards; ``n``, ``mu``, ``M_2`` and ``sigma_B^2`` are the concatenation's,
    from its sums ``sum S_k`` and ``sum Q_k``
    (:func:`bnbook.derive.merge.concatenation`)."""
    parts = merge.shard_symbols(count)
    n, mean, m2 = merge.concatenation(parts)
    q_all = sp.Add(*(p.q for p in parts))
    scalars = {"n": n, "mu": mean, "M_{2}": m2, "phi": q_all / n - mean**2}
    scalars["m"] = sp.Integer(count)  # a bare sum over k runs over all the shards

    def per_example(base: str, index: str) -> sp.Expr:
        values = _shard_values(parts[int(index) - 1])
        if base not in values:
            raise ValueError(f"the symbol {base}_{index} has no meaning here")
        return values[base]

    terms = tuple(str(j) for j in range(1, count + 1))
    setting = f"{count} shards"
    return Reading(
        None, scalars, per_example, _SHARD_RENAMES, terms=terms, setting=setting
    )


def chan() -> Reading:
    """Two shards ``a`` and ``b`` of symbolic sizes (eq-md-chan)."""
    a, b = merge.shard_symbols(2)
    n, _, m2 = merge.concatenation([a, b])
    scalars = {"M_{2}": m2, "n": n}
    for name, shard in (("a", a), ("b", b)):
        scalars |= {f"{k}_{{{name}}}": v for k, v in _shard_values(shard).items()}
    return Reading(None, scalars, renames=_SHARD_RENAMES)
