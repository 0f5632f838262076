"""bnlib.torch.SyncBatchNorm: 2 and 3 CPU processes (gloo) against one process.

One run of ``tests/sync_worker.py`` on three processes checks both sizes (the first
two processes form a process group of their own), as starting a process that imports
torch takes seconds; it uses a free port, and every process and every collective has
a timeout, so a hang fails the test instead of blocking.
The reference is PyTorch's own BatchNorm on the whole, concatenated batch.
"""

from __future__ import annotations

import datetime
import inspect
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sync_worker as sw
import torch
import torch.distributed as dist
import torch.nn.functional as F
from booksite import made_once_in_place

from bnlib.torch import BatchNorm1d, SyncBatchNorm
from bnlib.torch.sync import revert_sync_batchnorm

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TIMEOUT = 120  # seconds for a whole run; the workers' collectives time out at 60
TOL = 1e-10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tree_env(**extra: str) -> dict[str, str]:
    """The environment of a worker: this repository's root first on PYTHONPATH, so
    that the workers import the bnlib under test, not an installed one."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1", **extra)


def _env(rank: int, world: int, port: int) -> dict[str, str]:
    return _tree_env(
        RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )  # fmt: skip


def _assert_tree_under_test(ranks: list[dict[str, np.ndarray]]) -> None:
    for r in ranks:
        where = Path(str(r["bnlib_file"]))
        assert where.is_relative_to(ROOT.resolve()), f"a worker ran {where}"


def _wait(procs: list[subprocess.Popen]) -> None:
    try:
        logs = [p.communicate(timeout=TIMEOUT)[0] for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail(f"the processes did not finish within {TIMEOUT} s")
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log.decode()[-3000:]


def _load(out: Path, world: int) -> list[dict[str, np.ndarray]]:
    return [dict(np.load(out / f"rank{r}.npz")) for r in range(world)]


def _launch_three(out: Path) -> None:
    """Run ``sync_worker.py`` on three processes; each writes its outputs to ``out``."""
    world, port = 3, free_port()
    cmd = [sys.executable, str(HERE / "sync_worker.py"), str(out)]
    procs = [
        subprocess.Popen(
            cmd, env=_env(r, world, port), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for r in range(world)
    ]  # fmt: skip
    _wait(procs)


@pytest.fixture(scope="module")
def launch(tmp_path_factory):
    """One run of three processes per test run (shared by the xdist workers): what
    each wrote."""
    return _load(made_once_in_place(tmp_path_factory, "sync", _launch_three), 3)


def _group(ranks, world):
    """The outputs of the group of the first ``world`` processes, unprefixed."""
    prefix = f"w{world}/"
    return [
        {k.removeprefix(prefix): v for k, v in r.items() if k.startswith(prefix)}
        for r in ranks[:world]
    ]


@pytest.fixture(params=[2, 3], ids=["2 processes", "3 processes"])
def run(request, launch):
    """The outputs of every process of one group, and the group's size."""
    return _group(launch, request.param), request.param


def _reference(sizes, seed, dtype=np.float64, loc=0.5):
    """PyTorch's BatchNorm1d on the whole batch: the same steps as the worker."""
    x, dy, w, b = sw.batch(sum(sizes), seed, loc, dtype)
    x, dy = x.astype(np.float64), dy.astype(np.float64)
    x2 = sw.batch(sum(sizes), seed + 1, loc, dtype)[0].astype(np.float64)
    layer = torch.nn.BatchNorm1d(sw.C, momentum=0.3, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w))
        layer.bias.copy_(torch.from_numpy(b))
    xt = torch.tensor(x, requires_grad=True)
    y = layer(xt)
    y.backward(torch.tensor(dy))
    layer(torch.tensor(x2))
    y_eval = layer.eval()(torch.tensor(x))
    out = {"y": y, "dx": xt.grad, "dw": layer.weight.grad, "db": layer.bias.grad}
    out.update(rm=layer.running_mean, rv=layer.running_var, y_eval=y_eval)
    return {k: v.detach().numpy() for k, v in out.items()}


def _gathered(ranks, case):
    """Shards concatenated, parameter gradients summed, the rest from rank 0."""
    got = {k: np.concatenate([r[f"{case}/{k}"] for r in ranks]) for k in ("y", "dx")}
    got.update({k: sum(r[f"{case}/{k}"] for r in ranks) for k in ("dw", "db")})
    got.update({k: ranks[0][f"{case}/{k}"] for k in ("rm", "rv", "y_eval")})
    for k in ("rm", "rv", "nbt"):  # every process holds the same running statistics
        for r in ranks[1:]:
            np.testing.assert_array_equal(r[f"{case}/{k}"], ranks[0][f"{case}/{k}"])
    return got


def test_sync_workers_import_the_tree_under_test(launch):
    """Each worker reports ``bnlib.__file__``: inside this repository."""
    assert len(launch) == 3
    _assert_tree_under_test(launch)


