"""bnlib as a package: a plain install needs numpy alone, and its README example runs.

The test builds bnlib into a fresh virtual environment (``pip install <repo>``, not
editable), so it sees what a user of the package gets, not this checkout.
"""

from __future__ import annotations

import re
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _readme_example() -> str:
    text = (ROOT / "bnlib" / "README.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    return block


@pytest.fixture(scope="module")
def clean_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with ``pip install <repo>`` and nothing else asked for."""
    env = tmp_path_factory.mktemp("clean-venv")
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
    )
    return python


def test_plain_install_brings_numpy_only(clean_env):
    listed = subprocess.run(
        [str(clean_env), "-m", "pip", "list", "--format=freeze"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    names = {line.split("==")[0].lower() for line in listed.split()}
    assert names - {"pip", "setuptools", "wheel"} == {"bnlib-batchnorm", "numpy"}, names


def test_plain_install_runs_the_readme_example_without_torch_or_sympy(clean_env):
    script = _readme_example() + (
        "\nimport sys\n"
        "assert 'torch' not in sys.modules and 'sympy' not in sys.modules\n"
    )
    subprocess.run([str(clean_env), "-c", script], check=True, cwd="/")


def test_plain_install_ships_py_typed_and_the_license(clean_env):
    out = subprocess.run(
        [str(clean_env), "-m", "pip", "show", "--files", "bnlib-batchnorm"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "bnlib/py.typed" in out
    assert re.search(r"License-Expression: MIT|License: MIT", out) or "LICENSE" in out


def test_tool_subpackage_without_its_extra_names_the_extra(clean_env):
    result = subprocess.run(
        [str(clean_env), "-c", "import bnlib.torch"],
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert result.returncode != 0
    assert 'pip install "bnlib-batchnorm[torch]"' in result.stderr
