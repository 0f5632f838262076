"""What a reader does on a page, in Chromium: tap the phone's menus, open a solution
from its title, search the site opened from disk.

The browser and the local server are those of tests/test_site_browser.py.
"""

from __future__ import annotations

import re
from contextlib import contextmanager

import pytest
from booksite import ROOT, notebook_pages, parse_html, toc_pages
from test_site_browser import (
    PHONE,
    TIMEOUT_MS,
    Visit,
    _watch,
    launch_chromium,
    serve_site,
)

# The theme's menus on a phone: the button that opens each, and the dialog it opens.
MENUS = {
    "table of contents": (".primary-toggle", "#pst-primary-sidebar-modal"),
    "page contents": (".secondary-toggle", "#pst-secondary-sidebar-modal"),
}
# Links that each menu shows once open.
MENU_LINKS = {
    "table of contents": "nav.bd-docs-nav a.reference",
    "page contents": "#pst-page-toc-nav a",
}


@pytest.fixture(scope="module")
def browser():
    with launch_chromium() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def server(site):
    with serve_site(site) as origin:
        yield origin


@contextmanager
def _page(browser, origin: str, page: str, width: int, **context_options):
    """A page opened in a fresh context, with its console watched; closed after."""
    visit = Visit(page, width)
    context = browser.new_context(
        viewport={"width": width, "height": 844}, **context_options
    )
    try:
        tab = context.new_page()
        tab.set_default_timeout(TIMEOUT_MS)
        _watch(tab, visit, origin)
        tab.goto(f"{origin}{page}.html", wait_until="networkidle")
        yield tab, visit
    finally:
        context.close()


def _pages_with_solutions() -> list[str]:
    return [
        page
        for page in toc_pages()
        if "solution-start" in (ROOT / f"{page}.md").read_text()
        or "{solution}" in (ROOT / f"{page}.md").read_text()
    ]


@pytest.mark.parametrize("menu", MENUS)
@pytest.mark.parametrize("page", [toc_pages()[0], notebook_pages()[-1]])
def test_phone_menu_opens_when_its_visible_button_is_tapped(
    browser, server, page, menu
):
    button_selector, dialog_selector = MENUS[menu]
    with _page(browser, server, page, PHONE, has_touch=True, is_mobile=True) as (
        tab,
        visit,
    ):
        visible = [b for b in tab.query_selector_all(button_selector) if b.is_visible()]
        assert len(visible) == 1, f"{len(visible)} visible {button_selector} buttons"
        visible[0].tap()
        dialog = tab.locator(dialog_selector)
        dialog.wait_for(state="visible", timeout=5_000)
        assert dialog.evaluate("d => d.open"), f"the {menu} did not open"
        links = dialog.locator(MENU_LINKS[menu])
        assert links.count() > 0 and links.first.is_visible()
        tab.keyboard.press("Escape")
        dialog.wait_for(state="hidden", timeout=5_000)
        assert visit.console_errors == []


def test_page_contents_drawer_closes_when_an_entry_is_tapped(browser, server):
    """A tap on an entry of the phone's page-contents drawer jumps to the section
    and closes the drawer, instead of leaving it over the section (_static/book.js)."""
    button_selector, dialog_selector = MENUS["page contents"]
    page = "chapters/pitfalls-training"
    with _page(browser, server, page, PHONE, has_touch=True, is_mobile=True) as (
        tab,
        visit,
    ):
        [button] = [
            b for b in tab.query_selector_all(button_selector) if b.is_visible()
        ]
        button.tap()
        dialog = tab.locator(dialog_selector)
        dialog.wait_for(state="visible", timeout=5_000)
        entry = dialog.locator(MENU_LINKS["page contents"] + '[href$="#pit-gan"]')
        entry.scroll_into_view_if_needed()
        entry.tap()
        dialog.wait_for(state="hidden", timeout=5_000)
        assert not dialog.evaluate("d => d.open"), "the drawer stayed open"
        tab.wait_for_function("() => location.hash === '#pit-gan'", timeout=5_000)
        top = tab.evaluate(
            "() => document.getElementById('pit-gan').getBoundingClientRect().top"
        )
        assert 0 <= top < 844 / 2, f"the section's heading is at {top} px"
        assert visit.console_errors == []


@pytest.mark.parametrize("page", _pages_with_solutions())
def test_link_in_a_solution_title_opens_the_solution(browser, server, page):
    with _page(browser, server, page, 1280) as (tab, visit):
        solution = tab.locator("div.solution.toggle").first
        assert "toggle-hidden" in solution.get_attribute("class")
        solution.locator(".admonition-title a").first.click()
        tab.wait_for_timeout(300)
        assert "toggle-hidden" not in solution.get_attribute("class")
        body = solution.locator(":scope > :not(.admonition-title)").first
        assert body.is_visible(), "the solution's text is still hidden"
        assert visit.console_errors == []


def test_search_from_disk_shows_snippets(browser, site):
    """The site opened as files (file://), as a reader who downloaded it would."""
    context = browser.new_context()
    try:
        tab = context.new_page()
        tab.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        tab.on("pageerror", lambda error: errors.append(str(error)))
        tab.goto((site / "search.html").as_uri() + "?q=momentum")
        tab.wait_for_selector("#search-results ul.search li a")
        tab.wait_for_selector("#search-results ul.search li p.context")
        tab.wait_for_load_state("networkidle")
        # Sphinx gives an API entry (a result with a description) no snippet.
        pages = tab.locator("#search-results ul.search li:not(:has(> span))")
        snippets = pages.locator("p.context")
        assert pages.count() > 0
        assert snippets.count() == pages.count(), "page results without a snippet"
        text = snippets.first.inner_text()
        assert re.search("momentum", text, re.I), text
        assert errors == []
    finally:
        context.close()


def test_solution_titles_link_to_their_exercise(site):
    """The link the solution test clicks exists: each solution names its exercise."""
    pages = _pages_with_solutions()
    assert pages, "no page with a solution to test"
    for page in pages:
        titles = parse_html(site / f"{page}.html").select(
            "div.solution .admonition-title a[href^='#']"
        )
        assert titles, f"{page}: no solution title links to its exercise"
