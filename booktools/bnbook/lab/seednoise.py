"""Noise after BatchNorm for :class:`bnbook.lab.seeds.SeedMLP`, with mean scale 1.

Santurkar et al. (2018) inject noise after each BatchNorm layer to make the input
distributions of the next layer unstable on purpose. A random scale also multiplies
the gradient flowing back, so its mean is kept at 1: the noise then shifts the
distributions without changing the effective learning rate on average.

Importing this module needs torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Noise"]


@dataclass(frozen=True)
class Noise:
    """Random shift and scale after each BatchNorm layer, in training mode only.

    ``y = s * y_hat + m`` with ``m ~ U(-shift, shift)`` and
    ``s ~ U(1 - scale, 1 + scale)`` (mean 1). ``per="batch"`` draws one ``(m, s)``
    per slot, unit and step, shared by the batch; ``per="example"`` draws one for
    every example too. Evaluation applies no noise (the expected scale is 1).
    """

    shift: float
    scale: float
    per: str = "batch"

    def __post_init__(self) -> None:
        if self.per not in ("batch", "example"):
            raise ValueError(f"per must be 'batch' or 'example', got {self.per!r}")
        if self.shift < 0 or not 0 <= self.scale <= 1:
            raise ValueError(
                f"need shift >= 0 and 0 <= scale <= 1, got {self.shift}, {self.scale}"
            )

    def apply(self, z: torch.Tensor, gen=None) -> torch.Tensor:
        """``s * z + m`` for ``z`` of shape ``(K, B, h)``, with fresh draws."""
        return _add_noise(z, self, gen)


def _add_noise(z: torch.Tensor, noise: Noise, gen) -> torch.Tensor:
    shape = z.shape if noise.per == "example" else (z.shape[0], 1, z.shape[2])
    u = torch.rand((2, *shape), generator=gen, dtype=z.dtype) * 2 - 1
    return (1 + noise.scale * u[0]) * z + noise.shift * u[1]
