"""Deciding whether two SymPy expressions are equal, and saying how.

:func:`prove_equal` first evaluates ``a - b`` at a random rational point: a clearly
nonzero value there is a counterexample, which settles inequality. Otherwise
``sympy.cancel`` (for rational functions) or ``sympy.simplify`` must reduce the
difference to exactly 0: that is the proof.
Where simplify would be too slow (``method="numeric"``, or ``method="auto"`` on a
large difference) the check falls back to evaluating at several random rational
points. That is evidence, not proof, and the result says so in ``method``.

Importing this module needs SymPy.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import sympy as sp

__all__ = ["Proof", "prove_equal"]

_DIGITS = 50  # significant digits when evaluating at a rational point
_ZERO = sp.Float(10) ** -30  # |value| below this counts as zero at 50 digits
_METHODS = ("simplify", "numeric", "auto")


@dataclass(frozen=True)
class Proof:
    """The verdict on ``a == b``.

    ``holds`` is the verdict. ``method`` says how it was reached: ``"simplify"``
    (``cancel`` or ``simplify`` reduce ``a - b`` to exactly 0: a proof),
    ``"counterexample"`` (``a - b`` is nonzero at the rational point ``point``: a
    disproof), ``"numeric"`` (``a - b`` vanished at ``points_checked`` random
    rational points: evidence, not proof) or
    ``"undecided"`` (simplify left a nonzero expression but no counterexample was
    found; ``holds`` is False). ``residual`` is the simplified difference, or the
    difference's value at the counterexample.
    """

    holds: bool
    method: str
    residual: sp.Expr
    point: dict | None = None
    points_checked: int = 0

    def __bool__(self) -> bool:
        return self.holds

    def __str__(self) -> str:
        verdict = "equal" if self.holds else "NOT equal"
        if self.method == "counterexample":
            return (
                f"NOT equal: the difference is {sp.N(self.residual, 6)} at {self.point}"
            )
        return f"{verdict} ({self.method}); difference = {self.residual}"


def _random_point(symbols: Sequence[sp.Symbol], rnd: random.Random) -> dict:
    """Distinct rationals ``p / q`` (a common q), positive where a symbol must be."""
    q = rnd.randint(2, 7)
    numerators = rnd.sample(range(1, 60), len(symbols))
    point = {}
    for s, p in zip(symbols, numerators, strict=True):
        sign = 1 if s.is_positive or s.is_nonnegative else rnd.choice((-1, 1))
        point[s] = sp.Rational(sign * p, q)
    return point


def _value_at(diff: sp.Expr, point: dict) -> sp.Expr:
    """``diff`` at ``point``: exact substitution, then 50 significant digits."""
    return diff.xreplace(point).evalf(_DIGITS)


def _search(diff: sp.Expr, points: int, rnd: random.Random) -> Proof | None:
    """A counterexample among ``points`` random points, or None if all vanish.

    Points where ``diff`` is not a finite number (a singularity) are skipped.
    """
    symbols = sorted(diff.free_symbols, key=str)
    checked = 0
    for _ in range(3 * points):
        point = _random_point(symbols, rnd)
        value = _value_at(diff, point)
        if not (value.is_number and value.is_finite):
            continue
        if abs(value) > _ZERO:
            return Proof(False, "counterexample", value, point, checked + 1)
        checked += 1
        if checked == points:
            return None
    raise ValueError(f"could not find {points} regular points of {diff}")


def _cancel(diff: sp.Expr) -> sp.Expr:
    """``diff`` over a common denominator, common factors cancelled: exactly 0 for
    a rational function that vanishes identically (fast where simplify is slow)."""
    try:
        return sp.cancel(sp.together(diff))
    except sp.PolynomialError:  # not a rational function of its generators
        return diff


def _check_args(a: object, b: object, method: str, points: int) -> None:
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if isinstance(points, bool) or not isinstance(points, int) or points < 1:
        raise ValueError(f"points must be a positive integer, got {points!r}")
    if _shape(a) != _shape(b):
        raise ValueError(f"cannot compare {_shape(a)} with {_shape(b)}")


def _shape(v: object) -> str:
    """``"one expression"`` or ``"a sequence of k expressions"``."""
    if isinstance(v, Sequence):
        return f"a sequence of {len(v)} expressions"
    return "one expression"


def _prove_one(
    diff: sp.Expr, method: str, points: int, max_ops: int, seed: int
) -> Proof:
    rnd = random.Random(seed)
    found = _search(diff, 1, rnd)
    if found is not None:
        return found
    if method == "auto":
        method = "simplify" if sp.count_ops(diff) <= max_ops else "numeric"
    if method == "numeric":
        found = _search(diff, points, rnd)
        return found or Proof(True, "numeric", sp.Integer(0), None, points + 1)
    residual = _cancel(diff)
    if residual != 0:
        residual = sp.simplify(residual)
    if residual == 0:
        return Proof(True, "simplify", sp.Integer(0))
    found = _search(residual, points, rnd)
    return found or Proof(False, "undecided", residual, None, points + 1)


def prove_equal(
    a: sp.Expr | Sequence[sp.Expr],
    b: sp.Expr | Sequence[sp.Expr],
    *,
    method: str = "simplify",
    points: int = 8,
    max_ops: int = 2000,
    seed: int = 0,
) -> Proof:
    """Decide whether ``a == b`` for every value of their symbols.

    Parameters
    ----------
    a, b : sympy expression, or sequences of the same length
        Sequences are compared element by element.
    method : {"simplify", "numeric", "auto"}
        ``"simplify"`` proves with ``sympy.cancel`` or ``sympy.simplify``; ``"numeric"``
        only evaluates at ``points`` random rational points (for differences too
        large for simplify); ``"auto"`` uses simplify when ``a - b`` has at most
        ``max_ops`` operations (``sympy.count_ops``) and numeric otherwise.
    points : int
        Random rational points tried in the numeric check and the search for a
        counterexample.
    max_ops : int
        The size limit of ``method="auto"``.
    seed : int
        Seed of the random points, for reproducible verdicts.

    Returns
    -------
    Proof
        Truthy when equal; ``method`` says whether by proof or by evidence. For
        sequences: the first element found unequal; else a numeric verdict if any
        element had one, so that evidence is never reported as proof.

    Notes
    -----
    A value is counted as nonzero when it exceeds ``1e-30`` evaluated to 50
    significant digits (``evalf``).
    """
    _check_args(a, b, method, points)
    pairs = zip(a, b, strict=True) if isinstance(a, Sequence) else [(a, b)]
    proofs = []
    for i, (ai, bi) in enumerate(pairs):
        diff = sp.sympify(ai) - sp.sympify(bi)
        proofs.append(_prove_one(diff, method, points, max_ops, seed + i))
        if not proofs[-1].holds:
            return proofs[-1]
    numeric = [p for p in proofs if p.method == "numeric"]
    return numeric[0] if numeric else proofs[-1]
