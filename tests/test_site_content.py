"""The built site, read as files: offline assets and the conventions of every page.

These checks need no browser; tests/test_site_browser.py looks at the same pages in
Chromium.
"""

from __future__ import annotations

import importlib.util
import re
from urllib.parse import urlsplit

import nbformat
import pytest
from booksite import (
    ROOT,
    article,
    notebook_pages,
    parse_html,
    site_pages,
    toc_pages,
)
from packaging.version import Version

EXTERNAL = re.compile(r"^(https?:)?//", re.IGNORECASE)
# Pinned but optional (the fast extra): the page says "not installed" without it.
OPTIONAL_PINS = {"numba"}
CSS_EXTERNAL = re.compile(r"(url\(\s*['\"]?|@import\s+['\"])(https?:)?//", re.I)
WARNING_TEXT = re.compile(r"\b\w*Warning\b:")


def _html_files(site):
    return sorted(
        p
        for p in site.rglob("*.html")
        if not p.relative_to(site).parts[0].startswith(("_static", "_sources"))
    )


def test_every_html_page_is_covered_by_the_site_tests(site):
    pages = {str(p.relative_to(site).with_suffix("")) for p in _html_files(site)}
    assert pages - {"index"} == set(site_pages())


def test_index_redirects_to_the_first_page(site):
    root = toc_pages()[0]
    assert f'url={root}.html"' in (site / "index.html").read_text()


@pytest.mark.parametrize("page", site_pages())
def test_page_loads_nothing_from_other_hosts(site, page):
    soup = parse_html(site / f"{page}.html")
    loads = [s.get("src", "") for s in soup.select("script[src], img[src], iframe")]
    loads += [
        link.get("href", "")
        for link in soup.select("link[href]")
        if {"stylesheet", "icon", "preload", "modulepreload"} & set(link.get("rel", []))
    ]
    assert [u for u in loads if EXTERNAL.match(u)] == []


@pytest.mark.parametrize("page", site_pages())
def test_page_has_each_script_once(site, page):
    scripts = [
        (s.get("src", ""), s.get("type", ""), s.string or "")
        for s in parse_html(site / f"{page}.html").select("script")
    ]
    repeats = {s for s in scripts if scripts.count(s) > 1}
    assert repeats == set(), repeats


def test_site_css_imports_nothing_from_other_hosts(site):
    offenders = [
        str(css.relative_to(site))
        for css in site.rglob("*.css")
        if CSS_EXTERNAL.search(css.read_text(errors="replace"))
    ]
    assert offenders == []


def test_mathjax_is_served_by_the_site(site):
    scripts = [
        s["src"]
        for s in parse_html(site / f"{toc_pages()[0]}.html").select("script[src]")
        if "mathjax" in s["src"].lower()
    ]
    assert len(scripts) == 1, scripts
    path = (site / urlsplit(scripts[0]).path).resolve()
    assert path.is_file() and path.is_relative_to(site.resolve())
    assert "_static" not in path.relative_to(site.resolve()).parts
    fonts = list(path.parent.glob("output/chtml/fonts/woff-v2/*.woff"))
    assert fonts, "MathJax's CommonHTML fonts are missing"
    assert (path.parent / "LICENSE").is_file()


@pytest.mark.parametrize("page", toc_pages())
def test_page_has_no_stderr_or_warning_output(site, page):
    soup = article(parse_html(site / f"{page}.html"))
    stderr = soup.select(".output.stderr, .stderr")
    assert stderr == [], [s.get_text()[:200] for s in stderr]
    warnings = [
        out.get_text()[:200]
        for out in soup.select(".cell_output")
        if WARNING_TEXT.search(out.get_text())
    ]
    assert warnings == []


@pytest.mark.parametrize("page", toc_pages())
def test_figures_have_captions_labels_and_alt_text(site, page):
    soup = article(parse_html(site / f"{page}.html"))
    for figure in soup.select("figure"):
        caption = figure.select_one("figcaption .caption-text, figcaption")
        assert figure.get("id"), f"figure without a label: {figure.prettify()[:300]}"
        assert caption and caption.get_text(strip=True), f"{figure['id']}: no caption"
    no_alt = [img.get("src") for img in soup.select("img") if not img.get("alt", "")]
    assert no_alt == [], f"images without alt text: {no_alt}"
    # Without mystnb.image.alt, myst-nb falls back on the object's repr.
    repr_alt = [img["alt"] for img in soup.select("img[alt^='<']")]
    assert repr_alt == [], f"alt text is a Python repr, not a description: {repr_alt}"


