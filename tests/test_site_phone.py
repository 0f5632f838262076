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

The browser and the local server come from ``test_site_browser.py``.
"""

from __future__ import annotations

import functools

import pytest
from booksite import site_pages
from test_site_browser import PHONE, TIMEOUT_MS, browser, server  # noqa: F401

PHONE_JS = r"""async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const main = document.querySelector("article.bd-article, main") || document.body;
  const raw = /\$\S|\\[A-Za-z]{2,}/;
  const skip = "pre, code, script, style, textarea, mjx-container, .math, "
    + ".highlight, .cell_output";
  const tex = [];
  const walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (raw.test(node.data) && !node.parentElement.closest(skip)) {
      tex.push(node.data.trim().slice(0, 120));
    }
  }
  const scrolls = (el) => ["auto", "scroll"].includes(getComputedStyle(el).overflowX);
  const maths = [];
  for (const c of main.querySelectorAll("mjx-container[display='true']")) {
    if (c.closest(".cell_output") || c.scrollWidth <= c.clientWidth + 1) continue;
    let box = c;
    while (box && box !== main && !scrolls(box)) box = box.parentElement;
    const cue = box && box !== main
      && getComputedStyle(box).backgroundImage.includes("gradient");
    if (!cue) maths.push(c.parentElement.textContent.trim().slice(0, 80));
  }
  const width = document.documentElement.clientWidth;
  const cut = [];
  for (const el of main.querySelectorAll("caption, figcaption, .caption")) {
    const r = el.getBoundingClientRect();
    if (r.width === 0) continue;
    if (r.left < -1 || r.right > width + 1 || el.scrollWidth > el.clientWidth + 1) {
      cut.push(el.textContent.trim().slice(0, 80));
    }
  }
  // The pitfalls index (table.pit-index): whole on the screen, no sideways scroll,
  // and its caption as wide as the stacked rows (not squeezed into a column).
  const index = [];
  for (const t of main.querySelectorAll("table.pit-index")) {
    const r = t.getBoundingClientRect();
    const box = t.parentElement;
    const caption = t.querySelector(":scope > caption");
    const row = t.querySelector(":scope > tbody > tr");
    const across = (el) => el.getBoundingClientRect().width;
    const wide = caption && row && across(caption) >= 0.9 * across(row);
    index.push(r.left >= -1 && r.right <= width + 1
      && box.scrollWidth <= box.clientWidth + 1 && wide);
  }
  // Error text in outputs: wrapped in its box, not scrolled.
  const errors = {checked: 0, scrolled: []};
  const errorText = ".output.stderr pre, .output.traceback pre, .output.error pre, "
    + "div.cell.tag_wrap-output div.cell_output pre";
  for (const pre of main.querySelectorAll(errorText)) {
    errors.checked += 1;
    if (pre.scrollWidth > pre.clientWidth + 1) {
      errors.scrolled.push(pre.textContent.trim().slice(0, 80));
    }
  }
  return {tex, maths, cut, index, errors};
}"""


def _open(browser, origin: str, page_name: str) -> dict:  # noqa: F811
    context = browser.new_context(viewport={"width": PHONE, "height": 900})
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.route(
            "**/*",
            lambda route: (
                route.continue_()
                if route.request.url.startswith((origin, "data:"))
                else route.abort("internetdisconnected")
            ),
        )
        page.goto(f"{origin}{page_name}.html", wait_until="load")
        return page.evaluate(PHONE_JS)
    finally:
        context.close()


@pytest.fixture(scope="session")
def phone(browser, server):  # noqa: F811
    return functools.cache(functools.partial(_open, browser, server))


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
