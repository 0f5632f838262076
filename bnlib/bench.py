"""How fast is bnlib? BatchNorm timed against PyTorch's CPU kernel and a textbook.

Run ``python -m bnlib.bench`` (add ``--quick`` for a run of a few seconds). For each
case it times forward, backward and both in training mode, as medians over repeats
after a warm-up, for three implementations in the same process, their turns
interleaved so that a change in the machine's load hits all three alike:

``bnlib``
    :func:`bnlib.batch_norm` then :func:`bnlib.batch_norm_backward`.
``textbook``
    :func:`textbook_forward` and :func:`textbook_backward` below: ``x.mean(...)``,
    ``((x - mu)**2).mean(...)`` and a temporary for every step.
``torch``
    ``torch.nn.functional.batch_norm`` with autograd, if torch is installed.

The time limit is ``PASSES`` passes over ``x`` at the bandwidth of a large
``np.copyto`` (bytes read plus written per second). Peak memory is measured with
:mod:`tracemalloc`, which sees numpy's allocations but not torch's.

See Also
--------
The chapter "How fast is bnlib?" (``chapters/05-speed.md``).
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bnlib.batchnorm import batch_norm, batch_norm_backward
from bnlib.blocked import get_num_threads

__all__ = [
    "CASES",
    "QUICK_CASES",
    "CaseResult",
    "Report",
    "format_report",
    "machine_info",
    "main",
    "measure_bandwidth",
    "run",
    "run_case",
    "textbook_backward",
    "textbook_forward",
]

CASES = ((4096, 1024), (64, 64, 32, 32), (256, 256, 14, 14), (8, 3, 224, 224))
QUICK_CASES = ((1024, 256), (16, 64, 16, 16), (64, 64, 14, 14), (2, 3, 112, 112))
DTYPES = ("float32", "float64")
IMPLS = ("bnlib", "textbook", "torch")
PHASES = ("forward", "backward", "both")
PASSES = 7  # forward: read x twice, write y; backward: read dy and x, write dx
BANDWIDTH_BYTES = 1 << 28  # per array of the copy: well beyond the caches


def _axes_and_shape(x: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return (0, *range(2, x.ndim)), (1, -1) + (1,) * (x.ndim - 2)


def textbook_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5
) -> tuple[np.ndarray, tuple[Any, ...]]:
    """The baseline: batch norm as a textbook writes it; returns ``y`` and a cache."""
    axes, shape = _axes_and_shape(x)
    mu = x.mean(axis=axes)
    var = ((x - mu.reshape(shape)) ** 2).mean(axis=axes)
    x_hat = (x - mu.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    y = gamma.reshape(shape) * x_hat + beta.reshape(shape)
    return y, (x_hat, var, gamma, eps)


def textbook_backward(
    dy: np.ndarray, cache: tuple[Any, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The baseline's backward pass from the cached ``x_hat``: ``dx, dgamma, dbeta``."""
    x_hat, var, gamma, eps = cache
    axes, shape = _axes_and_shape(dy)
    m = dy.size // dy.shape[1]
    dbeta = dy.sum(axis=axes)
    dgamma = (dy * x_hat).sum(axis=axes)
    dx_hat = dy * gamma.reshape(shape)
    dx = (
        m * dx_hat
        - dx_hat.sum(axis=axes, keepdims=True)
        - x_hat * (dx_hat * x_hat).sum(axis=axes, keepdims=True)
    ) / (m * np.sqrt(var.reshape(shape) + eps))
    return dx, dgamma, dbeta


Calls = dict[str, Callable[[], Any]]


def _bnlib_calls(x: np.ndarray, dy: np.ndarray, gamma: np.ndarray) -> Calls:
    beta = np.zeros_like(gamma)
    rm, rv = np.zeros_like(gamma), np.ones_like(gamma)

    def forward() -> Any:
        return batch_norm(x, rm, rv, gamma, beta, training=True)

    def backward() -> Any:
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


def _have_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _median_times(
    calls: dict[str, Calls], repeats: int, warmup: int
) -> dict[str, dict[str, float]]:
    """Median seconds per (implementation, phase); the turns are interleaved."""
    flat = {(impl, ph): fn for impl, c in calls.items() for ph, fn in c.items()}
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


