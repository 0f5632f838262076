"""The book as a test: every page executes, and the whole site builds with -W -n.

These tests are slow (they run every chapter), so they carry the ``book`` marker:
``pytest -m "not book"`` skips them during development.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import jupytext
import nbclient
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _toc_pages() -> list[str]:
    """Every file listed in _toc.yml, in order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc.get("parts", []):
        pages += [entry["file"] for entry in part["chapters"]]
    return pages


def _executable_pages() -> list[str]:
    """Pages with a jupytext header: the notebooks."""
    return [
        page
        for page in _toc_pages()
        if (ROOT / f"{page}.md").read_text().startswith("---\njupytext:")
    ]


def test_toc_lists_only_existing_pages():
    missing = [p for p in _toc_pages() if not (ROOT / f"{p}.md").exists()]
    assert not missing, f"_toc.yml lists pages that do not exist: {missing}"


@pytest.mark.book
@pytest.mark.parametrize("page", _executable_pages())
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


@pytest.mark.book
@pytest.mark.xdist_group("build")
def test_book_builds_with_warnings_as_errors(tmp_path):
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "jupyter-book"),
            "build",
            str(ROOT),
            "-W",
            "-n",
            "--keep-going",
            "--path-output",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    html = tmp_path / "_build" / "html"
    for page in _toc_pages():
        assert (html / f"{page}.html").exists(), page
