"""bnlib.torch as a PyTorch 2 citizen: custom operators, compile, export, float16,
bfloat16 and autocast, forward-mode AD, and the frozen statistics of eval mode.

The reference is always PyTorch's own layer or function (torch 2.13 here). Float64
comparisons use 1e-10. Float16 and bfloat16 outputs may differ from torch's by one
rounding of the float32 result, so they are compared with ``rtol = atol =`` the
dtype's machine epsilon (one unit in the last place); float32 statistics and
parameter gradients, summed in a different order, with 1e-5.
"""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import bnlib.torch as bt
from bnlib._checks import MixedDtypeError
from bnlib.torch import _inputs, _ops

TOL = 1e-10
LOW = [torch.float16, torch.bfloat16]


def _rand(shape, seed, dtype=torch.float64, scale=1.0, loc=0.0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(shape, generator=g, dtype=torch.float64)
        .mul(scale)
        .add(loc)
        .to(dtype)
    )


def _net(dtype=torch.float64):
    """A small conv net with two BatchNorm layers, trained a little (buffers moved)."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 5, 3), nn.BatchNorm2d(5), nn.Flatten(), nn.Linear(5 * 16, 2),
    ).to(dtype)  # fmt: skip
    with torch.no_grad():
        for bn in (net[1], net[4]):
            bn.weight.normal_()
            bn.bias.normal_()
        net(_rand((6, 3, 8, 8), 1, dtype, 2.0, 1.0))
    return net


def _pair(dtype=torch.float64):
    """torch's net and a converted copy with the same state."""
    ref, ours = _net(dtype), _net(dtype)
    return ref, bt.convert(ours)


def _step(model, x, v):
    """Output, input gradient and parameter gradients of ``sum(model(x) * v)``."""
    x = x.clone().requires_grad_()
    model.zero_grad()
    y = model(x)
    (y * v).sum().backward()
    return [y.detach(), x.grad, *(p.grad for p in model.parameters())]


# -- the operators ----------------------------------------------------------------


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_op_passes_opcheck(training):
    """torch's own checker: schema, fake tensor, autograd registration, tracing."""
    x = _rand((5, 3, 4), 0).requires_grad_()
    w, b = _rand((3,), 1).requires_grad_(), _rand((3,), 2).requires_grad_()
    rm, rv = _rand((3,), 3), _rand((3,), 4).abs() + 0.5
    args = (x, w, b, rm, rv, training, 0.1, 1e-5, None)
    torch.library.opcheck(torch.ops.bnlib.batch_norm.default, args)
    dy = _rand((5, 3, 4), 5)
    stats = (None, None) if training else (rm, rv)
    torch.library.opcheck(
        torch.ops.bnlib.batch_norm_backward.default,
        (dy, x.detach(), w.detach(), *stats, 1e-5),
    )


def test_batch_norm_op_leaves_its_inputs_unchanged():
    x, rm, rv = _rand((5, 3), 0), _rand((3,), 1), _rand((3,), 2).abs()
    before = [t.clone() for t in (x, rm, rv)]
    y, mean, var = _ops.batch_norm(x, None, None, rm, rv, True, 0.1, 1e-5)
    for t, old in zip((x, rm, rv), before, strict=True):
        assert torch.equal(t, old)
    ref_m, ref_v = rm.clone(), rv.clone()
    F.batch_norm(x, ref_m, ref_v, training=True)
    torch.testing.assert_close(mean, ref_m, rtol=0, atol=TOL)
    torch.testing.assert_close(var, ref_v, rtol=0, atol=TOL)


# -- torch.compile and torch.export ----------------------------------------------


@pytest.mark.parametrize("training", [True, False])
def test_compile_converted_net_has_no_graph_break(training):
    _, ours = _pair()
    ours.train(training)
    explanation = torch._dynamo.explain(ours)(_rand((4, 3, 8, 8), 2))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


@pytest.mark.parametrize("training", [True, False])
def test_compile_fullgraph_matches_torch(training):
    """Compiled (fullgraph, AOT autograd) bnlib net against eager torch: outputs,
    gradients and running statistics over two steps."""
    ref, ours = _pair()
    ref.train(training), ours.train(training)
    torch._dynamo.reset()
    compiled = torch.compile(ours, fullgraph=True, backend="aot_eager")
    for step in range(2):
        x, v = _rand((4, 3, 8, 8), 10 + step, loc=1.0), _rand((4, 2), 20 + step)
        for a, b in zip(_step(compiled, x, v), _step(ref, x, v), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=TOL)
    torch.testing.assert_close(ours.state_dict(), ref.state_dict(), rtol=0, atol=TOL)


