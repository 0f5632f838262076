"""The proof ledger: every labelled equation of the book and how it is verified.

A chapter's check cell calls ``bnbook.derive.ledger.verified(label, kind, detail)``,
which glues the key ``"ledger:<label>|<kind>|<detail>"`` (myst-nb keeps each page's
glue keys in the Sphinx environment, ``env.nb_metadata[docname]["glue"]``). After
all pages are read, this extension compares the records with the labelled
equations of the math domain:

- a labelled equation with no record is a warning (an error under ``-W``) that
  names the label and the page;
- a record for a label that is no equation is a warning too (a typo).

- a SymPy-backed equation whose display has a reading in
  :data:`bnbook.derive.display.READINGS` has its displayed LaTeX (as the page shows
  it) parsed back into SymPy and proved relation by relation; a mismatch is a
  warning (an error under ``-W``), so a slip on the page fails the build.

The directive ``proof-ledger`` (on ``ledger.md``) becomes the table: equation (with
its number as the pages show it, resolved like an ``{eq}`` reference), page, how
verified, and whether the display was checked.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

from bnbook.derive.ledger import KINDS, parse_key

SYMPY_KINDS = {kind for kind in KINDS if kind.startswith("sympy")}

logger = logging.getLogger(__name__)


class ledger_placeholder(nodes.General, nodes.Element):  # noqa: N801 (docutils style)
    """Where the ledger's table goes, filled at ``doctree-resolved``."""


class ProofLedgerDirective(SphinxDirective):
    """``.. proof-ledger::``: the table of every labelled equation."""

    def run(self) -> list[nodes.Node]:
        docs = getattr(self.env, "proof_ledger_docs", set())
        docs.add(self.env.docname)
        self.env.proof_ledger_docs = docs  # type: ignore[attr-defined]
        return [ledger_placeholder()]


def _purge(app: Sphinx, env: BuildEnvironment, docname: str) -> None:
    getattr(env, "proof_ledger_docs", set()).discard(docname)
    displays = getattr(env, "proof_displays", {})
    for label in [lab for lab, (doc, _) in displays.items() if doc == docname]:
        del displays[label]


def _merge(app: Sphinx, env: BuildEnvironment, docnames: Any, other: Any) -> None:
    docs = getattr(env, "proof_ledger_docs", set())
    env.proof_ledger_docs = docs | getattr(other, "proof_ledger_docs", set())
    displays = getattr(env, "proof_displays", {})
    env.proof_displays = displays | getattr(other, "proof_displays", {})


def _collect_displays(app: Sphinx, doctree: nodes.document) -> None:
    """Label -> (docname, LaTeX) of every labelled display math of the page."""
    displays = getattr(app.env, "proof_displays", {})
    for node in doctree.findall(nodes.math_block):
        if node.get("label"):
            displays[node["label"]] = (app.env.docname, node.astext())
    app.env.proof_displays = displays  # type: ignore[attr-defined]


def display_status(label: str, records: list[dict[str, str]]) -> str:
    """The ledger's "display checked" cell for one equation."""
    from bnbook.derive import display

    if not any(r["kind"] in SYMPY_KINDS for r in records):
        return "(no SymPy record)"
    if label in display.READINGS:
        note = display.NOTES.get(label)
        return "yes: parsed back and proved" + (f" ({note})" if note else "")
    if label in display.BY_HAND:
        return f"by hand: {display.BY_HAND[label]}"
    return "no"


def display_problems(env: BuildEnvironment, label: str) -> list[str]:
    """The problems of ``label``'s display (cached in ``env`` by its LaTeX)."""
    from bnbook.derive import display

    latex = env.proof_displays[label][1]  # type: ignore[attr-defined]
    cache = getattr(env, "proof_display_results", {})
    if (label, latex) not in cache:
        cache[label, latex] = display.check(label, latex)
    env.proof_display_results = cache  # type: ignore[attr-defined]
    return cache[label, latex]


def _outdated(app: Sphinx, env: BuildEnvironment, *changes: Any) -> list[str]:
    """Re-read the ledger page on every build: its table depends on every page."""
    return sorted(getattr(env, "proof_ledger_docs", set()))


def collect_records(nb_metadata: dict[str, dict]) -> dict[str, list[dict[str, str]]]:
    """Label -> its records (each with ``kind``, ``detail`` and the checking
    ``docname``), from myst-nb's per-page glue keys."""
    found: dict[str, list[dict[str, str]]] = {}
    for docname in sorted(nb_metadata):
        for glue_key in nb_metadata[docname].get("glue", []):
            record = parse_key(glue_key)
            if record is not None:
                record["docname"] = docname
                found.setdefault(record.pop("label"), []).append(record)
    return found


