"""The book as a test: the whole site builds with -W -n, every page executed.

The build is slow (it runs every chapter), so they carry the ``book`` marker:
``pytest -m "not book"`` skips them during development. The build itself is the
session fixture ``book_build`` (tests/conftest.py), shared with the site tests.
"""

from __future__ import annotations

from booksite import ROOT, toc_pages


def test_toc_lists_only_existing_pages():
    missing = [p for p in toc_pages() if not (ROOT / f"{p}.md").exists()]
    assert not missing, f"_toc.yml lists pages that do not exist: {missing}"


def test_book_builds_with_warnings_as_errors(book_build):
    assert book_build.returncode == 0, book_build.log[-10000:]
    for page in toc_pages():
        assert (book_build.html / f"{page}.html").exists(), page
