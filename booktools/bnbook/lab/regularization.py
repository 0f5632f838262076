"""Tools of the regularization chapter: margins, population statistics, intervals.

- :func:`margin` and :func:`margins_in_batches`: how far one example is from being
  misclassified, and how that moves with its batch-mates in training mode.
- :func:`set_population_stats` and :class:`RunRecorder`: evaluate a BatchNorm
  network with the statistics of the whole training set, so that the evaluation
  does not depend on how the running averages were updated.
- :func:`mean_difference` and :func:`describe_difference`: a difference of means
  over seeds with its t-interval, and one sentence on it worded by the numbers.
- :func:`batch_std_sd` and :func:`mean_inverse_std_ratio`: how noisy the batch
  standard deviation is for Gaussian data, and how much larger training-mode outputs
  are than inference outputs on average.

Importing this module needs torch and scipy.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import stats
from scipy.special import gammaln
from torch import nn

from bnbook.lab import experiments as ex
from bnlib.torch.ghost import to_ghost

__all__ = [
    "RunRecorder",
    "batch_std_sd",
    "describe_difference",
    "margin",
    "margins_in_batches",
    "mean_difference",
    "mean_inverse_std_ratio",
    "set_population_stats",
]


def margin(logits: torch.Tensor, labels: Any) -> torch.Tensor:
    """Logit of the true class minus the largest other logit, per row.

    Parameters
    ----------
    logits : Tensor, shape ``(N, K)``
    labels : int or Tensor of ints, shape ``(N,)``

    Returns
    -------
    Tensor, shape ``(N,)``
        Positive where the row is classified correctly.
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (N, K), got {tuple(logits.shape)}")
    rows = torch.arange(logits.shape[0])
    labels = torch.as_tensor(labels).expand(logits.shape[0])
    true = logits[rows, labels]
    others = logits.clone()
    others[rows, labels] = -torch.inf
    return true - others.max(dim=1).values


def margins_in_batches(
    model: nn.Module, x: torch.Tensor, y: Any, mates: torch.Tensor, training: bool
) -> np.ndarray:
    """Margin of ``x[d]`` placed first in the batch ``[x[d], *mates[d]]``, per draw.

    Parameters
    ----------
    model : torch.nn.Module
        A network of :func:`bnbook.lab.experiments.make_mlp`; it is copied, not changed.
    x : Tensor, shape ``(draws, D)``
        The example of each draw (repeat one example to follow it alone).
    y : int or Tensor of ints, shape ``(draws,)``
    mates : Tensor, shape ``(draws, m - 1, D)``
        The batch-mates of each draw.
    training : bool
        Training mode (batch statistics) or evaluation mode (running statistics).

    Returns
    -------
    ndarray, shape ``(draws,)``

    Notes
    -----
    All draws go through one forward pass: in training mode the copy's BatchNorm
    layers become ghost layers (:func:`bnlib.torch.to_ghost`) with ghost size
    ``m``, so each batch is normalized with its own statistics, as if alone.
    """
    draws, size = mates.shape[0], mates.shape[1] + 1
    if x.shape[0] != draws:
        raise ValueError(f"x has {x.shape[0]} rows for {draws} draws of mates")
    batches = torch.cat([x[:, None, :], mates], dim=1)
    net = copy.deepcopy(model).train(training)
    if training:
        to_ghost(net, size)
    with torch.no_grad():
        logits = net(batches.reshape(draws * size, -1))
    return margin(logits[::size], y).numpy()


def set_population_stats(model: nn.Sequential, x: torch.Tensor) -> nn.Sequential:
    """Set every BatchNorm layer's running statistics to those of ``x``.

    Layer by layer, in order: each BatchNorm layer gets the mean and the unbiased
    variance of its input over all of ``x`` (what the running averages estimate),
    and the forward pass continues in evaluation mode with them. Returns ``model``
    (changed in place, left in evaluation mode).
    """
    model.eval()
    z = x
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, nn.BatchNorm1d):
                layer.running_mean.copy_(z.mean(dim=0))
                layer.running_var.copy_(z.var(dim=0, unbiased=True))
            z = layer(z)
    return model


