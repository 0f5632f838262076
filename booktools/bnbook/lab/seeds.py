"""Many seeds for the price of few: K small MLPs trained as one batched model.

A :class:`SeedMLP` holds the weights of K networks of the kit's
:func:`bnbook.lab.experiments.make_mlp` shape with a leading *slot* dimension:
weight ``(K, in, out)``, bias ``(K, 1, out)``, BatchNorm's ``gamma``/``beta``
``(K, 1, h)``. One forward pass (``torch.baddbmm``) runs all K networks on their
own batches ``(K, B, in)``; BatchNorm normalizes over the batch axis of each slot
separately; :func:`train_seeds` takes one SGD step per slot, each with its own
learning rate and batch order. A slot is usually a seed, but slots may also
differ in learning rate or dropout probability (a tuning grid in one model).

Options the chapters need: ghost batches (each slot's batch split into groups of
``ghost_size`` normalized alone), dropout per slot, and noise after BatchNorm
(:class:`Noise`), with mean scale 1 so that it does not rescale the gradient on
average. Evaluation uses *population statistics* (the mean and variance of each
BatchNorm input over a reference set, usually all training inputs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from bnbook.lab import experiments as ex
from bnbook.lab.seednoise import Noise, _add_noise

__all__ = ["Noise", "SeedHistory", "SeedMLP", "train_seeds"]

_ACT = {"sigmoid": torch.sigmoid, "relu": torch.relu, "tanh": torch.tanh}
EPS = 1e-5


@dataclass
class SeedMLP:
    """K networks of one shape as stacked tensors; see the module docstring.

    Build it with :meth:`from_models` (copying K networks of
    :func:`bnbook.lab.experiments.make_mlp`, so a slot starts exactly where a separate
    run would) or :meth:`make`.
    """

    params: list[torch.Tensor]
    activation: str
    batch_norm: bool
    dropout: torch.Tensor
    ghost_size: int | None = None
    noise: Noise | None = None
    population: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)

    @property
    def n_slots(self) -> int:
        return self.params[0].shape[0]

    @property
    def n_hidden(self) -> int:
        return (len(self.params) - 2) // (3 if self.batch_norm else 2)

    @classmethod
    def from_models(
        cls, models: Sequence[nn.Sequential], *, dropout=None, **options
    ) -> SeedMLP:
        """Stack networks of :func:`bnbook.lab.experiments.make_mlp` into slots.

        The networks must share their shape and options.

        ``dropout`` (float or one per slot) overrides the models' own probability;
        ``options`` are ``ghost_size`` and ``noise``.
        """
        if not models:
            raise ValueError("need at least one model")
        kinds = [_describe(m) for m in models]
        if any(k[:2] != kinds[0][:2] for k in kinds):
            raise ValueError("all models must share activation and BatchNorm")
        per_layer = [[p.detach() for p in _ordered(m)] for m in models]
        params = [
            torch.stack(ps).clone().requires_grad_(True)
            for ps in zip(*per_layer, strict=True)
        ]
        p = kinds[0][2] if dropout is None else dropout
        p = torch.as_tensor(p, dtype=params[0].dtype).expand(len(models)).clone()
        if ((p < 0) | (p >= 1)).any():
            raise ValueError(f"dropout must be in [0, 1), got {p.tolist()}")
        return cls(params, kinds[0][0], kinds[0][1], p, **options)

    @classmethod
    def make(cls, seeds: Sequence[int], *, dtype=torch.float32, **kwargs) -> SeedMLP:
        """One slot per seed: ``make_mlp(seed=s, **kwargs)`` stacked.

        ``kwargs`` go to :func:`bnbook.lab.experiments.make_mlp` except ``dropout``
        (float or per slot), ``ghost_size`` and ``noise``, which go to
        :meth:`from_models`.
        """
        options = {
            k: kwargs.pop(k) for k in ("dropout", "ghost_size", "noise") if k in kwargs
        }
        models = [ex.make_mlp(seed=int(s), **kwargs).to(dtype) for s in seeds]
        return cls.from_models(models, **options)

    def forward(
        self, x, *, training, gen=None, params=None, stats_rows=None, collect=None
    ):
        """Logits ``(K, B, out)`` of inputs ``(K, B, in)`` or ``(B, in)`` (shared).

        ``training`` uses batch (or ghost) statistics, dropout and noise (drawn from
        ``gen``); otherwise the population statistics. ``stats_rows=r`` normalizes
        every row with the statistics of the first ``r`` rows of its slot and
        applies no dropout or noise (Monte Carlo BatchNorm). ``params`` replaces
        the model's own parameters (same layout). A list ``collect`` receives
        each activation's input ``(K, B, h)``.
        """
        params = self.params if params is None else params
        z = x.expand(self.n_slots, *x.shape) if x.ndim == 2 else x
        it = iter(params)
        for layer in range(self.n_hidden):
            w = next(it)
            if self.batch_norm:
                gamma, beta = next(it), next(it)
                z = self._normalize(torch.matmul(z, w), layer, training, stats_rows)
                z = z * gamma + beta
                if training and self.noise is not None:
                    z = _add_noise(z, self.noise, gen)
            else:
                z = torch.baddbmm(next(it), z, w)
            if collect is not None:
                collect.append(z.detach())
            z = _ACT[self.activation](z)
            if training and bool((self.dropout > 0).any()):
                keep = torch.rand(z.shape, generator=gen, dtype=z.dtype) >= _col(
                    self.dropout
                )
                z = z * keep / (1 - _col(self.dropout))
        w, b = next(it), next(it)
        return torch.baddbmm(b, z, w)

    def _normalize(self, z, layer, training, stats_rows):
        if stats_rows is not None:
            ref = z[:, :stats_rows]
            mean, var = ref.mean(1, keepdim=True), ref.var(1, False, keepdim=True)
        elif training:
            return _ghost_normalize(z, self.ghost_size or z.shape[1])
        else:
            if len(self.population) != self.n_hidden:
                raise RuntimeError("call set_population(x) before evaluation")
            mean, var = self.population[layer]
        return (z - mean) / torch.sqrt(var + EPS)

    def set_population(self, x: torch.Tensor) -> torch.Tensor:
        """Population statistics of every BatchNorm input over ``x`` (unbiased var).

        Layer by layer, as :func:`bnbook.lab.regularization.set_population_stats`.
        Returns the evaluation-mode logits of ``x`` with them, ``(K, N, out)``.
        """
        self.population = []
        with torch.no_grad():
            z = x.expand(self.n_slots, *x.shape) if x.ndim == 2 else x
            it = iter(self.params)
            for _ in range(self.n_hidden):
                w = next(it)
                if self.batch_norm:
                    z = torch.matmul(z, w)
                    mean = z.mean(1, keepdim=True)
                    z = z - mean
                    var = (z * z).sum(1, keepdim=True) / (z.shape[1] - 1)
                    self.population.append((mean, var))
                    z = z * torch.rsqrt(var + EPS) * next(it) + next(it)
                else:
                    z = torch.baddbmm(next(it), z, w)
                z = _ACT[self.activation](z)
            w, b = next(it), next(it)
            return torch.baddbmm(b, z, w)

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, ...]:
        """Mean cross-entropy and accuracy per slot, in evaluation mode: ``(K,)``."""
        with torch.no_grad():
            logits = self.forward(x, training=False)
            loss = _slot_loss(logits, y.expand(self.n_slots, -1))
            acc = (logits.argmax(-1) == y).double().mean(1)
        return loss.double().numpy(), acc.numpy()

    def layer_weights(self) -> list[torch.Tensor]:
        """The K-stacked weight matrices, input layer first: ``(K, in, out)`` each."""
        step = 3 if self.batch_norm else 2
        return [self.params[i] for i in range(0, len(self.params) - 2, step)] + [
            self.params[-2]
        ]


def _col(values: torch.Tensor) -> torch.Tensor:
    return values[:, None, None]


def _ghost_normalize(z: torch.Tensor, g: int) -> torch.Tensor:
    k, b, h = z.shape
    if g == b:
        centred = z - z.mean(1, keepdim=True)
        return centred * torch.rsqrt((centred * centred).mean(1, keepdim=True) + EPS)
    if b % g:
        raise ValueError(f"batch size {b} is not a multiple of ghost size {g}")
    groups = z.reshape(k, b // g, g, h)
    centred = groups - groups.mean(2, keepdim=True)
    var = (centred * centred).mean(2, keepdim=True)
    return (centred * torch.rsqrt(var + EPS)).reshape(k, b, h)


def _slot_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    k, b, c = logits.shape
    flat = nn.functional.cross_entropy(
        logits.reshape(k * b, c), y.reshape(k * b), reduction="none"
    )
    return flat.reshape(k, b).mean(1)


def _describe(model: nn.Sequential) -> tuple[str, bool, float]:
    names = {nn.Sigmoid: "sigmoid", nn.ReLU: "relu", nn.Tanh: "tanh"}
    acts = [names[type(m)] for m in model if type(m) in names]
    drops = [m.p for m in model if isinstance(m, nn.Dropout)]
    bn = any(isinstance(m, nn.BatchNorm1d) for m in model)
    return acts[0], bn, drops[0] if drops else 0.0


def _ordered(model: nn.Sequential) -> list[torch.Tensor]:
    """W^T (in, out), then gamma, beta or the bias as (1, h), per layer."""
    out: list[torch.Tensor] = []
    for m in model:
        if isinstance(m, nn.Linear):
            out.append(m.weight.T)
            if m.bias is not None:
                out.append(m.bias[None, :])
        elif isinstance(m, nn.BatchNorm1d):
            out += [m.weight[None, :], m.bias[None, :]]
    return out


@dataclass
class SeedHistory:
    """What :func:`train_seeds` measured; arrays have one column per slot."""

    steps: list[int] = field(default_factory=list)
    batch_loss: list[np.ndarray] = field(default_factory=list)
    train_loss: list[np.ndarray] = field(default_factory=list)
    train_acc: list[np.ndarray] = field(default_factory=list)
    test_acc: list[np.ndarray] = field(default_factory=list)

    def array(self, name: str) -> np.ndarray:
        """``(n_records, K)`` for one of the measured lists."""
        return np.stack(getattr(self, name))


def train_seeds(
    net: SeedMLP,
    split: ex.Split,
    *,
    steps: int,
    lr,
    batch_size: int,
    seeds: Sequence[int],
    momentum: float = 0.0,
    eval_every: int = 0,
    noise_seed: int = 0,
    callbacks=(),
) -> SeedHistory:
    """Mini-batch SGD for every slot at once: slot k follows seed ``seeds[k]``.

    Slot k draws its batches as :func:`bnbook.lab.experiments.train` with
    ``seed=seeds[k]`` does, and steps with its own learning rate (``lr``: float or
    one per slot) and PyTorch's SGD momentum rule. Every ``eval_every`` steps
    (0: only at the end) it sets the population statistics and records losses and
    accuracies, then calls ``callback(step, net)``.
    """
    k = net.n_slots
    if len(seeds) != k or steps < 1 or eval_every < 0:
        raise ValueError(
            f"need {k} seeds, steps >= 1, eval_every >= 0; got {len(seeds)} seeds, "
            f"steps={steps}, eval_every={eval_every}"
        )
    lrs = torch.as_tensor(lr, dtype=net.params[0].dtype).expand(k)
    orders = [ex._batch_indices(len(split.y_train), batch_size, int(s)) for s in seeds]
    gen = torch.Generator().manual_seed(noise_seed)
    bufs: list[torch.Tensor | None] = [None] * len(net.params)
    history = SeedHistory()
    for step in range(steps + 1):
        if step == steps or (eval_every and step % eval_every == 0):
            _record(net, split, step, history, callbacks)
        if step == steps:
            return history
        idx = torch.stack([next(o) for o in orders])
        loss = _slot_loss(
            net.forward(split.x_train[idx], training=True, gen=gen), split.y_train[idx]
        )
        grads = torch.autograd.grad(loss.sum(), net.params)
        history.batch_loss.append(loss.detach().double().numpy())
        _sgd_step(net.params, grads, bufs, lrs, momentum)
    return history


def _sgd_step(params, grads, bufs, lrs, momentum) -> None:
    """PyTorch's SGD rule with one learning rate per slot (buffers updated in place)."""
    with torch.no_grad():
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            bufs[i] = g if bufs[i] is None or not momentum else momentum * bufs[i] + g
            p -= _col(lrs) * bufs[i]


def _record(net, split, step, history, callbacks) -> None:
    logits = net.set_population(split.x_train)
    loss = _slot_loss(logits, split.y_train.expand(net.n_slots, -1))
    history.steps.append(step)
    history.train_loss.append(loss.double().numpy())
    history.train_acc.append(
        (logits.argmax(-1) == split.y_train).double().mean(1).numpy()
    )
    history.test_acc.append(net.evaluate(split.x_test, split.y_test)[1])
    for callback in callbacks:
        callback(step, net)
