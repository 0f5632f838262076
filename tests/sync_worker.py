"""One process of a SyncBatchNorm run, for tests/test_sync.py.

Launched by tests/test_sync.py as 3 subprocesses, or by torchrun; both set RANK,
WORLD_SIZE, MASTER_ADDR and MASTER_PORT. Usage: ``python sync_worker.py OUT``.
Every process generates the same whole batches (fixed seeds) and works on its own
shard; it writes what it computed to ``OUT/rank<r>.npz`` (keys ``w<P>/...`` for a
group of ``P`` processes), and the test compares the shards with one process on the
whole batch. All checks share one run, because starting processes that import torch
costs seconds: the first two processes, as a process group of their own, check the
2-process case, then all of them the 3-process case.

The worker imports the bnlib of the repository it sits in, never an installed one:
the repository root goes first on ``sys.path`` (the launching test also puts it on
``PYTHONPATH``), and ``OUT/rank<r>.npz`` records ``bnlib.__file__`` so the test can
check which tree ran.
"""

from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tree under test, before any installed bnlib

import bnlib  # noqa: E402
from bnlib.torch import SyncBatchNorm  # noqa: E402

C, L = 3, 2
SIZES = {2: [3, 5], 3: [2, 1, 6]}  # uneven shards, one of a single example
EMPTY = {2: [0, 7], 3: [4, 0, 5]}  # one process holds no example
PER_RANK, STEPS, FEATURES, CLASSES = 4, 3, 4, 3
FAR = 1e4

calls: list[int] = []  # per collective: all-reduce +size, all-gather -size sent
_all_reduce, _all_gather = dist.all_reduce, dist.all_gather


def _counting_all_reduce(tensor, *args, **kwargs):
    calls.append(tensor.numel())
    return _all_reduce(tensor, *args, **kwargs)


def _counting_all_gather(tensors, tensor, *args, **kwargs):
    calls.append(-tensor.numel())
    return _all_gather(tensors, tensor, *args, **kwargs)


def batch(n, seed, loc=0.5, dtype=np.float64):
    """A whole batch ``(n, C, L)``, its upstream gradient, and gamma, beta."""
    rng = np.random.default_rng(seed)
    x = (loc + 2.0 * rng.normal(size=(n, C, L))).astype(dtype)
    dy = rng.normal(size=(n, C, L)).astype(dtype)
    return x, dy, rng.normal(size=C), rng.normal(size=C)


def ddp_data(world, step):
    """A whole batch of the DDP training run: inputs and labels."""
    rng = np.random.default_rng(100 + step)
    n = world * PER_RANK
    return rng.normal(size=(n, FEATURES)), rng.integers(0, CLASSES, size=n)


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(FEATURES, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, CLASSES)
    ).double()


def _shard(a, sizes, rank):
    lo = sum(sizes[:rank])
    return a[lo : lo + sizes[rank]]


def layer_case(rank, group, sizes, seed, dtype=np.float64, loc=0.5):
    """Two training steps (the first with a backward pass), then evaluation."""
    n = sum(sizes)
    x, dy, w, b = batch(n, seed, loc, dtype)
    x2 = batch(n, seed + 1, loc, dtype)[0]
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    layer = SyncBatchNorm(C, momentum=0.3, process_group=group, dtype=tdt)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w))
        layer.bias.copy_(torch.from_numpy(b))
    xs = torch.tensor(_shard(x, sizes, rank), requires_grad=True)
    calls.clear()
    y = layer(xs)
    y.backward(torch.tensor(_shard(dy, sizes, rank)))
    train_calls = list(calls)
    calls.clear()
    layer(torch.tensor(_shard(x2, sizes, rank)))
    second_calls = list(calls)
    layer.eval()
    calls.clear()
    y_eval = layer(torch.tensor(x))  # the whole batch: no shard is empty
    out = {
        "y": y.detach(), "dx": xs.grad, "dw": layer.weight.grad,
        "db": layer.bias.grad, "rm": layer.running_mean, "rv": layer.running_var,
        "y_eval": y_eval, "nbt": layer.num_batches_tracked,
    }  # fmt: skip
    out = {k: v.detach().numpy() for k, v in out.items()}
    out["train_calls"] = np.array(train_calls)
    out["second_calls"] = np.array(second_calls)
    out["eval_calls"] = np.array(len(calls))
    return out


def ddp_case(rank, world, group):
    """A few SGD steps of a small network inside DistributedDataParallel."""
    model = SyncBatchNorm.convert_sync_batchnorm(make_model(), group)
    ddp = DistributedDataParallel(model, process_group=group)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.5)
    sizes = [PER_RANK] * world
    for step in range(STEPS):
        x, t = ddp_data(world, step)
        xs, ts = (torch.tensor(_shard(a, sizes, rank)) for a in (x, t))
        loss = F.cross_entropy(ddp(xs), ts)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


def error_case(rank, world, group):
    """Mismatched channel counts, one value in all: every process raises, none hangs."""
    messages = []
    setups = [
        (3 if rank == 0 else 4, None, 4),  # the layers disagree
        (3, 4 if rank == world - 1 else 3, 4),  # one input does not fit its layer
        (3, None, 1 if rank == 0 else 0),  # one value per channel over all processes
    ]
    for features, channels, n in setups:
        layer = SyncBatchNorm(features, process_group=group, dtype=torch.float64)
        x = torch.randn(n, channels or features, dtype=torch.float64)
        try:
            layer(x)
            messages.append("no error")
        except ValueError as err:
            messages.append(str(err))
    messages.append(f"batches tracked: {int(layer.num_batches_tracked)}")
    return {"errors": np.array(messages)}


def checks(rank, world, group):
    """Every check of one process group of ``world`` processes, keyed by name."""
    cases = {
        "uneven": dict(sizes=SIZES[world], seed=1),
        "empty": dict(sizes=EMPTY[world], seed=2),
        "far32": dict(sizes=SIZES[world], seed=3, dtype=np.float32, loc=FAR),
    }
    results = {}
    for name, kwargs in cases.items():
        for key, v in layer_case(rank, group, **kwargs).items():
            results[f"{name}/{key}"] = v
    for key, v in ddp_case(rank, world, group).items():
        results[f"ddp/{key}"] = v
    results.update(error_case(rank, world, group))
    return results


def main(out: Path) -> None:
    """Run the checks on the first 2 processes (a subgroup) and on all of them."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    dist.all_reduce, dist.all_gather = _counting_all_reduce, _counting_all_gather
    torch.set_num_threads(1)
    sizes = [p for p in SIZES if p <= world]
    groups = {p: dist.new_group(list(range(p))) if p < world else None for p in sizes}
    results = {}
    for p, group in groups.items():
        if rank < p:
            results.update({f"w{p}/{k}": v for k, v in checks(rank, p, group).items()})
        dist.barrier()  # the others wait until this group is done
    dist.destroy_process_group()
    results["bnlib_file"] = np.array(str(Path(bnlib.__file__).resolve()))
    np.savez(out / f"rank{rank}.npz", **results)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
