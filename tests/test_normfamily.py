"""bnbook.lab.normfamily: the chapter's ghost-batch norm layer, nets and AdaBN."""

from __future__ import annotations

import copy

import matplotlib
import numpy as np
import pytest
import torch

from bnbook.lab import normfamily as nf
from bnbook.lab.experiments import load_digits_split

matplotlib.use("Agg")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny nets: one thread avoids thread overhead on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_ghost_norm_with_whole_batch_is_torch_batch_norm(rng):
    x = torch.tensor(rng.normal(1, 2, size=(8, 3, 2, 2)), dtype=torch.float32)
    ours, ref = nf.GhostNorm2d(3, per_batch=8), torch.nn.BatchNorm2d(3)
    torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-5)
    torch.testing.assert_close(ours.running_var, ref.running_var, rtol=0, atol=1e-6)
    ours.eval(), ref.eval()
    torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-5)


def test_ghost_norm_normalizes_each_ghost_batch(rng):
    x = torch.tensor(rng.normal(0, 10, size=(8, 3, 1, 1)), dtype=torch.float32)
    y = nf.GhostNorm2d(3, per_batch=2)(x).detach().numpy().reshape(4, 2, 3)
    np.testing.assert_allclose(np.abs(y), 1, atol=1e-2)  # two values: -1 and +1


@pytest.mark.parametrize("kind", ["bn", "renorm", "gn", "ln"])
def test_make_net_trains_above_chance(kind):
    split = load_digits_split(seed=0)
    acc = nf.train_net(nf.make_net(kind, 4, width=16), split, steps=30)
    assert acc > 0.3
    assert nf.make_convnet(kind).eval()(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_make_net_unknown_kind_raises():
    with pytest.raises(ValueError, match="kind"):
        nf.make_net("wn")


def test_adapt_bn_sets_running_stats_of_shifted_data():
    split = load_digits_split(seed=0)
    net = nf.make_net("bn", width=8)
    x = nf.shift_digits(split.x_test)
    nf.adapt_bn(net, x)
    first = net[3]
    h = net[2](net[1](net[0](nf.images(x))))
    torch.testing.assert_close(first.running_mean, h.mean((0, 2, 3)))
    assert not first.training


def test_draw_norm_cube_shades_the_set():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    nf.draw_norm_cube(ax, lambda n, c: c == 0, "BN")
    assert len(ax.patches) > 36
    plt.close(fig)


def _shaded_depth_faces(ax, n_c=6):
    """Blue (shaded) faces above the front (top faces) or right of it (sides)."""
    faces = []
    for patch in ax.patches:
        rgb = patch.get_facecolor()[:3]
        xy = patch.get_xy()
        if rgb[2] - rgb[0] > 0.2 and (
            xy[:, 1].max() > n_c + 0.5 or xy[:, 0].max() > 6.5
        ):
            faces.append(xy)
    return faces


def test_draw_norm_cube_shows_the_depth_of_an_instance_set():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    nf.draw_norm_cube(ax, lambda n, c: n == 2 and c == 5, "IN")
    faces = _shaded_depth_faces(ax)
    assert len(faces) == 1  # the top face of the one shaded column
    assert faces[0][:, 0].min() == 2 and faces[0][:, 1].min() == 6
    plt.close(fig)


def test_draw_norm_cube_refuses_a_set_whose_depth_is_hidden():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="top row"):
        nf.draw_norm_cube(ax, lambda n, c: n == 2 and c == 2, "IN")
    plt.close(fig)


def test_translate_moves_each_pixel_one_column_right(rng):
    x = torch.tensor(rng.uniform(size=(3, 64)), dtype=torch.float32)
    out = nf.translate(x).reshape(3, 8, 8)
    img = x.reshape(3, 8, 8)
    for i in range(8):
        assert torch.all(out[:, i, 0] == 0)  # the emptied column is background
        for j in range(7):
            assert torch.equal(out[:, i, j + 1], img[:, i, j])


def test_blur_is_the_mean_of_each_3x3_neighbourhood(rng):
    x = rng.uniform(size=(2, 64))
    out = nf.blur(torch.tensor(x, dtype=torch.float64)).numpy().reshape(2, 8, 8)
    img = x.reshape(2, 8, 8)
    by_hand = np.zeros_like(img)
    for i in range(8):
        for j in range(8):
            total = 0.0
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    if 0 <= i + di < 8 and 0 <= j + dj < 8:
                        total = total + img[:, i + di, j + dj]
            by_hand[:, i, j] = total / 9  # zeros outside the image
    np.testing.assert_allclose(out, by_hand, rtol=0, atol=1e-12)


def test_shift_digits_is_the_affine_shift_plus_the_noise(rng):
    x = torch.tensor(rng.uniform(size=(400, 64)), dtype=torch.float32)
    torch.testing.assert_close(nf.affine_shift(x), 0.5 * x + 0.4)
    noise = nf.shift_digits(x, seed=3) - (0.5 * x + 0.4)
    torch.testing.assert_close(noise, nf.noise_shift(x, seed=3) - x)
    assert abs(noise.std().item() - 0.15) < 0.005 and abs(noise.mean().item()) < 0.005
    assert not torch.equal(nf.noise_shift(x, 0), nf.noise_shift(x, 1))


def test_adabn_cancels_the_affine_shift_exactly():
    """Linear without bias, then BatchNorm: a x + b changes each unit's mean and
    scale only, so statistics re-estimated on shifted data undo it (up to eps)."""
    split = load_digits_split(seed=0)
    x, x_test = split.x_train, split.x_test
    net = nf.make_net("bn", width=16)
    nf.train_net(net, split, steps=20)
    clean, shifted = copy.deepcopy(net), copy.deepcopy(net)
    nf.adapt_bn(clean, x)
    nf.adapt_bn(shifted, nf.affine_shift(x))
    with torch.no_grad():
        y_clean = clean(nf.images(x_test))
        y_shifted = shifted(nf.images(nf.affine_shift(x_test)))
        y_unadapted = net.eval()(nf.images(nf.affine_shift(x_test)))
    scale = y_clean.abs().max().item()
    assert (y_shifted - y_clean).abs().max().item() < 1e-4 * scale
    assert (y_unadapted - y_clean).abs().max().item() > 0.1 * scale  # it can fail
    # the same by hand on the first layer: z -> 0.5 z + W 0.4, then a z-score
    w = net[1].weight.detach().double()
    z = x.double() @ w.T
    z_shift = nf.affine_shift(x.double()) @ w.T
    assert torch.allclose(z_shift, 0.5 * z + 0.4 * w.sum(1))

    def zscore(t):
        return (t - t.mean(0)) / torch.sqrt(t.var(0, unbiased=False) + 1e-5)

    assert (zscore(z_shift) - zscore(z)).abs().max().item() < 1e-3


def test_shifted_accuracy_adapts_a_copy_only():
    split = load_digits_split(seed=0)
    net = nf.make_net("bn", width=8)
    nf.train_net(net, split, steps=10)
    before = copy.deepcopy(net.state_dict())
    plain = nf.shifted_accuracy(net, split, nf.blur, adapt=False)
    nf.shifted_accuracy(net, split, nf.blur, adapt=True)
    for name, value in net.state_dict().items():
        assert torch.equal(value, before[name]), name
    expected = net.eval()(nf.images(nf.blur(split.x_test))).argmax(1) == split.y_test
    assert plain == pytest.approx(expected.double().mean().item())
