"""The benchmark's results, its targets, and the report it prints.

See Also
--------
bnbook.bench.runner : runs the benchmark and fills these in.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "PASSES",
    "PHASES",
    "CaseResult",
    "Report",
    "Target",
    "format_report",
    "verdict",
]

PHASES = ("forward", "backward", "both")
# Arrays the size of x that forward plus backward move through memory, in bnlib's
# passes: forward reads x (statistics), then reads x and writes y (3); backward reads
# dy and x (two sums), then reads dy and x and writes dx (5). The floor is the time
# to move these 8 at the copy bandwidth; the speed chapter counts them on bnlib.
PASSES = 8


@dataclass
class CaseResult:
    """Timings of one shape and dtype; ``seconds[impl][phase]`` are medians.

    ``limit_seconds`` is the floor: ``PASSES`` arrays of ``nbytes`` moved at the
    copy bandwidth.
    """

    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    seconds: dict[str, dict[str, float]]
    peak_bytes: dict[str, int | None]
    limit_seconds: float

    def ratio(self, impl: str, other: str, phase: str = "both") -> float:
        """Time of ``impl`` over time of ``other``: below 1 means ``impl`` is faster."""
        return self.seconds[impl][phase] / self.seconds[other][phase]

    def floors(self, impl: str = "bnlib") -> float:
        """Forward-plus-backward time in multiples of the floor, ``limit_seconds``:
        1 is as fast as memory allows (from main memory); 2 is twice as slow."""
        return self.seconds[impl]["both"] / self.limit_seconds


def verdict(mine: float, theirs: float, *, within: float = 0.1) -> str:
    """Plain words for a time ``mine`` against a time ``theirs``.

    "about as fast as" when the ratio is within ``within`` of 1 (both ends
    included), otherwise "faster than" or "slower than". Both speed pages use it,
    so that they describe the same ratio in the same words.
    """
    if not (mine > 0 and theirs > 0):
        raise ValueError(f"times must be positive, got {mine} and {theirs}")
    ratio = mine / theirs
    if 1 - within <= ratio <= 1 + within:
        return "about as fast as"
    return "faster than" if ratio < 1 else "slower than"


def _geomean(values: Sequence[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values))


@dataclass
class Target:
    """A target: ``value`` must be at most (or at least) ``threshold``."""

    name: str
    value: float
    threshold: float
    at_most: bool = False

    @property
    def met(self) -> bool:
        """Whether the measured value meets the target."""
        if self.at_most:
            return self.value <= self.threshold
        return self.value >= self.threshold


@dataclass
class Report:
    """A whole run: the machine, the copy bandwidth in bytes/s, and every case.

    ``compile_seconds`` holds the numba backend's first-call times, ``"cold"`` and
    ``"cached"`` (:func:`bnbook.bench.compile.compile_times`), when measured.
    """

    machine: dict[str, str]
    bandwidth: float
    cases: list[CaseResult]
    compile_seconds: dict[str, float] | None = None

    def _has(self, impl: str) -> bool:
        return bool(self.cases) and all(impl in c.seconds for c in self.cases)

    def targets(self) -> list[Target]:
        """The issue's targets for forward plus backward.

        numpy backend (``bnlib``): at least the textbook's speed on every case, twice
        it as a geometric mean. numba backend, float32 cases: at most 0.9 times
        PyTorch's time as a geometric mean and 1.2 times in the worst case, at most
        twice the floor on every case; a cached import plus first call under 3 s.
        Targets whose implementation was not run are left out.
        """
        vs_textbook = [c.ratio("textbook", "bnlib") for c in self.cases]
        out = [
            Target("numpy: textbook time / time, worst case", min(vs_textbook), 1.0),
            Target(
                "numpy: textbook time / time, geometric mean",
                _geomean(vs_textbook),
                2.0,
            ),
        ]
        f32 = [c for c in self.cases if c.dtype == "float32"]
        if self._has("numba") and f32:
            if self._has("torch"):
                vs = [c.ratio("numba", "torch") for c in f32]
                out.append(
                    Target(
                        "numba: time / torch time, float32 geometric mean",
                        _geomean(vs),
                        0.9,
                        True,
                    )
                )
                out.append(
                    Target(
                        "numba: time / torch time, float32 worst case",
                        max(vs),
                        1.2,
                        True,
                    )
                )
            worst = max(c.floors("numba") for c in f32)
            out.append(Target("numba: time in floors, worst float32", worst, 2.0, True))
        if self.compile_seconds is not None:
            cached = self.compile_seconds["cached"]
            out.append(
                Target("numba: cached import + first call (s)", cached, 3.0, True)
            )
        return out


def _time_rows(c: CaseResult) -> list[str]:
    rows = []
    for impl, phases in c.seconds.items():
        peak = c.peak_bytes.get(impl)
        ms = " ".join(
            f"{1e3 * phases[ph]:9.2f}" if ph in phases else "      n/a" for ph in PHASES
        )
        mem = "      n/a" if peak is None else f"{peak / c.nbytes:9.2f}"
        rows.append(f"{str(c.shape):18} {c.dtype:8} {impl:9} {ms} {mem}")
    return rows


def _ratio(c: CaseResult, impl: str, other: str) -> str:
    if impl in c.seconds and other in c.seconds:
        return f"{c.ratio(impl, other):9.2f}"
    return "      n/a"


def _floors(c: CaseResult, impl: str) -> str:
    return f"{c.floors(impl):9.2f}" if impl in c.seconds else "      n/a"


def _ratio_row(c: CaseResult) -> str:
    cols = [_ratio(c, "bnlib", "torch"), _ratio(c, "numba", "torch")]
    cols += [_ratio(c, "textbook", "bnlib"), f"{1e3 * c.limit_seconds:9.2f}"]
    cols += [_floors(c, impl) for impl in ("bnlib", "numba", "torch")]
    return f"{str(c.shape):18} {c.dtype:8} {' '.join(cols)}"


def _compile_lines(seconds: dict[str, float] | None) -> list[str]:
    if seconds is None:
        return [
            "numba compilation: not measured (numba not installed, or --no-compile)"
        ]
    return [
        "numba compilation, from `import bnlib` to the end of a first forward and",
        "  backward call on float32 batches (4-D and 2-D), in a fresh process:",
        f"  cold (empty cache, compiles the kernels): {seconds['cold']:.2f} s",
        f"  cached (loads them from numba's cache): {seconds['cached']:.2f} s",
    ]


def format_report(report: Report) -> str:
    """The report as plain text: the machine, times, ratios and the targets."""
    lines = [f"{k}: {v}" for k, v in report.machine.items()]
    lines += [
        f"bandwidth: {report.bandwidth / 1e9:.1f} GB/s (fastest np.copyto, one core; "
        "bytes read + written per second)",
        f"floor = {PASSES} x bytes(x) / bandwidth: the time to move the {PASSES} arrays"
        " the size of x",
        "  that forward + backward read and write (from main memory, one core)",
        "peak/x: peak memory numpy allocated during forward+backward (tracemalloc)",
        "  over bytes(x); torch's allocations are not traced",
        "",
        "median time (ms)",
        f"{'case':18} {'dtype':8} {'impl':9} {'forward':>9} {'backward':>9} "
        f"{'both':>9} {'peak/x':>9}",
    ]
    for c in report.cases:
        lines += _time_rows(c)
    lines += [
        "",
        "ratios, forward + backward: bnlib (numpy backend) and numba (numba backend)",
        "  time / torch time; textbook time / bnlib time; the floor (ms) and the",
        "  times of bnlib, numba and torch in multiples of it (1 = the floor)",
        f"{'case':18} {'dtype':8} {'bnlib/t':>9} {'numba/t':>9} {'textbook':>9} "
        f"{'floor ms':>9} {'bnlib':>9} {'numba':>9} {'torch':>9}",
    ]
    lines += [_ratio_row(c) for c in report.cases]
    lines += ["", *_compile_lines(report.compile_seconds)]
    lines += ["", "targets (forward + backward)"]
    for t in report.targets():
        goal = f"{'<=' if t.at_most else '>='} {t.threshold}"
        verdict = "met" if t.met else "NOT met"
        lines.append(f"  {t.name}: {t.value:.2f} (target {goal}) {verdict}")
    return "\n".join(lines)