@pytest.mark.parametrize("page", notebook_pages())
def test_plot_cells_declare_caption_label_and_alt(book_build, page):
    notebook = nbformat.read(book_build.executed / f"{page}.ipynb", as_version=4)
    for cell in notebook.cells:
        images = [
            o
            for o in cell.get("outputs", [])
            if any(k.startswith("image/") for k in o.get("data", {}))
        ]
        if not images:
            continue
        meta = cell.metadata.get("mystnb", {})
        figure, image = meta.get("figure", {}), meta.get("image", {})
        where = f"{page}: the cell starting {cell.source[:60]!r}"
        assert figure.get("caption") and figure.get("name"), f"{where}: caption, name"
        assert image.get("alt"), f"{where}: needs mystnb.image.alt"


@pytest.mark.parametrize("page", toc_pages())
def test_exercises_have_dropdown_solutions(site, page):
    soup = article(parse_html(site / f"{page}.html"))
    solutions = soup.select("div.solution")
    for solution in solutions:
        assert "dropdown" in solution["class"], f"{solution.get('id')}: not a dropdown"
    solved = {
        a["href"].removeprefix("#")
        for s in solutions
        for a in s.select(".admonition-title a[href^='#']")
    }
    exercises = {e["id"] for e in soup.select("div.exercise")}
    assert exercises <= solved, f"exercises without a solution: {exercises - solved}"


def _tables(page_html):
    """Each table of the page's content as a list of rows of cell texts."""
    return [
        [[cell.get_text(strip=True) for cell in row.select("th, td")] for row in rows]
        for rows in (
            t.select("tr") for t in article(parse_html(page_html)).select("table")
        )
    ]


def test_reproducibility_page_lists_the_pinned_versions(site):
    rows = {
        row[0]: row[1]
        for table in _tables(site / "reproducibility.html")
        for row in table
        if len(row) == 2
    }
    pins = re.findall(
        r"^([A-Za-z0-9_.\-]+)==(\S+)", (ROOT / "requirements.txt").read_text(), re.M
    )
    assert pins
    for name, pinned in pins:
        assert name in rows, f"{name} missing from the Reproducibility page"
        if name in OPTIONAL_PINS and importlib.util.find_spec(name) is None:
            assert rows[name].startswith("not installed (optional"), rows[name]
            continue
        assert Version(rows[name]).public == Version(pinned).public, name
    assert rows["Python"].startswith("CPython 3.")


def test_reproducibility_page_times_every_notebook(site):
    (table,) = [t for t in _tables(site / "reproducibility.html") if "Document" in t[0]]
    header, body = table[0], table[1:]
    times = {row[0]: row[header.index("Run Time (s)")] for row in body}
    assert set(times) == set(notebook_pages())
    for page, seconds in times.items():
        assert float(seconds) >= 0, (page, seconds)
    assert {row[header.index("Status")] for row in body} == {"✅"}


SITE_BUDGET = 12_000_000  # bytes, the whole site as published (12 MB)


def test_site_is_at_most_12_mb(site):
    sizes = {p: p.stat().st_size for p in site.rglob("*") if p.is_file()}
    total = sum(sizes.values())
    largest = sorted(sizes, key=sizes.get, reverse=True)[:5]
    assert total <= SITE_BUDGET, f"{total / 1e6:.1f} MB; largest: {largest}"


def test_site_ships_no_source_maps_or_unused_mathjax(site):
    assert [str(p.relative_to(site)) for p in site.rglob("*.map")] == []
    assert not list(site.rglob("fontawesome.js"))
    mathjax = site / "mathjax"
    for unused in ("sre", "output/svg", "ui", "a11y/sre.js", "tex-mml-chtml.js"):
        assert not (mathjax / unused).exists(), f"mathjax/{unused} is never loaded"


@pytest.mark.parametrize("page", site_pages())
def test_page_ids_are_unique(site, page):
    ids = re.findall(r'\bid="([^"]+)"', (site / f"{page}.html").read_text())
    assert sorted({i for i in ids if ids.count(i) > 1}) == []


def test_bibliography_entries_are_list_items(site):
    soup = parse_html(site / "bibliography.html")
    lists = soup.select('[role="list"]')
    assert lists, "no bibliography list"
    for entries in lists:
        roles = {child.get("role") for child in entries.find_all(recursive=False)}
        assert roles == {"listitem"}, roles
    assert soup.select('[role="doc-biblioentry"]') == []