def missing_and_unknown(
    equations: dict[str, tuple[str, Any]], found: dict[str, list]
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``(label, docname)`` of equations without a record, and of records whose
    label is no equation (docname: the page that recorded it)."""
    missing = [
        (lab, equations[lab][0]) for lab in sorted(equations) if lab not in found
    ]
    unknown = [
        (lab, recs[0]["docname"])
        for lab, recs in sorted(found.items())
        if lab not in equations
    ]
    return missing, unknown


def describe(record: dict[str, str]) -> str:
    """How one record verified its equation, in the ledger's words."""
    words = KINDS[record["kind"]]
    if record["kind"] == "cited" and record["detail"]:
        return f"cited from {record['detail']}"
    return f"{words}: {record['detail']}" if record["detail"] else words


def _equations(env: BuildEnvironment) -> dict[str, tuple[str, Any]]:
    return dict(env.get_domain("math").equations)  # type: ignore[attr-defined]


def check_ledger(app: Sphinx, env: BuildEnvironment) -> None:
    """Warn for each labelled equation without a record, and each stray record."""
    found = collect_records(getattr(env, "nb_metadata", {}))
    missing, unknown = missing_and_unknown(_equations(env), found)
    for label, docname in missing:
        logger.warning(
            f"proof ledger: equation {label!r} on page {docname!r} has no check; "
            f"call bnbook.derive.ledger.verified({label!r}, kind) after its check",
            location=docname,
            type="ledger",
        )
    for label, docname in unknown:
        logger.warning(
            f"proof ledger: page {docname!r} records {label!r}, which is no "
            "labelled equation",
            location=docname,
            type="ledger",
        )
    check_displays(env, found)


def check_displays(env: BuildEnvironment, found: dict[str, list]) -> None:
    """Warn for each SymPy-backed display that does not say what was proved."""
    from bnbook.derive import display

    displays = getattr(env, "proof_displays", {})
    for label, records in sorted(found.items()):
        if label not in display.READINGS or label not in displays:
            continue
        if not any(r["kind"] in SYMPY_KINDS for r in records):
            continue
        for problem in display_problems(env, label):
            logger.warning(
                f"proof ledger: the display of {label!r} is not what was proved: "
                f"{problem}",
                location=displays[label][0],
                type="ledger",
            )


def _cell(*children: nodes.Node) -> nodes.entry:
    para = nodes.paragraph()
    para.extend(children)
    return nodes.entry("", para)


_HEADS = ("Equation", "Page", "How", "Display checked")


def _table(rows: list[list[nodes.entry]]) -> nodes.table:
    table, group = nodes.table(classes=["proof-ledger"]), nodes.tgroup(cols=4)
    table += group
    for width in (26, 20, 36, 18):
        group += nodes.colspec(colwidth=width)
    head, body = nodes.thead(), nodes.tbody()
    head += nodes.row("", *[_cell(nodes.Text(t)) for t in _HEADS])
    for cells in rows:
        body += nodes.row("", *cells)
    group += head
    group += body
    return table


def fill_ledger(app: Sphinx, doctree: nodes.document, fromdocname: str) -> None:
    """Replace the placeholder with the table: one row per labelled equation."""
    holders = list(doctree.findall(ledger_placeholder))
    if not holders:
        return
    env = app.env
    found = collect_records(getattr(env, "nb_metadata", {}))
    rows = []
    for label, (docname, _) in sorted(_equations(env).items(), key=_order(env)):
        ref = _reference(app, fromdocname, label)
        title = env.titles[docname].astext() if docname in env.titles else docname
        how = "; ".join(describe(r) for r in found.get(label, [])) or "NO CHECK"
        shown = display_status(label, found.get(label, []))
        rows.append(
            [_cell(ref), _cell(nodes.Text(title)), _cell(nodes.Text(how))]
            + [_cell(nodes.Text(shown))]
        )
    for holder in holders:
        holder.replace_self(_table(rows))


def _reference(app: Sphinx, fromdocname: str, label: str) -> nodes.Element:
    """A link to ``label`` titled ``label (number)``, the number exactly as an
    ``{eq}`` reference on any page shows it (the math domain resolves it)."""
    domain = app.env.get_domain("math")
    pending = addnodes.pending_xref("", refdomain="math", reftype="eq", reftarget=label)
    found = domain.resolve_xref(
        app.env, fromdocname, app.builder, "eq", label, pending, nodes.Text("")
    )
    number = found.astext() if found is not None else "(?)"
    ref = found if found is not None else nodes.reference("", "")
    ref.children = []
    ref += nodes.literal(text=f"{label} {number}")
    return ref


def _order(env: BuildEnvironment):
    """Sort key: pages in reading order (the toctree), then equation number."""
    order = {name: i for i, name in enumerate(_reading(env))}
    return lambda item: (order.get(item[1][0], len(order)), item[1][1] or 0, item[0])


def _reading(env: BuildEnvironment) -> list[str]:
    """The documents in toctree order, from the root document."""
    seen: list[str] = []

    def walk(doc: str) -> None:
        if doc in seen:
            return
        seen.append(doc)
        for child in env.toctree_includes.get(doc, []):
            walk(child)

    walk(env.config.root_doc)
    return seen


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_node(ledger_placeholder)
    app.add_directive("proof-ledger", ProofLedgerDirective)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.connect("env-get-outdated", _outdated)
    app.connect("doctree-read", _collect_displays)
    app.connect("env-check-consistency", check_ledger)
    app.connect("doctree-resolved", fill_ledger)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