def _peak_bytes(fn: Callable[[], Any]) -> int:
    """Peak of the memory numpy allocates during ``fn()`` (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def measure_bandwidth(nbytes: int = BANDWIDTH_BYTES, repeats: int = 5) -> float:
    """Bytes read plus written per second by ``np.copyto`` of ``nbytes`` bytes."""
    if nbytes < 8 or repeats < 1:
        raise ValueError(
            f"need nbytes >= 8 and repeats >= 1, got nbytes={nbytes}, repeats={repeats}"
        )
    src = np.ones(nbytes // 8)
    dst = np.zeros_like(src)
    calls = {"copy": {"copy": lambda: np.copyto(dst, src)}}
    seconds = _median_times(calls, repeats, warmup=1)["copy"]["copy"]
    return 2 * src.nbytes / seconds


@dataclass
class CaseResult:
    """Timings of one shape and dtype; ``seconds[impl][phase]`` are medians."""

    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    seconds: dict[str, dict[str, float]]
    peak_bytes: dict[str, int | None]
    limit_seconds: float

    def ratio(self, impl: str, other: str, phase: str = "both") -> float:
        """Time of ``impl`` over time of ``other``: below 1 means ``impl`` is faster."""
        return self.seconds[impl][phase] / self.seconds[other][phase]

    def fraction_of_limit(self, impl: str = "bnlib") -> float:
        """Bandwidth-limited time over the measured forward-plus-backward time."""
        return self.limit_seconds / self.seconds[impl]["both"]


def run_case(
    shape: Sequence[int],
    dtype: str,
    bandwidth: float,
    repeats: int = 7,
    warmup: int = 2,
    seed: int = 0,
) -> CaseResult:
    """Time forward, backward and both for every implementation on one case."""
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64) or len(shape) < 2 or min(shape) < 1:
        raise ValueError(
            "expected a float32 or float64 dtype and a shape (N, C, *) of positive "
            f"sizes, got dtype {dtype} and shape {tuple(shape)}"
        )
    rng = np.random.default_rng(seed)
    x = rng.normal(1.0, 2.0, size=tuple(shape)).astype(dt)
    dy = rng.normal(size=x.shape).astype(dt)
    gamma = rng.normal(size=x.shape[1]).astype(dt)
    makers = {"bnlib": _bnlib_calls, "textbook": _textbook_calls}
    if _have_torch():
        makers["torch"] = _torch_calls
    calls = {impl: make(x, dy, gamma) for impl, make in makers.items()}
    peaks: dict[str, int | None] = {impl: None for impl in IMPLS}
    for impl in ("bnlib", "textbook"):
        peaks[impl] = _peak_bytes(calls[impl]["both"])
    seconds = _median_times(calls, repeats, warmup)
    limit = PASSES * x.nbytes / bandwidth
    return CaseResult(tuple(shape), dt.name, x.nbytes, seconds, peaks, limit)


def _geomean(values: Sequence[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values))


@dataclass
class Target:
    """A target: ``value`` must be at most (or at least) ``threshold``."""

    name: str
    value: float
    threshold: float
    at_most: bool

    @property
    def met(self) -> bool:
        """Whether the measured value meets the target."""
        if self.at_most:
            return self.value <= self.threshold
        return self.value >= self.threshold


@dataclass
class Report:
    """A whole run: the machine, the copy bandwidth in bytes/s, and every case."""

    machine: dict[str, str]
    bandwidth: float
    cases: list[CaseResult]

    def targets(self) -> list[Target]:
        """The issue's targets for forward plus backward, over all cases."""
        speedup = _geomean([c.ratio("textbook", "bnlib") for c in self.cases])
        out = [Target("speed-up over textbook, geometric mean", speedup, 3.0, False)]
        f32 = [c.fraction_of_limit() for c in self.cases if c.dtype == "float32"]
        if f32:
            out.append(
                Target(
                    "fraction of bandwidth limit, worst float32", min(f32), 0.25, False
                )
            )
        if all("torch" in c.seconds for c in self.cases):
            vs = [c.ratio("bnlib", "torch") for c in self.cases]
            out[:0] = [
                Target("time / torch time, geometric mean", _geomean(vs), 1.0, True),
                Target("time / torch time, worst case", max(vs), 1.5, True),
            ]
        return out


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


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


