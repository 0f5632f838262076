"""bnlib.fold: folding eval-mode BatchNorm into the layer before, against PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tinyresnet import trained_resnet
from torch import nn
from torch.nn.utils import fusion

import bnlib.torch
from bnlib import fold
from bnlib.torch import batchnorm as torch_bn

TOL = 1e-10


def _random_bn(bn: nn.Module, seed: int) -> nn.Module:
    """Give a BatchNorm layer random gamma, beta and running statistics; eval mode."""
    g = torch.Generator().manual_seed(seed)
    c = bn.num_features
    with torch.no_grad():
        if bn.affine:
            bn.weight.copy_(torch.randn(c, generator=g) * 2)
            bn.bias.copy_(torch.randn(c, generator=g))
        bn.running_mean.copy_(torch.randn(c, generator=g) * 3)
        bn.running_var.copy_(torch.rand(c, generator=g) * 4 + 0.05)
    return bn.eval()


def _stats(bn: nn.Module) -> list[np.ndarray | None]:
    return [
        None if t is None else t.detach().numpy()
        for t in (bn.running_mean, bn.running_var, bn.weight, bn.bias)
    ]


def _x(shape, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64) * 2 + 1


# -- bn_affine -------------------------------------------------------------------
@pytest.mark.parametrize("affine", [True, False])
def test_bn_affine_reproduces_torch_eval_batchnorm(affine):
    bn = _random_bn(nn.BatchNorm1d(5, affine=affine, eps=1e-3, dtype=torch.float64), 1)
    a, b = fold.bn_affine(*_stats(bn), eps=bn.eps)
    x = _x((7, 5))
    expected = bn(x).detach().numpy()
    np.testing.assert_allclose(a * x.numpy() + b, expected, rtol=0, atol=TOL)


def test_bn_affine_keeps_the_statistics_dtype():
    a, b = fold.bn_affine(np.zeros(3, np.float32), np.ones(3, np.float32))
    assert a.dtype == b.dtype == np.float32


# -- fold_batch_norm -------------------------------------------------------------
@pytest.mark.parametrize("with_bias", [True, False])
def test_fold_batch_norm_matches_torch_fuse_linear_bn_weights(with_bias):
    linear = nn.Linear(4, 6, bias=with_bias, dtype=torch.float64)
    bn = _random_bn(nn.BatchNorm1d(6, dtype=torch.float64), 2)
    rm, rv, w, b = (bn.running_mean, bn.running_var, bn.weight, bn.bias)
    ref_w, ref_b = fusion.fuse_linear_bn_weights(
        linear.weight, linear.bias, rm, rv, bn.eps, w, b
    )
    bias = None if linear.bias is None else linear.bias.detach().numpy()
    ours_w, ours_b = fold.fold_batch_norm(
        linear.weight.detach().numpy(), bias, *_stats(bn), bn.eps
    )
    np.testing.assert_allclose(ours_w, ref_w.detach().numpy(), rtol=0, atol=TOL)
    np.testing.assert_allclose(ours_b, ref_b.detach().numpy(), rtol=0, atol=TOL)


@settings(max_examples=25, deadline=None)
@given(
    c_out=st.integers(1, 6),
    c_in=st.integers(1, 4),
    kernel=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    seed=st.integers(0, 2**16),
)
def test_fold_batch_norm_matches_torch_fuse_conv_bn_weights(c_out, c_in, kernel, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn((c_out, c_in, *kernel), generator=g, dtype=torch.float64)
    bias = torch.randn(c_out, generator=g, dtype=torch.float64)
    bn = _random_bn(nn.BatchNorm1d(c_out, dtype=torch.float64), seed)
    ref_w, ref_b = fusion.fuse_conv_bn_weights(
        w, bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
    )
    ours_w, ours_b = fold.fold_batch_norm(w.numpy(), bias.numpy(), *_stats(bn), bn.eps)
    assert ours_w.shape == tuple(w.shape)
    np.testing.assert_allclose(ours_w, ref_w.detach().numpy(), rtol=0, atol=TOL)
    np.testing.assert_allclose(ours_b, ref_b.detach().numpy(), rtol=0, atol=TOL)


def test_fold_batch_norm_keeps_the_weight_dtype():
    w, b = fold.fold_batch_norm(
        np.ones((3, 2), np.float32), None, np.zeros(3), np.ones(3)
    )
    assert w.dtype == b.dtype == np.float32


# -- fold_bn_module ---------------------------------------------------------------
@pytest.mark.parametrize("with_bias", [True, False])
def test_fold_bn_module_linear_matches_fuse_linear_bn_eval(with_bias):
    torch.manual_seed(0)
    linear = nn.Linear(4, 6, bias=with_bias, dtype=torch.float64).eval()
    bn = _random_bn(nn.BatchNorm1d(6, dtype=torch.float64), 3)
    ours = bnlib.torch.fold_bn_module(linear, bn)
    ref = fusion.fuse_linear_bn_eval(linear, bn)
    x = _x((9, 4))
    torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=TOL)
    torch.testing.assert_close(ours(x), bn(linear(x)), rtol=0, atol=TOL)


@pytest.mark.parametrize(
    ("conv", "bn", "shape"),
    [
        (nn.Conv1d(4, 6, 3, padding=1), nn.BatchNorm1d(6), (2, 4, 11)),
        (nn.Conv2d(4, 6, 3, stride=2, groups=2), nn.BatchNorm2d(6), (2, 4, 9, 8)),
        (nn.Conv2d(4, 6, 1, bias=False), nn.BatchNorm2d(6), (3, 4, 5, 5)),
        (nn.Conv3d(2, 3, 2), nn.BatchNorm3d(3), (2, 2, 4, 5, 3)),
    ],
)
def test_fold_bn_module_conv_matches_fuse_conv_bn_eval(conv, bn, shape):
    conv, bn = conv.double().eval(), _random_bn(bn.double(), 4)
    ours = bnlib.torch.fold_bn_module(conv, bn)
    ref = fusion.fuse_conv_bn_eval(conv, bn)
    x = _x(shape)
    torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=TOL)
    torch.testing.assert_close(ours(x), bn(conv(x)), rtol=0, atol=TOL)


@pytest.mark.parametrize(
    ("conv", "bn", "shape"),
    [
        (nn.ConvTranspose1d(4, 6, 3, padding=1), nn.BatchNorm1d(6), (2, 4, 11)),
        (nn.ConvTranspose2d(4, 6, 3, stride=2), nn.BatchNorm2d(6), (2, 4, 5, 4)),
        (nn.ConvTranspose2d(4, 6, 2, bias=False), nn.BatchNorm2d(6), (3, 4, 5, 5)),
        (nn.ConvTranspose3d(2, 3, 2), nn.BatchNorm3d(3), (2, 2, 4, 5, 3)),
    ],
)
def test_fold_bn_module_conv_transpose_matches_fuse_conv_bn_eval(conv, bn, shape):
    conv, bn = conv.double().eval(), _random_bn(bn.double(), 5)
    ours = bnlib.torch.fold_bn_module(conv, bn)
    ref = fusion.fuse_conv_bn_eval(conv, bn, transpose=True)
    torch.testing.assert_close(ours.weight, ref.weight, rtol=0, atol=TOL)
    torch.testing.assert_close(ours.bias, ref.bias, rtol=0, atol=TOL)
    x = _x(shape)
    torch.testing.assert_close(ours(x), bn(conv(x)), rtol=0, atol=TOL)


@pytest.mark.parametrize("groups", [2, 3])
def test_fold_bn_module_grouped_conv_transpose_reproduces_eval_bn(groups):
    """torch's fusion scales axis 1 by all C_out channels, which needs groups=1;
    bnlib's handles groups, checked against the two layers run one after the other."""
    conv = nn.ConvTranspose2d(6, 3 * groups, 3, groups=groups).double().eval()
    bn = _random_bn(nn.BatchNorm2d(3 * groups).double(), 6)
    x = _x((2, 6, 4, 5))
    ours = bnlib.torch.fold_bn_module(conv, bn)
    torch.testing.assert_close(ours(x), bn(conv(x)), rtol=0, atol=TOL)


