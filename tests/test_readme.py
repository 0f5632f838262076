"""The README's Python example runs as written and does what its comments say."""

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_python_example_runs():
    blocks = _python_blocks()
    assert len(blocks) == 1
    namespace: dict = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)
    x, dx, dy = namespace["x"], namespace["dx"], namespace["dy"]
    assert dx.shape == x.shape and dx.dtype == np.float32
    # a random upstream gradient gives a non-zero input gradient
    assert np.abs(dx).max() > 1e-3
    # the running mean moved from zero towards the batch mean
    assert np.abs(namespace["rm"]).max() > 0
    assert np.allclose(
        namespace["dgamma"],
        (dy * namespace["y"]).sum(axis=(0, 2, 3)),
        rtol=1e-4,
        atol=1e-4,
    )
