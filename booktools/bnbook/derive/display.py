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
``=``). ``READINGS`` gives each checked label its setting; ``BY_HAND``
names the SymPy-backed labels whose display is checked by hand, with the reason.

Importing this module needs SymPy (and lark for :func:`parse_side`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import sympy as sp

from bnbook.derive import identities
from bnbook.derive.general import (
    GeneralBatch,
    batch_sum,
    batch_sums,
    compact_dx,
    exact_gradients,
    exact_stages,
    general_batch,
)
from bnbook.derive.proof import prove_equal

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


@dataclass
class Reading:
    """What each parsed symbol means in one proved setting.

    ``scalars`` maps a symbol's name to its expression; ``per_example(name, index)``
    gives the expression of an indexed symbol (``x_{i}``, ``\\xi_{k}``); sums over the
    batch are taken by :func:`~bnbook.derive.general.batch_sum`. A relation whose
    left side is a name in ``defines`` defines that name for the others (it is
    substituted, not proved).
    """

    bn: GeneralBatch
    scalars: dict[str, sp.Expr]
    per_example: Callable[[str, str], sp.Expr]
    renames: tuple[tuple[str, str], ...] = field(default=())
    defines: tuple[str, ...] = field(default=())

    def meaning(self, expr: sp.Expr) -> sp.Expr:
        """``expr`` (parsed) in the setting: sums taken, symbols replaced.

        The map is made from the parsed symbols before anything is replaced, so
        the setting's own symbols are never read as parsed ones.
        """
        xk, gk = sp.Symbol("x_k"), sp.Symbol("g_k")
        outer = self._symbols(expr.free_symbols, None)

        def take_sum(body: sp.Expr, limits: tuple) -> sp.Expr:
            index, lo, hi = limits
            if lo != 1 or self.scalars.get(str(hi)) != self.bn.m:
                raise ValueError(f"a sum must run from 1 to m, got {lo}..{hi}")
            inner = self._symbols(body.free_symbols, str(index))
            sums = batch_sums(self.bn)
            return batch_sum(body.xreplace(inner), (xk, gk), sums)

        summed = expr.replace(
            lambda e: isinstance(e, sp.Sum), lambda e: take_sum(e.function, e.limits[0])
        )
        result = summed.xreplace(outer)
        if left := [str(v) for v in result.free_symbols if "{" in str(v)]:
            raise ValueError(f"symbols outside any sum over their index: {left}")
        return result

    def _symbols(self, symbols: set, bound: str | None) -> dict:
        """Parsed symbol -> its meaning; ``bound`` is a sum's index (its examples are
        the generic ``k``), None outside sums (index ``i``, the example itself)."""
        values = {}
        for sym in symbols:
            name = sym.name
            if match := re.fullmatch(r"(\w+)_\{(\w)\}", name):
                base, index = match.groups()
                if index == bound:
                    values[sym] = self.per_example(base, "k")
                    continue
                if bound is None:
                    if index == "i":
                        values[sym] = self.per_example(base, "i")
                    continue  # another index: bound by a sum, read there
            if name in self.scalars:
                values[sym] = self.scalars[name]
            elif bound is None:
                raise ValueError(f"the symbol {name!r} has no meaning here")
        return values


def _training(size: sp.Expr | None = None, renames: tuple = ()) -> Reading:
    """BatchNorm in training mode: every symbol of the gradients chapter."""
    bn = general_batch(size)
    d_xhat, d_var, d_mu, d_x = exact_stages(bn)
    _, d_gamma, d_beta = exact_gradients(bn)
    xk, gk = sp.Symbol("x_k"), sp.Symbol("g_k")
    scalars = {
        "mu": bn.mu, "s": bn.s, "m": bn.m, "gamma": bn.gamma, "phi": bn.var,
        "epsilon": bn.s**2 - bn.var, "tau": d_var, "kappa": d_mu,
        "theta": d_gamma, "rho": d_beta, "N": sp.Symbol("N", positive=True),
        "L": sp.Symbol("L", positive=True),
    }  # fmt: skip

    def per_example(base: str, index: str) -> sp.Expr:
        x, g = (bn.xi, bn.gi) if index == "i" else (xk, gk)
        table = {
            "x": x, "g": g, "xi": bn.x_hat(x),
            "psi": d_xhat.xreplace({bn.gi: g}),
            "omega": d_x if index == "i" else compact_dx(bn, g, bn.x_hat(x)),
        }  # fmt: skip
        if base not in table:
            raise ValueError(f"the symbol {base}_{index} has no meaning here")
        return table[base]

    return Reading(bn, scalars, per_example, renames)


def _eval_mode() -> Reading:
    """Eval mode: ``mu_run``, ``s_run`` constants; ``l = sum g_k y_k``."""
    bn = general_batch()
    mu_r, s_r = sp.Symbol("mu_run"), sp.Symbol("s_run", positive=True)
    loss = bn.gamma * (bn.sgx - mu_r * bn.sg) / s_r + bn.beta * bn.sg
    xk, gk = sp.Symbol("x_k"), sp.Symbol("g_k")
    scalars = {
        "gamma": bn.gamma, "m": bn.m, "mu_{run}": mu_r, "s_{run}": s_r,
        "theta": sp.diff(loss, bn.gamma), "rho": sp.diff(loss, bn.beta),
    }  # fmt: skip

    def per_example(base: str, index: str) -> sp.Expr:
        x, g = (bn.xi, bn.gi) if index == "i" else (xk, gk)
        table = {"x": x, "g": g, "omega": sp.diff(loss, bn.xi)}
        if base not in table or (base == "omega" and index != "i"):
            raise ValueError(f"the symbol {base}_{index} has no meaning here")
        return table[base]

    return Reading(bn, scalars, per_example)


def _var_xhat() -> Reading:
    """The batch variance of ``x_hat`` (eq-norm-var-xhat), one feature ``k``."""
    bn = general_batch()
    (_, _), (var_xhat, _) = identities.var_xhat(bn)
    scalars = {"nu": var_xhat, "phi": bn.var, "epsilon": bn.s**2 - bn.var}
    renames = ((r"\operatorname{Var}_B(\hat{x})", r"\nu"),)
    return Reading(bn, scalars, _no_examples, renames)


def _population() -> Reading:
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
    return Reading(general_batch(), scalars, _no_examples, renames)


def _no_examples(base: str, index: str) -> sp.Expr:
    raise ValueError(f"the symbol {base}_{index} has no meaning here")


def _sigmoid() -> Reading:
    """The sigmoid ``sig(z) = 1 / (1 + e^-z)`` and its slope ``sig'(z)``."""
    z = sp.Symbol("z", real=True)
    sig = 1 / (1 + sp.exp(-z))
    scalars = {"z": z, "e": sp.E, "psi": sp.diff(sig, z)}
    renames = (
        (r"\operatorname{sig}'(z)", r"\psi"),
        (r"\operatorname{sig}(z)", r"\frac{1}{1 + e^{-z}}"),
    )
    return Reading(general_batch(), scalars, _no_examples, renames)


def _eval_affine() -> Reading:
    """Eval-mode BatchNorm of one value ``x``, its slope ``a`` and offset ``b``
    defined by the display itself."""
    x, gamma, beta, mu_r = sp.symbols("x gamma beta mu_run", real=True)
    var_r, eps = sp.Symbol("sigma2_run", positive=True), sp.Symbol("eps", positive=True)
    y = gamma * (x - mu_r) / sp.sqrt(var_r + eps) + beta
    scalars = {
        "x": x, "y": y, "gamma": gamma, "beta": beta, "mu_{run}": mu_r,
        "phi_{run}": var_r, "epsilon": eps,
    }  # fmt: skip
    return Reading(general_batch(), scalars, _no_examples, defines=("a", "b"))


_CONV = (
    (r"_{n,l}", "_i"), (r"_{n',l'}", "_k"), (r"\sum_{n',l'}", r"\sum_{k}"),
    (r"x_{n,l}", "x_i"), ("NL", "N L"),
)  # fmt: skip

READINGS: dict[str, Callable[[], Reading]] = {
    "eq-grad-gamma-beta": _training,
    "eq-staged": _training,
    "eq-compact": _training,
    "eq-orthogonal": _training,
    "eq-grad-conv": lambda: _training(
        sp.Symbol("N", positive=True) * sp.Symbol("L", positive=True), _CONV
    ),
    "eq-eval-backward": _eval_mode,
    "eq-norm-var-xhat": _var_xhat,
    "eq-norm-population": _population,
    "eq-norm-bessel": _population,
    "eq-norm-sigmoid-slope": _sigmoid,
    "eq-norm-eval-affine": _eval_affine,
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
