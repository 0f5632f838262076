"""What the site tests share: the book's pages and the parsed pages of a build.

The page lists come from _toc.yml, so a chapter added there is covered by every site
test without touching the tests.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import yaml
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parents[1]
# Pages that Sphinx makes besides the ones in _toc.yml (index.html only redirects).
GENERATED_PAGES = ["genindex", "search"]


def toc_pages() -> list[str]:
    """Every file listed in _toc.yml, in reading order, without its suffix."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc.get("parts", []):
        pages += [entry["file"] for entry in part["chapters"]]
    return pages


def notebook_pages() -> list[str]:
    """The pages that are notebooks (a jupytext header): the chapters and the like."""
    return [
        page
        for page in toc_pages()
        if (ROOT / f"{page}.md").read_text().startswith("---\njupytext:")
    ]


# A page that documents a Python module makes Sphinx add a module index.
MODULE_DIRECTIVE = re.compile(r"(\.\. |\{)(py:)?(auto)?module(::|\})")


def site_pages() -> list[str]:
    """Every page a reader can open: the book's pages and Sphinx's own."""
    pages = toc_pages()
    sources = [(ROOT / f"{page}.md").read_text() for page in pages]
    if any(MODULE_DIRECTIVE.search(source) for source in sources):
        return pages + GENERATED_PAGES + ["py-modindex"]
    return pages + GENERATED_PAGES


def book_config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def load_ext(name: str) -> ModuleType:
    """Import a module of ``_ext/`` (the book's extensions and tools) by file."""
    key = f"bookext_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, ROOT / "_ext" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module


@functools.cache
def parse_html(path: Path) -> BeautifulSoup:
    return BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")


def element_ids(path: Path) -> set[str]:
    """All id attributes in an HTML file: the fragments a link may point at."""
    return set(re.findall(r'\bid="([^"]+)"', path.read_text(encoding="utf-8")))


def article(soup: BeautifulSoup) -> BeautifulSoup:
    """The page's own content, without the theme's header, sidebars and footer."""
    return soup.select_one("article.bd-article") or soup
