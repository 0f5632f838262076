"""Packaging: what ``import bnlib`` loads, the extras' ImportErrors, one version."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import bnlib

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return out.stdout


def test_import_bnlib_loads_neither_torch_nor_sympy():
    code = "import sys, bnlib; print(sorted({'torch', 'sympy'} & set(sys.modules)))"
    assert _run(code).strip() == "[]"


BLOCKED = """
import importlib, json, sys
results = {}
for package, module, extra in %s:
    saved = sys.modules.get(module)
    sys.modules[module] = None  # importlib.util.find_spec now says: not installed
    try:
        importlib.import_module(package)
        results[package] = "imported"
    except ImportError as err:
        results[package] = str(err)
    finally:
        del sys.modules[module]
print(json.dumps(results))
"""
CASES = [
    ("bnlib.torch", "torch", 'pip install "bnlib-batchnorm[torch]"'),
    ("bnbook.lab", "sklearn", "pip install -r requirements.txt"),
    ("bnbook.derive", "sympy", "pip install -r requirements.txt"),
]


def test_subpackage_without_its_extra_raises_import_error_naming_it():
    results = json.loads(_run(BLOCKED % (CASES,)))
    for package, module, hint in CASES:
        message = results[package]
        assert module in message, message
        assert hint in message, message


def test_version_has_one_source():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"]
    assert pyproject["project"]["dynamic"] == ["version"]
    source = pyproject["tool"]["setuptools"]["dynamic"]["version"]
    assert source == {"attr": "bnlib._version.__version__"}
    assert bnlib.__version__ == version("bnlib-batchnorm")
    hits = [
        p for p in (ROOT / "bnlib").rglob("*.py") if bnlib.__version__ in p.read_text()
    ]
    assert hits == [ROOT / "bnlib" / "_version.py"]
