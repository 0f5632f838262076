"""The benchmark's results, its targets, and the report it prints.

See Also
--------
bnlib.bench.runner : runs the benchmark and fills these in.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["PASSES", "PHASES", "CaseResult", "Report", "Target", "format_report"]

PHASES = ("forward", "backward", "both")
# Arrays the size of x that forward plus backward move through memory: forward reads
# x (statistics), then reads x and writes y; backward reads dy and x (sums), then
# reads dy and x and writes dx. That is 8; the bound counts one fewer, so it is a
# little low and the fractions of it understate every implementation.
PASSES = 7


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


def _time_rows(c: CaseResult) -> list[str]:
    rows = []
    for impl, phases in c.seconds.items():
        peak = c.peak_bytes.get(impl)
        ms = " ".join(f"{1e3 * phases[ph]:9.2f}" for ph in PHASES)
        mem = "      n/a" if peak is None else f"{peak / c.nbytes:9.2f}"
        rows.append(f"{str(c.shape):18} {c.dtype:8} {impl:9} {ms} {mem}")
    return rows


def _ratio_row(c: CaseResult) -> str:
    has_torch = "torch" in c.seconds
    cols = [
        f"{c.ratio('bnlib', 'torch', ph):9.2f}" if has_torch else "      n/a"
        for ph in PHASES
    ]
    cols.append(f"{c.ratio('textbook', 'bnlib'):9.2f}")
    cols.append(f"{1e3 * c.limit_seconds:9.2f}")
    cols.append(f"{c.fraction_of_limit():9.0%}")
    cols.append(f"{c.fraction_of_limit('torch'):9.0%}" if has_torch else "      n/a")
    return f"{str(c.shape):18} {c.dtype:8} {' '.join(cols)}"


def format_report(report: Report) -> str:
    """The report as plain text: the machine, times, ratios and the targets."""
    lines = [f"{k}: {v}" for k, v in report.machine.items()]
    lines += [
        f"bandwidth: {report.bandwidth / 1e9:.1f} GB/s (one np.copyto, one core; "
        f"bytes read + written per second); limit = {PASSES} x bytes(x) / bandwidth",
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
        "ratios: bnlib time / torch time (fwd, bwd, both); textbook time / bnlib "
        "time (both); limit = bandwidth-limited time (ms) and the fraction of it "
        "reached by bnlib and torch (both)",
        f"{'case':18} {'dtype':8} {'fwd':>9} {'bwd':>9} {'both':>9} {'textbook':>9} "
        f"{'limit ms':>9} {'bnlib':>9} {'torch':>9}",
    ]
    lines += [_ratio_row(c) for c in report.cases]
    lines += ["", "targets (forward + backward)"]
    for t in report.targets():
        goal = f"{'<=' if t.at_most else '>='} {t.threshold}"
        verdict = "met" if t.met else "NOT met"
        lines.append(f"  bnlib {t.name}: {t.value:.2f} (target {goal}) {verdict}")
    return "\n".join(lines)
