"""Hyperparameter sweeps: train one network per setting and classify how it ended.

A sweep trains the book's MLP (:func:`bnbook.lab.experiments.make_mlp`) with and without
BatchNorm over a grid of learning rates or initial weight scales, and sorts every
run into one of three outcomes with a rule stated once, here:

- **diverged**: the training loss of the final weights is not finite, or is above
  ``diverge_factor`` times ``ln(n_classes)``, the cross-entropy of guessing every
  class with equal probability. Such a network is confidently wrong.
- **stalled**: not diverged, but the final test accuracy is below ``stall_acc``.
- **trained**: everything else.

The rule looks only at the end of a run. It does not compare with the loss at step
0, which for a BatchNorm network is measured in evaluation mode with the initial
running statistics (mean 0, variance 1) and so says little about the network that
trains. The chapter :ref:`normalization` uses this module for its learning-rate and
initial-scale sweeps. Importing it needs torch and scikit-learn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from bnbook.lab import experiments as ex

__all__ = ["DIVERGE_FACTOR", "STALL_ACC", "Run", "Sweep", "is_contiguous", "outcome"]

DIVERGE_FACTOR = 2.0
"""Default: a final loss above this many times ``ln(n_classes)`` is divergence."""

STALL_ACC = 0.5
"""Default: a final test accuracy below this is a stalled run."""

OUTCOMES = ("trained", "stalled", "diverged")


@dataclass(frozen=True)
class Run:
    """One trained network and what it ended with.

    Attributes
    ----------
    model : torch.nn.Sequential
        The network with its final weights.
    history : bnbook.lab.experiments.History
        What :func:`bnbook.lab.experiments.train` recorded.
    final_loss : float
        Cross-entropy of the final weights on the training set in evaluation mode;
        ``inf`` when training stopped on a non-finite loss.
    test_acc : float
        Test accuracy of the final weights, measured after training (also when
        training stopped early, unlike ``history.test_acc[-1]``).
    weight_growth, weight_change : ndarray, shape ``(n_linear,)``
        Per ``Linear`` layer, ``||W_end|| / ||W_0||`` and ``||W_end - W_0|| / ||W_0||``
        (Frobenius norms).
    """

    model: nn.Sequential
    history: ex.History
    final_loss: float
    test_acc: float
    weight_growth: np.ndarray
    weight_change: np.ndarray

    def outcome(self, **rule: Any) -> str:
        """:func:`outcome` of this run; ``rule`` overrides its keyword defaults."""
        return outcome(self.final_loss, self.test_acc, **rule)


def _real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)


def _check_rule(diverge_factor: Any, stall_acc: Any, n_classes: Any) -> None:
    if not _real(diverge_factor, "diverge_factor") > 0:
        raise ValueError(f"diverge_factor must be positive, got {diverge_factor}")
    if not 0 <= _real(stall_acc, "stall_acc") <= 1:
        raise ValueError(f"stall_acc must be in [0, 1], got {stall_acc}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)):
        raise TypeError(f"n_classes must be an int, got {type(n_classes).__name__}")
    if n_classes < 2:
        raise ValueError(f"n_classes must be at least 2, got {n_classes}")


def outcome(
    final_loss: float,
    test_acc: float,
    *,
    diverge_factor: float = DIVERGE_FACTOR,
    stall_acc: float = STALL_ACC,
    n_classes: int = 10,
) -> str:
    """Classify a finished run as ``"diverged"``, ``"stalled"`` or ``"trained"``.

    Parameters
    ----------
    final_loss : float
        Training cross-entropy of the final weights (``nan`` or ``inf`` allowed).
    test_acc : float
        Final test accuracy, in ``[0, 1]``.
    diverge_factor, stall_acc, n_classes
        The rule's constants; see the module docstring.

    Returns
    -------
    str
        One of ``OUTCOMES``.

    Notes
    -----
    diverged if ``not isfinite(L) or L > diverge_factor * ln(n_classes)``, else
    stalled if ``test_acc < stall_acc``, else trained.
    """
    loss = _real(final_loss, "final_loss")
    acc = _real(test_acc, "test_acc")
    _check_rule(diverge_factor, stall_acc, n_classes)
    if not 0 <= acc <= 1:
        raise ValueError(f"test_acc must be in [0, 1], got {test_acc}")
    if not math.isfinite(loss) or loss > diverge_factor * math.log(n_classes):
        return "diverged"
    return "stalled" if acc < stall_acc else "trained"


def is_contiguous(labels: Sequence[str], target: str = "trained") -> bool:
    """Whether the entries equal to ``target`` form one non-empty unbroken block.

    Parameters
    ----------
    labels : sequence of str
        Outcomes in the order of the swept values (e.g. increasing learning rate).
    target : str
        The label whose block is checked.

    Returns
    -------
    bool
        True for ``["stalled", "trained", "trained", "diverged"]``, False for
        ``["trained", "stalled", "trained"]`` and when ``target`` never occurs.
    """
    if isinstance(labels, str) or not all(isinstance(x, str) for x in labels):
        raise TypeError(f"labels must be a sequence of str, got {labels!r}")
    hits = [i for i, label in enumerate(labels) if label == target]
    return bool(hits) and hits[-1] - hits[0] + 1 == len(hits)


def _linear_weights(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight.detach().clone() for m in model if isinstance(m, nn.Linear)]


@dataclass
class Sweep:
    """Trains one network per ``(batch_norm, lr, init_std)``, each at most once.

    Every run starts from :func:`bnbook.lab.experiments.make_mlp` with ``seed``, so runs
    that differ only in ``batch_norm`` share their initial weights, and trains with
    :func:`bnbook.lab.experiments.train` for ``steps`` SGD steps. Results are cached, so
    two sweeps that meet at one setting train it once.
    """

    split: ex.Split
    steps: int
    batch_size: int = 60
    seed: int = 0
    _cache: dict[tuple[bool, float, float], Run] = field(
        default_factory=dict, init=False, repr=False
    )

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int):
            raise TypeError(f"steps must be an int, got {type(self.steps).__name__}")
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        n = len(self.split.y_train)
        if not 1 < self.batch_size <= n:
            raise ValueError(f"batch_size must be in 2..{n}, got {self.batch_size}")

    def run(self, batch_norm: bool, lr: float, init_std: float) -> Run:
        """The :class:`Run` for one setting (trained now, or from the cache)."""
        if not isinstance(batch_norm, bool):
            raise TypeError(f"batch_norm must be a bool, got {type(batch_norm)}")
        lr, init_std = _real(lr, "lr"), _real(init_std, "init_std")
        if not (lr > 0 and init_std > 0):
            raise ValueError(f"lr and init_std must be positive, got {lr}, {init_std}")
        key = (batch_norm, lr, init_std)
        if key not in self._cache:
            self._cache[key] = self._train(*key)
        return self._cache[key]

    def _train(self, batch_norm: bool, lr: float, init_std: float) -> Run:
        model = ex.make_mlp(batch_norm=batch_norm, init_std=init_std, seed=self.seed)
        w0 = _linear_weights(model)
        history = ex.train(
            model,
            self.split,
            steps=self.steps,
            lr=lr,
            batch_size=self.batch_size,
            seed=self.seed,
            eval_every=self.steps,
        )
        w1 = _linear_weights(model)
        pairs = list(zip(w0, w1, strict=True))
        return Run(
            model=model,
            history=history,
            final_loss=math.inf if history.diverged else history.train_loss[-1],
            test_acc=ex.accuracy(model, self.split.x_test, self.split.y_test),
            weight_growth=np.array([_ratio(b, a) for a, b in pairs]),
            weight_change=np.array([_ratio(b - a, a) for a, b in pairs]),
        )


def _ratio(num: torch.Tensor, den: torch.Tensor) -> float:
    """``||num|| / ||den||`` (Frobenius norms) in float64."""
    return float(num.double().norm() / den.double().norm())
