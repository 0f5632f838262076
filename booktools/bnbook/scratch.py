"""BatchNorm from scratch: the forward and backward passes a reader can hold in mind.

These are the listings the chapters "What BatchNorm computes" and "Deriving the
gradients" show (included, never copied). They take a batch ``x`` of shape ``(m, C)``:
``m`` examples of ``C`` features, each feature normalized over the batch. No input
checks: they teach the maths. bnlib computes the same numbers with checks, any
``(N, C, *)`` shape and fast kernels; ``tests/test_scratch.py`` checks both these
functions and bnlib against PyTorch.
"""

from __future__ import annotations

import numpy as np

__all__ = ["batch_norm", "batch_norm_backward_staged", "batch_norm_backward"]


def batch_norm(
    x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5
):
    """BatchNorm of each column of ``x``; training updates the running stats."""
    if training:
        m = x.shape[0]
        mu = x.mean(axis=0)  # batch mean, per feature
        var = x.var(axis=0)  # batch variance, divided by m
        running_mean *= 1 - momentum  # moving averages, in place
        running_mean += momentum * mu
        running_var *= 1 - momentum
        running_var += momentum * var * m / (m - 1)  # unbiased: m - 1
    else:  # inference: the running statistics
        mu, var = running_mean, running_var
    x_hat = (x - mu) / np.sqrt(var + eps)
    return gamma * x_hat + beta


def batch_norm_backward_staged(dy, x, gamma, eps=1e-5):
    """Training-mode BatchNorm gradients, one chain-rule stage per line."""
    m = x.shape[0]
    mu, var = x.mean(axis=0), x.var(axis=0)
    inv_std = 1 / np.sqrt(var + eps)
    x_hat = (x - mu) * inv_std
    dx_hat = dy * gamma
    dvar = -0.5 * inv_std**3 * (dx_hat * (x - mu)).sum(axis=0)
    dmu = -inv_std * dx_hat.sum(axis=0)  # + dvar * mean(-2(x - mu)) = 0
    dx = dx_hat * inv_std + dvar * 2 * (x - mu) / m + dmu / m
    dgamma = (dy * x_hat).sum(axis=0)
    dbeta = dy.sum(axis=0)
    return dx, dgamma, dbeta


def batch_norm_backward(dy, x, gamma, eps=1e-5):
    """The same gradients, compact: two batch sums, one line for ``dx``."""
    m = x.shape[0]
    inv_std = 1 / np.sqrt(x.var(axis=0) + eps)
    x_hat = (x - x.mean(axis=0)) * inv_std
    dbeta = dy.sum(axis=0)
    dgamma = (dy * x_hat).sum(axis=0)
    dx = gamma * inv_std * (dy - dbeta / m - x_hat * dgamma / m)
    return dx, dgamma, dbeta
