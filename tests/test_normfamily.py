"""bnbook.lab.normfamily: the chapter's ghost-batch norm layer, nets and AdaBN."""

from __future__ import annotations

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
