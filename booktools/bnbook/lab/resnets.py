"""Small residual conv nets on the 8x8 digits, many at once (one per *slot*).

A :class:`SlotResNet` holds K networks of one architecture, one per slot (a seed,
or a seed and a learning rate). Their convolutions run as one grouped convolution
(``groups=K``), so slot ``k`` sees only its own channels and its own batch.

The architecture: a 3x3 stem convolution on the 8x8 image, ReLU and 2x2 average
pooling to 4x4, then ``blocks`` residual blocks ``h + branch(h)`` with
``branch = conv -> [norm] -> ReLU -> conv -> [norm]``, then a linear read-out of
the flattened 4x4 map. The ``arm`` says how the block is normalized:

- ``"none"``: no normalization, He initialization, biases.
- ``"bn"``: BatchNorm after both convolutions (gamma 1).
- ``"bn_zero"``: the same with each block's last gamma at 0 (Goyal et al. 2017).
- ``"skipinit"``: no normalization; the branch times a learned scalar that starts
  at 0 (De & Smith 2020).
- ``"nf"``: normalizer-free (Brock et al. 2021): scaled weight standardization,
  ``h + alpha * branch(h / beta)`` with ``beta`` the expected scale of ``h``; train
  it with adaptive gradient clipping (:func:`bnbook.lab.nf.agc_`).

Training lives in :mod:`bnbook.lab.restrain`. Importing this module needs torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from bnbook.lab.nf import RELU_GAIN, scaled_ws

__all__ = ["ARMS", "NF_ALPHA", "SlotResNet"]

ARMS = ("none", "bn", "bn_zero", "skipinit", "nf")
NF_ALPHA = 0.2  # the normalizer-free branch's scale (Brock et al. 2021)
_BN_MOMENTUM, _EPS = 0.1, 1e-5


@dataclass
class SlotResNet:
    """K residual nets as stacked tensors; build with :meth:`make`.

    ``params`` maps names to tensors with a leading slot axis K: convolution
    weights ``(K, C_out, C_in, 3, 3)``, per-channel vectors ``(K, C)``, the
    SkipInit scalars ``(K, blocks)``, the read-out ``(K, 16 C, 10)``.
    """

    arm: str
    width: int
    blocks: int
    params: dict[str, torch.Tensor]
    running: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def n_slots(self) -> int:
        return self.params["stem"].shape[0]

    @property
    def uses_bn(self) -> bool:
        return self.arm in ("bn", "bn_zero")

    @classmethod
    def make(
        cls, arm: str, seeds: Sequence[int], width: int = 8, blocks: int = 3
    ) -> SlotResNet:
        """One slot per seed; slot k's weights come from ``seeds[k]`` alone."""
        if arm not in ARMS:
            raise ValueError(f"arm must be one of {ARMS}, got {arm!r}")
        if width < 1 or blocks < 0 or not len(seeds):
            raise ValueError(
                f"need width >= 1, blocks >= 0 and a seed; got {width}, {blocks}, "
                f"{len(seeds)} seeds"
            )
        per_slot = [_init(arm, width, blocks, int(s)) for s in seeds]
        params = {
            name: torch.stack([p[name] for p in per_slot]).requires_grad_(True)
            for name in per_slot[0]
        }
        net = cls(arm, width, blocks, params)
        k, c = len(seeds), width
        if net.uses_bn:
            for name in ["stem"] + [f"b{i}.{j}" for i in range(blocks) for j in (1, 2)]:
                net.running[name] = torch.zeros(k * c)
                net.running[name + ".var"] = torch.ones(k * c)
        return net

    def beta(self, block: int) -> float:
        """Expected std of the normalizer-free block input: ``sqrt(1 + l alpha^2)``."""
        return math.sqrt(1.0 + block * NF_ALPHA**2)

    def forward(
        self, x: torch.Tensor, *, training: bool, collect: list | None = None
    ) -> torch.Tensor:
        """Logits ``(K, B, 10)`` of images ``(K, B, 64)``, or ``(B, 64)`` shared.

        ``training`` uses batch statistics (and updates the running ones);
        otherwise the running statistics. A list ``collect`` receives, for each
        block, the pair (block input, branch output) as ``(K, B, C, 4, 4)``.
        """
        p, k = self.params, self.n_slots
        if x.ndim == 2:
            x = x.expand(k, *x.shape)
        b = x.shape[1]
        h = x.transpose(0, 1).reshape(b, k, 8, 8)
        h = self._conv(h, "stem", training)
        h = F.avg_pool2d(self._relu(h), 2)
        for i in range(self.blocks):
            inp = h / self.beta(i) if self.arm == "nf" else h
            r = self._relu(self._conv(inp, f"b{i}.1", training))
            r = self._conv(r, f"b{i}.2", training)
            if self.arm == "skipinit":
                alpha = p[f"b{i}.alpha"].repeat_interleave(self.width, 1)
                r = r * alpha.reshape(-1, 1, 1)
            elif self.arm == "nf":
                r = r * NF_ALPHA
            if collect is not None:
                collect.append((_slots(h, k), _slots(r, k)))
            h = h + r
        flat = torch.relu(h).reshape(b, k, -1).transpose(0, 1)
        return torch.baddbmm(p["head.b"], flat, p["head.w"])

    def _relu(self, z: torch.Tensor) -> torch.Tensor:
        return torch.relu(z) * RELU_GAIN if self.arm == "nf" else torch.relu(z)

    def _conv(self, h: torch.Tensor, name: str, training: bool) -> torch.Tensor:
        p, k = self.params, self.n_slots
        w = p[name]
        if self.arm == "nf":
            w = scaled_ws(w, p[name + ".gain"], unit_dims=2)
        bias = p.get(name + ".bias")
        z = F.conv2d(
            h,
            w.reshape(-1, *w.shape[2:]),
            None if bias is None else bias.reshape(-1),
            padding=1,
            groups=k,
        )
        if self.uses_bn:
            z = F.batch_norm(
                z,
                self.running[name],
                self.running[name + ".var"],
                p[name + ".gamma"].reshape(-1),
                p[name + ".beta"].reshape(-1),
                training=training,
                momentum=_BN_MOMENTUM,
                eps=_EPS,
            )
        return z


