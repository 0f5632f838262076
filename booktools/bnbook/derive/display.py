"""The book's displayed equations read back into SymPy, and checked.

A proof in :mod:`bnbook.derive.allm` is keyed by an equation's label, not by what the
page shows. This module closes that gap: it takes the LaTeX that the page displays,
parses it with ``sympy.parsing.latex.parse_latex`` (the lark backend), gives every
symbol its meaning in the proved setting and proves each displayed relation
(``a = b``, line by line, chains ``a = b = c`` pairwise) with
:func:`bnbook.derive.proof.prove_equal`. A slip of sign or power on the page then
fails the check, and the build (``_ext/proof_ledger.py`` calls :func:`check`).

The parser knows a subset of LaTeX. :func:`prepare` first rewrites the book's
notation into it: ``\\frac{\\partial \\ell}{\\partial v}`` becomes one symbol per
``v``, ``\\hat{x}_k`` becomes ``\\xi_{k}``, layout (``aligned``, ``\\underbrace``,
``\\Big``, spacing) goes, and each ``\\sum`` gets explicit parentheses around its
term (a sum runs over the product that follows it, up to the next ``+``, ``-`` or
``=``). :mod:`bnbook.derive.readings` gives each checked label its setting
(``READINGS``) and names the SymPy-backed labels checked by hand (``BY_HAND``).

Importing this module needs SymPy (and lark for :func:`parse_side`).
"""

from __future__ import annotations

import re

import sympy as sp

from bnbook.derive.proof import prove_equal
from bnbook.derive.readings import BY_HAND, READINGS, Reading

__all__ = [
    "BY_HAND",
    "READINGS",
    "Reading",
    "check",
    "check_markdown",
    "math_blocks",
    "parse_side",
    "prepare",
    "relations",
]

# The book's partial derivatives and hatted symbols, as symbols the parser knows.
_PARTIAL = re.compile(
    r"\\frac\{\\partial\s*\\ell\}\{\\partial\s*([^{}]*(?:\{[^{}]*\})?[^{}]*)\}"
)
_TARGETS = {  # what follows \partial in the denominator -> placeholder
    r"\hat{x}_i": r"\psi_{i}",
    r"\hat{x}_k": r"\psi_{k}",
    r"\sigma^2": r"\tau",
    r"\mu": r"\kappa",
    r"x_i": r"\omega_{i}",
    r"x_k": r"\omega_{k}",
    r"\gamma": r"\theta",
    r"\beta": r"\rho",
}
_LAYOUT = (
    (r"\\sigma_B\^2", r"\\sigma^2"),
    (r"\\mu_B\b", r"\\mu"),
    (r"\\begin\{(aligned|gathered)\}|\\end\{(aligned|gathered)\}", " "),
    (r"\\(Bigl|Bigr|bigl|bigr|Big|big|Bigg|left|right)(?=[()|.\[\]])", ""),
    (r"\\(qquad|quad|,|;|!|\s)", " "),
    (r"\{\}", " "),
    (r"&", " "),
    (r"\\cdot", " "),
    (r"\\mathrm\{run\}", "run"),
    (r"\\hat\{x\}_(\w)", r"\\xi_{\1}"),
    (r"\\hat\{x\}_\{(\w)\}", r"\\xi_{\1}"),
    (r"\\sigma\^2", r"\\phi"),
    (r"\\cosh\^2\(([^()]*)\)", r"(\\frac{e^{\1} + e^{-\1}}{2})^2"),
    (r"([a-zA-Z])_([a-zA-Z0-9])(?![{\w])", r"\1_{\2}"),
)


def math_blocks(markdown: str) -> dict[str, str]:
    """Label -> LaTeX of every labelled ``{math}`` block of a MyST page."""
    pattern = re.compile(r"^```\{math\}\n:label: (\S+)\n(.*?)^```", re.M | re.S)
    return {m.group(1): m.group(2).strip() for m in pattern.finditer(markdown)}


def _drop_underbraces(latex: str) -> str:
    """``\\underbrace{body}_{note}`` -> ``body``."""
    while (start := latex.find(r"\underbrace{")) >= 0:
        body_end = _group_end(latex, start + len(r"\underbrace"))
        note_end = body_end
        if latex.startswith("_{", body_end):
            note_end = _group_end(latex, body_end + 1)
        body = latex[start + len(r"\underbrace") + 1 : body_end - 1]
        latex = latex[:start] + body + latex[note_end:]
    return latex


