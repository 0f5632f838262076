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

import functools
import re

import sympy as sp

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
    (r"\\sigma(?![a-zA-Z])", r"\\upsilon"),  # the parser has no sigma
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


_PLACEHOLDERS = (
    "psi", "tau", "kappa", "omega", "theta", "rho", "xi", "phi", "nu", "upsilon",
    "alpha",
)  # fmt: skip


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
    return _wrap_functions(text)


def _wrap_functions(text: str) -> str:
    """``\\log\\frac{a}{b}`` -> ``(\\log(\\frac{a}{b}))``, and so for ``\\exp``: the
    parser would otherwise let the argument run on past the fraction."""
    pattern = re.compile(r"\\(log|exp)\s*\\frac(?=\{)")
    while match := pattern.search(text):
        numer_end = _group_end(text, match.end())
        denom_end = _group_end(text, numer_end)
        frac = text[match.end() - len(r"\frac") : denom_end]
        text = f"{text[: match.start()]}(\\{match.group(1)}({frac})){text[denom_end:]}"
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
) -> list[tuple[str, str, str]]:
    """The displayed relations ``(lhs, op, rhs)``, in the parser's dialect.

    ``op`` is ``"="``, or ``"<"`` for an inequality that ends a chain
    (``a = b < 1``). Lines (``\\\\``) with an ``=`` start a relation; a line starting
    with ``=`` continues a chain; a line with no ``=`` continues the side before it
    (or, first, starts one). Two relations on one line are separated by ``\\qquad``.
    """
    text = _drop_underbraces(latex)
    chains: list[list[str]] = []
    for line in re.split(r"\\\\", text):
        for piece in re.split(r"\\qquad(?=[^=]*=)", line) if "=" in line else [line]:
            piece = piece.replace("&", " ").strip()
            if not piece or piece.startswith(r"\end"):
                continue
            sides = _top_level_split(piece, "=")
            if re.sub(r"\\(qquad|quad|,|;|!)", "", sides[0]).strip() == "" and chains:
                chains[-1].extend(sides[1:])
            elif len(sides) > 1 or not chains:
                chains.append(sides)
            else:
                chains[-1][-1] += " " + piece
    found = []
    for chain in chains:
        *equal, last = chain
        less = _top_level_split(last, "<")
        if len(less) > 2:
            raise ValueError(f"more than one '<' in {last!r}")
        sides = [prepare(side, renames) for side in (*equal, *less)]
        sides = [_wrap_sums(re.sub(r"[\s,.]+$", "", side).strip()) for side in sides]
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
