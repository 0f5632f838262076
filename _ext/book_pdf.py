"""The whole book as one PDF, printed from the built site by Chromium.

``make pdf`` (``python _ext/book_pdf.py _build/html``) joins the article of every page
of ``_toc.yml``, in reading order, into one HTML document with a contents page, serves
the site on 127.0.0.1, lets MathJax typeset it in Debian's Chromium (the browser the
tests drive, through Playwright) and prints it with ``page.pdf`` to
``_build/html/book.pdf``. Ids are made unique per page and every link between pages
becomes a link inside the PDF; numbered equations, figures and exercises keep the
numbers the site shows. Solutions print open; code that the site hides stays out.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import posixpath
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml
from bs4 import BeautifulSoup, Tag

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
PDF_NAME = "book.pdf"
PRINT_PAGE = "_book-print.html"  # written next to index.html, deleted after printing
# Left out of the print: the site's navigation bits and code the site hides.
DROP = (
    "a.headerlink",
    "button.toggle-button",
    ".tag_hide-input > .cell_input",
    ".tag_hide-cell",
    ".tag_remove-input > .cell_input",
    "details.hide.above-input",
    ".prev-next-area",
)
PRINT_CSS = """
html, body { background: white !important; }
/* Shadows print as bitmaps (a third of the file): none. The id outranks the theme. */
#book, #book * { box-shadow: none !important; text-shadow: none !important; }
body { font-size: 10.5pt; }
.book-page { break-before: page; }
.book-contents a { text-decoration: none; }
.book-contents ol { list-style: none; padding-left: 1.2em; }
figure, .cell_output img, table, mjx-container[display="true"] {
  break-inside: avoid;
}
img { max-width: 100% !important; height: auto; }
pre { white-space: pre-wrap !important; overflow-wrap: anywhere; }
div.highlight, .cell_output, div.math { overflow: visible !important; }
.toggle-hidden > :not(.admonition-title) { display: revert !important; }
.admonition.toggle-hidden { padding-bottom: revert !important; }
"""


def toc_pages(root: Path = ROOT) -> list[str]:
    """The book's pages in reading order, as _toc.yml lists them."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc.get("parts", []):
        pages += [entry["file"] for entry in part["chapters"]]
    return pages


def anchor(page: str, fragment: str = "") -> str:
    """The id, in the combined document, of a page or of an id within it."""
    slug = "page-" + re.sub(r"[^\w-]", "-", page)
    return f"{slug}--{fragment}" if fragment else slug


def _rewrite(article: Tag, page: str, pages: set[str]) -> None:
    """Make ids unique, links internal and resource paths relative to the root."""
    folder = posixpath.dirname(page)
    for node in article.select("[id]"):
        node["id"] = anchor(page, node["id"])
    for attribute, selector in (("src", "[src]"), ("href", "a[href]")):
        for node in article.select(selector):
            url = urlsplit(node[attribute])
            if url.scheme or url.netloc or node[attribute].startswith("#"):
                if attribute == "href" and node["href"].startswith("#"):
                    node["href"] = "#" + anchor(page, unquote(url.fragment))
                continue
            target = posixpath.normpath(posixpath.join(folder, unquote(url.path)))
            name = target.removesuffix(".html")
            if attribute == "href" and target.endswith(".html") and name in pages:
                node["href"] = "#" + anchor(name, url.fragment)
            else:
                node[attribute] = target


def _contents(pages: list[str], titles: dict[str, str], soup: BeautifulSoup) -> Tag:
    nav = soup.new_tag("nav", attrs={"class": "book-contents", "id": "book-contents"})
    heading = soup.new_tag("h1")
    heading.string = "Contents"
    nav.append(heading)
    items = soup.new_tag("ol")
    for page in pages:
        item, link = soup.new_tag("li"), soup.new_tag("a", href="#" + anchor(page))
        link.string = titles[page]
        item.append(link)
        items.append(item)
    nav.append(items)
    return nav