def test_fold_bn_module_handles_affine_false_and_bnlib_layers():
    linear = nn.Linear(3, 4, dtype=torch.float64)
    for bn in (
        nn.BatchNorm1d(4, affine=False, dtype=torch.float64),
        torch_bn.BatchNorm1d(4, dtype=torch.float64),
    ):
        bn = _random_bn(bn, 5)
        x = _x((6, 3))
        expected = bn(linear(x))
        torch.testing.assert_close(
            bnlib.torch.fold_bn_module(linear, bn)(x), expected, rtol=0, atol=TOL
        )


def test_fold_bn_module_leaves_its_inputs_unchanged_and_keeps_dtype():
    linear = nn.Linear(3, 4, bias=False)
    bn = _random_bn(nn.BatchNorm1d(4), 6)
    before = [t.clone() for t in (linear.weight, bn.running_mean, bn.weight)]
    fused = bnlib.torch.fold_bn_module(linear, bn)
    after = (linear.weight, bn.running_mean, bn.weight)
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert linear.bias is None and fused.bias is not None
    assert fused.weight.dtype == torch.float32 and fused.bias.dtype == torch.float32


# -- fold_sequential ---------------------------------------------------------------
def _warm_up(model: nn.Module, shape, steps=3) -> nn.Module:
    """Move the running statistics away from (0, 1) with a few train-mode passes."""
    model.train()
    with torch.no_grad():
        for step in range(steps):
            model(_x(shape, seed=10 + step) * (1 + step))
    return model.eval()


