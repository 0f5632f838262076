"""Search snippets when the site is opened from disk (``file://``).

Sphinx's search page shows, under each result, a snippet of the page around the words
found. It fetches the page to cut it, and a browser refuses ``fetch`` for ``file://``
addresses, so from disk the results came without snippets. After an HTML build this
extension writes ``_static/search_texts.js``: the text of every page, kept in the
elements that carry an id (the anchors that search results point to) and nothing else.
The search page alone loads ``_static/offline_search.js``, which answers Sphinx's
fetch of a page from that text when the site is opened from disk, and leaves every
fetch alone when the site is served over HTTP.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from bs4 import BeautifulSoup, NavigableString, Tag
from sphinx.application import Sphinx

SCRIPT = "offline_search.js"
TEXTS = "search_texts.js"
DROP = ("script", "style", "img", "svg", ".headerlink", "mjx-assistive-mml")
SPACE = re.compile(r"\s+")


def _compact(node: Tag, soup: BeautifulSoup) -> list:
    """The node's text, with only the elements that carry an id kept around it."""
    out: list = []
    for child in node.children:
        if isinstance(child, NavigableString):
            text = SPACE.sub(" ", str(child))
            if text.strip():
                out.append(text)
        elif isinstance(child, Tag):
            inner = _compact(child, soup)
            if child.get("id"):
                kept = soup.new_tag("div", attrs={"id": child["id"]})
                kept.extend(inner)
                out.append(kept)
            else:
                out.extend(inner)
                if child.name in {"p", "div", "section", "li", "pre", "h1", "h2", "h3"}:
                    out.append(" ")
    return out


def page_text(html: str) -> str:
    """A page's main content as minimal HTML: text and the elements with ids."""
    soup = BeautifulSoup(html, "html.parser")
    main = soup.select_one('[role="main"]')
    if main is None:
        return ""
    for node in main.select(", ".join(DROP)):
        node.decompose()
    compact = soup.new_tag("div", attrs={"role": "main"})
    compact.extend(_compact(main, soup))
    return str(compact)


def write_texts(outdir: Path, pages: list[str]) -> Path:
    """Write ``_static/search_texts.js`` for the pages (names without suffix)."""
    texts = {
        f"{page}.html": page_text((outdir / f"{page}.html").read_text("utf-8"))
        for page in pages
        if (outdir / f"{page}.html").is_file()
    }
    target = outdir / "_static" / TEXTS
    target.write_text(
        "window.BOOK_SEARCH_TEXTS = " + json.dumps(texts, ensure_ascii=False) + ";\n",
        encoding="utf-8",
    )
    return target


def _link_on_search_page(outdir: Path) -> None:
    search = outdir / "search.html"
    html = search.read_text("utf-8")
    tag = f'<script src="_static/{SCRIPT}"></script>'
    if tag not in html:
        # Before Sphinx's search code, so that its first fetch is answered.
        first = '<script src="_static/searchtools.js'
        html = html.replace(first, f"{tag}\n  {first}", 1)
        search.write_text(html, "utf-8")


def _on_build_finished(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    outdir = Path(app.outdir)
    write_texts(outdir, sorted(app.env.found_docs))
    shutil.copy2(Path(__file__).with_name(SCRIPT), outdir / "_static" / SCRIPT)
    _link_on_search_page(outdir)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("build-finished", _on_build_finished)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