def test_compile_momentum_none_reads_the_count_inside_the_operator():
    """A cumulative average (``momentum=None``) needs ``1 / num_batches_tracked``;
    compiled, it neither breaks the graph nor drifts from torch over three steps."""
    ref = nn.BatchNorm1d(3, momentum=None, dtype=torch.float64)
    ours = bt.BatchNorm1d(3, momentum=None, dtype=torch.float64)
    explanation = torch._dynamo.explain(ours)(_rand((5, 3), 0))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    ours.reset_running_stats()
    torch._dynamo.reset()
    compiled = torch.compile(ours, fullgraph=True, backend="aot_eager")
    for step in range(3):
        x = _rand((5, 3), 1 + step, scale=1 + step, loc=step)
        torch.testing.assert_close(compiled(x), ref(x), rtol=0, atol=TOL)
    torch.testing.assert_close(ours.state_dict(), ref.state_dict(), rtol=0, atol=TOL)


def test_export_eval_converted_net_equals_eager():
    ref, ours = _pair()
    ref.eval(), ours.eval()
    x = _rand((4, 3, 8, 8), 3)
    program = torch.export.export(ours, (x,))
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert "bnlib.batch_norm.default" in targets
    assert "aten.batch_norm" not in " ".join(targets)
    exported = program.module()(x)
    assert torch.equal(exported, ours(x))
    torch.testing.assert_close(exported, ref(x), rtol=0, atol=TOL)


def test_saved_export_loads_once_bnlib_torch_registers_the_operator(tmp_path):
    """migration.md: a process that loads the program must import bnlib.torch."""
    import subprocess
    import sys

    _, ours = _pair()
    x = _rand((4, 3, 8, 8), 3)
    torch.export.save(torch.export.export(ours.eval(), (x,)), tmp_path / "net.pt2")
    torch.save({"x": x, "y": ours(x)}, tmp_path / "xy.pt")
    script = (
        "import sys, torch\n"
        "if sys.argv[1] == 'yes': import bnlib.torch\n"
        f"d = torch.load({str(tmp_path / 'xy.pt')!r})\n"
        f"p = torch.export.load({str(tmp_path / 'net.pt2')!r})\n"
        "assert torch.equal(p.module()(d['x']), d['y'])\n"
    )
    runs = {
        flag: subprocess.run(
            [sys.executable, "-c", script, flag], capture_output=True, text=True
        )
        for flag in ("yes", "no")
    }
    assert runs["yes"].returncode == 0, runs["yes"].stderr
    assert runs["no"].returncode != 0
    assert "bnlib" in runs["no"].stderr


# -- float16, bfloat16, autocast --------------------------------------------------


def _assert_close_low(ours, ref, dtype):
    assert ours.dtype == ref.dtype
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(ours.float(), ref.float(), rtol=eps, atol=eps)


@pytest.mark.parametrize("layer_dtype", [torch.float32, "input"])
@pytest.mark.parametrize("dtype", LOW)
def test_low_precision_input_behaves_as_torch(dtype, layer_dtype):
    """A float16/bfloat16 batch through a float32 layer, or a layer of its own dtype:
    torch's output dtype and gradient dtypes, its values to one rounding."""
    ldt = dtype if layer_dtype == "input" else layer_dtype
    ref = nn.BatchNorm2d(3, dtype=ldt)
    ours = bt.BatchNorm2d(3, dtype=ldt)
    with torch.no_grad():
        ref.weight.normal_(), ref.bias.normal_()
    ours.load_state_dict(ref.state_dict())
    for mode in (True, False):
        ref.train(mode), ours.train(mode)
        x = _rand((8, 3, 5, 5), 4, dtype, 3.0, 2.0)
        dy = _rand((8, 3, 5, 5), 5, dtype)
        got, want = _step_layer(ours, x, dy), _step_layer(ref, x, dy)
        for a, b in zip(got[:2], want[:2], strict=True):  # y, dx: the input's dtype
            _assert_close_low(a, b, dtype)
        # the layer's dtype: float32 sums in another order, or one more rounding
        tol = 1e-5 if ldt == torch.float32 else torch.finfo(ldt).eps
        for a, b in zip(got[2:], want[2:], strict=True):  # dweight, dbias
            assert a.dtype == b.dtype == ldt
            torch.testing.assert_close(a.float(), b.float(), rtol=tol, atol=tol)
        for name in ("running_mean", "running_var"):
            a, b = getattr(ours, name), getattr(ref, name)
            assert a.dtype == b.dtype == ldt
            torch.testing.assert_close(a.float(), b.float(), rtol=tol, atol=tol)


def _step_layer(layer, x, dy):
    layer.zero_grad()
    x = x.clone().requires_grad_()
    y = layer(x)
    y.backward(dy)
    return [y.detach(), x.grad, layer.weight.grad, layer.bias.grad]


