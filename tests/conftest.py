"""Shared fixtures: a seeded generator, a symbolic BatchNorm of three values, and
the book built once per test run.

The build is a session fixture that every xdist worker shares through a lock file in
the run's common temporary folder: the first worker that needs it builds the book,
the others wait for it and reuse it. (``--dist loadgroup`` cannot do this alone:
under pytest 9 xdist 3.8's ``xdist_group`` no longer keeps a group on one worker.)

Every test that uses the build (``book_build`` or ``site``, directly or through
another fixture) is marked ``book`` and put in the ``build`` xdist group here, so
``pytest -m "not book"`` leaves them out.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parents[1]
BUILD_FIXTURES = {"book_build", "site"}

# Property tests draw the same examples on every run, so a test run is reproducible
# (CI never fails on a draw no one can replay). HYPOTHESIS_PROFILE=explore searches
# new examples, for a developer hunting edge cases.
settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20150211)  # Ioffe & Szegedy's arXiv date


@pytest.fixture(params=["numpy", "numba"])
def backend(request: pytest.FixtureRequest):
    """Run a test under each of bnlib's backends; numba's only where installed."""
    import bnlib
    from bnlib import backend as chooser

    if request.param == "numba":
        pytest.importorskip("numba")
    before = chooser._current
    bnlib.set_backend(request.param)
    yield request.param
    chooser._current = before


@pytest.fixture(scope="module")
def bn3():
    """BatchNorm's symbolic forward pass over a batch of three scalars (SymPy)."""
    from bnbook.derive import symbolic

    return symbolic.batch_norm_graph(3)


@pytest.fixture(scope="module")
def exact3(bn3):
    """SymPy's own derivatives of ``bn3``'s loss."""
    from bnbook.derive import symbolic

    return symbolic.exact_gradients(bn3)


@dataclass(frozen=True)
class BookBuild:
    """The result of ``jupyter-book build`` into a temporary folder."""

    returncode: int
    log: str
    out: Path

    @property
    def html(self) -> Path:
        return self.out / "_build" / "html"

    @property
    def executed(self) -> Path:
        """myst-nb's executed notebooks, one ``.ipynb`` per page."""
        return self.out / "_build" / "jupyter_execute"


def _build_book(out: Path) -> dict:
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "jupyter-book"),
            "build",
            str(ROOT),
            "-W",
            "-n",
            "--keep-going",
            "--path-output",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return {"returncode": result.returncode, "log": result.stdout + result.stderr}


@pytest.fixture(scope="session")
def book_build(tmp_path_factory: pytest.TempPathFactory) -> BookBuild:
    """Build the whole book, as ``make book`` does, once per test run."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the folder that all workers of this run share
    out = shared / "book"
    with open(shared / "book.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        record = out / "build.json"
        if not record.exists():
            out.mkdir(exist_ok=True)
            record.write_text(json.dumps(_build_book(out)))
        result = json.loads(record.read_text())
    return BookBuild(result["returncode"], result["log"], out)


@pytest.fixture(scope="session")
def site(book_build: BookBuild) -> Path:
    """The built HTML site; tests that need it fail at once if the build failed."""
    if book_build.returncode != 0:
        pytest.fail(
            "the book did not build (see test_book_builds_with_warnings_as_errors):\n"
            + book_build.log[-3000:],
            pytrace=False,
        )
    return book_build.html


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if BUILD_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("build"))
            item.add_marker(pytest.mark.book)
