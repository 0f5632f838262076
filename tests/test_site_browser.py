"""Every page of the built site, as a reader sees it in a real browser, offline.

Playwright drives Debian's ``chromium`` (never a downloaded browser) against the site
served from 127.0.0.1, with every other host unreachable. Each page is opened once at
desktop width (1280 px) and once at phone width (390 px). With ``BOOK_SCREENSHOTS=1``
a full-page screenshot of each goes to ``_build/screenshots/<width>px/`` for review
(the first screens only of a page taller than ``FULL_SHOT_MAX_PX``, such as the API
reference); they are off by default, to keep ``make test`` within its time.

The desktop visit runs axe-core (bundled by axe-playwright-python) over the page;
the phone layout shows the same content with the theme's menus folded, so the audit
runs once a page. Every visit records every byte the page loaded, for the weight
checks.

Without chromium these tests skip and say why; with ``CI=true`` they fail instead.
"""

from __future__ import annotations

import fcntl
import os
import pickle
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from booksite import ROOT, element_ids, load_ext, site_pages, toc_pages

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # Chromium refuses to run as root with its sandbox
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # The network is unreachable: no name but the local server's address resolves.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
DESKTOP, PHONE = 1280, 390
SCREENSHOTS = ROOT / "_build" / "screenshots"
TIMEOUT_MS = 30_000
# Taller pages get a screenshot of their first screen: a full-page shot of the API
# reference takes longer than the timeout on a busy 2-core machine.
FULL_SHOT_MAX_PX = 40_000
SCREENSHOTS_WANTED = os.environ.get("BOOK_SCREENSHOTS", "") not in {"", "0"}

# Runs in the page once MathJax has finished: every math node is typeset, no raw TeX
# delimiters are left in the text outside code, and which authored display equations
# are wider than the column.
MATH_JS = r"""async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const tex = /\\\(|\\\[|\$\$|\\begin\{/;
  const untypeset = [];
  const nodes = [...document.querySelectorAll("span.math, div.math")];
  for (const node of nodes) {
    const rest = node.cloneNode(true);
    rest.querySelectorAll("mjx-container, .eqno").forEach((e) => e.remove());
    if (!node.querySelector("mjx-container") || node.querySelector("mjx-merror")
        || tex.test(rest.textContent)) {
      untypeset.push(node.textContent.trim().slice(0, 120));
    }
  }
  const skip = "pre, code, script, style, textarea, mjx-container, .math";
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const text = walker.currentNode;
    if (tex.test(text.data) && !text.parentElement.closest(skip)) {
      untypeset.push(text.data.trim().slice(0, 120));
    }
  }
  // Authored display maths that needs a scroll bar to be read whole (a computed
  // output, such as SymPy's printout of a long expression, may scroll like code).
  const wide = [...document.querySelectorAll("mjx-container[display='true']")]
    .filter((c) => !c.closest(".cell_output"))
    .filter((c) => c.scrollWidth > c.clientWidth + 1)
    .map((c) => c.parentElement.textContent.trim().slice(0, 120));
  return {count: nodes.length, untypeset, wide};
}"""

# Loads every image, lazy ones and those in closed dropdowns included.
IMAGES_JS = """async () => {
  const images = [...document.images];
  images.forEach((img) => { img.loading = "eager"; });
  const settle = (img) => img.complete ? null : new Promise((done) => {
    img.addEventListener("load", done);
    img.addEventListener("error", done);
  });
  const timeout = new Promise((done) => setTimeout(done, 10000));
  await Promise.race([Promise.all(images.map(settle)), timeout]);
  return images.map((img) => ({
    src: img.getAttribute("src"),
    alt: (img.getAttribute("alt") || "").trim(),
    loaded: img.complete && img.naturalWidth > 0,
  }));
}"""

