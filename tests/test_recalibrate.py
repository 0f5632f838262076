"""bnlib.torch.recalibrate: PreciseBN-style running statistics and frozen BatchNorm."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tinyresnet import trained_resnet
from torch import nn

import bnlib.torch
from bnlib.torch.recalibrate import batchnorm_layers, freeze_bn, recalibrate_bn

TOL = 1e-10


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 8, bias=False),
        nn.BatchNorm1d(8, momentum=0.3),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(8, 4),
        bnlib.torch.BatchNorm1d(4),  # bnlib's drop-in counts too
    ).double()


def _batches(k: int = 5, m: int = 10, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(m, 6, generator=g, dtype=torch.float64) * 3 + 1 for _ in range(k)
    ]


def test_recalibrate_bn_gives_averages_of_batch_statistics():
    model, batches = _model(), _batches()
    assert recalibrate_bn(model, batches) == len(batches)
    with torch.no_grad():
        h = [model[0](x).numpy() for x in batches]  # what the first BatchNorm sees
    m = len(h[0])
    mean = np.mean([a.mean(axis=0) for a in h], axis=0)
    var = np.mean([a.var(axis=0) * m / (m - 1) for a in h], axis=0)
    np.testing.assert_allclose(model[1].running_mean.numpy(), mean, rtol=0, atol=TOL)
    np.testing.assert_allclose(model[1].running_var.numpy(), var, rtol=TOL, atol=0)
    assert model[1].num_batches_tracked.item() == len(batches)


def test_recalibrate_bn_runs_dropout_in_eval_mode():
    model, batches = _model(), _batches()
    recalibrate_bn(model, batches)
    reference = _model().eval()
    reference[1].train()  # batch statistics in the first BatchNorm, dropout off
    with torch.no_grad():  # the second BatchNorm's inputs, by hand
        h = [reference[:5](x).numpy() for x in batches]
    mean = np.mean([a.mean(axis=0) for a in h], axis=0)
    np.testing.assert_allclose(model[5].running_mean.numpy(), mean, rtol=0, atol=TOL)


def test_recalibrate_bn_restores_modes_momenta_and_parameters():
    model = _model().train()
    model[3].eval()  # a mixed state must come back as it was
    modes = [m.training for m in model.modules()]
    params = [p.clone() for p in model.parameters()]
    recalibrate_bn(model, [(x, None) for x in _batches()], num_batches=2)
    assert [m.training for m in model.modules()] == modes
    assert model[1].momentum == 0.3 and model[5].momentum == 0.1
    assert model[1].num_batches_tracked.item() == 2
    assert all(
        torch.equal(p, q) for p, q in zip(params, model.parameters(), strict=True)
    )
    assert all(p.grad is None for p in model.parameters())


def test_recalibrate_bn_accepts_a_dataloader():
    xs = torch.cat(_batches(k=4, m=8))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(xs, torch.zeros(len(xs))), batch_size=8
    )
    model, other = _model(), _model()
    assert recalibrate_bn(model, loader) == 4
    recalibrate_bn(other, list(xs.split(8)))
    assert torch.equal(model[1].running_var, other[1].running_var)


def test_recalibrate_bn_rejects_bad_input_and_leaves_model_unchanged():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        recalibrate_bn("model", _batches())
    with pytest.raises(ValueError, match="no BatchNorm layer"):
        recalibrate_bn(nn.Linear(6, 3), _batches())
    with pytest.raises(ValueError, match="no BatchNorm layer"):
        recalibrate_bn(nn.BatchNorm1d(6, track_running_stats=False), _batches())
    with pytest.raises(ValueError, match="num_batches must be at least 1"):
        recalibrate_bn(model, _batches(), num_batches=0)
    with pytest.raises(TypeError, match="num_batches must be an int"):
        recalibrate_bn(model, _batches(), num_batches=2.0)
    with pytest.raises(ValueError, match="batches is empty"):
        recalibrate_bn(model, [])
    with pytest.raises(TypeError, match="each batch must be a tensor"):
        recalibrate_bn(model, [_batches()[0], np.zeros((10, 6))])
    with pytest.raises(RuntimeError):  # the model's own error, shapes that do not fit
        recalibrate_bn(model, [_batches()[0], torch.zeros(10, 3, dtype=torch.float64)])
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model[1].momentum == 0.3 and model.training


def test_freeze_bn_stops_statistics_and_gradients():
    model = _model().train()
    frozen = freeze_bn(model)
    assert frozen == [model[1], model[5]] == batchnorm_layers(model)
    stats = model[1].running_mean.clone()
    loss = model(_batches()[0]).sum()
    loss.backward()
    assert torch.equal(model[1].running_mean, stats)
    assert model[1].weight.grad is None and model[0].weight.grad is not None
    assert model[3].training and not model[1].training  # dropout untouched


def test_freeze_bn_rejects_bad_input():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        freeze_bn([nn.BatchNorm1d(3)])
    with pytest.raises(ValueError, match="no BatchNorm layer"):
        freeze_bn(nn.Sequential(nn.Linear(3, 3)))


def test_freeze_bn_resnet_tree_keeps_statistics_through_a_training_step():
    model = trained_resnet(seed=4).train()
    frozen = freeze_bn(model)
    names = [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(frozen) == len(names) == 10  # blocks and downsample branches
    state = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    model(x).square().mean().backward()
    opt.step()
    for key, value in model.state_dict().items():
        same = torch.equal(value, state[key])
        assert same == (".bn" in key or "downsample.1" in key or key.startswith("bn"))
    assert model.training and model.layer2[0].conv1.training  # the rest trains


def test_freeze_bn_rejects_before_changing_anything():
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3, track_running_stats=False))
    with pytest.raises(ValueError, match="no BatchNorm layer"):
        freeze_bn(model.train())
    assert model[1].training and model[1].weight.requires_grad
