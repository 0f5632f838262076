"""Experiments of the chapter "Beyond the batch": the normalization family at work.

Small nets on the 8x8 digits (an MLP, :func:`make_net`, and a conv net,
:func:`make_convnet`) whose norm layer is BatchNorm, Batch Renormalization,
GroupNorm or LayerNorm. BatchNorm and Batch Renorm take their statistics over
*ghost batches* of ``per_batch`` examples inside each batch of 32, as the per-GPU
batches of Wu and He (2018): the gradient and the learning rate stay the same while
only the statistics get noisier. GroupNorm and LayerNorm use no batch statistics,
so ``per_batch`` does not change them.

Also: shifts of the test digits (``SHIFTS``: affine, pixel noise, a one-pixel
translation, a 3x3 blur, and affine plus noise) and AdaBN (Li et al., 2016), which
re-estimates the BatchNorm statistics on unlabelled shifted data. Importing this
module needs torch.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bnbook.lab.experiments import Split, accuracy

__all__ = [
    "BATCH",
    "GN_GROUPS",
    "RENORM_LIMITS",
    "WIDTH",
    "GhostNorm2d",
    "SHIFTS",
    "adapt_bn",
    "affine_shift",
    "blur",
    "draw_norm_cube",
    "images",
    "make_convnet",
    "make_net",
    "noise_shift",
    "shift_digits",
    "shifted_accuracy",
    "train_net",
    "translate",
]


BATCH = 32  # examples per SGD step
GN_GROUPS = 4  # GroupNorm's groups
RENORM_LIMITS = (2.0, 1.0)  # Batch Renorm's r_max, d_max
WIDTH = 64  # hidden units per layer of the MLP


class GhostNorm2d(nn.Module):
    """BatchNorm (``r_max = 1, d_max = 0``) or Batch Renorm over ghost batches.

    Training splits the batch into chunks of ``per_batch`` examples; each chunk is
    normalized with its own statistics, corrected by ``r`` and ``d`` (detached, as
    in Ioffe, 2017) towards the running ones. Eval uses the running statistics.
    """

    def __init__(self, c: int, per_batch: int, r_max: float = 1.0, d_max: float = 0.0):
        super().__init__()
        self.per_batch, self.r_max, self.d_max, self.eps = per_batch, r_max, d_max, 1e-5
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.register_buffer("running_mean", torch.zeros(c))
        self.register_buffer("running_var", torch.ones(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1, 1, 1)
        w, b = self.weight.view(shape), self.bias.view(shape)
        if not self.training:
            rm, rv = self.running_mean.view(shape), self.running_var.view(shape)
            return (x - rm) / torch.sqrt(rv + self.eps) * w + b
        n, c, h, wd = x.shape
        g = x.view(n // self.per_batch, self.per_batch, c, h, wd)
        mu = g.mean((1, 3, 4), keepdim=True)
        var = g.var((1, 3, 4), unbiased=False, keepdim=True)
        sigma = torch.sqrt(self.running_var + self.eps).view(1, 1, c, 1, 1)
        rm = self.running_mean.view(1, 1, c, 1, 1)
        r = torch.sqrt(var + self.eps) / sigma
        r = r.clamp(1 / self.r_max, self.r_max).detach()
        d = ((mu - rm) / sigma).clamp(-self.d_max, self.d_max).detach()
        x_hat = (g - mu) / torch.sqrt(var + self.eps) * r + d
        with torch.no_grad():
            m = self.per_batch * h * wd
            self.running_mean.lerp_(mu.mean((0, 1, 3, 4)), 0.1)
            self.running_var.lerp_(var.mean((0, 1, 3, 4)) * m / (m - 1), 0.1)
        return x_hat.view(n, c, h, wd) * w + b


def _norm(kind: str, c: int, per_batch: int) -> nn.Module:
    if kind == "bn":
        return GhostNorm2d(c, per_batch)
    if kind == "renorm":
        return GhostNorm2d(c, per_batch, *RENORM_LIMITS)
    if kind == "gn":
        return nn.GroupNorm(GN_GROUPS, c)
    if kind == "ln":
        return nn.GroupNorm(1, c)  # LayerNorm over (C, H, W), as in Wu and He
    raise ValueError(f"kind must be 'bn', 'renorm', 'gn' or 'ln', got {kind!r}")


def make_convnet(kind: str, per_batch: int = BATCH, width: int = 8, seed: int = 0):
    """conv(1->w) - norm - relu - conv(w->2w, stride 2) - norm - relu - linear."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1, bias=False),
        _norm(kind, width, per_batch),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
        _norm(kind, 2 * width, per_batch),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(2 * width * 16, 10),
    )