LINKS_JS = """() => {
  const hrefs = (selector) =>
    [...document.querySelectorAll(selector)].map((a) => a.href);
  return {
    all: hrefs("a[href]"),
    prev: hrefs("a.left-prev"),
    next: hrefs("a.right-next"),
    toc: hrefs("nav.bd-docs-nav a.reference"),
  };
}"""

# The document must not scroll sideways; wide code and maths scroll inside their
# own boxes. Lists the widest elements that stick out with no scrolling box around.
OVERFLOW_JS = """() => {
  const root = document.documentElement;
  const width = root.clientWidth;
  const scrolls = (el) => ["auto", "scroll", "hidden", "clip"].includes(
    getComputedStyle(el).overflowX);
  const offenders = [];
  for (const el of document.body.querySelectorAll("*")) {
    const box = el.getBoundingClientRect();
    if (box.right <= width + 1 || box.width === 0) continue;
    let parent = el.parentElement, contained = false;
    while (parent && parent !== document.body) {
      if (scrolls(parent)) { contained = true; break; }
      parent = parent.parentElement;
    }
    if (!contained) {
      offenders.push(`${el.tagName.toLowerCase()}.${el.className} ` +
        `(right edge ${Math.round(box.right)} px)`);
    }
  }
  return {scrollWidth: root.scrollWidth, width, offenders: offenders.slice(0, 5)};
}"""


# Every request the page made, with the bytes of its body (Resource Timing).
LOADED_JS = """() => [
  ...performance.getEntriesByType("navigation"),
  ...performance.getEntriesByType("resource"),
].map((e) => ({url: e.name, bytes: e.encodedBodySize || e.transferSize || 0}))"""

# axe-core's rule sets for WCAG 2.1 A and AA, and its best practices.
AXE_OPTIONS = {
    "runOnly": {
        "type": "tag",
        "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"],
    },
    "resultTypes": ["violations"],
    # No refetching of stylesheets: axe resolves an @import against the page, not the
    # sheet, and asks for a file that does not exist (its one rule that needs them,
    # css-orientation-lock, concerns pages that lock the orientation; ours do not).
    "preload": False,
}


# Runs in each page's phone visit (tests/test_site_phone.py reads it): raw TeX outside
# maths, display equations too wide without a scrolling cue, captions cut at the
# screen's edges, and whether the pitfalls index fits.
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


@dataclass
class Visit:
    """What one page did in the browser at one width."""

    page: str
    width: int
    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    other_hosts: list[str] = field(default_factory=list)
    math: dict = field(default_factory=dict)
    images: list[dict] = field(default_factory=list)
    links: dict = field(default_factory=dict)
    overflow: dict = field(default_factory=dict)
    loaded: list[dict] = field(default_factory=list)
    axe: list[dict] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    phone: dict = field(default_factory=dict)
    screenshot: Path | None = None

    @property
    def weight(self) -> int:
        """Bytes the page loaded: its HTML and everything it fetched."""
        return sum(entry["bytes"] for entry in self.loaded)


def _require_chromium() -> None:
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return
    reason = (
        f"no chromium at {CHROMIUM}: install Debian's package "
        "(apt-get install chromium; .ci/run does) to run the browser tests"
    )
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"CI=true, so the browser tests may not skip: {reason}")
    pytest.skip(reason)


# One Chromium per test process, shared by every module that asks for one: the
# Playwright sync API cannot run twice in one process at the same time.
_CHROMIUM: dict = {"users": 0}


@contextmanager
def launch_chromium() -> Iterator[object]:
    """Debian's Chromium, headless, with no network (skips without it)."""
    if _CHROMIUM["users"] == 0:
        _require_chromium()
        try:
            from playwright.sync_api import sync_playwright
        except ImportError as err:  # it is in requirements.txt, so only a broken venv
            pytest.fail(f"playwright is not installed: {err}")
        playwright = sync_playwright().start()
        # launch() gives Chromium a fresh temporary profile (its --user-data-dir)
        # and every new_context() a clean one: no cache, cookies or storage.
        _CHROMIUM["playwright"] = playwright
        _CHROMIUM["browser"] = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
    _CHROMIUM["users"] += 1
    try:
        yield _CHROMIUM["browser"]
    finally:
        _CHROMIUM["users"] -= 1
        if _CHROMIUM["users"] == 0:
            _CHROMIUM.pop("browser").close()
            _CHROMIUM.pop("playwright").stop()


