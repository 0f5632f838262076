"""Wrong formulas for BatchNorm's gradients, as SymPy expressions.

Each one misses one piece of the right answer: the seed note's per-example
``dl/dgamma`` and ``dl/dbeta`` (no sum over the batch) and four plausible mistakes in
``dl/dx``. The chapter :ref:`gradients` uses them to show what a proof with
:func:`bnbook.derive.proof.prove_equal` catches, and which checks let them through.

Importing this module needs SymPy.
"""

from __future__ import annotations

from bnbook.derive.symbolic import BatchNormGraph, Exprs, compact_terms

__all__ = ["mistaken_dx", "note_parameter_gradients"]


def note_parameter_gradients(bn: BatchNormGraph) -> tuple[Exprs, Exprs]:
    """The seed note's ``dl/dgamma = dl/dy * x_hat`` and ``dl/dbeta = dl/dy``.

    Returns
    -------
    dgamma, dbeta : tuple of m expressions each
        One per example, ``g_i * x_hat_i`` and ``g_i``: the sum over the batch is
        missing, so there are ``m`` values where the parameter has one.
    """
    return tuple(gi * h for gi, h in zip(bn.g, bn.x_hat, strict=True)), bn.g


def mistaken_dx(bn: BatchNormGraph) -> dict[str, Exprs]:
    """Plausible wrong formulas for ``dl/dx``, each missing one piece.

    Returns
    -------
    dict
        ``"no 1/m"`` drops the factor ``1/m``; ``"no mean path"`` forgets that
        ``mu`` depends on ``x`` (no ``- sum dy``); ``"no variance path"`` forgets
        that ``var`` does (no ``x_hat`` term); ``"constant statistics"`` treats both
        as constants, ``gamma dy_i / s``.
    """
    t = compact_terms(bn)
    rows = list(zip(t.direct, t.mean, t.variance, strict=True))
    return {
        "no 1/m": tuple(bn.m * (d + mn + v) for d, mn, v in rows),
        "no mean path": tuple(d + v for d, _, v in rows),
        "no variance path": tuple(d + mn for d, mn, _ in rows),
        "constant statistics": tuple(d for d, _, _ in rows),
    }
