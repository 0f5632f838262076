"""bnbook.lab.regularization: margins, population statistics, intervals over seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.integrate import quad

from bnbook.lab import experiments as ex
from bnbook.lab import regularization as reg


@pytest.fixture(scope="module")
def split():
    return ex.load_digits_split(n_train=120, seed=0)


def _bn_net(seed=0):
    return ex.make_mlp(hidden=(12, 8), activation="relu", batch_norm=True, seed=seed)


def test_margin_matches_loop():
    logits = torch.randn(7, 5, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 4, 2, 2, 1, 3, 0])
    expected = []
    for row, lab in zip(logits.numpy(), labels.numpy(), strict=True):
        expected.append(row[lab] - max(v for j, v in enumerate(row) if j != lab))
    assert np.allclose(reg.margin(logits, labels).numpy(), expected, atol=1e-6)
    assert np.allclose(
        reg.margin(logits, 2).numpy(),
        logits[:, 2].numpy() - logits[:, [0, 1, 3, 4]].max(dim=1).values.numpy(),
    )


def test_margin_rejects_1d():
    with pytest.raises(ValueError, match=r"shape \(N, K\)"):
        reg.margin(torch.zeros(5), 0)


def test_margins_in_batches_each_batch_alone(split):
    net = _bn_net()
    mates = split.x_train[torch.arange(3 * 5).reshape(3, 5)]
    x0, y0 = split.x_test[:1], int(split.y_test[0])
    x = x0.expand(3, -1)
    got = reg.margins_in_batches(net, x, y0, mates, training=True)
    net.train()
    with torch.no_grad():
        want = [float(reg.margin(net(torch.cat([x0, b]))[:1], y0)[0]) for b in mates]
    assert np.allclose(got, want, atol=1e-5)
    assert np.ptp(got) > 1e-3  # batch-mates matter in training
    frozen = reg.margins_in_batches(net, x, y0, mates, training=False)
    assert np.ptp(frozen) < 1e-5  # and not in evaluation mode


def test_margins_in_batches_per_draw_labels(split):
    net = _bn_net()
    mates = split.x_train[torch.arange(4 * 2).reshape(4, 2)]
    x, y = split.x_test[:4], split.y_test[:4]
    got = reg.margins_in_batches(net, x, y, mates, training=True)
    net.train()
    with torch.no_grad():
        want = [
            float(reg.margin(net(torch.cat([x[d : d + 1], mates[d]]))[:1], y[d])[0])
            for d in range(4)
        ]
    assert np.allclose(got, want, atol=1e-5)
    with pytest.raises(ValueError, match="rows for 4 draws"):
        reg.margins_in_batches(net, x[:3], y[:3], mates, training=True)


def test_set_population_stats_fixed_point(split):
    net = _bn_net()
    reg.set_population_stats(net, split.x_train)
    assert not net.training
    bns = [m for m in net if isinstance(m, torch.nn.BatchNorm1d)]
    inputs = []
    hooks = [b.register_forward_hook(lambda m, i, o: inputs.append(i[0])) for b in bns]
    with torch.no_grad():
        net(split.x_train)
    for h in hooks:
        h.remove()
    for bn, z in zip(bns, inputs, strict=True):
        z = z.double().numpy()
        assert np.allclose(bn.running_mean.numpy(), z.mean(axis=0), atol=1e-5)
        assert np.allclose(bn.running_var.numpy(), z.var(axis=0, ddof=1), rtol=1e-4)


def test_run_recorder_records_gamma_and_leaves_model(split):
    net = _bn_net()
    with torch.no_grad():
        net[1].weight.mul_(2.0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rec = reg.RunRecorder(split)
    rec(0, net)
    ws = np.concatenate([m.weight.detach().numpy() for m in (net[1], net[4])])
    assert rec.steps == [0] and np.isclose(rec.gamma[0], np.sqrt((ws**2).sum()))
    assert 0 <= rec.train_acc[0] <= 1 and 0 <= rec.test_acc[0] <= 1
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])
    plain = reg.RunRecorder(split)
    plain(0, ex.make_mlp(hidden=(12,), activation="relu"))
    assert np.isnan(plain.gamma[0])


def test_mean_difference_welch_formula():
    x, y = np.array([0.91, 0.94, 0.92, 0.95]), np.array([0.90, 0.89, 0.93, 0.88, 0.9])
    vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    df = (vx + vy) ** 2 / (vx**2 / (x.size - 1) + vy**2 / (y.size - 1))
    half = stats.t.ppf(0.975, df) * np.sqrt(vx + vy)
    diff, lo, hi = reg.mean_difference(x, y, paired=False)
    assert np.isclose(diff, x.mean() - y.mean(), rtol=0, atol=1e-12)
    assert np.allclose([lo, hi], [diff - half, diff + half], rtol=0, atol=1e-10)


def test_mean_difference_paired_formula():
    x, y = np.array([0.91, 0.94, 0.92, 0.95]), np.array([0.90, 0.92, 0.93, 0.91])
    d = x - y
    half = stats.t.ppf(0.95, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)
    diff, lo, hi = reg.mean_difference(x, y, paired=True, confidence=0.9)
    assert np.allclose([lo, hi], [d.mean() - half, d.mean() + half], atol=1e-10)


def test_mean_difference_errors():
    with pytest.raises(ValueError, match="paired needs equal shapes"):
        reg.mean_difference([1.0, 2.0], [1.0, 2.0, 3.0], paired=True)
    with pytest.raises(ValueError, match="confidence must be in"):
        reg.mean_difference([1.0, 2.0], [1.0, 3.0], paired=False, confidence=95)


def test_describe_difference_wording():
    up = reg.describe_difference(2.0, 1.0, 3.0, "A")
    down = reg.describe_difference(-2.1, -3.0, -1.1, "A")
    tie = reg.describe_difference(-0.4, -3.0, 2.3, "A")
    assert up == "A is higher by 2.0 points (interval +1.0 to +3.0)."
    assert down.startswith("A is lower by 2.1 points") and "by -" not in down
    assert "cannot tell" in tie and "-0.4" in tie


def test_run_recorder_accuracies_from_step(split):
    rec = reg.RunRecorder(split, acc_from=2)
    net = _bn_net()
    for step in range(4):
        rec(step, net)
    assert rec.steps == [0, 1, 2, 3] and len(rec.gamma) == 4
    assert rec.acc_steps == [2, 3] and len(rec.test_acc) == 2


@pytest.mark.parametrize("m", [2, 3, 5, 30])
def test_batch_std_sd_matches_the_chi_law_by_integration(m):
    law = stats.chi(m - 1)  # sigma_B / sigma = chi_{m-1} / sqrt(m)
    expected = np.sqrt(law.var() / m)
    assert np.isclose(reg.batch_std_sd(m), expected, rtol=1e-9)


def test_batch_std_sd_matches_simulation_and_tends_to_one_over_sqrt_2m():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(8, 200_000))
    measured = x.std(axis=0).std()
    assert abs(measured - reg.batch_std_sd(8)) < 0.01
    assert np.isclose(reg.batch_std_sd(10_000) * np.sqrt(2 * 10_000), 1.0, rtol=1e-3)


@pytest.mark.parametrize("m", [3, 5, 30])
def test_mean_inverse_std_ratio_matches_numerical_integration(m):
    density = stats.chi(m - 1).pdf
    expected = quad(lambda t: np.sqrt(m) / t * density(t), 0, np.inf)[0]
    assert np.isclose(reg.mean_inverse_std_ratio(m), expected, rtol=1e-7)


def test_mean_inverse_std_ratio_matches_simulation():
    x = np.random.default_rng(6).normal(size=(5, 400_000))
    ratio = 1 / x.std(axis=0)
    error = 4 * ratio.std() / np.sqrt(ratio.size)
    assert abs(ratio.mean() - reg.mean_inverse_std_ratio(5)) < error


@pytest.mark.parametrize("bad", [1, 2.5, [4, 0]])
def test_batch_noise_closed_forms_reject_bad_sizes(bad):
    with pytest.raises(ValueError, match="batch sizes must be integers"):
        reg.batch_std_sd(bad)
    with pytest.raises(ValueError, match="batch sizes must be integers >= 3"):
        reg.mean_inverse_std_ratio(2)
