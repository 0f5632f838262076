"""The intro's "Run it" steps work as written, up to starting JupyterLab.

The steps are read from the intro itself: a clone command and ``make lab``. The test
copies this checkout as a clone would hold it (tracked and untracked, not ignored
files) into an empty folder and runs ``make lab`` there, except its last command,
which starts the server. What it checks: ``make`` creates ``.venv`` and installs
``requirements.txt`` into it (bnlib and the book's tools editable, JupyterLab at its
pin), writes JupyterLab's setting that opens Markdown as a notebook, JupyterLab runs
with jupytext's server and lab extensions enabled, and the server command opens a
chapter that exists.

One shortcut keeps it fast: before ``make`` runs, ``.venv`` is created with this
test run's own packages visible (a ``.pth`` file, like ``--system-site-packages``
over this venv, and their Jupyter data folders), so pip resolves every pin of
requirements.txt against installed copies instead of downloading torch again. pip
still installs whatever is missing, and fails on a pin that nothing satisfies.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from booksite import ROOT, book_config, made_once_in_place

RUN_IT = re.compile(r"\*\*Run it\.\*\*.*?```bash\n(.*?)```", re.S)


def _run_it_steps() -> list[str]:
    """The commands of the intro's "Run it" block, comments removed."""
    (block,) = RUN_IT.findall((ROOT / "intro.md").read_text())
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]


def _copy_as_cloned(target: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def _seed_venv(clone: Path) -> None:
    """``.venv`` in ``clone`` that sees this run's packages."""
    venv.create(clone / ".venv", with_pip=True)
    (purelib,) = (clone / ".venv" / "lib").glob("python3*/site-packages")
    lines = [f"import site; site.addsitedir({path!r})" for path in _our_packages()]
    (purelib / "zz_test_overlay.pth").write_text("\n".join(lines) + "\n")


def _our_packages() -> list[str]:
    """This run's package folders: its venv's, and any that venv itself borrows."""
    return [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]


def _seeded_env(clone: Path) -> dict[str, str]:
    """The environment that finds the seeded venv's Jupyter data and configuration."""
    prefixes = [clone / ".venv", *{Path(p).parents[2] for p in _our_packages()}]
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["JUPYTER_PATH"] = os.pathsep.join(str(p / "share/jupyter") for p in prefixes)
    env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(
        str(p / "etc/jupyter") for p in prefixes
    )
    return env


def _run_make_lab_settings(clone: Path) -> None:
    """Copy the checkout into ``clone`` and run what ``make lab`` runs before it
    starts the server."""
    _copy_as_cloned(clone)
    _seed_venv(clone)
    env = _seeded_env(clone)
    result = subprocess.run(
        ["make", "--no-print-directory", "lab-settings", f"PYTHON={sys.executable}"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The reader's clone after ``make lab``'s set-up: made once per test run (the
    xdist workers share it), under the repository's own name."""
    steps = _run_it_steps()
    url = book_config()["repository"]["url"]
    name = url.rstrip("/").split("/")[-1]
    assert steps[0] == f"git clone {url} && cd {name}", steps[0]
    assert steps[1:] == ["make lab"], steps
    clone = made_once_in_place(tmp_path_factory, name, _run_make_lab_settings)
    env = _seeded_env(clone)
    server = _server_command(clone, env)
    assert server[:3] == [".venv/bin/python", "-m", "jupyterlab"], server
    return clone, env


def _server_command(clone: Path, env: dict[str, str]) -> list[str]:
    """The last command of ``make lab``, which starts the server (not run)."""
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", "lab"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
    )
    assert dry.returncode == 0, dry.stderr
    return shlex.split(dry.stdout.strip().splitlines()[-1])


def _python(clone: Path, env: dict[str, str], *args: str) -> str:
    """Run the clone's .venv Python (the shortcut's venv has no console scripts of
    its own: they belong to the packages it borrows)."""
    result = subprocess.run(
        [str(clone / ".venv/bin/python"), *args],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout + result.stderr


def test_make_lab_installs_jupyterlab_at_its_pin(clone):
    path, env = clone
    (pin,) = re.findall(
        r"^jupyterlab==(\S+)", (ROOT / "requirements.txt").read_text(), re.M
    )
    assert _python(path, env, "-m", "jupyterlab", "--version").strip() == pin


def test_make_lab_enables_jupytext_in_the_server_and_in_lab(clone):
    path, env = clone
    # What the server loads: every jupyter_server_config.d on Jupyter's config path.
    loaded = (
        "from jupyter_core.paths import jupyter_config_path\n"
        "from jupyter_server.extension.config import ExtensionConfigManager\n"
        "m = ExtensionConfigManager(read_config_path=jupyter_config_path())\n"
        "print(sorted(n for n, on in m.get_jpserver_extensions().items() if on))"
    )
    server = _python(path, env, "-c", loaded)
    assert "jupyterlab_jupytext'" in server and "'jupyterlab'" in server, server
    lab = _python(path, env, "-m", "jupyterlab.labextensions", "list")
    lab = re.sub(r"\x1b\[[0-9;]*m", "", lab)  # its colours
    assert re.search(r"jupyterlab-jupytext\S*\s+v?[\d.]+\s+enabled", lab), lab


def test_make_lab_opens_markdown_as_notebooks(clone):
    path, _ = clone
    settings = path / ".venv/share/jupyter/lab/settings/overrides.json"
    viewers = json.loads(settings.read_text())[
        "@jupyterlab/docmanager-extension:plugin"
    ]["defaultViewers"]
    assert viewers["markdown"] == "Jupytext Notebook"


def test_make_lab_opens_an_existing_chapter_with_bnlib_installed(clone):
    path, env = clone
    command = _server_command(path, env)
    assert (path / command[3]).is_file() and command[3].endswith(".md"), command
    check = "import bnlib, bnbook; print(bnlib.__file__)"
    result = subprocess.run(
        [str(path / ".venv/bin/python"), "-c", check],
        cwd="/",
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
