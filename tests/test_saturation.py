"""bnbook.lab.saturation: the saturation threshold, the saturated share, the tracker."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bnbook.lab import experiments as ex
from bnbook.lab import saturation as sat


def _sigmoid_slope(z: float) -> float:
    """s'(z) by autograd, independent of the closed form under test."""
    t = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    torch.sigmoid(t).backward()
    return t.grad.item()


@pytest.mark.parametrize("fraction", [0.5, 0.1, 0.01, 1e-4])
def test_sigmoid_saturation_threshold_slope_is_the_fraction_of_the_peak(fraction):
    z = sat.sigmoid_saturation_threshold(fraction)
    peak = _sigmoid_slope(0.0)
    assert peak == pytest.approx(0.25, abs=1e-15)
    assert _sigmoid_slope(z) == pytest.approx(fraction * peak, rel=1e-10)
    assert _sigmoid_slope(-z) == pytest.approx(fraction * peak, rel=1e-10)
    assert _sigmoid_slope(z * 1.01) < fraction * peak < _sigmoid_slope(z * 0.99)


def test_sigmoid_saturation_threshold_grows_as_the_fraction_shrinks():
    zs = [sat.sigmoid_saturation_threshold(f) for f in (0.9, 0.5, 0.1, 0.01)]
    assert zs == sorted(zs) and zs[0] > 0


def test_saturated_fraction_counts_strictly_beyond_the_threshold():
    z = np.array([[-5.0, -4.0, 0.0, 3.9], [4.0, 4.1, 10.0, -0.5]])
    assert sat.saturated_fraction(z, 4.0) == 3 / 8
    assert sat.saturated_fraction(z, 0.0) == 7 / 8


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: sat.sigmoid_saturation_threshold(1.0), ValueError, r"\(0, 1\)"),
        (lambda: sat.sigmoid_saturation_threshold(0), ValueError, r"\(0, 1\)"),
        (lambda: sat.sigmoid_saturation_threshold("0.1"), TypeError, "real"),
        (lambda: sat.sigmoid_saturation_threshold(True), TypeError, "real"),
        (lambda: sat.saturated_fraction(np.arange(3), 1.0), TypeError, "floating"),
        (lambda: sat.saturated_fraction(np.zeros(0), 1.0), ValueError, "empty"),
        (lambda: sat.saturated_fraction(np.zeros(2), -1.0), ValueError, "threshold"),
        (lambda: sat.saturated_fraction(np.zeros(2), float("nan")), ValueError, "thr"),
        (lambda: sat.saturated_fraction(np.zeros(2), "4"), TypeError, "threshold"),
    ],
)
def test_saturation_functions_reject_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_saturation_tracker_matches_a_hand_forward_pass_of_a_plain_mlp():
    model = ex.make_mlp(hidden=(6, 5), init_std=2.0, seed=1).double()
    x = torch.rand(
        20, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    tracker = sat.SaturationTracker(x, threshold=3.0)
    tracker(0, model)
    with torch.no_grad():
        z1 = model[0](x)
        z2 = model[2](torch.sigmoid(z1))
    expected = [float((z.abs() > 3.0).double().mean()) for z in (z1, z2)]
    assert tracker.steps == [0]
    np.testing.assert_array_equal(tracker.as_array(), [expected])


def test_saturation_tracker_uses_batch_statistics_and_leaves_the_model_alone():
    model = ex.make_mlp(hidden=(8,), batch_norm=True, init_std=3.0, seed=2).double()
    model.eval()
    x = torch.rand(
        30, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    state = {k: v.clone() for k, v in model.state_dict().items()}
    train_mode = sat.SaturationTracker(x, threshold=1.0)
    eval_mode = sat.SaturationTracker(x, threshold=1.0, training=False)
    train_mode(5, model)
    eval_mode(5, model)
    with torch.no_grad():
        z = model[0](x)
        z_hat = (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + 1e-5)
        z_run = z / torch.sqrt(torch.tensor(1 + 1e-5, dtype=torch.float64))
    assert train_mode.values == [[float((z_hat.abs() > 1.0).double().mean())]]
    assert eval_mode.values == [[float((z_run.abs() > 1.0).double().mean())]]
    assert not model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
