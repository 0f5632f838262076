"""The proof ledger: how each labelled equation of the book is verified.

A chapter's hidden check cell calls :func:`verified` right after the check that
backs an equation, for example ``verified("eq-norm-fold", "sympy-all-m")``. The
build collects the records into the ledger page (Reference part), and a labelled
equation with no record fails the build.

The kinds of verification, strongest first:

- ``"sympy-all-m"``: a SymPy proof for a symbolic batch or group size (all sizes);
- ``"sympy-instance"``: a SymPy proof at fixed sizes only (``detail`` says which);
- ``"torch"``: checked numerically against PyTorch;
- ``"numeric"``: checked numerically (finite differences, simulation);
- ``"cited"``: taken from a paper (``detail`` names the bibliography key).
"""

from __future__ import annotations

KINDS = {
    "sympy-all-m": "SymPy, all sizes",
    "sympy-instance": "SymPy, fixed sizes only",
    "torch": "numerically, against PyTorch",
    "numeric": "numerically",
    "cited": "cited",
}

__all__ = ["KINDS", "verified"]

_records: list[dict[str, str]] = []


def verified(label: str, kind: str, detail: str = "") -> None:
    """Record that the equation ``label`` was verified in the way ``kind`` names.

    Call it only after the check has passed (an assert that would have stopped the
    notebook otherwise). Returns None, so a cell ending with it prints nothing.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    if not isinstance(label, str) or not label:
        raise ValueError(f"label must be a non-empty str, got {label!r}")
    _records.append({"label": label, "kind": kind, "detail": detail})
