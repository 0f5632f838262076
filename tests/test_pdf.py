"""``make pdf``: the whole book as one PDF, printed from the site by Chromium.

The PDF is printed once from the test run's build. The checks read both the document
that Chromium prints (``book_pdf.combine``) and the PDF's own objects: pages, internal
link annotations and images.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from booksite import load_ext, made_once, parse_html, toc_pages
from bs4 import BeautifulSoup
from test_site_browser import launch_chromium

book_pdf = load_ext("book_pdf")


@pytest.fixture(scope="session")
def printed(site: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The book's PDF, printed once per test run (the xdist workers share it)."""

    def print_book(out: Path) -> None:
        with launch_chromium() as browser:
            book_pdf.print_pdf(site, out, browser=browser)

    return made_once(tmp_path_factory, "book.pdf", print_book).read_bytes()


@pytest.fixture(scope="session")
def combined(site: Path, tmp_path_factory: pytest.TempPathFactory) -> BeautifulSoup:
    def write(out: Path) -> None:
        out.write_text(book_pdf.combine(site, toc_pages()), encoding="utf-8")

    html = made_once(tmp_path_factory, "book-print.html", write)
    return BeautifulSoup(html.read_text(encoding="utf-8"), "html.parser")


def _count(soup_or_html, selector: str) -> int:
    return len(soup_or_html.select(selector))


def test_print_has_a_contents_page_linking_every_page(combined):
    contents = combined.select("nav.book-contents a[href^='#']")
    assert [a["href"][1:] for a in contents] == [
        book_pdf.anchor(page) for page in toc_pages()
    ]


def test_print_links_all_land_inside_the_document(combined):
    ids = {node["id"] for node in combined.select("[id]")}
    internal = [a["href"] for a in combined.select("a[href^='#']")]
    assert internal, "no internal links"
    assert sorted({h for h in internal if h[1:] not in ids}) == []
    assert len(ids) == len(combined.select("[id]")), "ids repeat"


def test_print_keeps_every_numbered_equation_and_figure(site, combined):
    pages = [parse_html(site / f"{page}.html") for page in toc_pages()]
    for selector in ("span.eqno", "figure img", "figcaption"):
        on_site = sum(
            _count(page.select_one("article.bd-article"), selector) for page in pages
        )
        assert on_site > 0, f"no {selector} on the site to compare"
        assert _count(combined, selector) == on_site, selector


def test_pdf_is_a_book_with_pages_internal_links_and_figures(printed):
    assert printed.startswith(b"%PDF-")
    pages = len(re.findall(rb"/Type\s*/Page\b", printed))
    assert pages >= 2 * len(toc_pages()), f"only {pages} pages"
    # Skia writes a link annotation as << /Type /Annot /Subtype /Link ... /Dest /id >>
    internal = re.findall(rb"/Subtype\s*/Link\b[^>]*?/Dest\s*/([^\s/>]+)", printed)
    contents = {book_pdf.anchor(page).encode() for page in toc_pages()}
    assert contents <= set(internal), "the contents page's links are missing"
    assert len(internal) > 10 * len(toc_pages()), "too few links inside the book"
    assert re.search(rb"/Subtype\s*/Image\b", printed), "no figures"


def test_intro_links_to_the_pdf(site):
    links = [a["href"] for a in parse_html(site / f"{toc_pages()[0]}.html").select("a")]
    assert book_pdf.PDF_NAME in links


def test_site_is_at_most_12_mb_and_its_pdf_at_most_8_mb(site, printed):
    """The site's budget is 12 MB; book.pdf, published beside it, has its own.

    The PDF's budget is ours: about 0.3 MB a page for the 16 chapter pages and
    appendices of December 2026 (5.0 MB), with room for a few more chapters.
    """
    site_bytes = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
    assert site_bytes <= 12_000_000, site_bytes
    assert len(printed) <= 8_000_000, len(printed)
