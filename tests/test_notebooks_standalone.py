"""Every downloaded ``.ipynb`` runs top to bottom in an empty folder.

The work is shared with the book build: the build executes each notebook
(``_ext/parallel_execute.py``, with myst-nb's settings from ``_config.yml``) in a new
kernel whose working folder is an empty temporary one (``run_in_temp``), and the build
fails when a cell fails. So the build that the test
suite makes anyway has already run every notebook as a reader's download runs, and
these tests check that it did so, and that the downloads are those notebooks
(tests/test_site_live.py compares their code with the chapters'). One download, the
smallest, is also run here as a reader would: from the site's file, in a new kernel,
in an empty folder.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import nbformat
import pytest
from booksite import ROOT, book_config, notebook_pages, parse_html

# _ext/parallel_execute.py runs every notebook before Sphinx reads the pages and logs
# each; myst-nb logs a run of its own only when a notebook was not in its cache.
EXECUTED = re.compile(
    r"^(\S+)\.md: executed in (.+?) in [\d.]+ s \[parallel_execute\]", re.M
)
RUN_AGAIN = re.compile(r"^(\S+)\.md: Executing notebook using .+? \[mystnb\]", re.M)


def _download(site, page: str):
    (link,) = {
        a["href"] for a in parse_html(site / f"{page}.html").select("a[href$='.ipynb']")
    }
    return (site / f"{page}.html").parent / link


def test_build_executes_notebooks_in_an_empty_folder():
    assert book_config()["execute"].get("run_in_temp") is True


def test_build_ran_every_notebook_once_in_a_temporary_folder(book_build):
    ran: dict[str, list[str]] = {}
    for path, folder in EXECUTED.findall(book_build.log):
        ran.setdefault(str(Path(path).relative_to(ROOT)), []).append(folder)
    assert {page: ran.get(page) for page in notebook_pages()} == {
        page: ["a temporary folder"] for page in notebook_pages()
    }
    # myst-nb found each one in its cache, so ran none a second time.
    assert RUN_AGAIN.findall(book_build.log) == []


@pytest.mark.parametrize("page", notebook_pages())
def test_download_declares_a_python_kernel(site, page):
    notebook = nbformat.read(_download(site, page), as_version=4)
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    assert notebook.metadata["kernelspec"]["language"] == "python"


def test_smallest_download_runs_in_an_empty_folder(site, tmp_path):
    from nbclient import NotebookClient

    downloads = {page: _download(site, page) for page in notebook_pages()}
    page = min(downloads, key=lambda p: downloads[p].stat().st_size)
    notebook = nbformat.read(downloads[page], as_version=4)
    folder = tmp_path / "empty"
    folder.mkdir()
    start = time.monotonic()
    NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(folder)}},
    ).execute()
    assert time.monotonic() - start < 120
    errors = [
        out
        for cell in notebook.cells
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert errors == []
