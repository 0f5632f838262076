"""What the numba backend's compilation costs: a cold start and a cached one.

See Also
--------
bnbook.bench.runner : reports these next to its timings.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

__all__ = ["FIRST_CALL", "compile_times", "first_call_seconds"]

# Timed from before `import bnlib` to the end of the first forward and backward passes
# on a 4-D and a 2-D float32 batch, in a fresh interpreter: every float32 kernel.
FIRST_CALL = """
import time
start = time.perf_counter()
import numpy as np
import bnlib
bnlib.set_backend("numba")
for shape in [(8, 4, 6, 6), (8, 4)]:
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    bnlib.batch_norm(x, None, None, training=True)
    bnlib.batch_norm_backward(x, x)
print(time.perf_counter() - start)
"""


def _first_call(cache_dir: str | None) -> float:
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    out = subprocess.run(
        [sys.executable, "-c", FIRST_CALL],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def first_call_seconds(cache_dir: str | None = None) -> float:
    """Seconds from ``import bnlib`` to the end of a first call, in a fresh process.

    Parameters
    ----------
    cache_dir : str, optional
        numba's cache folder; if not given, the child's environment decides
        (``NUMBA_CACHE_DIR``, else bnlib's folder in the user's cache). A filled
        cache gives the cached start; an empty one compiles every kernel first.

    Returns
    -------
    float
        Start-up of the interpreter not counted, its imports counted.
    """
    from bnlib.backend import _load

    _load("numba", "the backend")  # the ImportError naming the extra, here
    return _first_call(cache_dir)


def compile_times(cache_dir: str | None = None) -> dict[str, float]:
    """Seconds from ``import bnlib`` to the end of a first call, numba backend.

    Parameters
    ----------
    cache_dir : str, optional
        An empty folder for numba's cache, left filled for the caller (whose own
        process can then load the kernels from it); a temporary one if not given.

    Returns
    -------
    dict of str to float
        ``"cold"``: with an empty cache, so the kernels are compiled; ``"cached"``:
        a second interpreter that loads them from that cache. Each run is a fresh
        Python process; its start-up is not counted, its imports are.

    Raises
    ------
    ImportError
        If numba is not installed.
    subprocess.CalledProcessError
        If the child process fails.
    """
    from bnlib.backend import _load

    _load("numba", "the backend")  # the ImportError naming the extra, here
    if cache_dir is not None:
        return {"cold": _first_call(cache_dir), "cached": _first_call(cache_dir)}
    with tempfile.TemporaryDirectory(prefix="bnlib-numba-") as cache:
        return compile_times(cache)
