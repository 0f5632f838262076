"""Shared fixtures: a seeded generator, a symbolic BatchNorm of three values, and
the book built once per test run.

The build is a session fixture that every xdist worker shares through a lock file in
the run's common temporary folder: the first worker that needs it builds the book,
the others wait for it and reuse it. On a whole-suite run (``make test``) the build
starts with the session, in a child process, and the tests that need it run last,
so that the build and the other tests share the machine's cores. (``--dist loadgroup``
cannot do this alone: under pytest 9 xdist 3.8's ``xdist_group`` no longer keeps a
group on one worker.)

Every test that uses the build (``book_build`` or ``site``, directly or through
another fixture) is marked ``book`` and put in the ``build`` xdist group here, so
``pytest -m "not book"`` leaves them out.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# One thread per process, set before numpy or torch is imported. A whole-suite run
# puts two xdist workers and the book build's kernels on the machine's cores; a pool
# of one thread per core in each (PyTorch, OpenBLAS, bnlib) makes them wait on each
# other's threads: the tests outside the book took a third more CPU time so. The
# multi-thread paths are tested with explicit counts (test_threads.py,
# test_blocked.py, test_backend.py). A developer's own setting is kept.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NO_NUMBA = "numba is not installed (the fast extra: bnlib-batchnorm[fast])"
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
        pytest.importorskip("numba", reason=NO_NUMBA)
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


# The build runs in its own process, which writes its result to ``build.json`` and
# holds the lock (an inherited file descriptor) until it has.
_BUILDER = """
import json, subprocess, sys
record, cwd, *command = sys.argv[1:]
result = subprocess.run(command, capture_output=True, text=True, cwd=cwd)
log = result.stdout + result.stderr
with open(record + ".part", "w") as f:
    json.dump({"returncode": result.returncode, "log": log}, f)
import os; os.replace(record + ".part", record)
"""


def _start_build(out: Path, lock) -> subprocess.Popen:
    """Build the book into ``out`` in a child process that inherits ``lock``."""
    out.mkdir(parents=True, exist_ok=True)
    command = [
        str(Path(sys.executable).parent / "jupyter-book"),
        "build",
        str(ROOT),
        "-W",
        "-n",
        "--keep-going",
        "--path-output",
        str(out),
    ]
    return subprocess.Popen(
        [sys.executable, "-c", _BUILDER, str(out / "build.json"), str(ROOT), *command],
        pass_fds=(lock.fileno(),),
        start_new_session=True,  # so that an early stop can end the whole build
    )


def _shared_folder(basetemp: Path) -> Path:
    """The folder that the controller and every xdist worker of this run share."""
    if os.environ.get("BOOK_BUILD_DIR"):
        # For a developer rerunning site tests: reuse the build (and its build.json)
        # of an earlier run, e.g. /tmp/pytest-of-$USER/pytest-N/book.
        return Path(os.environ["BOOK_BUILD_DIR"]).parent
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return basetemp.parent
    return basetemp


def _book_folder(shared: Path) -> Path:
    return Path(os.environ.get("BOOK_BUILD_DIR") or shared / "book")


_EARLY: list[subprocess.Popen] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    """On a whole-suite run, start the build at once, beside the first tests.

    The build takes minutes and the site tests wait for it; started when the first
    site test asks for it, it would begin only after that worker's other tests.
    """
    config = session.config
    whole_suite = config.args_source == pytest.Config.ArgsSource.TESTPATHS
    wants_book = "book" not in (config.option.markexpr or "")
    if (
        os.environ.get("PYTEST_XDIST_WORKER")
        or os.environ.get("BOOK_BUILD_DIR")
        or not (whole_suite and wants_book)
        or config.option.collectonly
    ):
        return
    shared = _shared_folder(config._tmp_path_factory.getbasetemp())
    with open(shared / "book.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _EARLY.append(_start_build(_book_folder(shared), lock))
    # The child still holds the lock through its copy of the descriptor.


def pytest_sessionfinish(session: pytest.Session) -> None:
    for child in _EARLY:
        if child.poll() is None:  # the run ended early: no one needs the build
            os.killpg(child.pid, signal.SIGTERM)
            child.wait()


@pytest.fixture(scope="session")
def book_build(tmp_path_factory: pytest.TempPathFactory) -> BookBuild:
    """Build the whole book, as ``make book`` does, once per test run."""
    shared = _shared_folder(tmp_path_factory.getbasetemp())
    out = _book_folder(shared)
    record = out / "build.json"
    with open(shared / "book.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not record.exists():
            _start_build(out, lock).wait()
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

    # The site tests last, so that the other tests run while the book builds; first
    # among the slow ones, those that build a small book of their own and can fill
    # a core while the whole book builds.
    def order(item: pytest.Item) -> int:
        if item.get_closest_marker("book") is None:
            return 0
        return 2 if BUILD_FIXTURES & set(getattr(item, "fixturenames", ())) else 1

    items.sort(key=order)