def make_net(kind: str, per_batch: int = BATCH, width: int = WIDTH, seed: int = 0):
    """64 - w - w - 10 with a norm layer after each hidden linear layer."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Flatten()]
    for fan_in in (64, width):
        layers += [nn.Linear(fan_in, width, bias=False), nn.Unflatten(1, (width, 1, 1)),
                   _norm(kind, width, per_batch), nn.ReLU(), nn.Flatten()]  # fmt: skip
    return nn.Sequential(*layers, nn.Linear(width, 10))


def images(x: torch.Tensor) -> torch.Tensor:
    """Flat 64-pixel digits as ``(N, 1, 8, 8)`` images."""
    return x.view(-1, 1, 8, 8)


def train_net(
    model: nn.Module, split: Split, steps: int = 200, seed: int = 0, lr: float = 0.05
) -> float:
    """SGD with momentum on batches of ``BATCH``; returns the test accuracy (eval)."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    x, y = images(split.x_train), split.y_train
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(y), (BATCH,), generator=gen)
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return accuracy(model, images(split.x_test), split.y_test)


def affine_shift(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Lower contrast and a brighter background: ``0.5 x + 0.4`` on every pixel.

    ``seed`` is unused (every shift takes one, so that they are interchangeable).
    """
    return 0.5 * x + 0.4


def noise_shift(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Independent Gaussian pixel noise of standard deviation 0.15."""
    gen = torch.Generator().manual_seed(seed)
    return x + 0.15 * torch.randn(x.shape, generator=gen)


def shift_digits(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The affine shift and the pixel noise together: ``0.5 x + 0.4 + 0.15 z``."""
    return noise_shift(affine_shift(x), seed)


def translate(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Move every digit one pixel right: pixel ``(i, j)`` goes to ``(i, j + 1)``.

    ``x`` holds flat 64-pixel digits, ``(N, 64)``; the emptied first column is
    background (0) and the last column falls off. ``seed`` is unused.
    """
    img = x.reshape(-1, 8, 8)
    out = torch.zeros_like(img)
    out[:, :, 1:] = img[:, :, :-1]
    return out.reshape(x.shape)


def blur(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Each pixel replaced by the mean of its 3 x 3 neighbourhood (zeros outside).

    ``x`` holds flat 64-pixel digits, ``(N, 64)``. ``seed`` is unused.
    """
    out = F.avg_pool2d(images(x), 3, stride=1, padding=1, count_include_pad=True)
    return out.reshape(x.shape)


SHIFTS = {
    "affine": affine_shift,
    "noise": noise_shift,
    "translation": translate,
    "blur": blur,
    "affine + noise": shift_digits,
}


def shifted_accuracy(
    model: nn.Module,
    split: Split,
    shift: Callable[..., torch.Tensor],
    adapt: bool,
) -> float:
    """Test accuracy on shifted test digits, with or without AdaBN first.

    Parameters
    ----------
    model : nn.Module
        A trained net of :func:`make_net`; never changed.
    split : Split
        The digits; ``shift(split.x_test, seed=0)`` is the test set.
    shift : callable
        ``shift(x, seed)`` of flat digits ``(N, 64)``, such as those of
        ``SHIFTS``.
    adapt : bool
        Run :func:`adapt_bn` first, on a copy of ``model``, with the training
        digits shifted with another seed (unlabelled data of the new distribution).

    Returns
    -------
    float
        The share of correct predictions, in eval mode.
    """
    if adapt:
        model = copy.deepcopy(model)
        adapt_bn(model, shift(split.x_train, seed=1))
    return accuracy(model, images(shift(split.x_test, seed=0)), split.y_test)


@torch.no_grad()
def adapt_bn(model: nn.Sequential, x: torch.Tensor) -> None:
    """AdaBN: set every BatchNorm's running statistics to those of ``x``, layer by
    layer (each on the activations of the layers before it, already adapted)."""
    model.eval()
    h = images(x)
    for layer in model:
        if isinstance(layer, GhostNorm2d):
            layer.running_mean.copy_(h.mean((0, 2, 3)))
            layer.running_var.copy_(h.var((0, 2, 3)))
        h = layer(h)


def draw_norm_cube(ax, shaded, title: str) -> None:
    """One (N, C, H*W) block as a cube of cells, the cells of one set ``S`` shaded.

    ``shaded(n, c)`` says whether column ``(n, c)`` (all of H*W) is in the set.
    Only the front face, the top row's top faces and the last column's side faces
    are visible, so the set must reach the top row or the last column: otherwise
    the picture would hide that it runs through the H*W depth.

    Raises
    ------
    ValueError
        If no cell of the set lies in the top row or the last column.
    """
    n_n, n_c, depth = 6, 6, 3
    cells = [(n, c) for n in range(n_n) for c in range(n_c) if shaded(n, c)]
    if not any(c == n_c - 1 or n == n_n - 1 for n, c in cells):
        raise ValueError(
            "the shaded set must include a cell of the top row (c = "
            f"{n_c - 1}) or of the last column (n = {n_n - 1}) so that its H*W depth "
            f"shows, got cells {cells}"
        )
    ox, oy = 0.45, 0.35  # the oblique offset of the depth (H*W) axis
    for n in range(n_n):
        for c in range(n_c):
            on = shaded(n, c)
            face = "#3b75af" if on else "white"
            x0, y0 = n, c
            ax.add_patch(_face([(x0, y0), (x0 + 1, y0), (x0 + 1, y0 + 1),
                                      (x0, y0 + 1)], face))  # fmt: skip
            if c == n_c - 1:  # top face
                ax.add_patch(_face([(x0, y0 + 1), (x0 + 1, y0 + 1),
                    (x0 + 1 + depth * ox, y0 + 1 + depth * oy),
                    (x0 + depth * ox, y0 + 1 + depth * oy)], face, 0.8))  # fmt: skip
            if n == n_n - 1:  # side face
                ax.add_patch(_face([(x0 + 1, y0), (x0 + 1 + depth * ox,
                    y0 + depth * oy), (x0 + 1 + depth * ox, y0 + 1 + depth * oy),
                    (x0 + 1, y0 + 1)], face, 0.6))  # fmt: skip
    ax.set_xlim(-1, n_n + depth * ox + 0.5)
    ax.set_ylim(-1, n_c + depth * oy + 0.8)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title)
    ax.text(n_n / 2, -0.6, "N (examples)", ha="center", va="center", fontsize=10.5)
    ax.text(-0.5, n_c / 2, "C", ha="center", va="center", fontsize=10.5)
    ax.text(n_n + 0.6, n_c + depth * oy + 0.5, "H, W", ha="center", fontsize=10.5)


def _face(points, face: str, shade: float = 1.0):
    """A cell face; ``shade`` < 1 darkens shaded faces for the 3D look."""
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Polygon

    rgb = np.array(to_rgb(face))
    return Polygon(points, closed=True, facecolor=rgb * shade, edgecolor="#333333",
                   linewidth=0.5)  # fmt: skip
