"""bnlib as a package: the wheel holds the library alone, a plain install needs numpy
alone, its README example runs, and the README's install lines name the right
distribution.

The wheel is built from a clean copy of the sources (a stale ``build/`` folder in
the checkout could otherwise slip old files in) and installed into a fresh virtual
environment, so the tests see what a user of the package gets, not this checkout.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
from booksite import made_once_in_place

ROOT = Path(__file__).resolve().parents[1]
DIST = "bnlib-batchnorm"
README = ROOT / "bnlib" / "README.md"
# the environment of every command here: nothing from this checkout on the path
CLEAN = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _run(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, env=CLEAN, cwd="/", **kwargs
    )


def _build_wheel(out: Path) -> None:
    """bnlib's wheel in ``out``, built from a copy of what the repository ships from."""
    src = out / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist")
    src.mkdir()
    for name in ("pyproject.toml", "LICENSE", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("bnlib", "booktools", "tests"):  # the book's parts must stay out
        shutil.copytree(ROOT / name, src / name, ignore=skip)
    python = ROOT / ".venv" / "bin" / "python"
    python = python if python.exists() else Path(sys.executable)
    done = _run(str(python), "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                str(out / "wheel"), str(src))  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bnlib's wheel, built once per test run (the xdist workers share it)."""
    out = made_once_in_place(tmp_path_factory, "bnlib-wheel", _build_wheel)
    (found,) = (out / "wheel").glob("bnlib_batchnorm-*.whl")
    return found


def test_wheel_holds_the_library_and_its_metadata_only(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    meta = [n for n in names if n.split("/")[0].endswith(".dist-info")]
    lib = [n for n in names if n not in meta]
    assert all(n.startswith("bnlib/") for n in lib), lib
    for needed in ("bnlib/__init__.py", "bnlib/py.typed", "bnlib/torch/__init__.py",
                   "bnlib/_kernels/numba_backend.py", "bnlib/modules.py"):  # fmt: skip
        assert needed in lib
    tools = re.compile(r"bnbook|/lab/|/derive/|/bench/|sync_timing|tests/|chapters/")
    assert not [n for n in names if tools.search(n)]
    info = wheel.name.split("-py")[0] + ".dist-info"
    assert {n.split("/")[0] for n in meta} == {info}
    metadata = zipfile.ZipFile(wheel).read(f"{meta[0].split('/')[0]}/METADATA")
    assert f"Name: {DIST}" in metadata.decode()


@pytest.fixture(scope="module")
def clean_env(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    """A new venv with the wheel installed and nothing else asked for (one per test
    run, shared by the xdist workers); its Python."""

    def make(env: Path) -> None:
        venv.create(env, with_pip=True)
        done = _run(str(env / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    str(wheel))  # fmt: skip
        assert done.returncode == 0, done.stderr

    return made_once_in_place(tmp_path_factory, "clean-venv", make) / "bin" / "python"


def test_plain_install_brings_numpy_only(clean_env):
    listed = _run(str(clean_env), "-m", "pip", "list", "--format=freeze").stdout
    names = {line.split("==")[0].lower() for line in listed.split()}
    assert names - {"pip", "setuptools", "wheel"} == {DIST, "numpy"}, names


def _readme_example() -> str:
    (block,) = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    return block


def test_plain_install_runs_the_readme_example_without_torch_or_sympy(clean_env):
    script = _readme_example() + (
        "\nimport sys\n"
        "assert 'torch' not in sys.modules and 'sympy' not in sys.modules\n"
        "assert bnlib.__file__.startswith(sys.prefix), bnlib.__file__\n"
    )
    done = _run(str(clean_env), "-c", script)
    assert done.returncode == 0, done.stderr


def test_plain_install_ships_py_typed_and_the_license(clean_env):
    out = _run(str(clean_env), "-m", "pip", "show", "--files", DIST).stdout
    assert "bnlib/py.typed" in out
    assert re.search(r"License-Expression: MIT|License: MIT", out) or "LICENSE" in out


def test_tool_subpackage_without_its_extra_names_the_extra(clean_env):
    result = _run(str(clean_env), "-c", "import bnlib.torch")
    assert result.returncode != 0
    assert f'pip install "{DIST}[torch]"' in result.stderr


def _install_lines(path: Path) -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", path.read_text(), flags=re.S)
    return [
        line.split("#")[0].strip()
        for block in blocks
        for line in block.splitlines()
        if line.startswith("pip install")
    ]


@pytest.mark.parametrize("path", [README, ROOT / "README.md"], ids=lambda p: p.name)
def test_readme_install_lines_name_the_distribution(path):
    """From the index: ``bnlib-batchnorm`` (``bnlib`` there is another project's),
    its two extras, and torch's CPU wheel first, from PyTorch's CPU index."""
    lines = _install_lines(path)
    assert f"pip install {DIST}" in lines
    assert f'pip install "{DIST}[torch]"' in lines
    assert f'pip install "{DIST}[fast]"' in lines
    cpu = "pip install torch --index-url https://download.pytorch.org/whl/cpu"
    assert cpu in lines
    assert lines[lines.index(cpu) + 1] == f'pip install "{DIST}[torch]"'  # then
    from_index = [ln for ln in lines if " -e " not in ln and "-r " not in ln]
    for line in from_index:
        package = line.removeprefix("pip install ").split()[0].strip('"')
        assert package.split("[")[0] in (DIST, "torch"), line
    assert "import bnlib" in path.read_text()
    assert re.search(r"another project", path.read_text())


def test_no_install_hint_names_the_wrong_distribution():
    """Every ``pip install`` of bnlib in the repository names ``bnlib-batchnorm``
    (or installs from the checkout)."""
    wrong = re.compile(r"pip install \"?bnlib(\[|\"|\s|$)")
    patterns = ["*.md", "bnlib/**/*.py", "booktools/**/*.py", "chapters/*.md"]
    patterns += ["binder/*", "requirements.txt", "Makefile"]
    files = [p for pattern in patterns for p in ROOT.glob(pattern)]
    bad = [str(p) for p in files if wrong.search(p.read_text(errors="ignore"))]
    assert bad == []