def combine(site: Path, pages: list[str]) -> str:
    """One HTML document: a contents page, then every page's article in order."""
    first = BeautifulSoup((site / f"{pages[0]}.html").read_text(), "html.parser")
    head = first.head
    for script in head.select("script"):
        keep = "MathJax" in (script.string or "") or "mathjax" in script.get("src", "")
        if not keep:
            script.decompose()
    for link in head.select("link[rel=preload]"):
        link.decompose()
    style = first.new_tag("style")
    style.string = PRINT_CSS
    head.append(style)
    title = head.select_one("title")
    if title is not None:
        title.string = first.select_one("article h1").get_text(" ", strip=True)
    body = first.new_tag("body")
    book = first.new_tag("main", attrs={"id": "book"})
    body.append(book)
    parts, titles = [], {}
    for page in pages:
        soup = BeautifulSoup((site / f"{page}.html").read_text(), "html.parser")
        article = soup.select_one("article.bd-article")
        for node in article.select(", ".join(DROP)):
            node.decompose()
        titles[page] = article.select_one("h1").get_text(" ", strip=True)
        _rewrite(article, page, set(pages))
        wrapper = first.new_tag("div", attrs={"class": "book-page", "id": anchor(page)})
        wrapper.append(article)
        parts.append(wrapper)
    book.append(_contents(pages, titles, first))
    for part in parts:
        book.append(part)
    first.body.replace_with(body)
    first.html["data-theme"] = "light"
    first.html["data-mode"] = "light"
    return str(first)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve(site: Path) -> Iterator[str]:
    """The site over HTTP on 127.0.0.1 (MathJax loads its fonts with fetch)."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


TYPESET_JS = """async () => {
  await MathJax.startup.promise;
  await Promise.all([...document.images].map((img) => img.complete ? null :
    new Promise((done) => { img.onload = img.onerror = done; })));
  return document.querySelectorAll("mjx-container").length;
}"""
MARGIN = {"top": "16mm", "bottom": "18mm", "left": "15mm", "right": "15mm"}
FOOTER = (
    '<div style="font-size:8pt;width:100%;text-align:center;color:#555">'
    '<span class="pageNumber"></span></div>'
)


def print_pdf(
    site: Path, out: Path, pages: list[str] | None = None, browser: object = None
) -> Path:
    """Write the whole book (or the given pages) to out as a PDF; return out.

    browser: a Playwright Chromium to print with (by default, Debian's is started).
    """
    pages = pages or toc_pages()
    missing = [p for p in pages if not (site / f"{p}.html").is_file()]
    if missing:
        raise FileNotFoundError(f"build the site first (make book): no {missing[0]}")
    printable = site / PRINT_PAGE
    printable.write_text(combine(site, pages), encoding="utf-8")
    try:
        with serve(site) as origin:
            if browser is not None:
                _print(browser, origin, out)
            else:
                with _chromium() as chromium:
                    _print(chromium, origin, out)
    finally:
        printable.unlink(missing_ok=True)
    return out


@contextmanager
def _chromium() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.is_file():
        raise FileNotFoundError(
            f"make pdf prints with Debian's Chromium, expected at {CHROMIUM}: "
            "apt-get install chromium"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield browser
        finally:
            browser.close()


def _print(browser, origin: str, out: Path) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(origin + PRINT_PAGE, wait_until="load", timeout=300_000)
        page.evaluate(TYPESET_JS)
        page.emulate_media(media="print")
        page.pdf(
            path=str(out),
            format="A4",
            print_background=True,
            display_header_footer=True,
            header_template="<span></span>",
            footer_template=FOOTER,
            margin=MARGIN,
            # Untagged, so without bookmarks (Chromium makes them from the tags): the
            # structure tree would add 4 MB to 3.4, and the site, PDF included, stays
            # within its 12 MB. The contents page links to every page.
            tagged=False,
        )
    finally:
        context.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", type=Path, help="the built site, _build/html")
    parser.add_argument("--out", type=Path, help=f"default: SITE/{PDF_NAME}")
    args = parser.parse_args(argv)
    out = print_pdf(args.site, args.out or args.site / PDF_NAME)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
