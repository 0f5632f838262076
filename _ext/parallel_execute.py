"""Execute the book's notebooks several at a time, before Sphinx reads them.

myst-nb executes a notebook when Sphinx reads its page, one page after another, so a
build spends most of its time running one kernel while the machine's other cores
wait. This extension runs the notebooks of the pages about to be read in a pool of
kernels (``parallel_execute_jobs`` at once), each in an empty temporary folder when
``run_in_temp`` is set, with myst-nb's own timeout and error settings. It stores each
executed notebook in myst-nb's execution cache, exactly as myst-nb's ``cache`` mode
would after running it, so that myst-nb then renders the stored outputs.

It runs only when the book's ``execute_notebooks`` is ``cache``. With
``parallel_execute_always`` (the default) every notebook of the pages being read is
executed afresh, whatever the cache holds: a build still runs every notebook, since
the cache cannot see a change to bnlib. A developer's configuration may turn it off to
execute only the notebooks that the cache does not hold.

Pages named in ``parallel_execute_alone`` (the timing pages) run first, one at a time
with nothing else in the pool, so their measurements do not share the machine with
another notebook of the build.

myst-nb's cache mode writes the page's notebook without its outputs to
``jupyter_execute/`` (the theme's ``.ipynb`` download); once myst-nb has read a page,
this extension writes the notebook it executed there instead, as myst-nb's ``force``
mode would have.

A notebook that fails here is not stored; myst-nb then runs it again as it reads the
page and reports the failure with its traceback, as without this extension. Each
notebook run here logs ``<source>: executed in a temporary folder in N s
[parallel_execute]``; tests/test_notebooks_standalone.py checks that every notebook
page was run so, and that myst-nb ran none a second time.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging

logger = logging.getLogger(__name__)

# The notebooks executed in this build, by page: written over myst-nb's copy without
# outputs once the page has been read (_write_executed).
_EXECUTED: dict[str, Any] = {}


@dataclass
class _Job:
    docname: str
    path: Path
    notebook: Any  # nbformat.NotebookNode, executed in place
    read_fmt: dict | None
    seconds: float = 0.0
    error: str | None = None


def _notebook_jobs(env: BuildEnvironment, docnames: list[str]) -> list[_Job]:
    """The pages among ``docnames`` that myst-nb will read as notebooks."""
    from myst_nb.core.read import create_nb_reader

    jobs = []
    for docname in docnames:
        path = Path(env.doc2path(docname))
        if path.suffix not in {".md", ".ipynb"}:
            continue
        text = path.read_text(encoding="utf-8")
        reader = create_nb_reader(str(path), env.myst_config, env.mystnb_config, text)
        if reader is not None:
            jobs.append(_Job(docname, path, reader.read(text), reader.read_fmt))
    return jobs


def _execute(job: _Job, config: Any) -> _Job:
    """Run one notebook as myst-nb's cache mode would run it."""
    from jupyter_cache.executors.utils import single_nb_execution

    with tempfile.TemporaryDirectory() as temporary:
        cwd = temporary if config.execution_in_temp else str(job.path.parent)
        result = single_nb_execution(
            job.notebook,
            cwd=os.path.abspath(cwd),
            timeout=config.execution_timeout,
            allow_errors=config.execution_allow_errors,
            meta_override=True,
        )
    job.seconds = result.time
    if result.err is not None:
        job.error = f"{type(result.err).__name__}"
    return job


@contextmanager
def _threads_per_kernel(width: int) -> Iterator[None]:
    """Share the cores between the kernels that run at once.

    Each kernel's PyTorch and bnlib would otherwise start a thread per core, and
    ``width`` kernels would wait on each other's threads. A setting of the reader's
    own (``OMP_NUM_THREADS``) is kept. The pages that run alone keep the default.
    """
    name = "OMP_NUM_THREADS"
    before = os.environ.get(name)
    if before is None and width > 1:
        os.environ[name] = str(max(1, (os.cpu_count() or 1) // width))
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)


def _cached(cache, job: _Job) -> bool:
    try:
        cache.match_cache_notebook(job.notebook)
    except KeyError:
        return False
    return True


def _run_all(app: Sphinx, env: BuildEnvironment, docnames: list[str]) -> None:
    config = env.mystnb_config
    if config.execution_mode != "cache" or not docnames:
        return
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache = get_cache(config.execution_cache_path or ".jupyter_cache")
    jobs = _notebook_jobs(env, sorted(docnames))
    if not app.config.parallel_execute_always:
        jobs = [job for job in jobs if not _cached(cache, job)]
    if not jobs:
        return
    alone = set(app.config.parallel_execute_alone)
    first = [job for job in jobs if job.docname in alone]
    rest = [job for job in jobs if job.docname not in alone]
    # Longest first keeps the pool busy to the end; a page's size is a fair guess.
    rest.sort(key=lambda job: -job.path.stat().st_size)
    width = max(1, int(app.config.parallel_execute_jobs))
    where = "a temporary folder" if config.execution_in_temp else "its own folder"
    logger.info(
        f"executing {len(jobs)} notebooks, {width} at a time "
        f"({len(first)} of them alone first)"
    )
    start = time.monotonic()
    done = [_execute(job, config) for job in first]
    with _threads_per_kernel(width), ThreadPoolExecutor(max_workers=width) as pool:
        done += list(pool.map(lambda job: _execute(job, config), rest))
    for job in done:  # the cache is an SQLite file: written from this thread only
        if job.error:
            logger.info(
                f"{job.path}: failed ({job.error}) in {where}; myst-nb will run it "
                "again and report the error [parallel_execute]"
            )
            continue
        _EXECUTED[job.docname] = job.notebook
        stage = cache.add_nb_to_project(str(job.path), read_data=job.read_fmt)
        cache.cache_notebook_bundle(
            CacheBundleIn(
                job.notebook, stage.uri, data={"execution_seconds": job.seconds}
            ),
            check_validity=False,
            overwrite=True,
        )
        logger.info(
            f"{job.path}: executed in {where} in {job.seconds:.1f} s [parallel_execute]"
        )
    logger.info(f"executed the notebooks in {time.monotonic() - start:.1f} s")


def _write_executed(app: Sphinx, doctree: Any) -> None:
    """Replace the page's ``.ipynb`` in ``jupyter_execute/`` by the executed one."""
    notebook = _EXECUTED.pop(app.env.docname, None)
    if notebook is None:
        return
    import nbformat

    folder = Path(app.env.mystnb_config.output_folder)
    path = folder.joinpath(*f"{app.env.docname}.ipynb".split("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(nbformat.writes(notebook), encoding="utf-8")


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("parallel_execute_jobs", os.cpu_count() or 1, "env")
    app.add_config_value("parallel_execute_always", True, "env")
    app.add_config_value("parallel_execute_alone", [], "env")
    app.connect("env-before-read-docs", _run_all)
    app.connect("doctree-read", _write_executed)
    return {"parallel_read_safe": False, "parallel_write_safe": True}
