"""The book's displayed equations read back into SymPy, and checked.

A proof in :mod:`bnbook.derive.allm` is keyed by an equation's label, not by what the
page shows. This module closes that gap: it takes the LaTeX that the page displays,
parses it with ``sympy.parsing.latex.parse_latex`` (the lark backend), gives every
symbol its meaning in the proved setting and proves each displayed relation
(``a = b``, line by line, chains ``a = b = c`` pairwise) with
:func:`bnbook.derive.proof.prove_equal`. A slip of sign or power on the page then
fails the check, and the build (``_ext/proof_ledger.py`` calls :func:`check`).

The parser knows a subset of LaTeX: :func:`bnbook.derive.dialect.prepare` first
rewrites the book's notation into it. :mod:`bnbook.derive.readings` gives each
checked label its setting (``READINGS``) and names the SymPy-backed labels checked
by hand (``BY_HAND``). An inequality ``a < b`` that ends a chain is proved by
SymPy finding ``b - a`` positive.

Importing this module needs SymPy (and lark for :func:`parse_side`).
"""

from __future__ import annotations

import functools
import re

import sympy as sp

from bnbook.derive.dialect import drop_underbraces, prepare, top_level_split, wrap_sums
from bnbook.derive.proof import prove_equal
from bnbook.derive.readings import BY_HAND, NOTES, READINGS, Reading

__all__ = [
    "BY_HAND",
    "NOTES",
    "READINGS",
    "Reading",
    "check",
    "check_markdown",
    "math_blocks",
    "parse_side",
    "prepare",
    "relations",
]


def math_blocks(markdown: str) -> dict[str, str]:
    """Label -> LaTeX of every labelled ``{math}`` block of a MyST page."""
    pattern = re.compile(r"^```\{math\}\n:label: (\S+)\n(.*?)^```", re.M | re.S)
    return {m.group(1): m.group(2).strip() for m in pattern.finditer(markdown)}


def relations(
    latex: str, renames: tuple[tuple[str, str], ...] = ()
) -> list[tuple[str, str, str]]:
    """The displayed relations ``(lhs, op, rhs)``, in the parser's dialect.

    ``op`` is ``"="``, or ``"<"`` for an inequality that ends a chain
    (``a = b < 1``). Lines (``\\\\``) with an ``=`` start a relation; a line starting
    with ``=`` continues a chain; a line with no ``=`` continues the side before it
    (or, first, starts one). Two relations on one line are separated by ``\\qquad``.
    """
    text = drop_underbraces(latex)
    chains: list[list[str]] = []
    for line in re.split(r"\\\\", text):
        for piece in re.split(r"\\qquad(?=[^=]*=)", line) if "=" in line else [line]:
            piece = piece.replace("&", " ").strip()
            if not piece or piece.startswith(r"\end"):
                continue
            sides = top_level_split(piece, "=")
            if re.sub(r"\\(qquad|quad|,|;|!)", "", sides[0]).strip() == "" and chains:
                chains[-1].extend(sides[1:])
            elif len(sides) > 1 or not chains:
                chains.append(sides)
            else:
                chains[-1][-1] += " " + piece
    found = []
    for chain in chains:
        *equal, last = chain
        less = top_level_split(last, "<")
        if len(less) > 2:
            raise ValueError(f"more than one '<' in {last!r}")
        sides = [prepare(side, renames) for side in (*equal, *less)]
        sides = [wrap_sums(re.sub(r"[\s,.]+$", "", side).strip()) for side in sides]
        ops = ["="] * len(equal) + ["<"] * (len(less) - 1)
        found += list(zip(sides[:-1], ops, sides[1:], strict=True))
    return found


def parse_side(text: str) -> sp.Expr:
    """One side, parsed by the lark backend; of two readings, the one that applies
    no undefined function (``\\psi_{k} (x_k - \\mu)`` is a product)."""
    from sympy.parsing.latex import parse_latex

    parsed = parse_latex(text, backend="lark")
    if isinstance(parsed, sp.Basic):
        return parsed
    options = [p for p in parsed.children if not p.atoms(sp.core.function.AppliedUndef)]
    if not options:
        raise ValueError(f"no reading of {text!r} without an undefined function")
    return options[0]


def check(label: str, latex: str) -> list[str]:
    """The problems of ``label``'s display: [] when every relation is proved.

    Each displayed relation is parsed, given its meaning by ``READINGS[label]`` (in
    each of its settings, where it has several) and proved: an equation with
    :func:`~bnbook.derive.proof.prove_equal`, an inequality ``a < b`` by SymPy
    finding ``b - a`` positive. A relation that does not hold, or cannot be read,
    is one problem (a string saying which and why).
    """
    if label not in READINGS:
        raise ValueError(f"no reading for {label!r}; known: {sorted(READINGS)}")
    problems = []
    for reading in _readings(label):
        where = f" ({reading.setting})" if reading.setting else ""
        problems += [p + where for p in _check_one(label, latex, reading)]
    return problems


@functools.cache
def _readings(label: str) -> tuple[Reading, ...]:
    """``label``'s readings, made once per process (some integrate or enumerate)."""
    found = READINGS[label]()
    return found if isinstance(found, tuple) else (found,)


def _check_one(label: str, latex: str, reading: Reading) -> list[str]:
    """The problems of ``label``'s display in one setting."""
    triples = relations(latex, reading.renames)
    if not triples:
        return [f"{label}: no relation found in the display"]
    problems, defined = [], {}
    for lhs, op, rhs in triples:  # the display's own definitions first
        if op == "=" and lhs.strip() in reading.defines:
            defined[sp.Symbol(lhs.strip())] = parse_side(rhs)
    for _ in defined:  # a definition may use another one
        defined = {k: v.xreplace(defined) for k, v in defined.items()}
    for lhs, op, rhs in triples:
        if op == "=" and lhs.strip() in reading.defines:
            continue
        try:
            parsed = (parse_side(side).xreplace(defined) for side in (lhs, rhs))
            a, b = (reading.meaning(side) for side in parsed)
        except Exception as err:  # noqa: BLE001 (any parse failure is a problem)
            reason = str(err).strip().splitlines()[0]
            problems.append(f"{label}: cannot read {lhs} {op} {rhs}: {reason}")
            continue
        verdict = _prove(a, op, b)
        if verdict:
            problems.append(f"{label}: the display's {lhs} {op} {rhs} {verdict}")
    return problems


def _exp_args_cancelled(expr: sp.Expr) -> sp.Expr:
    """``expr`` with the argument of every ``exp`` over a common denominator, so that
    equal exponents written differently become the same expression."""
    return expr.replace(sp.exp, lambda u: sp.exp(sp.factor(sp.cancel(sp.together(u)))))


def _prove(a: sp.Expr, op: str, b: sp.Expr) -> str:
    """ "" when ``a op b`` is proved, else why not."""
    if op == "<":
        gap = sp.factor(sp.cancel(sp.together(b - a)))
        if gap.is_positive:
            return ""
        return f"is not proved: SymPy cannot show that {gap} is positive"
    proof = prove_equal(_exp_args_cancelled(a), _exp_args_cancelled(b))
    if proof.holds and proof.method == "simplify":
        return ""
    return f"is not proved: {proof}"


def check_markdown(markdown: str) -> dict[str, list[str]]:
    """Label -> problems, for every labelled display of a page that has a reading."""
    blocks = math_blocks(markdown)
    return {label: check(label, blocks[label]) for label in blocks if label in READINGS}