def test_fold_sequential_mlp_matches_unfused():
    model = nn.Sequential(
        nn.Linear(5, 8, bias=False),
        torch_bn.BatchNorm1d(8),
        nn.Sigmoid(),
        nn.Linear(8, 8),
        nn.BatchNorm1d(8),
        nn.ReLU(),
        nn.Linear(8, 3),
    ).double()
    _warm_up(model, (16, 5))
    folded = bnlib.torch.fold_sequential(model)
    assert [type(m).__name__ for m in folded] == [
        "Linear",
        "Sigmoid",
        "Linear",
        "ReLU",
        "Linear",
    ]
    x = _x((11, 5), seed=99)
    torch.testing.assert_close(folded(x), model(x), rtol=0, atol=TOL)


def test_fold_sequential_conv_net_matches_unfused_and_leaves_model_alone():
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten()
    ).double()
    _warm_up(model, (4, 2, 5, 5))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    folded = bnlib.torch.fold_sequential(model)
    x = _x((3, 2, 5, 5), seed=7)
    torch.testing.assert_close(folded(x), model(x), rtol=0, atol=TOL)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


# -- errors ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((np.zeros(3, int), np.ones(3)), {}, TypeError, "running_mean.*floating"),
        ((np.zeros((3, 1)), np.ones(3)), {}, ValueError, r"running_mean.*\(C,\)"),
        ((np.zeros(3), np.ones(2)), {}, ValueError, "running_var.*shape"),
        ((np.zeros(3), -np.ones(3)), {}, ValueError, "positive"),
        ((np.zeros(3), np.ones(3)), {"eps": -1.0}, ValueError, "eps"),
        ((np.zeros(3), np.ones(3)), {"eps": "1e-5"}, TypeError, "eps"),
        ((np.zeros(3), np.ones(3)), {"weight": np.ones(4)}, ValueError, "weight"),
        ((np.zeros(3), np.ones(3)), {"bias": ["a"] * 3}, TypeError, "bias"),
    ],
)
def test_bn_affine_rejects_bad_input(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        fold.bn_affine(*args, **kwargs)


@pytest.mark.parametrize(
    ("weight", "bias", "mean", "error", "match"),
    [
        (np.ones(3), None, np.zeros(3), ValueError, "layer_weight.*2 dimensions"),
        (np.ones((3, 2), int), None, np.zeros(3), TypeError, "layer_weight"),
        (np.ones((3, 2)), np.ones(2), np.zeros(3), ValueError, "layer_bias"),
        (np.ones((3, 2)), None, np.zeros(4), ValueError, "running_mean"),
    ],
)
def test_fold_batch_norm_rejects_bad_input(weight, bias, mean, error, match):
    with pytest.raises(error, match=match):
        fold.fold_batch_norm(weight, bias, mean, np.ones(3))


@pytest.mark.parametrize(
    ("layer", "bn", "error", "match"),
    [
        (nn.Embedding(4, 3), nn.BatchNorm1d(3), TypeError, "ConvTranspose1d/2d/3d"),
        (nn.Linear(2, 3), nn.LayerNorm(3), TypeError, "BatchNorm"),
        (nn.Linear(2, 3), nn.BatchNorm1d(4), ValueError, "4 features.*3 outputs"),
        (
            nn.Linear(2, 3),
            nn.BatchNorm1d(3, track_running_stats=False),
            ValueError,
            "running statistics",
        ),
    ],
)
def test_fold_bn_module_rejects_bad_pairs(layer, bn, error, match):
    with pytest.raises(error, match=match):
        bnlib.torch.fold_bn_module(layer, bn.eval())


def test_fold_bn_module_rejects_training_mode():
    with pytest.raises(ValueError, match=r"training mode.*\.eval\(\)"):
        bnlib.torch.fold_bn_module(nn.Linear(2, 3), nn.BatchNorm1d(3))


@pytest.mark.parametrize(
    ("model", "error", "match"),
    [
        ([nn.Linear(2, 3), nn.BatchNorm1d(3)], TypeError, "Sequential"),
        (nn.Sequential(nn.BatchNorm1d(2), nn.Linear(2, 3)), ValueError, "position 0"),
        (
            nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.BatchNorm1d(3)),
            TypeError,
            "ReLU",
        ),
    ],
)
def test_fold_sequential_rejects_unfoldable_models(model, error, match):
    if isinstance(model, nn.Module):
        model.eval()
    with pytest.raises(error, match=match):
        bnlib.torch.fold_sequential(model)


