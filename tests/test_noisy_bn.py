"""bnbook.lab.noisy_bn: the random shift-and-scale layer, noisy BatchNorm nets."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from bnbook.lab import experiments as ex
from bnbook.lab import noisy_bn


@pytest.fixture
def x(rng) -> torch.Tensor:
    return torch.from_numpy(rng.normal(size=(9, 4)))


def test_shift_scale_noise_is_a_per_unit_affine_map_in_range(x):
    layer = noisy_bn.ShiftScaleNoise(4, shift=1.5, scale=3.0, seed=2).train()
    out = layer(x)
    mu, s = layer.last_shift, layer.last_scale
    assert np.all(np.abs(mu) <= 1.5) and np.all((s >= 1) & (s <= 3))
    assert np.abs(mu).max() > 0.1 and s.max() > 1.1  # really shifted and scaled
    torch.testing.assert_close(out, x * torch.from_numpy(s) + torch.from_numpy(mu))


def test_shift_scale_noise_draws_anew_every_step(x):
    layer = noisy_bn.ShiftScaleNoise(4, seed=0).train()
    first = layer(x)
    assert not torch.equal(layer(x), first)


def test_shift_scale_noise_is_seeded(x):
    a, b, c = (noisy_bn.ShiftScaleNoise(4, seed=s) for s in (5, 5, 6))
    assert torch.equal(a(x), b(x)) and not torch.equal(a(x), c(x))


def test_shift_scale_noise_eval_mode_applies_the_expected_scale(x):
    layer = noisy_bn.ShiftScaleNoise(4, shift=2.0, scale=3.0).eval()
    torch.testing.assert_close(layer(x), 2.0 * x)
    assert np.all(layer.last_scale == 1.0)  # nothing was drawn


def test_shift_scale_noise_without_ranges_is_the_identity(x):
    layer = noisy_bn.ShiftScaleNoise(4, shift=0.0, scale=1.0).train()
    torch.testing.assert_close(layer(x), x)


def test_shift_scale_noise_backward_scales_the_gradient(x, rng):
    layer = noisy_bn.ShiftScaleNoise(4, seed=1).train()
    x = x.clone().requires_grad_(True)
    dy = torch.from_numpy(rng.normal(size=(9, 4)))
    (dx,) = torch.autograd.grad((layer(x) * dy).sum(), [x])
    torch.testing.assert_close(dx, dy * torch.from_numpy(layer.last_scale))


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ((4.0,), TypeError, "num_features must be an int"),
        ((True,), TypeError, "num_features must be an int"),
        ((0,), ValueError, "num_features >= 1"),
        ((4, -1.0), ValueError, "shift >= 0"),
        ((4, 1.0, 0.5), ValueError, "scale >= 1"),
    ],
)
def test_shift_scale_noise_rejects_bad_arguments(args, error, message):
    with pytest.raises(error, match=message):
        noisy_bn.ShiftScaleNoise(*args)


def test_shift_scale_noise_rejects_wrong_input_shape():
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        noisy_bn.ShiftScaleNoise(4)(torch.zeros(3, 5))


def test_insert_noise_after_batchnorm_places_one_layer_after_each_bn():
    model = ex.make_mlp(hidden=(6, 5), batch_norm=True)
    noisy = noisy_bn.insert_noise_after_batchnorm(model, shift=0.5, scale=2.5, seed=3)
    kinds = [type(m).__name__ for m in noisy]
    assert kinds == [
        "Linear",
        "BatchNorm1d",
        "ShiftScaleNoise",
        "Sigmoid",
        "Linear",
        "BatchNorm1d",
        "ShiftScaleNoise",
        "Sigmoid",
        "Linear",
    ]
    assert (noisy[2].num_features, noisy[6].num_features) == (6, 5)
    assert (noisy[2].shift, noisy[2].scale) == (0.5, 2.5)
    assert len(model) == 7  # the original is untouched
    assert noisy[0].weight is not model[0].weight
    torch.testing.assert_close(noisy[0].weight, model[0].weight)


def test_insert_noise_after_batchnorm_seeds_layers_differently():
    noisy = noisy_bn.insert_noise_after_batchnorm(
        ex.make_mlp(hidden=(5, 5), batch_norm=True)
    )
    x = torch.zeros(2, 5)
    noisy[2](x), noisy[6](x)
    assert not np.array_equal(noisy[2].last_shift, noisy[6].last_shift)


def test_insert_noise_after_batchnorm_rejects_bad_models():
    with pytest.raises(ValueError, match="no BatchNorm"):
        noisy_bn.insert_noise_after_batchnorm(ex.make_mlp(hidden=(5,)))
    with pytest.raises(TypeError, match="nn.Sequential"):
        noisy_bn.insert_noise_after_batchnorm(nn.Linear(3, 3))


def test_train_mode_percentile_tracker_sees_the_training_forward(rng):
    model = noisy_bn.insert_noise_after_batchnorm(
        ex.make_mlp(hidden=(6, 5), batch_norm=True), shift=2.0, scale=3.0
    ).eval()
    probe = torch.from_numpy(rng.uniform(size=(50, 64))).float()
    reference = copy.deepcopy(model).train()
    tracker = noisy_bn.TrainModePercentileTracker(probe, layer=1, unit=2)
    tracker(0, model)
    z = ex.hidden_preactivations(reference, probe)[1][:, 2].double().numpy()
    np.testing.assert_allclose(tracker.as_array()[0], np.percentile(z, [15, 50, 85]))
    # the model itself was not run: its noise stream and BN statistics are unchanged
    assert not model.training and int(model[1].num_batches_tracked) == 0
    assert np.all(model[2].last_scale == 1.0)