@pytest.mark.parametrize("dtype", LOW)
def test_cpu_autocast_converted_net_behaves_as_torch(dtype):
    """Under ``torch.autocast("cpu")`` convolutions return ``dtype``, BatchNorm keeps
    its input's dtype in both libraries; outputs and gradients agree."""
    ref, ours = _pair(torch.float32)
    x, v = _rand((4, 3, 8, 8), 6, torch.float32), _rand((4, 2), 7, torch.float32)
    with torch.autocast("cpu", dtype=dtype):
        got, want = _step(ours, x, v), _step(ref, x, v)
        assert bt.BatchNorm2d(3)(x[:, :, :1]).dtype == torch.float32
    assert got[0].dtype == want[0].dtype
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype
        # A one-ulp difference after the first BN goes through the next
        # convolution in bfloat16: a few ulps at the end, scaled by the values.
        scale = 8 * torch.finfo(dtype).eps * max(1.0, b.abs().max().item())
        torch.testing.assert_close(a.float(), b.float(), rtol=0, atol=scale)
    for key, value in ref.state_dict().items():
        assert ours.state_dict()[key].dtype == value.dtype


@pytest.mark.parametrize(
    ("input_dtype", "layer_dtype"),
    [
        (torch.float64, torch.float32),
        (torch.float32, torch.float64),
        (torch.float32, torch.float16),
        (torch.bfloat16, torch.float16),
        (torch.float16, torch.float64),
    ],
)
def test_mixed_dtypes_raise_where_torch_raises(input_dtype, layer_dtype):
    x = torch.ones(4, 3, dtype=input_dtype)
    with pytest.raises(RuntimeError, match="mixed dtype"):
        nn.BatchNorm1d(3, dtype=layer_dtype)(x)
    layer = bt.BatchNorm1d(3, dtype=layer_dtype)
    with pytest.raises(MixedDtypeError, match=f"the input is {input_dtype}"):
        layer(x)
    assert int(layer.num_batches_tracked) == 0


def test_low_precision_input_with_half_float32_parameters_raises():
    """torch: all parameters float32, or all of the input's dtype."""
    x = torch.ones(4, 3, dtype=torch.float16)
    w = torch.ones(3)
    with pytest.raises(RuntimeError, match="mixed dtype"):
        F.batch_norm(x, None, None, w, torch.zeros(3, dtype=torch.float16), True)
    with pytest.raises(MixedDtypeError, match="float16, torch.float32"):
        bt.batch_norm(x, None, None, w, torch.zeros(3, dtype=torch.float16), True)


# -- forward-mode AD, vmap, double backward ---------------------------------------


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (3, 3, 2, 4)])
def test_func_jvp_matches_torch(training, shape):
    x, w, b = _rand(shape, 0, loc=1.0), _rand((3,), 1), _rand((3,), 2)
    rm, rv = _rand((3,), 3), _rand((3,), 4).abs() + 0.5
    tangents = (_rand(shape, 5), _rand((3,), 6), _rand((3,), 7))

    def ours(x, w, b):
        return bt.batch_norm(x, rm.clone(), rv.clone(), w, b, training)

    def theirs(x, w, b):
        return F.batch_norm(x, rm.clone(), rv.clone(), w, b, training)

    y1, t1 = torch.func.jvp(ours, (x, w, b), tangents)
    y2, t2 = torch.func.jvp(theirs, (x, w, b), tangents)
    torch.testing.assert_close(y1, y2, rtol=0, atol=TOL)
    torch.testing.assert_close(t1, t2, rtol=0, atol=TOL)


@pytest.mark.parametrize("training", [True, False])
def test_forward_ad_dual_numbers_through_converted_net_match_torch(training):
    ref, ours = _pair()
    ref.train(training), ours.train(training)
    x, tx = _rand((4, 3, 8, 8), 8, loc=1.0), _rand((4, 3, 8, 8), 9)
    import torch.autograd.forward_ad as fwAD

    tangents = []
    for model in (ours, ref):
        with fwAD.dual_level():
            tangents.append(fwAD.unpack_dual(model(fwAD.make_dual(x, tx))).tangent)
    torch.testing.assert_close(tangents[0], tangents[1], rtol=0, atol=TOL)
    torch.testing.assert_close(ours.state_dict(), ref.state_dict(), rtol=0, atol=TOL)


def test_func_jvp_through_running_statistics_raises():
    x, rm, rv = _rand((5, 3), 0), _rand((3,), 1), _rand((3,), 2).abs() + 0.5

    def f(rm):
        return bt.batch_norm(x, rm, rv, training=False)

    with pytest.raises(RuntimeError, match="forward-mode AD through .* running stat"):
        torch.func.jvp(f, (rm,), (torch.ones(3, dtype=torch.float64),))