# The same small HTTP server that prints the PDF serves the site to the tests.
serve_site = load_ext("book_pdf").serve


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Debian's Chromium, headless, with no network."""
    with launch_chromium() as chromium:
        yield chromium


@pytest.fixture(scope="session")
def server(site: Path) -> Iterator[str]:
    """The built site over HTTP on 127.0.0.1, as a reader's browser would get it."""
    with serve_site(site) as origin:
        yield origin


def _watch(page, visit: Visit, origin: str) -> None:
    """Record console errors, failed requests and requests to other hosts."""

    def on_console(message) -> None:
        if message.type == "error":
            visit.console_errors.append(f"{message.text} ({message.location})")

    def on_response(response) -> None:
        if response.status >= 400:
            visit.failed_requests.append(f"{response.status} {response.url}")

    def on_route(route) -> None:
        if route.request.url.startswith((origin, "data:")):
            route.continue_()
        else:
            visit.other_hosts.append(route.request.url)
            route.abort("internetdisconnected")

    page.on("console", on_console)
    page.on("pageerror", lambda error: visit.console_errors.append(f"uncaught {error}"))
    page.on("response", on_response)
    page.on(
        "requestfailed",
        lambda r: visit.failed_requests.append(f"{r.failure} {r.url}"),
    )
    page.route("**/*", on_route)


def _open(browser, origin: str, page_name: str, width: int, query: str = "") -> Visit:
    visit = Visit(page_name, width)
    context = browser.new_context(viewport={"width": width, "height": 900})
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        _watch(page, visit, origin)
        page.goto(f"{origin}{page_name}.html{query}", wait_until="load")
        visit.math = page.evaluate(MATH_JS)
        visit.images = page.evaluate(IMAGES_JS)
        page.wait_for_load_state("networkidle")
        visit.links = page.evaluate(LINKS_JS)
        visit.overflow = page.evaluate(OVERFLOW_JS)
        visit.loaded = page.evaluate(LOADED_JS)
        visit.ids = page.eval_on_selector_all("[id]", "nodes => nodes.map(n => n.id)")
        if not query and width == DESKTOP:
            visit.axe = _axe(page)
        if not query and width == PHONE:
            visit.phone = page.evaluate(PHONE_JS)
        if query:
            page.wait_for_selector("#search-results ul.search li a")
            visit.links["results"] = page.eval_on_selector_all(
                "#search-results ul.search li a", "links => links.map(a => a.href)"
            )
        if SCREENSHOTS_WANTED:
            name = page_name + "".join(c if c.isalnum() else "-" for c in query)
            height = page.evaluate("document.documentElement.scrollHeight")
            shot = page.screenshot(full_page=height <= FULL_SHOT_MAX_PX)
            visit.screenshot = _save(shot, width, name)
    finally:
        context.close()
    return visit


def _axe(page) -> list[dict]:
    """axe-core's violations on the page: rule, impact, and where."""
    try:
        from axe_playwright_python.sync_playwright import Axe
    except ImportError as err:  # it is in requirements.txt, so only a broken venv
        pytest.fail(f"axe-playwright-python is not installed: {err}")
    results = Axe().run(page, options=AXE_OPTIONS).response
    return [
        {
            "rule": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "targets": [" ".join(map(str, n["target"])) for n in v["nodes"]][:5],
        }
        for v in results["violations"]
    ]


def _save(png: bytes, width: int, name: str) -> Path:
    """Write a screenshot in one step: another worker may be saving the same page."""
    path = SCREENSHOTS / f"{width}px" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.part")
    partial.write_bytes(png)
    os.replace(partial, path)
    return path


