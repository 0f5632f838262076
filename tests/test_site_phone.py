"""Every page at 390 px, as a phone shows it: no raw TeX, maths and captions whole.

- TeX that escaped the maths renderer shows as source: a ``$`` before a non-space
  character, or a command such as ``\\gamma`` or ``\\frac``, in the page's text
  outside maths and code (tables, captions, headings and list items included).
- A display equation either fits the column or scrolls inside its own box, which
  shows shadows at the edge that has more (the cue that it scrolls).
- No caption or table title reaches past the screen's edges.
- The pitfalls index, the page forum answers link to, fits the screen, its caption
  as wide as its stacked rows.
- Error text in cell outputs (stderr, tracebacks, cells tagged ``wrap-output``)
  wraps in its box instead of running off it.

The checks run in each page's phone visit (``PHONE_JS`` in ``test_site_browser.py``).
"""

from __future__ import annotations

import pytest
from booksite import site_pages
from test_site_browser import PHONE, browser, server, visit  # noqa: F401


@pytest.fixture(scope="session")
def phone(visit):  # noqa: F811
    """What ``PHONE_JS`` found on a page, from the page's shared phone visit."""
    return lambda page_name: visit(page_name, PHONE).phone


@pytest.mark.parametrize("page", site_pages())
def test_page_shows_no_raw_tex_on_a_phone(phone, page):
    assert phone(page)["tex"] == []


@pytest.mark.parametrize("page", site_pages())
def test_page_wide_equations_scroll_with_a_cue_on_a_phone(phone, page):
    assert phone(page)["maths"] == []


@pytest.mark.parametrize("page", site_pages())
def test_page_captions_are_not_cut_on_a_phone(phone, page):
    assert phone(page)["cut"] == []


def test_pitfalls_index_fits_a_phone(phone):
    """The index of error messages stacks its rows at 390 px: nothing cut off, and
    the caption spans the rows instead of a column one word wide."""
    assert phone("chapters/pitfalls")["index"] == [True]


@pytest.mark.parametrize("page", site_pages())
def test_page_error_outputs_wrap_on_a_phone(phone, page):
    assert phone(page)["errors"]["scrolled"] == []


@pytest.mark.parametrize(
    "page", ["chapters/pitfalls-training", "chapters/pitfalls-deployment"]
)
def test_pitfalls_error_messages_are_there_to_wrap(phone, page):
    """The reproductions print their errors in wrap-output cells (not vacuous)."""
    assert phone(page)["errors"]["checked"] >= 3
