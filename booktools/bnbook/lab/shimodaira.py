"""Shimodaira's (2000) toy experiment: many training sets, many flattening exponents.

For the chapter "Covariate shift". :func:`lambda_sweep` fits weighted polynomials
with the weights ``(q1/q0)**lam`` of :func:`bnbook.lab.shift.importance_weights` to many
training sets at once and scores each fit exactly under the test distribution.
:func:`max_weight` and :func:`expected_squared_weight` give, in closed form, how
large the full weights ``q1/q0`` of two Gaussians get and what they cost in
effective sample size. numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bnbook.lab.shift import _as_float_array, _as_std, _hermite_rule, importance_weights

__all__ = ["expected_squared_weight", "lambda_sweep", "max_weight"]


def _check_density(dist: Any, name: str) -> tuple[float, float]:
    """``(mean, std)`` of a Gaussian as two floats, or a clear error."""
    if not isinstance(dist, Sequence) or len(dist) != 2:
        raise TypeError(f"{name} must be a pair (mean, std), got {dist!r}")
    mean = _as_float_array(dist[0], f"{name} mean")
    std = _as_std(dist[1], f"{name} std")
    if mean.ndim or std.ndim:
        raise ValueError(f"{name} must hold two numbers (mean, std), got {dist!r}")
    return float(mean), float(std)


def max_weight(train: tuple[float, float], test: tuple[float, float]) -> float:
    """Supremum over ``x`` of the importance weight ``q1(x) / q0(x)``.

    Parameters
    ----------
    train, test : (float, float)
        ``(mean, std)`` of the training density ``q0`` and the test density ``q1``.

    Returns
    -------
    float
        The largest weight, finite when ``std1 < std0``; ``inf`` otherwise (when
        the test density is at least as wide, the ratio grows without bound in a
        tail, unless the two densities are equal, where it is 1).

    Notes
    -----
    For :math:`\\sigma_1 < \\sigma_0` the log-ratio is a concave quadratic whose
    maximum gives

    .. math:: \\max_x \\frac{q_1(x)}{q_0(x)} = \\frac{\\sigma_0}{\\sigma_1}
        \\exp\\frac{(\\mu_0 - \\mu_1)^2}{2(\\sigma_0^2 - \\sigma_1^2)}.

    See Also
    --------
    bnbook.lab.shift.importance_weights : the weights themselves.
    expected_squared_weight : what the weights cost; both are used in the chapter
        "Covariate shift".
    """
    (m0, s0), (m1, s1) = _check_density(train, "train"), _check_density(test, "test")
    if (m0, s0) == (m1, s1):
        return 1.0
    if s1 >= s0:
        return float("inf")
    return s0 / s1 * float(np.exp((m0 - m1) ** 2 / (2 * (s0**2 - s1**2))))


def expected_squared_weight(
    train: tuple[float, float], test: tuple[float, float]
) -> float:
    """``E[w(x)**2]`` for ``x ~ q0`` and ``w = q1 / q0``, in closed form.

    Parameters
    ----------
    train, test : (float, float)
        ``(mean, std)`` of the training density ``q0`` and the test density ``q1``.

    Returns
    -------
    float
        The second moment of the weights, ``>= 1``; ``inf`` when
        ``2 * std0**2 <= std1**2`` (the integral diverges). Since ``E[w] = 1``,
        Kish's effective sample size of ``n`` weights tends to ``n / E[w**2]``.

    Notes
    -----
    .. math:: \\mathbb{E}_{q_0}[w^2] = \\int \\frac{q_1(x)^2}{q_0(x)}\\,dx
        = \\frac{\\sigma_0^2}{\\sigma_1\\sqrt{2\\sigma_0^2 - \\sigma_1^2}}
        \\exp\\frac{(\\mu_0 - \\mu_1)^2}{2\\sigma_0^2 - \\sigma_1^2},

    the exponential of the Renyi divergence of order 2, :math:`D_2(q_1\\|q_0)`.

    See Also
    --------
    bnbook.lab.shift.effective_sample_size : Kish's effective sample size, used with
        this limit in the chapter "Covariate shift".
    """
    (m0, s0), (m1, s1) = _check_density(train, "train"), _check_density(test, "test")
    width = 2 * s0**2 - s1**2
    if width <= 0:
        return float("inf")
    return s0**2 / (s1 * np.sqrt(width)) * float(np.exp((m0 - m1) ** 2 / width))


def lambda_sweep(
    x: Any,
    y: Any,
    degree: int,
    lams: Any,
    train: tuple[float, float],
    test: tuple[float, float],
    true_coef: Any,
) -> np.ndarray:
    """Test error of weighted polynomial fits, for many training sets and exponents.

    Parameters
    ----------
    x, y : array_like, shape ``(R, n)``
        ``R`` training sets of ``n`` pairs each, inputs drawn from ``q0``.
    degree : int
        Degree of the fitted polynomial, ``0 <= degree < n``.
    lams : array_like, shape ``(L,)``
        Flattening exponents in ``[0, 1]``.
    train, test : (float, float)
        ``(mean, std)`` of the training density ``q0`` and the test density ``q1``.
    true_coef : array_like, shape ``(m,)``
        The true regression function, coefficients in increasing powers.

    Returns
    -------
    ndarray, shape ``(R, L)``
        ``E_{x ~ q1}[(f_hat(x) - f(x))**2]`` for the fit to training set ``r`` with
        weights ``(q1/q0)**lams[l]``.

    Notes
    -----
    Each entry is :func:`bnbook.lab.shift.weighted_polyfit` followed by
    :func:`bnbook.lab.shift.expected_squared_error`; here all training sets of one
    exponent are solved together by a batched QR decomposition of the rows scaled
    by :math:`\\sqrt{w_i}`, with :math:`w_i = (q_1(x_i)/q_0(x_i))^{\\lambda}`.

    See Also
    --------
    bnbook.lab.shift.weighted_polyfit : one fit at a time; the chapter "Covariate shift"
        runs Shimodaira's experiment with this function.
    """
    x, y, lams = _check_sweep(x, y, degree, lams)
    train, test = _check_density(train, "train"), _check_density(test, "test")
    w_full = importance_weights(x.ravel(), train, test).reshape(x.shape)
    vander = np.vander(x.ravel(), degree + 1, increasing=True).reshape(*x.shape, -1)
    coef = np.empty((x.shape[0], lams.size, degree + 1))
    for j, lam in enumerate(lams):
        root_w = np.sqrt(w_full**lam)
        q, r = np.linalg.qr(vander * root_w[..., None])
        rhs = np.einsum("rnk,rn->rk", q, y * root_w)
        coef[:, j] = np.linalg.solve(r, rhs[..., None])[..., 0]
    return _test_error(coef, true_coef, test)


def _check_sweep(x, y, degree, lams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y = _as_float_array(x, "x"), _as_float_array(y, "y")
    lams = _as_float_array(lams, "lams")
    if isinstance(degree, bool) or not isinstance(degree, int | np.integer):
        raise TypeError(f"degree must be an int, got {type(degree).__name__}")
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(
            f"x and y must have the same shape (R, n), got {x.shape}, {y.shape}"
        )
    if not 0 <= degree < x.shape[1]:
        raise ValueError(f"need 0 <= degree < n = {x.shape[1]}, got {degree}")
    if lams.ndim != 1 or lams.size == 0 or np.any((lams < 0) | (lams > 1)):
        raise ValueError(f"lams must be a non-empty 1-D array in [0, 1], got {lams}")
    return x, y, lams


def _test_error(
    coef: np.ndarray, true_coef: Any, test: tuple[float, float]
) -> np.ndarray:
    """``E_{q1}[(p - f)**2]`` for every polynomial ``coef[..., :]``, exactly."""
    true_coef = _as_float_array(true_coef, "true_coef")
    size = max(coef.shape[-1], true_coef.size)
    diff = np.zeros((*coef.shape[:-1], size))
    diff[..., : coef.shape[-1]] += coef
    diff[..., : true_coef.size] -= true_coef
    mean, std = test
    nodes, weights = _hermite_rule(size)
    at_nodes = np.polynomial.polynomial.polyval
    values = at_nodes(mean + std * nodes, np.moveaxis(diff, -1, 0))
    return values**2 @ weights / weights.sum()