def _moved(value, old: str, new: str):
    """``value`` with every string's ``old`` origin replaced by ``new``."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, list):
        return [_moved(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: _moved(v, old, new) for k, v in value.items()}
    return value


def _wanted_visits(items: list[pytest.Item]) -> set[tuple[str, int]]:
    """The (page, width) visits that the collected tests will ask for.

    A test parametrized by page and width names both; one parametrized by page only
    visits at phone width if it is a phone test, else at desktop width.
    """
    wanted = set()
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "page" not in params or not {"visit", "phone"} & set(item.fixturenames):
            continue
        phone = "phone" in item.fixturenames or "phone" in item.name
        wanted.add((params["page"], params.get("width", PHONE if phone else DESKTOP)))
    return wanted


def _my_share(wanted: set[tuple[str, int]], site: Path) -> list[tuple[str, int]]:
    """This xdist worker's share of the visits, the costliest first.

    Every worker splits the same list the same way (longest first, each to the
    least loaded worker), so that each opens about half of the pages at once
    instead of waiting for pages the other is opening. A page's cost is guessed
    from its HTML's size; the desktop visit also runs axe.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    me = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:])

    def cost(key: tuple[str, int]) -> float:
        page = site / f"{key[0]}.html"
        size = page.stat().st_size if page.is_file() else 0
        return (200_000 + size) * (3 if key[1] == DESKTOP else 1)

    loads, shares = [0.0] * workers, [[] for _ in range(workers)]
    for key in sorted(wanted, key=lambda k: (-cost(k), k)):
        least = loads.index(min(loads))
        loads[least] += cost(key)
        shares[least].append(key)
    return shares[me]


