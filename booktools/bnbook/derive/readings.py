"""Which setting reads each checked display, and which displays are checked by hand.

:mod:`bnbook.derive.display` parses a display; the :class:`Reading` that
``READINGS[label]()`` returns then gives every parsed symbol its expression in the
setting where the equation was proved (a function may return several readings: one
per fixed size, for an equation proved at fixed sizes only). ``NOTES`` says what a
check covers where it is not every line; ``BY_HAND`` names the SymPy-backed labels
whose display is checked by hand, with the reason.

The settings: :mod:`bnbook.derive.readings_batch` (a batch or group of symbolic
size), :mod:`bnbook.derive.readings_stats` (expectations over batches, shards) and
:mod:`bnbook.derive.readings_closed` (no size involved).

Importing this module needs SymPy.
"""

from __future__ import annotations

from collections.abc import Callable

from bnbook.derive import readings_batch as batch
from bnbook.derive import readings_closed as closed
from bnbook.derive import readings_stats as stats
from bnbook.derive.reading import Reading

__all__ = ["BY_HAND", "NOTES", "READINGS", "Reading"]

READINGS: dict[str, Callable[[], Reading | tuple[Reading, ...]]] = {
    # gradients and normalization chapters
    "eq-grad-gamma-beta": batch.training,
    "eq-staged": batch.training,
    "eq-compact": batch.training,
    "eq-orthogonal": batch.training,
    "eq-grad-conv": batch.conv,
    "eq-eval-backward": batch.eval_mode,
    "eq-norm-var-xhat": batch.var_xhat,
    "eq-norm-population": stats.population,
    "eq-norm-bessel": stats.population,
    "eq-norm-sigmoid-slope": closed.sigmoid,
    "eq-norm-eval-affine": closed.eval_affine,
    # the other chapters and appendices
    "eq-speed-shift": batch.shifted,
    "eq-speed-dysum": batch.shifted,
    "eq-family-backward": batch.group,
    "eq-rms-backward": lambda: batch.group(center=False),
    "eq-reg-var-mean": stats.batch_mean,
    "eq-reg-chi2": stats.chi2,
    "eq-reg-fpc": stats.fpc,
    "eq-md-merge": lambda: (stats.shards(2), stats.shards(3)),
    "eq-md-chan": stats.chan,
    "eq-cs-kl-gauss": closed.gaussian_kl,
    "eq-cs-max-weight": closed.max_weight,
    "eq-pit-variance-shift": closed.dropout,
}

NOTES: dict[str, str] = {
    "eq-speed-shift": "for a batch of symbolic size m",
    "eq-speed-dysum": "for a batch of symbolic size m",
    "eq-reg-chi2": (
        f"the mean and variance lines, for m = {stats.CHI2_SIZES[0]} to "
        f"{stats.CHI2_SIZES[-1]}; the law (first line) is not an equation"
    ),
    "eq-reg-fpc": f"for N = {stats.FPC_POPULATION} and every batch size",
    "eq-md-merge": "for 2 and 3 shards of symbolic sizes",
    "eq-pit-variance-shift": "the inequality too",
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
