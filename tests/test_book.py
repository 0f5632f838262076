"""The book as a test: every page executes, and the whole site builds with -W -n.

These tests are slow (they run every chapter), so they carry the ``book`` marker:
``pytest -m "not book"`` skips them during development. The build itself is the
session fixture ``book_build`` (tests/conftest.py), shared with the site tests.
"""

from __future__ import annotations

import time

import jupytext
import nbclient
import pytest
from booksite import ROOT, notebook_pages, toc_pages


def test_toc_lists_only_existing_pages():
    missing = [p for p in toc_pages() if not (ROOT / f"{p}.md").exists()]
    assert not missing, f"_toc.yml lists pages that do not exist: {missing}"


@pytest.mark.book
@pytest.mark.parametrize("page", notebook_pages())
def test_page_executes(page):
    notebook = jupytext.read(ROOT / f"{page}.md")
    client = nbclient.NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str((ROOT / page).parent)}},
    )
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    print(f"{page}: executed in {seconds:.1f} s")


def test_book_builds_with_warnings_as_errors(book_build):
    assert book_build.returncode == 0, book_build.log[-10000:]
    for page in toc_pages():
        assert (book_build.html / f"{page}.html").exists(), page
