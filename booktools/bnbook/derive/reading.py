"""What the symbols of a parsed display mean: the :class:`Reading` of one setting.

:mod:`bnbook.derive.display` parses a display into SymPy; a :class:`Reading` then
gives every parsed symbol its expression in the setting where the equation was proved
(a batch of symbolic size ``m``, a set of shards, expectations over batches, a
closed form of a few symbols). The settings themselves live in
:mod:`bnbook.derive.readings_batch`, :mod:`bnbook.derive.readings_stats` and
:mod:`bnbook.derive.readings_closed`; :mod:`bnbook.derive.readings` names the label
of each.

Importing this module needs SymPy.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import sympy as sp

from bnbook.derive.general import GeneralBatch, batch_sum, batch_sums

__all__ = ["Reading", "no_examples"]


def no_examples(base: str, index: str) -> sp.Expr:
    """The ``per_example`` of a setting without indexed symbols: always raises."""
    raise ValueError(f"the symbol {base}_{index} has no meaning here")


@dataclass
class Reading:
    """What each parsed symbol means in one proved setting.

    ``scalars`` maps a symbol's name (``"mu"``, ``"n_{a}"``) to its expression;
    ``per_example(name, index)`` gives the expression of an indexed symbol (``x_{i}``,
    ``\\xi_{k}``). A sum ``\\sum_{k=1}^{m}`` is taken over the batch ``bn`` by
    :func:`~bnbook.derive.general.batch_sum` or, when ``terms`` is given, written
    out term by term (``per_example(name, t)`` for each ``t`` in ``terms``: shards).
    A relation whose left side is a name in ``defines`` defines that name for the
    others (it is substituted, not proved). ``setting`` names the setting in the
    problems reported (for example ``"m = 3"`` when a label is read at several
    fixed sizes).
    """

    bn: GeneralBatch | None
    scalars: dict[str, sp.Expr]
    per_example: Callable[[str, str], sp.Expr] = no_examples
    renames: tuple[tuple[str, str], ...] = field(default=())
    defines: tuple[str, ...] = field(default=())
    terms: tuple[str, ...] | None = None
    setting: str = ""

    def meaning(self, expr: sp.Expr) -> sp.Expr:
        """``expr`` (parsed) in the setting: sums taken, symbols replaced.

        The map is made from the parsed symbols before anything is replaced, so
        the setting's own symbols are never read as parsed ones.
        """
        outer = self._symbols(expr.free_symbols, None)
        summed = expr.replace(
            lambda e: isinstance(e, sp.Sum),
            lambda e: self._take_sum(e.function, e.limits[0]),
        )
        result = summed.xreplace(outer)
        if left := [str(v) for v in result.free_symbols if "{" in str(v)]:
            raise ValueError(f"symbols outside any sum over their index: {left}")
        return result

    def _take_sum(self, body: sp.Expr, limits: tuple) -> sp.Expr:
        """``sum_{index=1}^{m} body`` over the batch, or over ``terms``."""
        index, lo, hi = limits
        if self.terms is not None:
            if lo != 1 or self.scalars.get(str(hi)) != len(self.terms):
                raise ValueError(f"a sum over the shards has no bounds, got {lo}..{hi}")
            parts = [
                body.xreplace(self._symbols(body.free_symbols, str(index), t))
                for t in self.terms
            ]
            return sp.Add(*parts)
        if self.bn is None or lo != 1 or self.scalars.get(str(hi)) != self.bn.m:
            raise ValueError(f"a sum must run over the batch, 1 to m, got {lo}..{hi}")
        inner = self._symbols(body.free_symbols, str(index))
        xk, gk = sp.Symbol("x_k"), sp.Symbol("g_k")
        return batch_sum(body.xreplace(inner), (xk, gk), batch_sums(self.bn))

    def _symbols(self, symbols: set, bound: str | None, term: str = "k") -> dict:
        """Parsed symbol -> its meaning; ``bound`` is a sum's index (its examples
        are ``term``, the generic ``k`` in a batch), None outside sums (index ``i``,
        the example itself)."""
        values = {}
        for sym in symbols:
            name = sym.name
            if name in self.scalars:
                values[sym] = self.scalars[name]
                continue
            if match := re.fullmatch(r"(\w+)_\{(\w)\}", name):
                base, index = match.groups()
                if index == bound:
                    values[sym] = self.per_example(base, term)
                elif bound is None and index == "i":
                    values[sym] = self.per_example(base, "i")
                continue  # another index: bound by a sum, read there
            if bound is None:
                raise ValueError(f"the symbol {name!r} has no meaning here")
        return values
