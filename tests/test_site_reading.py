"""The learning path's static checks: labelled pointers, figures legible on a phone.

- No page names a section in italics ("section *Title*"): titles change and nothing
  catches a stale one, while a ``{ref}`` to a label fails the ``-W`` build.
- Every figure a chapter shows was drawn in the book's style
  (:func:`bnbook.figures.use_book_style`), which records the smallest font and the
  resolution in the PNG; from those and the image's width, the smallest text on a
  390 px phone must be at least 8 CSS pixels tall.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from booksite import ROOT, article, notebook_pages, parse_html, toc_pages
from PIL import Image

from bnbook.figures import KEY_DPI, KEY_MIN_PT, MIN_PHONE_TEXT_PX, phone_text_px

ITALIC_SECTION = re.compile(r"\bsections?\s+[*_][^*_\n]+[*_]", re.IGNORECASE)


@pytest.mark.parametrize("page", toc_pages())
def test_page_names_no_section_in_italics(page):
    text = (ROOT / f"{page}.md").read_text(encoding="utf-8")
    found = [m.group(0) for m in ITALIC_SECTION.finditer(text)]
    assert found == [], "point to a label with {ref} instead"


def test_italic_section_pattern_catches_the_old_pointers():
    old = "see the section *Running averages and their three momentum conventions*"
    assert ITALIC_SECTION.search(old)
    assert not ITALIC_SECTION.search("see {ref}`norm-running` in this section.")


def _figures(site: Path, page: str) -> list[Path]:
    html = site / f"{page}.html"
    images = article(parse_html(html)).select("img")
    paths = [(html.parent / img["src"]).resolve() for img in images]
    return [p for p in paths if p.suffix == ".png" and "_images" in p.parts]


@pytest.mark.parametrize("page", notebook_pages())
def test_page_figures_are_legible_on_a_phone(site, page):
    small, untagged = [], []
    for path in _figures(site, page):
        with Image.open(path) as image:
            meta, width = dict(image.text), image.size[0]
        if KEY_MIN_PT not in meta:
            untagged.append(path.name)
            continue
        px = phone_text_px(float(meta[KEY_MIN_PT]), width, float(meta[KEY_DPI]))
        if px < MIN_PHONE_TEXT_PX:
            small.append(f"{path.name}: smallest text {px:.1f} px at 390 px")
    assert untagged == [], "figures not drawn after bnbook.figures.use_book_style()"
    assert small == []


def test_figures_are_present_to_check(site):
    assert sum(len(_figures(site, page)) for page in notebook_pages()) >= 10


READABILITY = ROOT.parent / "shared" / "tools" / "readability.py"


@pytest.mark.parametrize("pattern", ["intro.html", "chapters/*.html"])
def test_pages_hold_the_reading_budget(site, pattern):
    """The shared reading tool (prose, code, sentence length) passes on every page."""
    import subprocess
    import sys

    if not READABILITY.is_file():
        pytest.skip(f"the shared reading tool is not at {READABILITY}")
    result = subprocess.run(
        [sys.executable, str(READABILITY), pattern, str(site)],
        capture_output=True,
        text=True,
    )
    over = [ln for ln in result.stdout.splitlines() if not ln.startswith("ok ")]
    assert result.returncode == 0, "\n".join(over)