@pytest.mark.parametrize("case", ["uneven", "empty"])
def test_sync_batch_norm_equals_one_process_on_whole_batch(run, case):
    ranks, world = run
    sizes = sw.SIZES[world] if case == "uneven" else sw.EMPTY[world]
    seed = 1 if case == "uneven" else 2
    got, want = _gathered(ranks, case), _reference(sizes, seed)
    for key, value in want.items():
        np.testing.assert_allclose(got[key], value, rtol=0, atol=TOL, err_msg=key)
    assert int(ranks[0][f"{case}/nbt"]) == 2


def test_sync_batch_norm_float32_far_from_zero(run):
    ranks, world = run
    got = _gathered(ranks, "far32")
    want = _reference(sw.SIZES[world], 3, np.float32, sw.FAR)
    # float32 resolves 1e4 to about 5e-4: that much of x - mean is lost in any case
    for key in ("y", "y_eval", "dx", "dw", "db"):
        np.testing.assert_allclose(got[key], want[key], rtol=0, atol=5e-3, err_msg=key)
    np.testing.assert_allclose(got["rm"], want["rm"], rtol=1e-7)
    np.testing.assert_allclose(got["rv"], want["rv"], rtol=1e-5)  # not 1e4**2 * eps


def test_sync_batch_norm_gathers_2c_plus_1_then_reduces_2c(run):
    """Channel check (first call only), one all-gather forward, one all-reduce
    backward; all-gathers are recorded with a minus sign."""
    ranks, _ = run
    c = sw.C
    for r in ranks:
        np.testing.assert_array_equal(r["uneven/train_calls"], [2, -(2 * c + 1), 2 * c])
        np.testing.assert_array_equal(r["uneven/second_calls"], [-(2 * c + 1)])
        assert int(r["uneven/eval_calls"]) == 0


def test_sync_batch_norm_in_ddp_matches_full_batch_training(run):
    ranks, world = run
    model = sw.make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for step in range(sw.STEPS):
        x, t = (torch.tensor(a) for a in sw.ddp_data(world, step))
        loss = F.cross_entropy(model(x), t)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for key, value in model.state_dict().items():
        for r in ranks:
            np.testing.assert_allclose(
                r[f"ddp/{key}"], value.numpy(), rtol=0, atol=TOL, err_msg=key
            )


def test_sync_batch_norm_bad_setups_raise_on_every_process(run):
    ranks, world = run
    for rank, r in enumerate(ranks):
        layers, inputs, one_value, tracked = r["errors"]
        assert "disagree on the number of channels" in layers
        assert "more than 1 value per channel when training, got 1" in one_value
        assert tracked == "batches tracked: 0"  # the failed call changed nothing
        if rank == world - 1:
            assert "expected input with 3 channels, got 4" in inputs
        else:
            assert "on another process the input does not have" in inputs


# -- one process: no communication ----------------------------------------------


def _same_as_plain(layer: torch.nn.Module) -> None:
    x = torch.randn(
        6, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    dy = torch.randn_like(x)
    plain = BatchNorm1d(3, dtype=torch.float64)
    outs = []
    for m in (layer, plain):
        xt = x.clone().requires_grad_()
        m(xt).backward(dy)
        outs.append((xt.grad, m.weight.grad, m.running_var))
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=TOL)


def test_sync_batch_norm_without_process_group_is_plain_batch_norm():
    assert not dist.is_initialized()
    _same_as_plain(SyncBatchNorm(3, dtype=torch.float64))


def test_sync_batch_norm_in_group_of_one_is_plain_batch_norm():
    """Also the chapter's claim about torch's own layer: under an initialized process
    group (even of one process) it refuses CPU tensors in training mode only."""
    store = dist.TCPStore("127.0.0.1", free_port(), 1, True)
    dist.init_process_group(
        "gloo", store=store, rank=0, world_size=1,
        timeout=datetime.timedelta(seconds=30),
    )  # fmt: skip
    try:
        _same_as_plain(SyncBatchNorm(3, dtype=torch.float64))
        theirs, x = torch.nn.SyncBatchNorm(3), torch.randn(4, 3)
        with pytest.raises(ValueError, match="expected input tensor to be on GPU"):
            theirs(x)
        torch.testing.assert_close(theirs.eval()(x), x / (1 + theirs.eps) ** 0.5)
    finally:
        dist.destroy_process_group()


def test_torch_sync_batch_norm_trains_on_cpu_without_process_group():
    assert not dist.is_initialized()
    theirs, ref = torch.nn.SyncBatchNorm(3), torch.nn.BatchNorm1d(3)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(theirs(x), ref(x))
    torch.testing.assert_close(theirs.running_var, ref.running_var)


