"""Time bnlib's SyncBatchNorm on 1, 2, ... processes of one launch; gloo on CPUs.

Run it with torchrun (the chapter "BatchNorm on many devices" does)::

    torchrun --standalone --nproc_per_node 4 -m bnbook.sync_timing OUT.json

Process groups of the first 1, 2, 4, ... processes each time a training step
(forward and backward) of one SyncBatchNorm layer, with ``PER_PROCESS`` examples and
``C`` channels per process, and one bare all-reduce of ``2 C`` floats. A group of
one process runs plain BatchNorm: the baseline. Process 0 writes the median times
(seconds) and the sizes of the tensors SyncBatchNorm all-reduced in one step.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import timedelta

import torch
import torch.distributed as dist

from bnlib.torch import SyncBatchNorm

C, PER_PROCESS, REPEATS = 256, 64, 30
sizes: list[int] = []
_all_reduce = dist.all_reduce


def _recording_all_reduce(tensor, *args, **kwargs):
    sizes.append(tensor.numel())
    return _all_reduce(tensor, *args, **kwargs)


def median_time(fn) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[REPEATS // 2]


def measure(group) -> dict[str, float]:
    """Median seconds of a SyncBatchNorm step and of a bare all-reduce."""
    layer = SyncBatchNorm(C, process_group=group)
    x = torch.randn(PER_PROCESS, C, requires_grad=True)
    dy = torch.randn(PER_PROCESS, C)

    def step():
        layer(x).backward(dy)

    step()  # the first call also checks the channel counts
    sizes.clear()
    step()
    sent = list(sizes)
    buf = torch.zeros(2 * C, dtype=torch.float64)
    return {
        "step": median_time(step),
        "all_reduce": median_time(lambda: _all_reduce(buf, group=group)),
        "sizes": sent,
    }


def main(out: str) -> None:
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    torch.set_num_threads(1)
    dist.all_reduce = _recording_all_reduce
    rank, world = dist.get_rank(), dist.get_world_size()
    counts = [p for p in (1, 2, 4, 8) if p <= world]
    groups = {p: dist.new_group(list(range(p))) for p in counts}
    results = {}
    for p in counts:
        if rank < p:
            results[p] = measure(groups[p])
        _all_reduce(torch.zeros(1))  # everyone waits until this group is done
    if rank == 0:
        info = {"channels": C, "per_process": PER_PROCESS, "repeats": REPEATS}
        info["cores"] = len(os.sched_getaffinity(0))
        with open(out, "w") as f:
            json.dump({"setup": info, "results": results}, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