def _group_end(text: str, open_at: int) -> int:
    """The index just after the brace group that opens at ``open_at``."""
    depth = 0
    for i in range(open_at, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return i + 1
    raise ValueError(f"unbalanced braces in {text!r}")


def _wrap_sums(text: str) -> str:
    """``\\sum_{...}^{...} term`` -> ``(\\sum_{k=1}^{m} term)``: the term runs to the
    next ``+``, ``-``, ``=`` or closing bracket at its own depth."""
    text = re.sub(r"\\sum_\{?(\w)\}?(?!\s*=)(?:\^\{?m\}?)?", r"\\sum_{\1=1}^{m}", text)
    text = re.sub(r"\\sum_\{(\w)=1\}\^\{?m\}?", r"\\sum_{\1=1}^{m}", text)
    out, i = "", 0
    while (j := text.find(r"\sum_{", i)) >= 0:
        head_end = text.index("^{m}", j) + len("^{m}")
        depth, k = 0, head_end
        while k < len(text):
            c = text[k]
            if c in "({":
                depth += 1
            elif c in ")}":
                if depth == 0:
                    break
                depth -= 1
            elif c in "+-=" and depth == 0 and text[head_end:k].strip():
                break
            k += 1
        out += text[i:j] + "(" + text[j:head_end] + _wrap_sums(text[head_end:k]) + ")"
        i = k
    return out + text[i:]


_PLACEHOLDERS = ("psi", "tau", "kappa", "omega", "theta", "rho", "xi", "phi", "nu")


def prepare(latex: str, renames: tuple[tuple[str, str], ...] = ()) -> str:
    """The book's LaTeX in the parser's dialect (see the module's docstring).

    Raises ValueError if ``latex`` already uses a letter that stands for something
    else after the rewriting (``\\psi``, ``\\tau``, ...).
    """
    if taken := [p for p in _PLACEHOLDERS if re.search(rf"\\{p}(?![a-z])", latex)]:
        raise ValueError(f"the display uses {taken}, which the reader reserves")
    text = _drop_underbraces(latex)
    for old, new in renames:
        text = text.replace(old, new)
    text = re.sub(r"\\text\{[^{}]*\}", " ", text)

    def partial(match: re.Match) -> str:
        target = match.group(1).strip()
        if target not in _TARGETS:
            raise ValueError(f"no symbol for the partial derivative by {target!r}")
        return _TARGETS[target]

    text = _PARTIAL.sub(partial, text)
    for pattern, new in _LAYOUT:
        text = re.sub(pattern, new, text)
    return text


def _top_level_split(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside brackets and braces."""
    parts, depth, last = [], 0, 0
    for i, c in enumerate(text):
        depth += {"(": 1, "{": 1, ")": -1, "}": -1}.get(c, 0)
        if depth == 0 and text.startswith(sep, i):
            parts.append(text[last:i])
            last = i + len(sep)
    return [*parts, text[last:]]


def relations(
    latex: str, renames: tuple[tuple[str, str], ...] = ()
) -> list[tuple[str, str]]:
    """The displayed relations ``(lhs, rhs)``, in the parser's dialect.

    Lines (``\\\\``) with an ``=`` start a relation; a line starting with ``=``
    continues a chain; a line with no ``=`` continues the side before it. Two
    relations on one line are separated by ``\\qquad``.
    """
    text = _drop_underbraces(latex)
    chains: list[list[str]] = []
    for line in re.split(r"\\\\", text):
        for piece in re.split(r"\\qquad(?=[^=]*=)", line) if "=" in line else [line]:
            piece = piece.replace("&", " ").strip()
            if not piece or piece.startswith(r"\end"):
                continue
            sides = _top_level_split(piece, "=")
            if sides[0].strip() == "" and chains:
                chains[-1].extend(sides[1:])
            elif len(sides) > 1:
                chains.append(sides)
            elif chains:
                chains[-1][-1] += " " + piece
    pairs = []
    for chain in chains:
        sides = [prepare(s, renames) for s in chain]
        sides = [re.sub(r"[\s,.]+$", "", s).strip() for s in sides]
        wrapped = [_wrap_sums(side) for side in sides]
        pairs += list(zip(wrapped[:-1], wrapped[1:], strict=True))
    return pairs


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

    Each displayed relation is parsed, given its meaning by ``READINGS[label]`` and
    proved with :func:`~bnbook.derive.proof.prove_equal`. A relation that does not
    hold, or cannot be read, is one problem (a string saying which and why).
    """
    if label not in READINGS:
        raise ValueError(f"no reading for {label!r}; known: {sorted(READINGS)}")
    reading = READINGS[label]()
    pairs = relations(latex, reading.renames)
    if not pairs:
        return [f"{label}: no relation found in the display"]
    problems, defined = [], {}
    for lhs, rhs in pairs:  # the display's own definitions first
        if lhs.strip() in reading.defines:
            defined[sp.Symbol(lhs.strip())] = parse_side(rhs)
    for _ in defined:  # a definition may use another one
        defined = {k: v.xreplace(defined) for k, v in defined.items()}
    for lhs, rhs in pairs:
        if lhs.strip() in reading.defines:
            continue
        try:
            parsed = (parse_side(side).xreplace(defined) for side in (lhs, rhs))
            a, b = (reading.meaning(side) for side in parsed)
        except Exception as err:  # noqa: BLE001 (any parse failure is a problem)
            reason = str(err).strip().splitlines()[0]
            problems.append(f"{label}: cannot read {lhs} = {rhs}: {reason}")
            continue
        proof = prove_equal(a, b)
        if not (proof.holds and proof.method == "simplify"):
            problems.append(
                f"{label}: the display's {lhs} = {rhs} is not proved: {proof}"
            )
    return problems


def check_markdown(markdown: str) -> dict[str, list[str]]:
    """Label -> problems, for every labelled display of a page that has a reading."""
    blocks = math_blocks(markdown)
    return {label: check(label, blocks[label]) for label in blocks if label in READINGS}
