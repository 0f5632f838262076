"""The book's LaTeX rewritten into the dialect of SymPy's LaTeX parser.

``sympy.parsing.latex.parse_latex`` (the lark backend) knows a subset of LaTeX.
:func:`prepare` rewrites a side of a displayed equation into it:
``\\frac{\\partial \\ell}{\\partial v}`` becomes one symbol per ``v``,
``\\hat{x}_k`` becomes ``\\xi_{k}``, ``\\sigma`` (which the parser lacks) another
Greek letter, layout (``aligned``, ``\\underbrace``, ``\\Big``, spacing) goes, a
``\\log`` or ``\\exp`` of a fraction gets parentheses, and each ``\\sum`` gets
explicit parentheses around its term (a sum runs over the product that follows it,
up to the next ``+``, ``-`` or ``=``). :mod:`bnbook.derive.display` splits a display
into its relations and checks them.
"""

from __future__ import annotations

import re

__all__ = ["drop_underbraces", "prepare", "top_level_split", "wrap_sums"]

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


def drop_underbraces(latex: str) -> str:
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


def wrap_sums(text: str) -> str:
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
        out += text[i:j] + "(" + text[j:head_end] + wrap_sums(text[head_end:k]) + ")"
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
    text = drop_underbraces(latex)
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


def top_level_split(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside brackets and braces."""
    parts, depth, last = [], 0, 0
    for i, c in enumerate(text):
        depth += {"(": 1, "{": 1, ")": -1, "}": -1}.get(c, 0)
        if depth == 0 and text.startswith(sep, i):
            parts.append(text[last:i])
            last = i + len(sep)
    return [*parts, text[last:]]
