"""How fast is bnlib? BatchNorm timed against PyTorch's CPU kernel and a textbook.

Run ``python -m bnbook.bench`` (add ``--quick`` for a run of a few seconds). For each
case it times forward, backward and both in training mode, as medians over repeats
after a warm-up, for the implementations in the same process, their turns
interleaved so that a change in the machine's load hits all three alike:

``bnlib``
    :func:`bnlib.batch_norm` then :func:`bnlib.batch_norm_backward`, with the
    numpy backend (the default).
``numba``
    The same with the numba backend (``bnlib.set_backend("numba")``), if numba is
    installed; its compilation is timed apart, cold and cached
    (:func:`bnbook.bench.compile.compile_times`).
``textbook``
    :func:`bnbook.bench.textbook.textbook_forward` and
    :func:`bnbook.bench.textbook.textbook_backward`: ``x.mean(...)``,
    ``((x - mu)**2).mean(...)`` and a temporary for every step.
``torch``
    ``torch.nn.functional.batch_norm`` with autograd, if torch is installed.

At the end, unless ``--quick`` or ``--no-steady``, :mod:`bnbook.bench.steady` times
every call of the numba backend from its first, in three fresh interpreters, and
prints the medians over the three runs: no call after the first should take more
than 1.5 times the steady median.

The floor is the time to move ``PASSES`` arrays the size of ``x`` at the bandwidth
of the fastest of several large ``np.copyto`` (bytes read plus written per second,
by one core); times are also reported in multiples of it. Several cores can move
more, so for a run on several threads the floor is too long a time and the
multiples flatter the run; they can fall below 1. Peak memory is measured with
:mod:`tracemalloc`, which sees numpy's allocations but not torch's.

See Also
--------
The chapter "How fast is bnlib?" (``chapters/speed.md``).
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bnbook.bench.compile import compile_times
from bnbook.bench.machine import (
    BANDWIDTH_BYTES,
    have_numba,
    have_torch,
    machine_info,
    measure_bandwidth,
)
from bnbook.bench.report import PASSES, PHASES, CaseResult, Report, format_report
from bnbook.bench.textbook import textbook_backward, textbook_forward
from bnlib._kernels.blocked import set_num_threads
from bnlib.backend import using
from bnlib.batchnorm import batch_norm, batch_norm_backward

__all__ = [
    "CASES",
    "DTYPES",
    "IMPLS",
    "PASSES",
    "PHASES",
    "QUICK_CASES",
    "CaseResult",
    "Report",
    "compile_times",
    "format_report",
    "implementations",
    "machine_info",
    "main",
    "measure_bandwidth",
    "peak_bytes",
    "run",
    "run_case",
    "textbook_backward",
    "textbook_forward",
]

CASES = ((4096, 1024), (64, 64, 32, 32), (256, 256, 14, 14), (8, 3, 224, 224))
QUICK_CASES = ((512, 256), (8, 64, 16, 16), (32, 64, 14, 14), (2, 3, 64, 64))
DTYPES = ("float32", "float64")
IMPLS = ("bnlib", "numba", "textbook", "torch")  # those installed: implementations()


Calls = dict[str, Callable[[], Any]]


def implementations() -> tuple[str, ...]:
    """The names of ``IMPLS`` whose packages are installed (numba, torch)."""
    have = {"numba": have_numba(), "torch": have_torch()}
    return tuple(impl for impl in IMPLS if have.get(impl, True))


def _bnlib_calls(
    x: np.ndarray, dy: np.ndarray, gamma: np.ndarray, backend: str = "numpy"
) -> Calls:
    beta = np.zeros_like(gamma)
    rm, rv = np.zeros_like(gamma), np.ones_like(gamma)

    def forward() -> Any:
        with using(backend):
            return batch_norm(x, rm, rv, gamma, beta, training=True)

    def backward() -> Any:
        with using(backend):
            return batch_norm_backward(dy, x, gamma)

    return {
        "forward": forward,
        "backward": backward,
        "both": lambda: [forward(), backward()],
    }


def _textbook_calls(x: np.ndarray, dy: np.ndarray, gamma: np.ndarray) -> Calls:
    beta = np.zeros_like(gamma)
    cache = textbook_forward(x, gamma, beta)[1]
    return {
        "forward": lambda: textbook_forward(x, gamma, beta),
        "backward": lambda: textbook_backward(dy, cache),
        "both": lambda: textbook_backward(dy, textbook_forward(x, gamma, beta)[1]),
    }


def _torch_calls(x: np.ndarray, dy: np.ndarray, gamma: np.ndarray) -> Calls:
    import torch
    import torch.nn.functional as F

    xt, wt = (
        torch.tensor(x, requires_grad=True),
        torch.tensor(gamma, requires_grad=True),
    )
    bt, dyt = torch.zeros_like(wt, requires_grad=True), torch.tensor(dy)
    rm, rv = torch.zeros_like(bt.detach()), torch.ones_like(bt.detach())

    def forward() -> Any:
        return F.batch_norm(xt, rm, rv, wt, bt, training=True)

    y = forward()
    return {
        "forward": forward,
        "backward": lambda: torch.autograd.grad(
            y, (xt, wt, bt), dyt, retain_graph=True
        ),
        "both": lambda: torch.autograd.grad(forward(), (xt, wt, bt), dyt),
    }


def _median_times(
    calls: dict[str, Calls], repeats: int, warmup: int, phases: Sequence[str] = PHASES
) -> dict[str, dict[str, float]]:
    """Median seconds per (implementation, phase); the turns are interleaved."""
    flat = {
        (impl, ph): fn
        for impl, c in calls.items()
        for ph, fn in c.items()
        if ph in phases
    }
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in flat}
    for fn in flat.values():
        for _ in range(warmup):
            fn()
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeats):
            for key, fn in flat.items():
                start = time.perf_counter()
                fn()
                samples[key].append(time.perf_counter() - start)
    finally:
        gc.enable()
    out: dict[str, dict[str, float]] = {impl: {} for impl in calls}
    for (impl, ph), ts in samples.items():
        out[impl][ph] = statistics.median(ts)
    return out


def peak_bytes(fn: Callable[[], Any]) -> int:
    """Peak of the memory numpy allocates during ``fn()``.

    Parameters
    ----------
    fn : callable
        Called once, with ``tracemalloc`` tracing.

    Returns
    -------
    int
        Bytes; tracemalloc sees numpy's allocations but not torch's.
    """
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def run_case(
    shape: Sequence[int],
    dtype: str,
    bandwidth: float,
    repeats: int = 7,
    warmup: int = 2,
    seed: int = 0,
    peaks: bool = True,
    phases: Sequence[str] = PHASES,
) -> CaseResult:
    """Time forward, backward and both for every implementation on one case.

    Parameters
    ----------
    shape : sequence of int
        ``(N, C, *)``, every size positive.
    dtype : {"float32", "float64"}
    bandwidth : float
        Bytes per second, from :func:`bnbook.bench.machine.measure_bandwidth`.
    repeats, warmup : int
        Timed runs (the median is kept) and untimed runs before them.
    seed : int
        Seed of the random ``x``, ``dy`` and ``gamma``.
    peaks : bool
        Measure the peak memory of bnlib and the textbook version (one more run of
        each, traced; slow).
    phases : sequence of str
        Which of ``PHASES`` to time; ``("both",)`` takes a third of the time.

    Returns
    -------
    CaseResult
    """
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64) or len(shape) < 2 or min(shape) < 1:
        raise ValueError(
            "expected a float32 or float64 dtype and a shape (N, C, *) of positive "
            f"sizes, got dtype {dtype} and shape {tuple(shape)}"
        )
    if not phases or not set(phases) <= set(PHASES):
        raise ValueError(f"expected phases among {PHASES}, got {tuple(phases)}")
    rng = np.random.default_rng(seed)
    x = rng.normal(1.0, 2.0, size=tuple(shape)).astype(dt)
    dy = rng.normal(size=x.shape).astype(dt)
    gamma = rng.normal(size=x.shape[1]).astype(dt)
    makers: dict[str, Callable[..., Calls]] = {
        "bnlib": _bnlib_calls,
        "numba": functools.partial(_bnlib_calls, backend="numba"),
        "textbook": _textbook_calls,
        "torch": _torch_calls,
    }
    calls = {impl: makers[impl](x, dy, gamma) for impl in implementations()}
    peak: dict[str, int | None] = {impl: None for impl in calls}
    for impl in ("bnlib", "numba", "textbook") if peaks else ():
        if impl in calls:
            calls[impl]["both"]()  # compiles numba's kernels: not part of the peak
            peak[impl] = peak_bytes(calls[impl]["both"])
    seconds = _median_times(calls, repeats, warmup, phases)
    limit = PASSES * x.nbytes / bandwidth
    return CaseResult(tuple(shape), dt.name, x.nbytes, seconds, peak, limit)


def run(
    cases: Sequence[Sequence[int]] = CASES,
    dtypes: Sequence[str] = DTYPES,
    repeats: int = 7,
    warmup: int = 2,
    bandwidth: float | None = None,
    compile: bool = False,
    peaks: bool = True,
    phases: Sequence[str] = PHASES,
) -> Report:
    """Measure the bandwidth, then every case in every dtype.

    Parameters
    ----------
    cases : sequence of shapes
        ``CASES`` (the default) or ``QUICK_CASES``.
    dtypes : sequence of str
    repeats, warmup : int
        As in :func:`run_case`.
    bandwidth : float, optional
        Bytes per second; measured with a copy of ``BANDWIDTH_BYTES`` if not given.
    compile : bool
        Also time the numba backend's compilation, cold and cached, in two child
        processes (:func:`bnbook.bench.compile.compile_times`), if numba is installed.
    peaks, phases
        As in :func:`run_case`.

    Returns
    -------
    Report
        ``Report.targets()`` compares it with the targets.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(
            f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}"
        )
    if bandwidth is None:
        bandwidth = measure_bandwidth(BANDWIDTH_BYTES)
    compiled = compile_times() if compile and have_numba() else None
    results = [
        run_case(shape, dtype, bandwidth, repeats, warmup, peaks=peaks, phases=phases)
        for shape in cases
        for dtype in dtypes
    ]
    return Report(machine_info(), bandwidth, results, compiled)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bnbook.bench [--quick] [--repeats R] [--warmup W] [--threads T]
    [--no-compile] [--no-steady]``.

    Prints :func:`bnbook.bench.report.format_report` of :func:`run`; returns 0
    whether or not the targets are met.
    """
    parser = argparse.ArgumentParser(
        prog="python -m bnbook.bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small cases, 3 repeats")
    parser.add_argument("--repeats", type=int, help="timed runs per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    parser.add_argument(
        "--threads", type=int, help="bnlib's and torch's threads (default: cores)"
    )
    parser.add_argument(
        "--no-compile", action="store_true", help="do not time numba's compilation"
    )
    parser.add_argument(
        "--no-steady", action="store_true", help="do not time numba's first calls"
    )
    args = parser.parse_args(argv)
    # OpenMP threads (PyTorch's, numba's) that spin after each kernel take the cores
    # from whichever implementation runs next; read when torch is first imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if args.threads is not None:
        set_num_threads(args.threads)
        if have_torch():
            import torch

            torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 11)
    cases = QUICK_CASES if args.quick else CASES
    report = run(cases, DTYPES, repeats, args.warmup, compile=not args.no_compile)
    print(format_report(report))
    if have_numba() and not (args.quick or args.no_steady):
        from bnbook.bench import steady

        print()
        print(steady.format_steady(steady.measure()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
