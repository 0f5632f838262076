"""bnlib.torch.convert / revert: every BatchNorm of a model swapped, state kept."""

from __future__ import annotations

import torch
from torch import nn

import bnlib.torch as bt

TOL = 1e-10


def _model():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, dtype=torch.float64),
        nn.BatchNorm2d(3, dtype=torch.float64),
        nn.Flatten(),
        nn.Sequential(nn.BatchNorm1d(12, momentum=None, dtype=torch.float64)),
        nn.Linear(12, 2, dtype=torch.float64),
        nn.BatchNorm1d(2, affine=False, bias=False, dtype=torch.float64),
    )
    model(torch.randn(5, 2, 4, 4, dtype=torch.float64))  # running stats move
    return model


def _batchnorm_types(model):
    return [
        type(m)
        for m in model.modules()
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)
    ]


def test_convert_swaps_every_batchnorm_and_keeps_the_tensors():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    weight = model[1].weight
    assert bt.convert(model) is model
    assert _batchnorm_types(model) == [bt.BatchNorm2d, bt.BatchNorm1d, bt.BatchNorm1d]
    assert model[1].weight is weight  # an optimizer built before still holds it
    torch.testing.assert_close(model.state_dict(), before, rtol=0, atol=0)
    assert repr(model[5]) == repr(nn.BatchNorm1d(2, affine=False))


def test_convert_gives_torchs_numbers_in_training_and_eval():
    ref, ours = _model(), bt.convert(_model())
    x = torch.randn(6, 2, 4, 4, dtype=torch.float64)
    for mode in (True, False):
        ref.train(mode), ours.train(mode)
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        v = torch.randn(6, 2, dtype=torch.float64)
        (ref(x1) * v).sum().backward()
        (ours(x2) * v).sum().backward()
        torch.testing.assert_close(x2.grad, x1.grad, rtol=0, atol=TOL)
        torch.testing.assert_close(
            ours.state_dict(), ref.state_dict(), atol=TOL, rtol=0
        )


def test_revert_restores_torch_layers_with_state_and_mode():
    model = bt.convert(_model()).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert bt.revert(model) is model
    assert _batchnorm_types(model) == [nn.BatchNorm2d, nn.BatchNorm1d, nn.BatchNorm1d]
    assert not any(m.training for m in model.modules())
    torch.testing.assert_close(model.state_dict(), before, rtol=0, atol=0)


def test_convert_a_single_layer_returns_its_replacement():
    layer = nn.BatchNorm1d(3)
    new = bt.convert(layer)
    assert type(new) is bt.BatchNorm1d and new.running_var is layer.running_var
    assert type(bt.revert(new)) is nn.BatchNorm1d


def test_convert_leaves_subclasses_alone():
    ghost = bt.GhostBatchNorm1d(3, ghost_size=2)
    model = nn.Sequential(ghost, nn.SyncBatchNorm(3))
    bt.convert(model)
    assert model[0] is ghost and type(model[1]) is nn.SyncBatchNorm


def test_convert_drops_the_hooks_of_the_old_layer():
    """Documented in migration.md: hooks stay on the old object; register again."""
    model = nn.Sequential(nn.BatchNorm1d(3))
    calls = []
    model[0].register_forward_hook(lambda *args: calls.append("old"))
    bt.convert(model)
    model(torch.randn(4, 3))
    assert calls == []
    model[0].register_forward_hook(lambda *args: calls.append("new"))
    model(torch.randn(4, 3))
    assert calls == ["new"]
