"""The deep-networks kit: depth probes, NF tools, slot-batched residual nets, toy text.

Expected values come from independent computations: hand-written formulas on tiny
tensors, PyTorch's own layers, or single networks rebuilt outside the kit.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bnbook.lab import deep, nf, resnets, restrain, sequences
from bnbook.lab import experiments as ex


@pytest.fixture(scope="module")
def split():
    return restrain.standardize(ex.load_digits_split(n_train=200, seed=0))


# --- nf: adaptive gradient clipping and scaled weight standardization ---------------


def test_agc_clips_like_the_formula_by_hand():
    w = torch.tensor([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    g = torch.tensor([[0.3, 0.4], [1.0, 0.0], [0.01, 0.0]], dtype=torch.float64)
    # unit 0: |g| = 0.5, |w| = 5, ratio 0.1 > 0.05: scaled to 0.05 * 5 = 0.25.
    # unit 1: |w| = 0 counts as eps = 1e-3: |g| = 1 scaled to 0.05 * 1e-3.
    # unit 2: ratio 0.01 <= 0.05: unchanged.
    expected = torch.tensor(
        [[0.15, 0.2], [0.05e-3, 0.0], [0.01, 0.0]], dtype=torch.float64
    )
    out = nf.agc_(w, g.clone(), clip=0.05)
    assert torch.allclose(out, expected, rtol=1e-12, atol=0)


def test_agc_is_in_place_and_per_slot_unit():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(2, 3, 4, 3, 3, generator=gen, dtype=torch.float64)
    g = torch.randn(2, 3, 4, 3, 3, generator=gen, dtype=torch.float64) * 5
    out = nf.agc_(w, g, clip=0.1, unit_dims=2)
    assert out is g
    for k in range(2):
        for c in range(3):
            ratio = out[k, c].norm() / w[k, c].norm()
            assert ratio <= 0.1 * (1 + 1e-12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"clip": 0.0}, "clip must be > 0"), ({"clip": 0.1, "shape": (2, 3)}, "share")],
)
def test_agc_rejects_bad_input(kwargs, message):
    w = torch.ones(3, 2)
    g = torch.ones(kwargs.pop("shape", (3, 2)))
    with pytest.raises(ValueError, match=message):
        nf.agc_(w, g, **kwargs)


def test_scaled_ws_per_output_channel_moments():
    w = torch.randn(6, 4, 3, 3, generator=torch.Generator().manual_seed(1)) * 3 + 2
    w_hat = nf.scaled_ws(w.double(), eps=0.0)
    fan_in = 4 * 9
    flat = w_hat.reshape(6, -1)
    assert torch.allclose(flat.mean(1), torch.zeros(6, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(
        flat.var(1, correction=0) * fan_in, torch.ones(6, dtype=torch.float64)
    )
    gain = torch.arange(1.0, 7.0, dtype=torch.float64)
    scaled = nf.scaled_ws(w.double(), gain, eps=0.0).reshape(6, -1)
    assert torch.allclose(scaled.std(1, correction=0) * math.sqrt(fan_in), gain)


def test_scaled_ws_slot_axis_equals_each_slot_alone():
    w = torch.randn(3, 5, 2, 3, 3, generator=torch.Generator().manual_seed(2))
    both = nf.scaled_ws(w, unit_dims=2)
    for k in range(3):
        assert torch.allclose(both[k], nf.scaled_ws(w[k]), atol=1e-6)
    with pytest.raises(ValueError, match="unit_dims"):
        nf.scaled_ws(w, unit_dims=5)


def test_relu_gain_gives_unit_variance():
    z = torch.randn(400_000, generator=torch.Generator().manual_seed(0))
    var = (nf.RELU_GAIN * torch.relu(z)).var().item()
    assert abs(var - 1) < 0.01  # Monte Carlo error ~ 0.003


# --- deep: probes at initialization ---------------------------------------------------


def _manual_grad_norms(weights, norm, x, y):
    """The deep MLP written out with explicit formulas, float64, for autograd."""
    ws = [w.detach().double().clone().requires_grad_(True) for w in weights]
    h = x.double()
    for w in ws[:-1]:
        z = h @ w.T
        if norm == "batch":
            mu = z.mean(0)
            z = (z - mu) / torch.sqrt(((z - mu) ** 2).mean(0) + 1e-5)
        elif norm == "layer":
            mu = z.mean(1, keepdim=True)
            z = (z - mu) / torch.sqrt(((z - mu) ** 2).mean(1, keepdim=True) + 1e-5)
        h = torch.clamp(z, min=0)
    logits = h @ ws[-1].T
    loss = -(logits.log_softmax(1)[torch.arange(len(y)), y]).mean()
    return [g.norm().item() for g in torch.autograd.grad(loss, ws[:-1])]


@pytest.mark.parametrize("norm", deep.NORMS)
def test_layer_grad_norms_match_manual_autograd(split, norm):
    x, y = split.x_train[:12], split.y_train[:12]
    net = deep.deep_mlp(4, norm, width=7, seed=3).double()
    weights = [m.weight for m in net if isinstance(m, torch.nn.Linear)]
    expected = _manual_grad_norms(weights, norm, x, y)
    got = deep.layer_grad_norms(net, x.double(), y)
    assert np.allclose(got, expected, rtol=1e-9)


def test_depth_probe_equals_single_networks(split):
    x, y = split.x_train[:16], split.y_train[:16]
    probe = deep.depth_probe([2, 4], [0, 5], x, y, width=8)
    for norm in deep.NORMS:
        for depth in (2, 4):
            for k, seed in enumerate((0, 5)):
                net = deep.deep_mlp(depth, norm, width=8, seed=seed).double()
                g = deep.layer_grad_norms(net, x.double(), y)
                assert np.allclose(probe[norm, depth]["grad"][k], g, rtol=1e-9)
        net = deep.deep_mlp(4, norm, width=8, seed=5).double()
        ranks = deep.representation_ranks(net, x.double())
        assert np.allclose(probe[norm, 4]["rank"][1], ranks, rtol=1e-8)
        assert "rank" not in probe[norm, 2]


def test_stable_rank_extremes():
    v = torch.randn(1, 6, generator=torch.Generator().manual_seed(0))
    assert deep.stable_rank(torch.arange(1.0, 5.0)[:, None] * v) == pytest.approx(1.0)
    assert deep.stable_rank(torch.eye(4) * 3) == pytest.approx(4.0)
    h = torch.diag(torch.tensor([2.0, 1.0]))
    assert deep.stable_rank(h) == pytest.approx((4 + 1) / 4)
    with pytest.raises(ValueError, match="all zeros"):
        deep.stable_rank(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="B, width"):
        deep.stable_rank(torch.ones(3))


def test_deep_mlp_rejects_bad_input():
    with pytest.raises(ValueError, match="norm must be one of"):
        deep.deep_mlp(3, "group")
    with pytest.raises(ValueError, match="depth must be >= 1"):
        deep.deep_mlp(0)


def test_deep_mlp_he_initialization_scale():
    net = deep.deep_mlp(2, width=400, in_features=300, seed=0)
    w = net[0].weight
    assert abs(w.var().item() * 300 / 2 - 1) < 0.02  # 120,000 draws


# --- resnets and restrain: slot-batched residual nets --------------------------------


def _reference_forward(net, k, x):
    """Slot k of a SlotResNet rebuilt with ungrouped F.conv2d, training mode."""
    p = {n: t[k].detach() for n, t in net.params.items()}

    def conv(h, name):
        w = p[name]
        if net.arm == "nf":
            w = nf.scaled_ws(w, p[name + ".gain"])
        z = F.conv2d(h, w, p.get(name + ".bias"), padding=1)
        if net.uses_bn:
            var, mu = torch.var_mean(z, dim=(0, 2, 3), correction=0, keepdim=True)
            z = (z - mu) / torch.sqrt(var + 1e-5)
            z = z * p[name + ".gamma"][:, None, None] + p[name + ".beta"][:, None, None]
        return z

    act = nf.RELU_GAIN if net.arm == "nf" else 1.0
    h = F.avg_pool2d(torch.relu(conv(x.reshape(-1, 1, 8, 8), "stem")) * act, 2)
    for i in range(net.blocks):
        inp = h / math.sqrt(1 + i * resnets.NF_ALPHA**2) if net.arm == "nf" else h
        r = conv(torch.relu(conv(inp, f"b{i}.1")) * act, f"b{i}.2")
        if net.arm == "skipinit":
            r = r * p[f"b{i}.alpha"]
        elif net.arm == "nf":
            r = r * resnets.NF_ALPHA
        h = h + r
    return torch.relu(h).flatten(1) @ p["head.w"] + p["head.b"]


@pytest.mark.parametrize("arm", resnets.ARMS)
def test_slot_resnet_matches_ungrouped_reference(split, arm):
    net = resnets.SlotResNet.make(arm, [4, 7], width=3, blocks=2)
    with torch.no_grad():  # give zero-initialized parameters some value
        for name, t in net.params.items():
            if name.endswith(("alpha", "gamma", "bias", "beta")):
                t.add_(
                    0.3
                    * torch.randn(
                        t.shape, generator=torch.Generator().manual_seed(len(name))
                    )
                )
    x = split.x_train[:10]
    logits = net.forward(torch.stack([x, x.flip(0)]), training=True)
    assert torch.allclose(logits[0], _reference_forward(net, 0, x), atol=1e-5)
    assert torch.allclose(logits[1], _reference_forward(net, 1, x.flip(0)), atol=1e-5)


def test_slot_resnet_slot_equals_its_seed_alone(split):
    both = resnets.SlotResNet.make("bn", [1, 2], width=4, blocks=1)
    alone = resnets.SlotResNet.make("bn", [2], width=4, blocks=1)
    x = split.x_train[:8]
    assert torch.equal(
        both.forward(x, training=True)[1], alone.forward(x, training=True)[0]
    )


def test_slot_resnet_rejects_bad_input():
    with pytest.raises(ValueError, match="arm must be one of"):
        resnets.SlotResNet.make("ln", [0])
    with pytest.raises(ValueError, match="width >= 1"):
        resnets.SlotResNet.make("bn", [0], width=0)


@pytest.mark.parametrize("arm", ["bn_zero", "skipinit"])
def test_zero_initialized_blocks_are_the_identity(split, arm):
    net = resnets.SlotResNet.make(arm, [0, 1], width=4, blocks=3)
    assert np.all(restrain.branch_shares(net, split.x_train[:16]) == 0)


def test_branch_shares_by_hand(split):
    net = resnets.SlotResNet.make("none", [3], width=4, blocks=2)
    pairs = []
    net.forward(split.x_train[:16], training=True, collect=pairs)
    h, r = pairs[1][0][0], pairs[1][1][0]  # block 2, slot 0: (B, C, 4, 4)
    var = lambda t: t.permute(1, 0, 2, 3).reshape(4, -1).var(1, correction=0)  # noqa: E731
    expected = (var(r).mean() / var(h + r).mean()).item()  # channel-mean variances
    shares = restrain.branch_shares(net, split.x_train[:16])
    assert shares.shape == (1, 2)
    assert shares[0, 1] == pytest.approx(expected, rel=1e-5)


def test_train_slots_isolates_a_diverging_slot(split):
    kw = {"width": 3, "blocks": 1}
    joint = resnets.SlotResNet.make("none", [0, 0], **kw)
    h = restrain.train_slots(
        joint, split, steps=6, lr=[0.05, 1e4], batch_size=8, seeds=[0, 0]
    )
    single = resnets.SlotResNet.make("none", [0], **kw)
    h1 = restrain.train_slots(single, split, steps=6, lr=0.05, batch_size=8, seeds=[0])
    assert h.diverged.tolist() == [False, True]
    assert np.allclose(h.batch_loss[:, 0], h1.batch_loss[:, 0], rtol=1e-5)
    assert np.isnan(h.batch_loss[-1, 1])
    with pytest.raises(ValueError, match="need 1 seeds"):
        restrain.train_slots(single, split, steps=1, lr=0.1, batch_size=8, seeds=[0, 1])


def test_train_slots_agc_bounds_every_conv_update(split):
    net = resnets.SlotResNet.make("nf", [0], width=3, blocks=1)
    before = {n: t.detach().clone() for n, t in net.params.items()}
    restrain.train_slots(
        net, split, steps=1, lr=1.0, batch_size=8, seeds=[0], momentum=0.0, agc=0.01
    )
    for name in ("stem", "b0.1", "b0.2"):
        step = (net.params[name] - before[name])[0].flatten(1).norm(dim=1)
        assert (step <= 0.01 * before[name][0].flatten(1).norm(dim=1) * 1.0001).all()


def test_steps_to_loss_by_hand():
    losses = np.array([[3.0, 1.0], [1.0, 1.0], [0.5, 1.0], [0.1, np.nan]])
    # window 2: means (2, 0.75, 0.3) for slot 0, reaching <= 0.5 at step 4.
    got = restrain.steps_to_loss(losses, 0.5, window=2)
    assert got[0] == 4 and np.isnan(got[1])
    with pytest.raises(ValueError, match="window"):
        restrain.steps_to_loss(losses, 0.5, window=9)


def test_standardize_gives_zero_mean_unit_variance():
    s = restrain.standardize(ex.load_digits_split(seed=0))
    assert abs(s.x_train.mean().item()) < 1e-5
    assert abs(s.x_train.std().item() - 1) < 1e-5


# --- sequences: toy text ------------------------------------------------------------


def test_sequence_batch_norm_masked_equals_batchnorm_of_real_tokens():
    s = sequences.toy_sentences(3, 5, dim=4, seed=0)
    batch, mask = sequences.pad([s[0], s[1, :2], s[2, :4]])
    real = torch.cat([s[0], s[1, :2], s[2, :4]])
    ref = F.batch_norm(real, None, None, training=True, eps=1e-5)
    out = sequences.sequence_batch_norm(batch, mask)
    assert torch.allclose(out[mask], ref, atol=1e-12)
    all_pos = F.batch_norm(batch.reshape(-1, 4), None, None, training=True, eps=1e-5)
    assert torch.allclose(sequences.sequence_batch_norm(batch).reshape(-1, 4), all_pos)


def test_pad_layout_and_error():
    a, b = torch.ones(2, 3), torch.ones(4, 3)
    batch, mask = sequences.pad([a, b], length=5)
    assert batch.shape == (2, 5, 3) and mask.sum(1).tolist() == [2, 4]
    assert (batch[0, 2:] == 0).all()
    with pytest.raises(ValueError, match="longest sentence 4"):
        sequences.pad([a, b], length=3)


def test_variance_spread_of_gaussian_values():
    x = torch.randn(4000, 20, 3, generator=torch.Generator().manual_seed(0))
    assert sequences.variance_spread(x) == pytest.approx(math.sqrt(2 / 19), rel=0.05)
    with pytest.raises(ValueError, match="n_batches >= 2"):
        sequences.variance_spread(x[:1])


def test_toy_sentences_share_a_context_per_sentence():
    s = sequences.toy_sentences(2000, 2, dim=1, vocab=5000, zipf=0.0, context=1.0)
    # token + context: corr(tok_1, tok_2) = 1 / (1 + 1) within a sentence.
    r = np.corrcoef(s[:, 0, 0].numpy(), s[:, 1, 0].numpy())[0, 1]
    assert abs(r - 0.5) < 0.06
    with pytest.raises(ValueError, match="context >= 0"):
        sequences.toy_sentences(2, 2, context=-1.0)