@dataclass
class RunRecorder:
    """Callback for :func:`bnbook.lab.experiments.train`: accuracies and ``||gamma||``.

    At each evaluation it records the length of all BatchNorm scales together
    (``nan`` without BatchNorm) and, from step ``acc_from`` on, the training and
    test accuracy of a copy of the model whose running statistics are set by
    :func:`set_population_stats` (``acc_steps`` lists those steps).
    """

    split: ex.Split
    acc_from: int = 0
    acc_steps: list[int] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    gamma: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)

    def __call__(self, step: int, model: nn.Sequential) -> None:
        gammas = [m.weight.detach() for m in model if isinstance(m, nn.BatchNorm1d)]
        self.steps.append(step)
        self.gamma.append(torch.cat(gammas).norm().item() if gammas else np.nan)
        if step < self.acc_from:
            return
        self.acc_steps.append(step)
        net = set_population_stats(copy.deepcopy(model), self.split.x_train)
        self.train_acc.append(ex.accuracy(net, self.split.x_train, self.split.y_train))
        self.test_acc.append(ex.accuracy(net, self.split.x_test, self.split.y_test))


def mean_difference(
    x: Any, y: Any, paired: bool, confidence: float = 0.95
) -> tuple[float, float, float]:
    """Difference of means ``x - y`` and its two-sided t-interval.

    Parameters
    ----------
    x, y : array_like, shape ``(n,)`` and ``(n_y,)``
        One number per seed. ``paired`` needs ``n_y = n``, seed ``i`` of both.
    paired : bool
        Paired t-interval on ``x - y`` (runs that share a seed) or Welch's.
    confidence : float

    Returns
    -------
    diff, low, high : float
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if paired and x.shape != y.shape:
        raise ValueError(f"paired needs equal shapes, got {x.shape} and {y.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    test = stats.ttest_rel(x, y) if paired else stats.ttest_ind(x, y, equal_var=False)
    ci = test.confidence_interval(confidence)
    return float(x.mean() - y.mean()), float(ci.low), float(ci.high)


def describe_difference(diff: float, low: float, high: float, what: str) -> str:
    """One sentence on a difference in points and its interval.

    ``what`` names the compared quantity, e.g. "The test accuracy of A against B".
    The wording follows the interval: higher or lower when it excludes zero.
    """
    span = f"(interval {low:+.1f} to {high:+.1f})"
    if low > 0:
        return f"{what} is higher by {abs(diff):.1f} points {span}."
    if high < 0:
        return f"{what} is lower by {abs(diff):.1f} points {span}."
    return (
        f"{what} differs by {diff:+.1f} points {span}; the interval includes "
        "zero, so these seeds cannot tell the two apart."
    )


def _check_batch_size(m: Any, smallest: int) -> np.ndarray:
    sizes = np.asarray(m)
    if not np.issubdtype(sizes.dtype, np.integer) or (sizes < smallest).any():
        raise ValueError(f"batch sizes must be integers >= {smallest}, got {m!r}")
    return sizes.astype(np.float64)


def batch_std_sd(m: Any) -> np.ndarray:
    """Standard deviation of the batch standard deviation, in units of ``sigma``.

    Parameters
    ----------
    m : int or array of ints, each ``>= 2``
        Batch sizes.

    Returns
    -------
    ndarray, the shape of ``m``

    Notes
    -----
    For Gaussian data ``sigma_B = sigma chi_{m-1} / sqrt(m)``, and ``chi_k`` has mean
    ``c_k = sqrt(2) Gamma((k + 1) / 2) / Gamma(k / 2)`` and second moment ``k``, so
    ``sd(sigma_B) / sigma = sqrt(((m - 1) - c_{m-1}^2) / m)``, about
    ``1 / sqrt(2 m)`` for large ``m``.
    Derived and checked in the book's statistics appendix (``eq-reg-sd-sigma``).
    """
    size = _check_batch_size(m, 2)
    c = np.sqrt(2) * np.exp(gammaln(size / 2) - gammaln((size - 1) / 2))
    return np.sqrt((size - 1 - c**2) / size)


def mean_inverse_std_ratio(m: Any) -> np.ndarray:
    """``E[sigma / sigma_B]`` for Gaussian data: training over inference scale.

    Parameters
    ----------
    m : int or array of ints, each ``>= 3``
        Batch sizes (at ``m = 2`` the expectation is infinite).

    Returns
    -------
    ndarray, the shape of ``m``

    Notes
    -----
    ``E[sigma / sigma_B] = sqrt(m / 2) Gamma((m - 2) / 2) / Gamma((m - 1) / 2)``,
    from ``E[1 / chi_k] = Gamma((k - 1) / 2) / (sqrt(2) Gamma(k / 2))`` for ``k > 1``
    (Summers & Dinneen, 2020, point out the mismatch).
    Derived and checked in the book's statistics appendix (``eq-reg-summers``).
    """
    size = _check_batch_size(m, 3)
    return np.sqrt(size / 2) * np.exp(gammaln((size - 2) / 2) - gammaln((size - 1) / 2))