# -- fold_bn: any module tree ----------------------------------------------------
def _bn_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]


def test_fold_bn_resnet_matches_unfused_eval_model():
    model = trained_resnet()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    folded = bnlib.torch.fold_bn(model)
    assert _bn_names(folded) == []  # every pair folded, downsample branches included
    assert isinstance(folded.layer2[0].downsample[1], nn.Identity)
    assert folded.layer2[0].downsample[0].bias is not None
    x = _x((4, 3, 8, 8), seed=3)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=0, atol=1e-6)
        torch.testing.assert_close(folded(x), model(x), rtol=0, atol=TOL)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert len(_bn_names(model)) == 10  # the original keeps its BatchNorm layers


def test_fold_bn_pair_matches_torch_fuse_conv_bn_eval():
    model = trained_resnet(seed=1)
    ours = bnlib.torch.fold_bn(model).layer1[1].conv2
    theirs = fusion.fuse_conv_bn_eval(model.layer1[1].conv2, model.layer1[1].bn2)
    torch.testing.assert_close(ours.weight, theirs.weight, rtol=0, atol=TOL)
    torch.testing.assert_close(ours.bias, theirs.bias, rtol=0, atol=TOL)


def test_fold_bn_float32_resnet_within_1e_6():
    model = trained_resnet(seed=2, dtype=torch.float32)
    folded = bnlib.torch.fold_bn(model)
    x = _x((4, 3, 8, 8), seed=4).float()
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-6)


class _PreAct(nn.Module):
    """BatchNorm after an activation: nothing to fold it into."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, bias=False)
        self.bn_ok = nn.BatchNorm2d(4)
        self.bn_after_relu = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn_after_relu(torch.relu(self.bn_ok(self.conv(x))))


class _Branching(nn.Module):
    """The convolution's output also goes around the BatchNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


class _DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)) if x.sum() > 0 else x


@pytest.mark.parametrize(
    ("model", "error", "match"),
    [
        (_PreAct(), ValueError, r"'bn_after_relu' \(input from 'relu'\).*strict=False"),
        (_Branching(), ValueError, r"'bn' \(input from 'conv'\)"),
        (_DataDependent(), TypeError, "torch.fx.*fold_bn_module"),
        ([nn.Conv2d(3, 3, 1)], TypeError, "torch.nn.Module"),
    ],
)
def test_fold_bn_rejects_unsupported_patterns(model, error, match):
    if isinstance(model, nn.Module):
        model.eval()
    with pytest.raises(error, match=match):
        bnlib.torch.fold_bn(model)


def test_fold_bn_non_strict_keeps_unfoldable_layers():
    model = _random_bn(nn.BatchNorm2d(4), 5)
    pre = _PreAct().double().eval()
    pre.bn_after_relu = model.double()
    _random_bn(pre.bn_ok.double(), 6)
    folded = bnlib.torch.fold_bn(pre, strict=False)
    assert isinstance(folded.bn_ok, nn.Identity)
    assert isinstance(folded.bn_after_relu, nn.BatchNorm2d)
    x = _x((2, 3, 6, 6), seed=8)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), pre(x), rtol=0, atol=TOL)


def test_fold_bn_training_mode_leaves_model_unchanged():
    model = trained_resnet(seed=3)
    model.layer2[1].bn2.train()  # one layer forgotten in training mode
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"training mode.*\.eval\(\)"):
        bnlib.torch.fold_bn(model)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert model.layer2[1].bn2.training and not model.layer1[0].bn1.training
    assert len(_bn_names(model)) == 10
