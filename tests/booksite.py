"""What the site tests share: the book's pages and the parsed pages of a build.

The page lists come from _toc.yml, so a chapter added there is covered by every site
test without touching the tests.
"""

from __future__ import annotations

import fcntl
import functools
import importlib.util
import os
import re
import shutil
import sys
from collections.abc import Callable
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


def run_folder(tmp_path_factory) -> Path:
    """The folder that every xdist worker of this test run shares."""
    basetemp = tmp_path_factory.getbasetemp()
    return basetemp.parent if os.environ.get("PYTEST_XDIST_WORKER") else basetemp


def made_once(tmp_path_factory, name: str, make: Callable[[Path], None]) -> Path:
    """The file ``name`` in the run's shared folder, made by ``make(path)`` once.

    The first worker to ask makes it (under a lock); the others wait and read it,
    so an expensive artefact such as the printed PDF is made once per run.
    """
    path = run_folder(tmp_path_factory) / name
    with open(path.with_name(name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            partial = path.with_name(f"{name}.{os.getpid()}.part")
            make(partial)
            os.replace(partial, path)
    return path


def made_once_in_place(
    tmp_path_factory, name: str, make: Callable[[Path], None]
) -> Path:
    """The folder ``name`` in the run's shared folder, made in place by ``make(path)``
    once per run, for what cannot be moved once made (a virtual environment).

    A module-scoped fixture runs once on each xdist worker that gets one of the
    module's tests, and the workers share a module's tests between them; so without
    this, an expensive set-up (processes that import torch, a new venv) ran twice.
    The first worker makes the folder under a lock and marks it done; the others wait
    and reuse it. A set-up that failed left no mark, so the next asker tries again
    (and fails with its own message).
    """
    path = run_folder(tmp_path_factory) / name
    done = path.with_name(name + ".done")
    with open(path.with_name(name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(parents=True)
            make(path)
            done.touch()
    return path


def element_ids(path: Path) -> set[str]:
    """All id attributes in an HTML file: the fragments a link may point at."""
    return set(re.findall(r'\bid="([^"]+)"', path.read_text(encoding="utf-8")))


def article(soup: BeautifulSoup) -> BeautifulSoup:
    """The page's own content, without the theme's header, sidebars and footer."""
    return soup.select_one("article.bd-article") or soup