def test_func_vmap_raises_naming_the_limitation():
    xs = _rand((2, 5, 3), 0)
    with pytest.raises(RuntimeError, match=r"vmap over bnlib.torch.*not supported"):
        torch.func.vmap(lambda x: bt.batch_norm(x, None, None, training=True))(xs)


def test_func_double_grad_raises():
    x = _rand((5, 3), 0)

    def loss(x):
        return bt.batch_norm(x, None, None, training=True).pow(3).sum()

    assert torch.func.grad(loss)(x).shape == x.shape
    with pytest.raises(RuntimeError, match="double backward .* not supported"):
        torch.func.grad(lambda x: torch.func.grad(loss)(x).sum())(x)


# -- eval-mode backward uses the statistics of its forward pass --------------------


def test_eval_backward_uses_frozen_copies_of_the_running_statistics():
    """The buffers move between forward and backward (in place, then by a training
    step); the gradients are still those of the statistics the forward used."""
    ref, ours = (
        nn.BatchNorm1d(3, dtype=torch.float64),
        bt.BatchNorm1d(3, dtype=torch.float64),
    )
    with torch.no_grad():
        ref.running_mean.copy_(_rand((3,), 0))
        ref.running_var.copy_(_rand((3,), 1).abs() + 0.5)
        ref.weight.copy_(_rand((3,), 2))
    ours.load_state_dict(ref.state_dict())
    x, dy = _rand((6, 3), 3), _rand((6, 3), 4)
    want = _step_layer(ref.eval(), x, dy)
    xs = x.clone().requires_grad_()
    y = ours.eval()(xs)
    with torch.no_grad():
        ours.running_mean.mul_(-3.0).add_(5.0)
        ours.running_var.mul_(7.0)
    ours.train()(_rand((6, 3), 5, loc=4.0))  # a training step moves them again
    y.backward(dy)
    got = [y.detach(), xs.grad, ours.weight.grad, ours.bias.grad]
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=TOL)


# -- torch versions: the bias keyword ----------------------------------------------


def test_layers_without_bias_keyword_in_old_torch(monkeypatch):
    """Where torch's BatchNorm has no ``bias`` keyword, convert, revert and
    SyncBatchNorm never pass it, and asking for ``bias=False`` says why it fails."""
    base = torch.nn.modules.batchnorm._BatchNorm
    original = base.__init__

    def old_init(self, *args, **kwargs):
        if "bias" in kwargs:
            raise TypeError("__init__() got an unexpected keyword argument 'bias'")
        original(self, *args, **kwargs)

    monkeypatch.setattr(base, "__init__", old_init)
    monkeypatch.setattr(_inputs, "_HAS_BIAS", False)
    model = nn.Sequential(nn.BatchNorm1d(3), nn.BatchNorm1d(3, affine=False))
    bt.convert(model)
    assert [type(m) for m in model] == [bt.BatchNorm1d, bt.BatchNorm1d]
    bt.revert(model)
    assert [type(m) for m in model] == [nn.BatchNorm1d, nn.BatchNorm1d]
    assert bt.SyncBatchNorm(3).bias is not None
    bt.SyncBatchNorm.convert_sync_batchnorm(model)
    with pytest.raises(TypeError, match="bias=False needs a torch"):
        bt.SyncBatchNorm(3, bias=False)


def test_bias_keyword_detected_in_this_torch():
    params = inspect.signature(torch.nn.BatchNorm1d).parameters
    assert _inputs._HAS_BIAS == ("bias" in params)


# -- threads ---------------------------------------------------------------------


def test_eval_mode_threads_share_one_converted_model():
    """Evaluation writes nothing: four threads running forward and backward on one
    model get the results of running one after another, and the state is kept."""
    from concurrent.futures import ThreadPoolExecutor

    _, ours = _pair()
    ours.eval()
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    batches = [(_rand((4, 3, 8, 8), 30 + i), _rand((4, 2), 40 + i)) for i in range(8)]

    def job(batch):
        x, v = batch
        x = x.clone().requires_grad_()
        y = ours(x)
        (dx,) = torch.autograd.grad((y * v).sum(), x)
        return y.detach(), dx

    alone = [job(b) for b in batches]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(job, batches))
    for (y1, g1), (y2, g2) in zip(alone, together, strict=True):
        assert torch.equal(y1, y2) and torch.equal(g1, g2)
    torch.testing.assert_close(ours.state_dict(), before, rtol=0, atol=0)


# -- typing ----------------------------------------------------------------------


def test_bnlib_torch_passes_mypy_strict(tmp_path):
    """As tests/test_types.py does for the library floor, for bnlib.torch."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    files = sorted(str(f.relative_to(root)) for f in root.glob("bnlib/torch/*.py"))
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path)]
        + files,
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Success: no issues found" in out.stdout