@pytest.mark.parametrize("theirs", [True, False], ids=["torch's", "bnlib's"])
def test_revert_sync_batchnorm_gives_plain_batch_norm_sharing_state(theirs):
    """A trained model converted to SyncBatchNorm and back computes what it did,
    in both modes, and keeps the very same tensors."""
    cls = torch.nn.SyncBatchNorm if theirs else SyncBatchNorm
    model = sw.make_model()
    x = torch.randn(6, sw.FEATURES, dtype=torch.float64)
    want_train = model(x)  # also moves the running statistics once
    want_eval = model.eval()(x)
    weight, running_var = model[1].weight, model[1].running_var
    synced = cls.convert_sync_batchnorm(model)
    assert isinstance(synced[1], cls)
    back = revert_sync_batchnorm(synced, torch.nn.BatchNorm1d)
    assert type(back[1]) is torch.nn.BatchNorm1d and not back[1].training
    assert back[1].weight is weight and back[1].running_var is running_var
    assert int(back[1].num_batches_tracked) == 1
    torch.testing.assert_close(back(x), want_eval, rtol=0, atol=TOL)
    lone = revert_sync_batchnorm(cls(4).train())
    assert type(lone) is torch.nn.BatchNorm2d and lone.training
    torch.testing.assert_close(back.train()(x), want_train, rtol=0, atol=TOL)


def test_convert_sync_batchnorm_shares_parameters_and_buffers():
    model = sw.make_model()
    bn = model[1]
    converted = SyncBatchNorm.convert_sync_batchnorm(model)
    assert isinstance(converted[1], SyncBatchNorm)
    assert converted[1].weight is bn.weight
    assert converted[1].running_var is bn.running_var
    single = SyncBatchNorm.convert_sync_batchnorm(torch.nn.BatchNorm2d(4).eval())
    assert isinstance(single, SyncBatchNorm) and not single.training


def test_sync_batch_norm_signature_is_torchs():
    ours = inspect.signature(SyncBatchNorm.__init__).parameters
    theirs = inspect.signature(torch.nn.SyncBatchNorm.__init__).parameters
    assert [(p.name, p.kind, p.default) for p in ours.values()] == [
        (p.name, p.kind, p.default) for p in theirs.values()
    ]


def test_sync_batch_norm_without_bias_matches_torch():
    layer = SyncBatchNorm(3, bias=False, dtype=torch.float64)
    ref = torch.nn.BatchNorm1d(3, bias=False, dtype=torch.float64)
    assert layer.bias is None
    x = torch.randn(
        5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    dy = torch.randn_like(x)
    grads = []
    for m in (layer, ref):
        xt = x.clone().requires_grad_()
        m(xt).backward(dy)
        grads.append((xt.grad, m.weight.grad))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=TOL)
    converted = SyncBatchNorm.convert_sync_batchnorm(ref)
    assert converted.bias is None and converted.weight is ref.weight


def test_sync_batch_norm_momentum_none_is_cumulative_average():
    layer, ref = SyncBatchNorm(2, momentum=None), torch.nn.BatchNorm1d(2, momentum=None)
    for seed in range(3):
        x = torch.randn(5, 2, generator=torch.Generator().manual_seed(seed))
        layer(x), ref(x)
    torch.testing.assert_close(layer.running_var, ref.running_var)
    assert int(layer.num_batches_tracked) == 3


def test_sync_batch_norm_errors():
    layer = SyncBatchNorm(3)
    with pytest.raises(ValueError, match="at least 2D"):
        layer(torch.randn(3))
    with pytest.raises(ValueError, match="expected input with 3 channels"):
        layer(torch.randn(4, 2))
    with pytest.raises(TypeError, match="float32 or float64"):
        layer(torch.ones(4, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        layer(np.ones((4, 3)))


def test_sync_batch_norm_under_torchrun(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [
        str(torchrun), "--standalone", "--nproc_per_node", "2",
        str(HERE / "sync_worker.py"), str(tmp_path),
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, env=_tree_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    _wait([proc])
    _assert_tree_under_test(_load(tmp_path, 2))
    ranks = _group(_load(tmp_path, 2), 2)
    got, want = _gathered(ranks, "uneven"), _reference(sw.SIZES[2], 1)
    for key, value in want.items():
        np.testing.assert_allclose(got[key], value, rtol=0, atol=TOL, err_msg=key)


def test_split_parts_adds_up_and_charges_the_wait_to_the_early_process():
    """Two processes, one collective: process 0 enters at 1.0, process 1 at 3.0,
    both leave at 3.5; the parts are written by hand from those times."""
    from bnbook.sync_timing import split_parts

    # per process, one step: start, end, enter, exit
    times = np.array([[[0.0, 4.0, 1.0, 3.5]], [[0.5, 4.5, 3.0, 3.5]]])
    parts, each = split_parts(times)
    np.testing.assert_allclose(parts[0, 0], [1.0 + 0.5, 2.0, 0.5])
    np.testing.assert_allclose(parts[1, 0], [2.5 + 1.0, 0.0, 0.5])
    np.testing.assert_allclose(parts.sum(-1), times[..., 1] - times[..., 0])
    np.testing.assert_allclose(each[:, 0, 0], [[2.0, 0.5], [0.0, 0.5]])