def _slots(h: torch.Tensor, k: int) -> torch.Tensor:
    b, kc, s, _ = h.shape
    return h.detach().reshape(b, k, kc // k, s, s).transpose(0, 1)


def _init(arm: str, width: int, blocks: int, seed: int) -> dict[str, torch.Tensor]:
    """One slot's parameters, drawn from ``seed`` alone (He init for the convs)."""
    gen = torch.Generator().manual_seed(seed)
    c = width

    def conv(c_in: int) -> torch.Tensor:
        return torch.randn(c, c_in, 3, 3, generator=gen) * math.sqrt(2.0 / (9 * c_in))

    out = {"stem": conv(1)}
    for i in range(blocks):
        out[f"b{i}.1"], out[f"b{i}.2"] = conv(c), conv(c)
    for name in [n for n in out]:
        if arm in ("bn", "bn_zero"):
            last = name.endswith(".2") and arm == "bn_zero"
            out[name + ".gamma"] = torch.zeros(c) if last else torch.ones(c)
            out[name + ".beta"] = torch.zeros(c)
        else:
            out[name + ".bias"] = torch.zeros(c)
        if arm == "nf":
            out[name + ".gain"] = torch.ones(c)
    if arm == "skipinit":
        for i in range(blocks):
            out[f"b{i}.alpha"] = torch.zeros(1)
    out["head.w"] = torch.randn(16 * c, 10, generator=gen) / math.sqrt(16 * c)
    out["head.b"] = torch.zeros(1, 10)
    return out
