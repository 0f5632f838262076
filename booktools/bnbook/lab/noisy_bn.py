"""Santurkar et al. (2018)'s "noisy BatchNorm": injected internal covariate shift.

After every BatchNorm layer a :class:`ShiftScaleNoise` layer shifts and scales each
unit at random, with new draws at every training step, so the next layer sees an
input distribution that keeps moving however well BatchNorm normalized it. If
BatchNorm helped by keeping layer inputs stable, this network should train badly.
Importing this module needs torch.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bnbook.lab.experiments import PercentileTracker, hidden_preactivations

__all__ = [
    "ShiftScaleNoise",
    "TrainModePercentileTracker",
    "insert_noise_after_batchnorm",
]


class ShiftScaleNoise(nn.Module):
    """Random per-unit shift and scale, redrawn at every training forward pass.

    In training mode each call draws, for every unit ``j``, a shift
    ``mu_j ~ U(-shift, shift)`` and a scale ``s_j ~ U(1, scale)`` and returns
    ``s * input + mu``: the distribution of every unit moves, in mean and spread, at
    every step. In eval mode it returns ``E[s] * input`` with
    ``E[s] = (1 + scale) / 2`` (the expected transform, as dropout rescales).

    Parameters
    ----------
    num_features : int
        Number of units ``C`` of the ``(N, C)`` input.
    shift : float
        Half-width of the shift's range, ``>= 0``.
    scale : float
        Upper end of the scale's range, ``>= 1``.
    seed : int
        Seed of the module's own generator (deep copies continue the same stream).

    Notes
    -----
    .. math:: y_{ij} = s_{tj}\\,x_{ij} + \\mu_{tj}, \\qquad
        \\mu_{tj} \\sim U(-a, a), \\quad s_{tj} \\sim U(1, b),

    drawn afresh at every step :math:`t`. The last draw is kept in ``last_shift``
    and ``last_scale``. After BatchNorm's affine map this is BatchNorm with a
    random scale :math:`s\\gamma` and shift :math:`s\\beta + \\mu`; the gradient
    flowing back through unit :math:`j` is scaled by :math:`s_{tj}`. Deep copies
    of the module draw the same numbers as the original would, so measurements
    made on copies (such as :func:`bnbook.lab.ics.gradient_shift`) see one draw.
    """

    def __init__(
        self, num_features: int, shift: float = 1.0, scale: float = 2.0, seed: int = 0
    ) -> None:
        if isinstance(num_features, bool) or not isinstance(num_features, int):
            raise TypeError(f"num_features must be an int, got {num_features!r}")
        if num_features < 1 or not shift >= 0 or not scale >= 1:
            raise ValueError(
                "need num_features >= 1, shift >= 0 and scale >= 1, got "
                f"{num_features}, {shift}, {scale}"
            )
        super().__init__()
        self.num_features, self.shift, self.scale = num_features, shift, scale
        self._rng = np.random.default_rng(seed)
        self.last_shift = np.zeros(num_features)
        self.last_scale = np.ones(num_features)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.ndim != 2 or input.shape[1] != self.num_features:
            raise ValueError(
                f"input must have shape (N, {self.num_features}), "
                f"got {tuple(input.shape)}"
            )
        if not self.training:
            return input * ((1.0 + self.scale) / 2.0)
        self.last_shift = self._rng.uniform(-self.shift, self.shift, self.num_features)
        self.last_scale = self._rng.uniform(1.0, self.scale, self.num_features)
        mu = torch.from_numpy(self.last_shift).to(input.dtype)
        s = torch.from_numpy(self.last_scale).to(input.dtype)
        return input * s + mu

    def extra_repr(self) -> str:
        return f"{self.num_features}, shift={self.shift}, scale={self.scale}"


def insert_noise_after_batchnorm(
    model: nn.Sequential, shift: float = 1.0, scale: float = 2.0, seed: int = 0
) -> nn.Sequential:
    """A copy of ``model`` with a :class:`ShiftScaleNoise` after each BatchNorm.

    Parameters
    ----------
    model : nn.Sequential
        A network with BatchNorm layers (for example
        ``bnbook.lab.experiments.make_mlp(batch_norm=True)``); it is not modified.
    shift, scale : float
        The noise's ranges (see :class:`ShiftScaleNoise`).
    seed : int
        The ``k``-th noise layer gets seed ``seed + k``.

    Returns
    -------
    nn.Sequential
        The "noisy BatchNorm" network of Santurkar et al. (2018), sharing no
        parameters with ``model``.
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(
            f"model must be a torch.nn.Sequential, got {type(model).__name__}"
        )
    layers: list[nn.Module] = []
    for module in copy.deepcopy(model):
        layers.append(module)
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            k = sum(isinstance(m, ShiftScaleNoise) for m in layers)
            layers.append(ShiftScaleNoise(module.num_features, shift, scale, seed + k))
    if not any(isinstance(m, ShiftScaleNoise) for m in layers):
        raise ValueError("model has no BatchNorm layer to put noise after")
    return nn.Sequential(*layers)


@dataclass
class TrainModePercentileTracker(PercentileTracker):
    """A :class:`~bnbook.lab.experiments.PercentileTracker` that looks in training mode.

    :class:`~bnbook.lab.experiments.PercentileTracker` runs the model in eval mode,
    where BatchNorm uses its running statistics and :class:`ShiftScaleNoise` is quiet.
    This tracker runs a deep copy of the model in training mode instead, so it
    records what a unit sees during a training step: batch statistics (of
    ``x_probe``) and a fresh noise draw. The model itself is left untouched.
    """

    def __call__(self, step: int, model: nn.Sequential) -> None:
        probe = copy.deepcopy(model).train()
        z = hidden_preactivations(probe, self.x_probe)[self.layer][:, self.unit]
        self.steps.append(step)
        self.values.append(np.percentile(z.double().numpy(), self.q))