@pytest.fixture(scope="session")
def visit(
    browser, server: str, site: Path, tmp_path_factory, request
) -> Callable[[str, int], Visit]:
    """Open a page at a width, once per test run however many tests ask for it.

    The xdist workers share their visits through pickles in the run's common folder
    (each worker serves the site on its own port, so the origin is swapped on
    loading). A visit that failed fails every test that asks for it, without opening
    the page again. Under xdist, the first call opens this worker's share of the
    visits the run's tests want (``_my_share``), so the workers load pages side by
    side rather than wait for each other's.
    """
    basetemp = tmp_path_factory.getbasetemp()
    shared = basetemp.parent if os.environ.get("PYTEST_XDIST_WORKER") else basetemp
    folder = shared / "visits"
    folder.mkdir(exist_ok=True)
    visits: dict[tuple, Visit | Exception] = {}

    def record(page_name: str, width: int, query: str) -> Visit | Exception:
        stem = "".join(c if c.isalnum() else "-" for c in f"{page_name}-{width}{query}")
        path = folder / f"{stem}.pickle"
        with open(folder / f"{stem}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one worker opens the page
            if path.exists():
                origin, result = pickle.loads(path.read_bytes())
                if isinstance(result, Visit):
                    result = Visit(**_moved(vars(result), origin, server))
                return result
            try:
                result = _open(browser, server, page_name, width, query)
            except Exception as err:  # kept, and raised again for each test
                result = err
            try:
                path.write_bytes(pickle.dumps((server, result)))
            except (pickle.PicklingError, TypeError, AttributeError):
                pass  # an exception that does not pickle stays in this worker
            return result

    share = (
        _my_share(_wanted_visits(request.session.items), site)
        if os.environ.get("PYTEST_XDIST_WORKER")
        else []
    )

    def get(page_name: str, width: int, query: str = "") -> Visit:
        while share:  # the first call: this worker's share, costliest first
            ahead = share.pop(0)
            visits[(*ahead, "")] = record(*ahead, "")
        key = (page_name, width, query)
        if key not in visits:
            visits[key] = record(page_name, width, query)
        if isinstance(visits[key], Exception):
            raise visits[key]
        return visits[key]

    return get


def _target(site: Path, origin: str, href: str) -> tuple[Path, str] | None:
    """The file (and fragment) a same-site link points at; None for other sites."""
    if not href.startswith(origin):
        return None
    url = urlsplit(href)
    path = site / unquote(url.path).lstrip("/")
    if path.is_dir():
        path = path / "index.html"
    return path, url.fragment


# The whole book's PDF, linked from the intro: `make pdf` prints it after the build.
PRINTED_LATER = "book.pdf"


def _broken(site: Path, origin: str, hrefs: list[str]) -> list[str]:
    broken = []
    for href in hrefs:
        target = _target(site, origin, href)
        if target is None:
            continue
        path, fragment = target
        if path == site / PRINTED_LATER:
            continue  # written by `make pdf`, after the build (tests/test_pdf.py)
        if not path.is_file():
            broken.append(f"{href}: no such file")
        elif fragment and path.suffix == ".html" and fragment not in element_ids(path):
            broken.append(f"{href}: no element with id {fragment!r}")
    return broken


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
@pytest.mark.parametrize("page", site_pages())
def test_page_loads_without_errors_offline(visit, page, width):
    result = visit(page, width)
    assert result.other_hosts == [], "requests to other hosts"
    assert result.failed_requests == []
    assert result.console_errors == []


@pytest.mark.parametrize("page", site_pages())
def test_page_maths_is_typeset(visit, page):
    math = visit(page, DESKTOP).math
    assert math["untypeset"] == [], f"{len(math['untypeset'])} of {math['count']}"


@pytest.mark.parametrize("page", site_pages())
def test_page_display_maths_fits_the_desktop_column(visit, page):
    """On a phone a long equation may scroll inside its box; on a desktop, split it."""
    math = visit(page, DESKTOP).math
    assert math["untypeset"] == [], "cannot measure maths that is not typeset"
    assert math["wide"] == []


def test_maths_is_present_to_check(visit):
    """The maths check above would pass on a site without maths: make sure it has."""
    assert sum(visit(page, DESKTOP).math["count"] for page in toc_pages()) > 0


@pytest.mark.parametrize("page", site_pages())
def test_page_images_load_and_have_alt_text(visit, page):
    images = visit(page, DESKTOP).images
    assert [i["src"] for i in images if not i["loaded"]] == [], "images not loaded"
    assert [i["src"] for i in images if not i["alt"]] == [], "images without alt text"


@pytest.mark.parametrize("page", site_pages())
def test_page_links_lead_to_existing_pages(visit, server, site, page):
    links = visit(page, DESKTOP).links
    assert links["toc"], "no table of contents in the sidebar"
    assert _broken(site, server, links["all"]) == []


@pytest.mark.parametrize("page", toc_pages())
def test_page_next_and_previous_follow_the_toc(visit, server, site, page):
    links, order = visit(page, DESKTOP).links, toc_pages()
    at = order.index(page)
    expected_prev = [f"{server}{order[at - 1]}.html"] if at > 0 else []
    expected_next = [f"{server}{order[at + 1]}.html"] if at + 1 < len(order) else []
    assert links["prev"] == expected_prev
    assert links["next"] == expected_next


@pytest.mark.parametrize("page", site_pages())
def test_sidebar_lists_every_page_of_the_toc(visit, server, site, page):
    toc = visit(page, DESKTOP).links["toc"]
    linked = {
        str(path.relative_to(site).with_suffix(""))
        for path, _ in filter(None, (_target(site, server, href) for href in toc))
    }
    assert linked | {page} >= set(toc_pages())


@pytest.mark.parametrize("page", site_pages())
def test_page_does_not_scroll_sideways_on_a_phone(visit, page):
    overflow = visit(page, PHONE).overflow
    assert overflow["scrollWidth"] <= overflow["width"], overflow["offenders"]


@pytest.mark.skipif(not SCREENSHOTS_WANTED, reason="BOOK_SCREENSHOTS=1 saves them")
@pytest.mark.parametrize("width", [DESKTOP, PHONE])
@pytest.mark.parametrize("page", site_pages())
def test_page_screenshot_is_saved(visit, page, width):
    shot = visit(page, width).screenshot
    assert shot is not None and shot.is_file() and shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_search_finds_momentum(visit, server, site):
    result = visit("search", DESKTOP, "?q=momentum")
    assert result.console_errors == [] and result.other_hosts == []
    hits = result.links["results"]
    assert hits, "searching for 'momentum' found nothing"
    assert _broken(site, server, hits) == []


# Accessibility: axe-core's violations of WCAG 2.1 AA and its best practices.
BLOCKING = {"critical", "serious"}
# Violations below serious that only the theme (sphinx-book-theme, pydata-sphinx-theme)
# could fix, each with the reason; any other one fails. None is left.
THEME_ONLY: dict[str, str] = {}
# Violations below serious in a chapter's own content that its owners are fixing, by
# (page, rule), with what to change. Remove an entry once it is fixed.
CHAPTER_PENDING: dict[tuple[str, str], str] = {}


@pytest.mark.parametrize("width", [DESKTOP])
@pytest.mark.parametrize("page", site_pages())
def test_page_has_no_critical_or_serious_accessibility_violation(visit, page, width):
    violations = visit(page, width).axe
    assert [v for v in violations if v["impact"] in BLOCKING] == []


@pytest.mark.parametrize("width", [DESKTOP])
@pytest.mark.parametrize("page", site_pages())
def test_page_has_no_other_accessibility_violation_but_the_themes(visit, page, width):
    violations = visit(page, width).axe
    others = [
        v
        for v in violations
        if v["rule"] not in THEME_ONLY and (page, v["rule"]) not in CHAPTER_PENDING
    ]
    assert others == []


def test_accessibility_audit_runs(visit):
    """axe found nothing because it ran, not because it was never asked."""
    visits = [visit(page, DESKTOP) for page in toc_pages()]
    assert all(isinstance(v.axe, list) for v in visits)
    assert all(v.loaded for v in visits)


# Weight: what a reader's browser downloads to show a page, served uncompressed (every
# image included, lazy ones too). At most 2 MiB, the chapters' budget, for every page
# but the two API reference pages, generated from the docstrings (the book's tools'
# page alone holds 0.6 MB of HTML, and its docstrings' maths loads MathJax).
PAGE_BUDGET = 2 * 2**20
LARGER_BUDGETS = {"api": 2.5 * 2**20, "api-booktools": 2.5 * 2**20}


@pytest.mark.parametrize("page", site_pages())
def test_page_loads_at_most_its_budget(visit, page):
    loaded = visit(page, DESKTOP)
    budget = LARGER_BUDGETS.get(page, PAGE_BUDGET)
    heaviest = sorted(loaded.loaded, key=lambda e: -e["bytes"])[:5]
    assert loaded.weight <= budget, f"{loaded.weight / 2**20:.2f} MiB: {heaviest}"


@pytest.mark.parametrize("page", site_pages())
def test_page_loads_the_search_index_only_for_search(visit, page):
    urls = [urlsplit(entry["url"]).path for entry in visit(page, DESKTOP).loaded]
    index = [u for u in urls if u.endswith(("searchindex.js", "searchtools.js"))]
    assert bool(index) == (page == "search"), index
    assert [u for u in urls if "fontawesome" in u and u.endswith(".js")] == []
    assert [u for u in urls if u.endswith(".map")] == []


@pytest.mark.parametrize("page", toc_pages())
def test_page_ids_are_unique_once_scripts_ran(visit, page):
    ids = visit(page, DESKTOP).ids
    assert ids, "no element with an id: the page did not load"
    assert sorted({i for i in ids if ids.count(i) > 1}) == []