def machine_info() -> dict[str, str]:
    """Platform, CPU, cores, load, versions and thread counts, as strings."""
    info = {
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cores": f"{os.cpu_count()} ({len(os.sched_getaffinity(0))} usable)",
        "load average": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numpy threads": _numpy_threads(),
        "bnlib threads": str(get_num_threads()),
    }
    for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        info[name] = os.environ.get(name, "unset")
    if _have_torch():
        import torch

        info["torch"] = torch.__version__
        info["torch threads"] = str(torch.get_num_threads())
    return info


def run(
    cases: Sequence[Sequence[int]] = CASES,
    dtypes: Sequence[str] = DTYPES,
    repeats: int = 7,
    warmup: int = 2,
    bandwidth_bytes: int | None = None,
) -> Report:
    """Measure the bandwidth (default ``BANDWIDTH_BYTES``), then every case."""
    if repeats < 1 or warmup < 0:
        raise ValueError(
            f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}"
        )
    bandwidth = measure_bandwidth(bandwidth_bytes or BANDWIDTH_BYTES)
    results = [
        run_case(shape, dtype, bandwidth, repeats, warmup)
        for shape in cases
        for dtype in dtypes
    ]
    return Report(machine_info(), bandwidth, results)


def _time_rows(c: CaseResult) -> list[str]:
    rows = []
    for impl, phases in c.seconds.items():
        peak = c.peak_bytes.get(impl)
        ms = " ".join(f"{1e3 * phases[ph]:9.2f}" for ph in PHASES)
        mem = "      n/a" if peak is None else f"{peak / c.nbytes:9.2f}"
        rows.append(f"{str(c.shape):18} {c.dtype:8} {impl:9} {ms} {mem}")
    return rows


def _ratio_row(c: CaseResult) -> str:
    vs = [
        f"{c.ratio('bnlib', 'torch', ph):6.2f}" if "torch" in c.seconds else "   n/a"
        for ph in PHASES
    ]
    torch_frac = (
        f"{c.fraction_of_limit('torch'):6.0%}" if "torch" in c.seconds else "   n/a"
    )
    return (
        f"{str(c.shape):18} {c.dtype:8} {' '.join(vs)} "
        f"{c.ratio('textbook', 'bnlib'):9.2f} {1e3 * c.limit_seconds:8.2f} "
        f"{c.fraction_of_limit():6.0%} {torch_frac}"
    )


def format_report(report: Report) -> str:
    """The report as plain-text tables: times, ratios, and the targets."""
    lines = [f"{k}: {v}" for k, v in report.machine.items()]
    lines += [
        f"bandwidth: {report.bandwidth / 1e9:.1f} GB/s (np.copyto; bytes read + "
        f"written per second); limit = {PASSES} x bytes(x) / bandwidth",
        "peak/x: peak memory numpy allocated during forward+backward (tracemalloc) "
        "over bytes(x); torch's allocations are not traced",
        "",
        "median time (ms)",
        f"{'case':18} {'dtype':8} {'impl':9} {'forward':>9} {'backward':>9} "
        f"{'both':>9} {'peak/x':>9}",
    ]
    for c in report.cases:
        lines += _time_rows(c)
    lines += [
        "",
        f"{'case':18} {'dtype':8} {'bnlib/torch: fwd   bwd   both':>20} "
        f"{'textbook/bnlib':>14} {'limit ms':>8} {'bnlib':>6} {'torch':>6}",
    ]
    lines += [_ratio_row(c) for c in report.cases]
    lines += ["", "targets (forward + backward)"]
    for t in report.targets():
        goal = f"{'<=' if t.at_most else '>='} {t.threshold}"
        verdict = "met" if t.met else "NOT met"
        lines.append(f"  bnlib {t.name}: {t.value:.2f} (target {goal}) {verdict}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m bnlib.bench [--quick] [--repeats R] [--warmup W]``."""
    parser = argparse.ArgumentParser(
        prog="python -m bnlib.bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small cases, 3 repeats")
    parser.add_argument("--repeats", type=int, help="timed runs per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 11)
    cases = QUICK_CASES if args.quick else CASES
    report = run(cases, DTYPES, repeats, args.warmup)
    print(format_report(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
