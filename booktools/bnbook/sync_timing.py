"""Time the parts of a SyncBatchNorm training step on 2 processes; gloo on CPUs.

Run it with torchrun (the chapter "BatchNorm on many devices" does)::

    torchrun --standalone --nproc_per_node 2 -m bnbook.sync_timing OUT.json

Each process times training steps (forward and backward) of one SyncBatchNorm layer
with ``PER_PROCESS`` examples and ``C`` channels, and splits every step into three
parts that add up to it:

- **compute**: the time outside any collective (the layer's own arithmetic, autograd
  and Python);
- **wait**: inside a collective, until the last process has entered it (skew: this
  process was early and waits for the other);
- **transfer**: inside a collective, after the last process entered it (the round
  itself: messages out, messages in).

On one machine every process reads the same monotonic clock, so the entry times of
the processes can be compared directly; they are exchanged after each block of steps,
outside the timed steps. Two protocols are timed, in alternating blocks: the layer's
one all-gather forward, and a two-all-reduce forward (count and sum, then the
deviations ``M2_k + n_k (mu_k - mu)**2``), the protocol bnlib used before. Both have
the backward pass's one all-reduce. Process 0 writes, per protocol, every block's
mean parts and mean step time (seconds, averaged over the processes), each
collective's mean wait and transfer, and the collectives of one step (kind, values
sent).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

import bnlib.torch.sync as sync
from bnlib import shards
from bnlib.torch import SyncBatchNorm

C, PER_PROCESS, BLOCKS, STEPS = 256, 64, 10, 30
PARTS = ("compute", "wait", "transfer")
_collectives = {"all_reduce": dist.all_reduce, "all_gather": dist.all_gather}
events: list[tuple[str, int, float, float]] = []  # kind, size sent, enter, exit


def _timed(kind: str) -> Callable[..., Any]:
    """``dist.<kind>``, recording its size and its entry and exit times."""
    run = _collectives[kind]

    def collective(*args: Any, **kwargs: Any) -> Any:
        sent = args[0] if kind == "all_reduce" else args[1]
        enter = time.monotonic()
        out = run(*args, **kwargs)
        events.append((kind, sent.numel(), enter, time.monotonic()))
        return out

    return collective


def two_round_stats(local: shards.ShardStats, group: Any = None) -> shards.ShardStats:
    """The whole batch's statistics in two all-reduces, for comparison."""
    head = torch.from_numpy(np.concatenate([[local.count], local.count * local.mean]))
    dist.all_reduce(head, group=group)
    n = int(round(float(head[0])))
    mean = head[1:].numpy() / n if n else np.zeros_like(local.mean)
    m2 = torch.from_numpy(local.m2 + local.count * (local.mean - mean) ** 2)
    dist.all_reduce(m2, group=group)
    return shards.ShardStats(n, mean, m2.numpy())


def time_steps(step: Callable[[], None], steps: int) -> np.ndarray:
    """Run ``steps`` steps; per step: start, end and each collective's enter/exit."""
    rows = []
    for _ in range(steps):
        events.clear()
        start = time.monotonic()
        step()
        end = time.monotonic()
        rows.append([start, end, *(t for e in events for t in e[2:])])
    return np.array(rows)


def split_parts(times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per step, ``(compute, wait, transfer)`` from every process's time stamps.

    Parameters
    ----------
    times : ndarray, shape ``(P, steps, 2 + 2 k)``
        Per process and step: start, end, then the enter and exit times of each of
        the ``k`` collectives of a step.

    Returns
    -------
    parts : ndarray, shape ``(P, steps, 3)``
        Compute, wait and transfer; each row adds up to its process's step time.
    per_collective : ndarray, shape ``(P, steps, k, 2)``
        Wait and transfer of each collective.
    """
    enter, leave = times[..., 2::2], times[..., 3::2]
    last_in = enter.max(axis=0, keepdims=True)  # the slowest process's entry
    each = np.stack([last_in - enter, leave - last_in], axis=-1)
    wait, transfer = each.sum(axis=-2).transpose(2, 0, 1)
    compute = times[..., 1] - times[..., 0] - wait - transfer
    return np.stack([compute, wait, transfer], axis=-1), each


def _gather_times(local: np.ndarray, group: Any) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(local, dtype=np.float64))
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size(group))]
    _collectives["all_gather"](parts, t, group=group)
    return torch.stack(parts).numpy()


def _layer_step(group: Any) -> Callable[[], None]:
    layer = SyncBatchNorm(C, process_group=group)
    x = torch.randn(PER_PROCESS, C, requires_grad=True)
    dy = torch.randn(PER_PROCESS, C)

    def step() -> None:
        layer(x).backward(dy)

    step()  # the first call also checks the channel counts
    return step


def measure_pair(group: Any) -> dict[str, Any]:
    """Blocks of timed steps of both protocols, alternating; parts per block."""
    step = _layer_step(group)
    protocols = {"all_gather": sync.gather_stats, "two_all_reduces": two_round_stats}
    out: dict[str, Any] = {
        p: {"blocks": [], "each": [], "step": [], "sent": None} for p in protocols
    }
    for _ in range(BLOCKS):
        for name, merge in protocols.items():
            sync.gather_stats = merge
            try:
                step()  # warm: a first step after switching
                times = time_steps(step, STEPS)
                sent = [(kind, size) for kind, size, _, _ in events]
            finally:
                sync.gather_stats = protocols["all_gather"]
            every = _gather_times(times, group)
            parts, each = split_parts(every)
            out[name]["step"].append(float(np.mean(every[..., 1] - every[..., 0])))
            out[name]["blocks"].append(parts.mean(axis=(0, 1)).tolist())
            out[name]["each"].append(each.mean(axis=(0, 1)).tolist())
            out[name]["sent"] = sent
    return out


def main(out: str) -> None:
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    torch.set_num_threads(1)
    torch.manual_seed(dist.get_rank())
    dist.all_reduce, dist.all_gather = _timed("all_reduce"), _timed("all_gather")
    world = dist.get_world_size()
    results = measure_pair(None)
    if dist.get_rank() == 0:
        info = {"channels": C, "per_process": PER_PROCESS, "processes": world}
        info.update(blocks=BLOCKS, steps=STEPS, cores=len(os.sched_getaffinity(0)))
        info["parts"] = list(PARTS)
        with open(out, "w") as f:
            json.dump({"setup": info, "results": results}, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
