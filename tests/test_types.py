"""The library floor (bnlib/*.py and bnlib/_kernels) passes ``mypy --strict``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_library_floor_passes_mypy_strict(tmp_path):
    files = sorted(ROOT.glob("bnlib/*.py")) + sorted(ROOT.glob("bnlib/_kernels/*.py"))
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path)]
        + [str(f.relative_to(ROOT)) for f in files],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Success: no issues found" in out.stdout
