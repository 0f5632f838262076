"""Is the numba backend steady from its first call? Every call of a run, timed.

``python -m bnbook.bench.steady`` (and the end of ``python -m bnbook.bench``) starts
``RUNS`` fresh interpreters, one after another, after one untimed interpreter that
fills numba's cache. Each chooses the numba backend and times ``CALLS`` forward plus
backward passes on one batch, from the very first call, which prepares the
kernels (see :func:`bnlib._kernels.numba_backend.warm_up`). A run's steady time is
the median of the calls after the first; its worst ratio is its slowest call after
the first over that median.

The verdict is on the per-call medians over runs: call ``k``'s time is the median of
call ``k`` in every run. That is the one rule for leaving out pauses caused by other
processes. A pause of another process's making hits one run's call, and rarely the
same call in most runs, so it does not move that median. A slowness of bnlib's own
(a kernel compiled or loaded late, memory touched for the first time) comes back in
every run, at the same call, and does.

Two clocks: wall time, what a user waits, and CPU time of the whole process (every
thread, user and system), which a busy machine's other processes inflate less.
On a shared machine the wall times jump whatever bnlib does; the CPU times show
what bnlib's own calls cost.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "CALLS",
    "LIMIT",
    "RUNS",
    "SHAPE",
    "Run",
    "format_steady",
    "main",
    "measure",
    "per_call_medians",
]

SHAPE = (256, 256, 14, 14)  # the case whose first calls jumped (issue 22)
CALLS = 12
RUNS = 3
LIMIT = 1.5  # no call after the first may take more than this times the median

CHILD = """
import json, sys, time
import numpy as np
import bnlib
bnlib.set_backend("numba")
shape, calls, dtype = tuple(json.loads(sys.argv[1])), int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(0)
x = rng.normal(1.0, 2.0, size=shape).astype(dtype)
dy = rng.normal(size=shape).astype(dtype)
gamma = rng.normal(size=shape[1]).astype(dtype)
beta, rm, rv = np.zeros_like(gamma), np.zeros_like(gamma), np.ones_like(gamma)
wall, cpu = [], []
for _ in range(calls):
    w, c = time.perf_counter(), time.process_time()
    bnlib.batch_norm(x, rm, rv, gamma, beta, training=True)
    bnlib.batch_norm_backward(dy, x, gamma)
    wall.append(time.perf_counter() - w)
    cpu.append(time.process_time() - c)
print(json.dumps({"wall": wall, "cpu": cpu}))
"""


@dataclass
class Run:
    """One interpreter's call times in seconds, from the backend's first call."""

    wall: list[float]
    cpu: list[float]

    def times(self, clock: str) -> list[float]:
        """The call times of ``clock``, ``"wall"`` or ``"cpu"``."""
        if clock not in ("wall", "cpu"):
            raise ValueError(f"clock must be 'wall' or 'cpu', got {clock!r}")
        return self.wall if clock == "wall" else self.cpu

    def stats(self, clock: str) -> tuple[float, float, float]:
        """``(first call, steady median, worst later call / median)`` of a clock,
        ``"wall"`` or ``"cpu"``."""
        return _stats(self.times(clock))


def _stats(times: Sequence[float]) -> tuple[float, float, float]:
    steady = statistics.median(times[1:])
    return times[0], steady, max(times[1:]) / steady


def per_call_medians(runs: Sequence[Run], clock: str) -> list[float]:
    """Call ``k``'s median over the runs, for every ``k``, in seconds.

    Parameters
    ----------
    runs : sequence of Run
        At least one, all with the same number of calls.
    clock : {"wall", "cpu"}

    Returns
    -------
    list of float
        One time per call, from the first.
    """
    lengths = {len(r.times(clock)) for r in runs}
    if len(lengths) != 1:
        raise ValueError(
            f"expected runs with the same number of calls, got {sorted(lengths)}"
        )
    return [
        statistics.median(calls)
        for calls in zip(*(r.times(clock) for r in runs), strict=True)
    ]


def _child(shape: Sequence[int], calls: int, dtype: str) -> Run:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(list(shape)), str(calls), dtype],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ.copy(),
    )
    times = json.loads(out.stdout.strip().splitlines()[-1])
    return Run(times["wall"], times["cpu"])


def measure(
    shape: Sequence[int] = SHAPE,
    calls: int = CALLS,
    runs: int = RUNS,
    dtype: str = "float32",
) -> list[Run]:
    """Time ``calls`` forward plus backward passes in each of ``runs`` interpreters.

    Parameters
    ----------
    shape : sequence of int
        ``(N, C, *)``.
    calls : int
        At least 3: the first, and the later ones the median is taken over.
    runs : int
        Fresh interpreters, after an untimed one that fills numba's cache.
    dtype : {"float32", "float64"}

    Returns
    -------
    list of Run
    """
    if calls < 3 or runs < 1:
        raise ValueError(f"need calls >= 3 and runs >= 1, got {calls} and {runs}")
    _child(shape, 3, dtype)  # compiles, or loads, and leaves the cache filled
    return [_child(shape, calls, dtype) for _ in range(runs)]


def format_steady(runs: list[Run], shape: Sequence[int] = SHAPE) -> str:
    """A table of each run and of the per-call medians over runs, in milliseconds.

    The verdict (no call after the first above ``LIMIT`` times the steady median)
    is given on the per-call medians, for each clock.
    """
    lines = [
        f"numba backend, forward + backward on {tuple(shape)}, every call from the "
        f"first, in {len(runs)} fresh interpreters:",
        f"{'run':>8} {'clock':>5} {'first ms':>9} {'steady ms':>10} "
        f"{'worst/steady':>13}",
    ]
    for clock in ("wall", "cpu"):
        for i, run in enumerate(runs, 1):
            first, steady, worst = run.stats(clock)
            lines.append(
                f"{i:>8} {clock:>5} {1e3 * first:>9.1f} {1e3 * steady:>10.1f} "
                f"{worst:>13.2f}"
            )
        first, steady, worst = _stats(per_call_medians(runs, clock))
        verdict = "met" if worst <= LIMIT else "NOT met"
        lines.append(
            f"{'per-call':>8} {clock:>5} {1e3 * first:>9.1f} {1e3 * steady:>10.1f} "
            f"{worst:>13.2f}  (target <= {LIMIT}: {verdict})"
        )
    lines += [
        "per-call: call k's median over the runs, for every k; a pause of another",
        "  process's making rarely hits the same call in most runs, bnlib's own do.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bnbook.bench.steady [--shape N C ...] [--calls K] [--runs R]``."""
    parser = argparse.ArgumentParser(prog="python -m bnbook.bench.steady")
    parser.add_argument("--shape", type=int, nargs="+", default=list(SHAPE))
    parser.add_argument("--calls", type=int, default=CALLS)
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args(argv)
    runs = measure(args.shape, args.calls, args.runs, args.dtype)
    print(format_steady(runs, args.shape))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
