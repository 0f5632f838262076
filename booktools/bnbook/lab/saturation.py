"""How many sigmoid inputs sit where the sigmoid is flat: the saturated regime.

The sigmoid's slope ``s'(z) = s(z) (1 - s(z))`` peaks at ``1/4`` at ``z = 0`` and
decays like ``exp(-|z|)``. We call an input *saturated* when the slope there is below
a chosen fraction of that peak. :func:`sigmoid_saturation_threshold` turns the
fraction into a threshold on ``|z|``; :class:`SaturationTracker` records, during
training, the share of a network's sigmoid inputs beyond it. The tracker needs torch
(through :mod:`bnbook.lab.experiments`); the two functions need only numpy. The
chapter :ref:`normalization` uses them to show what BatchNorm does to saturation.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = ["SaturationTracker", "saturated_fraction", "sigmoid_saturation_threshold"]


def sigmoid_saturation_threshold(fraction: float) -> float:
    """The ``|z|`` beyond which the sigmoid's slope is below ``fraction`` of its peak.

    Parameters
    ----------
    fraction : float
        In ``(0, 1)``: the share of the peak slope ``s'(0) = 1/4`` that counts as
        "still learning".

    Returns
    -------
    float
        ``z_sat > 0`` with ``s'(z_sat) = fraction / 4``; ``s'(z) < fraction / 4``
        exactly when ``|z| > z_sat``.

    Notes
    -----
    ``s'(z) = 1 / (4 \\cosh^2(z/2))``, so
    ``z_sat = 2 \\operatorname{arccosh}(1/\\sqrt{fraction})``.

    See Also
    --------
    saturated_fraction, SaturationTracker
    """
    if isinstance(fraction, bool) or not isinstance(
        fraction, (int, float, np.floating)
    ):
        raise TypeError(f"fraction must be a real number, got {type(fraction)}")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    return float(2 * np.arccosh(1 / np.sqrt(fraction)))


def saturated_fraction(z: Any, threshold: float) -> float:
    """Share of the entries of ``z`` with ``|z| > threshold``.

    Parameters
    ----------
    z : array_like, any shape, not empty
        Pre-activations (sigmoid inputs).
    threshold : float
        Non-negative, e.g. from :func:`sigmoid_saturation_threshold`.

    Returns
    -------
    float
        In ``[0, 1]``.
    """
    arr = np.asarray(z)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"z must have a floating dtype, got dtype {arr.dtype}")
    if arr.size == 0:
        raise ValueError("z is empty: no fraction of nothing")
    if isinstance(threshold, bool) or not isinstance(
        threshold, (int, float, np.floating)
    ):
        raise TypeError(f"threshold must be a real number, got {type(threshold)}")
    if not threshold >= 0:
        raise ValueError(f"threshold must be non-negative, got {threshold}")
    return float(np.mean(np.abs(arr) > threshold))


@dataclass
class SaturationTracker:
    """Records the share of saturated sigmoid inputs, per hidden layer, in training.

    Call it as ``tracker(step, model)``, for example from
    :func:`bnbook.lab.experiments.train`'s ``callbacks``. It runs ``x_probe`` through a
    copy of ``model`` and applies :func:`saturated_fraction` to the input of every
    activation module. With ``training=True`` (the default) the copy is in training
    mode, so BatchNorm layers use the probe batch's statistics, as they do while the
    network trains; the model itself and its running statistics are not touched.
    With ``training=False`` the model's eval mode is used.
    """

    x_probe: torch.Tensor
    threshold: float
    training: bool = True
    steps: list[int] = field(default_factory=list)
    values: list[list[float]] = field(default_factory=list)

    def __call__(self, step: int, model: nn.Sequential) -> None:
        from bnbook.lab.experiments import hidden_preactivations

        probe = copy.deepcopy(model).train(self.training)
        zs = hidden_preactivations(probe, self.x_probe)
        self.steps.append(step)
        self.values.append(
            [saturated_fraction(z.double().numpy(), self.threshold) for z in zs]
        )

    def as_array(self) -> np.ndarray:
        """Shape ``(n_records, n_hidden_layers)``."""
        return np.array(self.values, dtype=float).reshape(len(self.values), -1)
