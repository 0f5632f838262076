"""The book's shared experiment kit: data, small MLPs, a training loop, trackers.

Every chapter that trains a network uses these pieces, so that "the network with
BatchNorm" means the same thing everywhere. The data are scikit-learn's bundled
8x8 handwritten digits (no download). BatchNorm layers are
:class:`bnlib.torch.BatchNorm1d`, so the experiments run on bnlib's own forward
and backward passes. Importing this module needs torch and scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from bnlib.torch.batchnorm import BatchNorm1d

__all__ = [
    "History",
    "PercentileTracker",
    "Split",
    "accuracy",
    "every",
    "first_step_above",
    "hidden_preactivations",
    "load_digits_split",
    "make_mlp",
    "percentile_range",
    "train",
]

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
}


@dataclass(frozen=True)
class Split:
    """A train/test split as float32 feature tensors and int64 label tensors."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_digits_split(
    test_fraction: float = 0.3, n_train: int | None = None, seed: int = 0
) -> Split:
    """scikit-learn's digits (1797 images, 64 pixels in [0, 1]), split at random.

    Parameters
    ----------
    test_fraction : float
        Share of the 1797 examples held out for testing, in (0, 1).
    n_train : int, optional
        Keep only the first ``n_train`` training examples (a small-data regime).
    seed : int
        Seed of the permutation that makes the split.

    Returns
    -------
    Split
        ``x_*`` of shape ``(n, 64)`` (float32), ``y_*`` of shape ``(n,)`` (int64).
    """
    from sklearn.datasets import load_digits

    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = round(test_fraction * len(y))
    test, train = order[:n_test], order[n_test:]
    if n_train is not None:
        if not 1 < n_train <= len(train):
            raise ValueError(f"n_train must be in 2..{len(train)}, got {n_train}")
        train = train[:n_train]

    def as_tensors(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tensor(x[idx] / 16.0, dtype=torch.float32), torch.tensor(y[idx])

    return Split(*as_tensors(train), *as_tensors(test))


def make_mlp(
    in_features: int = 64,
    hidden: Sequence[int] = (100, 100, 100),
    out_features: int = 10,
    *,
    batch_norm: bool = False,
    activation: str = "sigmoid",
    dropout: float = 0.0,
    init_std: float | None = None,
    seed: int = 0,
) -> nn.Sequential:
    """A fully connected network: ``Linear -> [BatchNorm] -> activation -> [Dropout]``.

    Parameters
    ----------
    in_features, hidden, out_features : int, sequence of int, int
        Layer widths.
    batch_norm : bool
        Insert :class:`bnlib.torch.batchnorm.BatchNorm1d` before each activation, as in
        Ioffe & Szegedy (2015). The linear layer before it then has no bias, which
        BatchNorm's beta makes redundant.
    activation : {"sigmoid", "relu", "tanh"}
    dropout : float
        Dropout probability after each hidden activation (0 for none).
    init_std : float, optional
        Initialise every weight from N(0, init_std**2) and biases at 0; by default
        PyTorch's initialisation.
    seed : int
        Seed for the initial weights.
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(
            f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}"
        )
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers.append(nn.Linear(width, h, bias=not batch_norm))
        if batch_norm:
            layers.append(BatchNorm1d(h))
        layers.append(_ACTIVATIONS[activation]())
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, out_features))
    model = nn.Sequential(*layers)
    if init_std is not None:
        _gaussian_init(model, init_std)
    return model


def _gaussian_init(model: nn.Module, std: float) -> None:
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, nn.Linear):
                layer.weight.normal_(0.0, std)
                if layer.bias is not None:
                    layer.bias.zero_()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of correct predictions, in eval mode; the model's mode is restored."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        correct = (model(x).argmax(dim=1) == y).double().mean().item()
    model.train(was_training)
    return correct


def hidden_preactivations(model: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    """The inputs of every activation module of ``model`` on ``x``, in order.

    These are the values the nonlinearities see (after BatchNorm when it is
    present). The model runs in whatever mode it is in, without gradients.
    """
    acts = [m for m in model if isinstance(m, tuple(_ACTIVATIONS.values()))]
    seen: list[torch.Tensor] = []
    hooks = [a.register_forward_hook(lambda m, i, o: seen.append(i[0])) for a in acts]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


@dataclass
class PercentileTracker:
    """Records percentiles of one unit's pre-activation over training.

    Call it as ``tracker(step, model)`` (for example from :func:`train`'s
    ``callbacks``). It runs ``x_probe`` through the model in eval mode and stores the
    ``q`` percentiles of the input to unit ``unit`` of hidden layer ``layer``.
    """

    x_probe: torch.Tensor
    layer: int = -1
    unit: int = 0
    q: tuple[float, ...] = (15.0, 50.0, 85.0)
    steps: list[int] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)

    def __call__(self, step: int, model: nn.Sequential) -> None:
        was_training = model.training
        model.eval()
        z = hidden_preactivations(model, self.x_probe)[self.layer][:, self.unit]
        model.train(was_training)
        self.steps.append(step)
        self.values.append(np.percentile(z.double().numpy(), self.q))

    def as_array(self) -> np.ndarray:
        """Shape ``(n_records, len(q))``."""
        return np.array(self.values).reshape(len(self.values), len(self.q))


@dataclass
class History:
    """What :func:`train` measured, at every ``eval_every`` steps."""

    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    diverged: bool = False


def train(
    model: nn.Module,
    split: Split,
    *,
    steps: int,
    lr: float,
    batch_size: int = 60,
    seed: int = 0,
    eval_every: int = 50,
    momentum: float = 0.0,
    callbacks: Sequence[Callable[[int, nn.Module], None]] = (),
) -> History:
    """Mini-batch SGD on cross-entropy, evaluating every ``eval_every`` steps.

    Batches are drawn without replacement from a fresh permutation each epoch
    (``seed`` fixes the order). Step 0 is evaluated before any update. Training
    stops early, with ``diverged=True``, when the loss stops being finite.
    """
    if steps < 1 or eval_every < 1:
        raise ValueError(
            f"steps and eval_every must be >= 1, got {steps}, {eval_every}"
        )
    if not 1 < batch_size <= len(split.y_train):
        raise ValueError(
            f"batch_size must be in 2..{len(split.y_train)}, got {batch_size}"
        )
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    batches = _batch_indices(len(split.y_train), batch_size, seed)
    history = History()
    model.train()
    for step in range(steps + 1):
        if step % eval_every == 0 or step == steps:
            _evaluate(model, split, step, history, callbacks)
        if step == steps:
            break
        idx = next(batches)
        loss = nn.functional.cross_entropy(
            model(split.x_train[idx]), split.y_train[idx]
        )
        if not torch.isfinite(loss):
            history.diverged = True
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    return history


def _batch_indices(n: int, batch_size: int, seed: int):
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(n)
        for start in range(0, n - batch_size + 1, batch_size):
            yield torch.from_numpy(order[start : start + batch_size])


def _evaluate(model, split, step, history, callbacks) -> None:
    model.eval()
    with torch.no_grad():
        logits = model(split.x_train)
        loss = nn.functional.cross_entropy(logits, split.y_train).item()
    model.train()
    history.steps.append(step)
    history.train_loss.append(loss)
    history.train_acc.append(accuracy(model, split.x_train, split.y_train))
    history.test_acc.append(accuracy(model, split.x_test, split.y_test))
    for callback in callbacks:
        callback(step, model)


# Small helpers shared by the chapters' analyses of training runs.


def every(
    period: int, callback: Callable[[int, nn.Module], None]
) -> Callable[[int, nn.Module], None]:
    """A :func:`train` callback running ``callback`` only when ``step % period == 0``.

    Lets cheap measurements (accuracy) run at every evaluation while costly ones
    (trackers) run at a coarser, regular spacing of steps.
    """
    if isinstance(period, bool) or not isinstance(period, int) or period < 1:
        raise ValueError(f"period must be an int >= 1, got {period!r}")
    if not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")

    def sometimes(step: int, model: nn.Module) -> None:
        if step % period == 0:
            callback(step, model)

    return sometimes


def first_step_above(history: History, level: float) -> int | None:
    """The first evaluated step whose test accuracy is ``>= level``; ``None`` if none.

    Its resolution is the run's ``eval_every``: the level was crossed somewhere
    between the previous evaluation and this one.
    """
    if not 0 <= level <= 1:
        raise ValueError(f"level must be an accuracy in [0, 1], got {level}")
    pairs = zip(history.steps, history.test_acc, strict=True)
    reached = (s for s, a in pairs if a >= level)
    return next(reached, None)


def percentile_range(
    tracker: PercentileTracker, column: int = 1, after: int = 0
) -> float:
    """How far one tracked percentile moves: max - min over records at steps >= after.

    ``column`` indexes ``tracker.q`` (1 is the median of the default ``q``).
    """
    if not -len(tracker.q) <= column < len(tracker.q):
        raise ValueError(f"column must index q = {tracker.q}, got {column}")
    keep = np.asarray(tracker.steps) >= after
    if not keep.any():
        raise ValueError(f"the tracker has no record at a step >= {after}")
    values = tracker.as_array()[keep, column]
    return float(values.max() - values.min())
