"""The proof ledger: how each labelled equation of the book is verified.

A chapter's hidden check cell calls :func:`verified` right after the check that
backs an equation, for example ``verified("eq-norm-fold", "sympy-all-m")``. The
build collects the records into the ledger page (Reference part), and a labelled
equation with no record fails the build.

The kinds of verification, strongest first:

- ``"sympy-all-m"``: a SymPy proof for a symbolic batch or group size (all sizes);
- ``"sympy-exact"``: a SymPy proof of an identity that involves no size at all
  (per value, or in symbolic parameters only);
- ``"sympy-instance"``: a SymPy proof at fixed sizes only (``detail`` says which);
- ``"torch"``: checked numerically against PyTorch;
- ``"numeric"``: checked numerically (finite differences, simulation);
- ``"cited"``: taken from a paper (``detail`` names the bibliography key).

Transport: inside a running notebook (an IPython kernel, as when the book executes a
page), each record is glued with ``myst_nb.glue`` under a key of its own,
``"ledger:<label>|<kind>|<detail>"``, with ``display=False``, so the page shows
nothing. myst-nb keeps every page's glue keys in the Sphinx environment, where the
book's extension ``_ext/proof_ledger.py`` reads them back. Outside a kernel (a plain
``import``, the tests) only the in-memory list :func:`records` is kept.
"""

from __future__ import annotations

KINDS = {
    "sympy-all-m": "SymPy, all sizes",
    "sympy-exact": "SymPy, exact (no size involved)",
    "sympy-instance": "SymPy, fixed sizes only",
    "torch": "numerically, against PyTorch",
    "numeric": "numerically",
    "cited": "cited",
}

__all__ = ["KINDS", "PREFIX", "key", "parse_key", "records", "verified"]

PREFIX = "ledger:"
_records: list[dict[str, str]] = []


def key(label: str, kind: str, detail: str = "") -> str:
    """The glue key of one record: ``"ledger:<label>|<kind>|<detail>"``."""
    return f"{PREFIX}{label}|{kind}|{detail}"


def parse_key(glue_key: str) -> dict[str, str] | None:
    """The record of a glue key made by :func:`key`, or None for any other key."""
    if not glue_key.startswith(PREFIX):
        return None
    parts = glue_key[len(PREFIX) :].split("|", 2)
    if len(parts) != 3 or parts[1] not in KINDS or not parts[0]:
        return None
    return {"label": parts[0], "kind": parts[1], "detail": parts[2]}


def records() -> list[dict[str, str]]:
    """The records made in this process so far (a copy)."""
    return [dict(r) for r in _records]


def _glue(glue_key: str) -> None:
    """Glue ``glue_key`` (with the value True) if running in an IPython kernel."""
    try:
        from IPython import get_ipython
        from myst_nb import glue
    except ImportError:  # not the book's environment: the list is all there is
        return
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        return
    glue(glue_key, True, display=False)


def verified(label: str, kind: str, detail: str = "") -> None:
    """Record that the equation ``label`` was verified in the way ``kind`` names.

    Call it only after the check has passed (an assert that would have stopped the
    notebook otherwise). Returns None, so a cell ending with it prints nothing.
    Recording the same ``(label, kind, detail)`` twice keeps one record.

    Raises
    ------
    ValueError
        If ``kind`` is not a key of ``KINDS``, ``label`` is not a non-empty str
        or contains ``"|"``, or ``detail`` is not a str.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    if not isinstance(label, str) or not label or "|" in label:
        raise ValueError(f"label must be a non-empty str without '|', got {label!r}")
    if not isinstance(detail, str):
        raise ValueError(f"detail must be a str, got {type(detail).__name__}")
    record = {"label": label, "kind": kind, "detail": detail}
    if record in _records:
        return
    _records.append(record)
    _glue(key(label, kind, detail))
