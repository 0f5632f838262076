"""The machine a benchmark runs on: its memory bandwidth, CPU, versions and threads.

See Also
--------
bnbook.bench.runner : the benchmark that reports these next to its timings.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import time
from pathlib import Path

import numpy as np

from bnlib._kernels.blocked import get_num_threads

__all__ = [
    "BANDWIDTH_BYTES",
    "cache_sizes",
    "have_numba",
    "have_torch",
    "machine_info",
    "measure_bandwidth",
]

BANDWIDTH_BYTES = 1 << 28  # per array of the copy: larger than most caches


def measure_bandwidth(nbytes: int = BANDWIDTH_BYTES, repeats: int = 7) -> float:
    """Memory bandwidth as seen by one large ``np.copyto``.

    Parameters
    ----------
    nbytes : int
        Size of the source (and of the destination) in bytes, at least 8.
    repeats : int
        Timed copies after one untimed copy; the fastest is used.

    Returns
    -------
    float
        Bytes read plus bytes written, per second: ``2 * nbytes / time``.

    Notes
    -----
    One core's bandwidth. With the default 256 MiB per array, the copy runs from
    main memory on most machines; where the last-level cache is larger than that
    (see :func:`cache_sizes`), it measures partly the cache.

    The fastest copy, not the median: other work on the machine can slow a copy but
    never speed it up, so the fastest copy is the closest to what memory can deliver.
    A floor computed from a slowed copy would be too high, and a computation would
    seem to beat it.
    """
    if nbytes < 8 or repeats < 1:
        raise ValueError(
            f"need nbytes >= 8 and repeats >= 1, got nbytes={nbytes}, repeats={repeats}"
        )
    src = np.ones(nbytes // 8)
    dst = np.zeros_like(src)
    np.copyto(dst, src)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(dst, src)
        seconds.append(time.perf_counter() - start)
    return 2 * src.nbytes / min(seconds)


def have_numba() -> bool:
    """Whether numba, and so bnlib's numba backend, can be used."""
    return importlib.util.find_spec("numba") is not None


def have_torch() -> bool:
    """Whether torch can be imported (bnlib's core does not need it)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _numpy_threads() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
        env = {k: os.environ[k] for k in names if k in os.environ}
        return f"ufuncs 1 thread; BLAS threads from the environment: {env or 'unset'}"
    blas = [
        f"{i['internal_api']} {i['num_threads']}"
        for i in threadpool_info()
        if i["user_api"] == "blas"
    ]
    return f"ufuncs 1 thread; BLAS threads: {', '.join(blas) or 'none loaded'}"


def cache_sizes(root: str = "/sys/devices/system/cpu/cpu0/cache") -> dict[str, int]:
    """Sizes of the CPU caches seen by core 0, as Linux reports them.

    Parameters
    ----------
    root : str
        The folder with one ``index*`` folder per cache.

    Returns
    -------
    dict of str to int
        Bytes per cache, keyed ``"L1d"``, ``"L1i"``, ``"L2"``, ``"L3"``; empty where
        the folder does not exist (not Linux). A virtual machine may report the
        host's sizes.
    """
    sizes: dict[str, int] = {}
    for index in sorted(Path(root).glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        suffix = {"Data": "d", "Instruction": "i"}.get(kind, "")
        units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
        number, unit = (size[:-1], size[-1]) if size[-1] in units else (size, "")
        if number.isdigit():
            sizes[f"L{level}{suffix}"] = int(number) * units.get(unit, 1)
    return sizes


def _format_caches() -> str:
    def size(b: int) -> str:
        return f"{b >> 20} MiB" if b >= 1 << 20 else f"{b >> 10} KiB"

    return ", ".join(f"{k} {size(v)}" for k, v in cache_sizes().items()) or "unknown"


def machine_info() -> dict[str, str]:
    """Platform, CPU model, cores, load, versions and thread counts.

    Returns
    -------
    dict of str to str
        Keys ``platform``, ``cpu`` (from ``/proc/cpuinfo``), ``cores``, ``caches``
        (:func:`cache_sizes`), ``load average``, ``python``, ``numpy``,
        ``numpy threads`` (BLAS threads from threadpoolctl if installed, else from
        the environment),
        ``bnlib threads``, ``OPENBLAS_CORETYPE``, ``OPENBLAS_L2_SIZE``,
        ``OMP_WAIT_POLICY``, with numba installed ``numba``, and with torch
        installed ``torch`` and ``torch threads``.
    """
    info = {
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cores": f"{os.cpu_count()} ({_usable_cores()} usable)",
        "caches": _format_caches(),
        "load average": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numpy threads": _numpy_threads(),
        "bnlib threads": str(get_num_threads()),
    }
    for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_WAIT_POLICY"):
        info[name] = os.environ.get(name, "unset")
    if have_numba():
        import numba

        info["numba"] = numba.__version__
    if have_torch():
        import torch

        info["torch"] = torch.__version__
        info["torch threads"] = str(torch.get_num_threads())
    return info
