"""Repairs to the HTML that the theme and extensions write, page by page.

- Citations: docutils writes each bibliography entry with the ARIA role
  ``doc-biblioentry`` inside a ``role="list"``. That role is deprecated, and a list
  whose children are not list items is a critical axe-core violation
  (``aria-required-children``). Each entry becomes a ``listitem``.
- Exercises and solutions: sphinx-exercise gives the body of every one of them the
  same id (``exercise-content``, ``solution-content``); a page with two exercises
  repeats an id. Each body's id is made from its exercise's or solution's own id.
- Landmarks: the primary sidebar's first item, the book's title, lay outside every
  landmark (axe-core's ``region``). The sidebar becomes a named region, "Book", which
  holds the title and the table of contents (a navigation landmark itself).
- ``_static/book.js`` (added to every page) mends two theme behaviours in the
  browser: the phone's menu buttons and links inside a solution's title.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx

CONTENT_IDS = ("exercise-content", "solution-content")
SIDEBAR = 'id="pst-primary-sidebar"'
SIDEBAR_REGION = f'{SIDEBAR} role="region" aria-label="Book"'


def fix_roles(body: str) -> str:
    """Return the page body with every bibliography entry a plain list item."""
    return body.replace('role="doc-biblioentry"', 'role="listitem"')


def add_landmarks(html: str) -> str:
    """Return a page with its primary sidebar a named region (once)."""
    if SIDEBAR_REGION in html:
        return html
    return html.replace(SIDEBAR, SIDEBAR_REGION, 1)


def _landmarks_on_every_page(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    outdir = Path(app.outdir)
    for page in outdir.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        fixed = add_landmarks(html)
        if fixed != html:
            page.write_text(fixed, encoding="utf-8")


def _unique_content_ids(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """Give each exercise's and solution's body an id made from its own id."""
    for section in doctree.findall(nodes.section):
        shared = [i for i in section["ids"] if i in CONTENT_IDS]
        if not shared:
            continue
        owner = next(
            (n for n in _ancestors(section) if n.get("ids") and n is not section),
            None,
        )
        prefix = owner["ids"][0] if owner is not None else docname.replace("/", "-")
        section["ids"] = [
            f"{prefix}-{i}" if i in CONTENT_IDS else i for i in section["ids"]
        ]


def _ancestors(node: nodes.Node) -> list[nodes.Element]:
    found = []
    while node.parent is not None:
        node = node.parent
        found.append(node)
    return found


def _fix_body(
    app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any
) -> None:
    if "body" in context:
        context["body"] = fix_roles(context["body"])


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("doctree-resolved", _unique_content_ids)
    app.connect("html-page-context", _fix_body)
    app.connect("build-finished", _landmarks_on_every_page)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
