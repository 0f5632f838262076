"""Covariate shift: Gaussian KL divergence, importance weights, weighted regression.

The tools of the chapter "Covariate shift": how far apart two Gaussian input
distributions are (their Kullback-Leibler divergence, in closed form), the
importance weights ``(q1/q0)**lam`` of Shimodaira (2000), least squares with those
weights, and the exact expected squared error of a polynomial fit under a Gaussian
input distribution. numpy only; :func:`derive_gaussian_kl` imports SymPy lazily.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

__all__ = [
    "derive_gaussian_kl",
    "diag_gaussian_kl",
    "effective_sample_size",
    "expected_squared_error",
    "gaussian_kl",
    "gaussian_log_pdf",
    "importance_weights",
    "weighted_polyfit",
]


def _as_float_array(v: Any, name: str) -> np.ndarray:
    """``v`` as a float64 array of finite real numbers, or a clear error."""
    arr = np.asarray(v)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise TypeError(f"{name} must be real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr}")
    return arr


def _as_std(v: Any, name: str) -> np.ndarray:
    arr = _as_float_array(v, name)
    if np.any(arr <= 0):
        raise ValueError(f"{name} must be > 0 (a standard deviation), got {arr}")
    return arr


def gaussian_log_pdf(x: Any, mean: Any, std: Any) -> np.ndarray:
    """Log density of ``N(mean, std**2)`` at ``x``, broadcasting.

    Parameters
    ----------
    x, mean, std : array_like
        Points, means and standard deviations (``std > 0``); any broadcastable
        shapes.

    Returns
    -------
    ndarray
        ``log N(x; mean, std**2)``, float64, of the broadcast shape.

    Notes
    -----
    .. math:: \\log q(x) = -\\tfrac12\\log(2\\pi\\sigma^2) - (x-\\mu)^2 / (2\\sigma^2)
    """
    x = _as_float_array(x, "x")
    mean = _as_float_array(mean, "mean")
    std = _as_std(std, "std")
    return -0.5 * np.log(2 * np.pi * std**2) - (x - mean) ** 2 / (2 * std**2)


def gaussian_kl(mean0: Any, std0: Any, mean1: Any, std1: Any) -> np.ndarray:
    """KL divergence ``KL(N(mean0, std0**2) || N(mean1, std1**2))``, elementwise.

    Parameters
    ----------
    mean0, std0 : array_like
        Mean and standard deviation (``> 0``) of the first distribution, ``p``.
    mean1, std1 : array_like
        Mean and standard deviation (``> 0``) of the second distribution, ``q``.
        All four broadcast together.

    Returns
    -------
    ndarray
        ``KL(p || q) >= 0`` in nats, float64, of the broadcast shape; zero exactly
        when the two distributions are equal.

    Notes
    -----
    .. math::
        \\mathrm{KL}(p\\,\\|\\,q) = \\log\\frac{\\sigma_1}{\\sigma_0}
        + \\frac{\\sigma_0^2 + (\\mu_0-\\mu_1)^2}{2\\sigma_1^2} - \\frac12

    See Also
    --------
    derive_gaussian_kl : the same formula, derived by SymPy.
    diag_gaussian_kl : the multivariate version with diagonal covariances.
    """
    mean0 = _as_float_array(mean0, "mean0")
    mean1 = _as_float_array(mean1, "mean1")
    std0, std1 = _as_std(std0, "std0"), _as_std(std1, "std1")
    ratio = (std0 / std1) ** 2
    return 0.5 * (ratio + ((mean0 - mean1) / std1) ** 2 - 1.0 - np.log(ratio))


def diag_gaussian_kl(mean0: Any, std0: Any, mean1: Any, std1: Any) -> np.ndarray:
    """KL divergence between Gaussians with diagonal covariances.

    Parameters
    ----------
    mean0, std0, mean1, std1 : array_like, shape ``(..., D)``
        Means and per-coordinate standard deviations of ``p`` and ``q``;
        broadcastable, with the ``D`` coordinates on the last axis.

    Returns
    -------
    ndarray, shape ``(...)``
        ``KL(p || q)``: the coordinates are independent, so the univariate
        divergences add up.

    Notes
    -----
    .. math:: \\mathrm{KL}(p\\,\\|\\,q) = \\sum_{d=1}^{D}
        \\mathrm{KL}\\big(\\mathcal N(\\mu_{0d}, \\sigma_{0d}^2)\\,\\|\\,
        \\mathcal N(\\mu_{1d}, \\sigma_{1d}^2)\\big)
    """
    kl = gaussian_kl(mean0, std0, mean1, std1)
    if kl.ndim == 0:
        raise ValueError(
            "diag_gaussian_kl needs the coordinates on a last axis (shape (..., D)), "
            "got scalars; use gaussian_kl for univariate distributions"
        )
    return kl.sum(axis=-1)


def importance_weights(
    x: Any,
    train: tuple[float, float],
    test: tuple[float, float],
    lam: float = 1.0,
) -> np.ndarray:
    """Flattened importance weights ``(q1(x) / q0(x))**lam`` for Gaussian inputs.

    Parameters
    ----------
    x : array_like, shape ``(n,)``
        Training inputs, drawn from ``q0``.
    train : (float, float)
        ``(mean, std)`` of the training input density ``q0``.
    test : (float, float)
        ``(mean, std)`` of the test input density ``q1``.
    lam : float
        Flattening exponent in ``[0, 1]``: 0 gives equal weights (ordinary least
        squares), 1 the full density ratio.

    Returns
    -------
    ndarray, shape ``(n,)``
        Positive weights, computed in log space: far in the tails, where both
        densities underflow to 0, the ratio is still finite.

    Notes
    -----
    Shimodaira (2000) weights the log-likelihood of example ``i`` by

    .. math:: w_i = \\left(\\frac{q_1(x_i)}{q_0(x_i)}\\right)^{\\lambda}.
    """
    if not 0 <= lam <= 1:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    x = _as_float_array(x, "x")
    if x.ndim != 1:
        raise ValueError(f"x must have shape (n,), got shape {x.shape}")
    log_ratio = gaussian_log_pdf(x, *test) - gaussian_log_pdf(x, *train)
    with np.errstate(over="ignore"):
        w = np.exp(lam * log_ratio)
    if not np.all(np.isfinite(w)):
        raise ValueError(
            f"the weights overflow float64 at x = {x[~np.isfinite(w)]}; "
            "use a smaller lam or densities with overlapping support"
        )
    return w


def effective_sample_size(weights: Any) -> float:
    """Kish's effective sample size ``(sum w)**2 / sum w**2`` of positive weights.

    Equal weights give ``n``; one dominant weight gives about 1. It measures the
    variance a weighted average pays for its weights.
    """
    w = _as_float_array(weights, "weights")
    if w.ndim != 1 or w.size == 0 or np.any(w < 0) or not np.any(w > 0):
        raise ValueError(
            "weights must be a non-empty 1-D array of non-negative numbers, not all "
            f"zero; got shape {w.shape}"
        )
    return float(w.sum() ** 2 / (w**2).sum())


def weighted_polyfit(x: Any, y: Any, degree: int, weights: Any = None) -> np.ndarray:
    """Polynomial least squares with per-example weights.

    Parameters
    ----------
    x, y : array_like, shape ``(n,)``
        Inputs and targets.
    degree : int
        Degree of the polynomial, ``>= 0``; needs ``n > degree``.
    weights : array_like, shape ``(n,)``, optional
        Non-negative weights of the squared residuals (at least ``degree + 1`` of
        them positive); ``None`` for ordinary least squares.

    Returns
    -------
    ndarray, shape ``(degree + 1,)``
        Coefficients ``c`` in increasing powers: ``c[0] + c[1] x + ...``, as in
        ``numpy.polynomial.polynomial``.

    Notes
    -----
    .. math:: \\hat c = \\arg\\min_c \\sum_i w_i \\Big(y_i - \\sum_k c_k x_i^k\\Big)^2,

    solved as ordinary least squares on the rows scaled by :math:`\\sqrt{w_i}`.
    """
    x, y = _as_float_array(x, "x"), _as_float_array(y, "y")
    if isinstance(degree, bool) or not isinstance(degree, int | np.integer):
        raise TypeError(f"degree must be an int, got {type(degree).__name__}")
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(
            f"x and y must have the same shape (n,), got {x.shape}, {y.shape}"
        )
    if degree < 0 or x.size <= degree:
        raise ValueError(f"need 0 <= degree < n = {x.size}, got degree {degree}")
    w = np.ones_like(x) if weights is None else _as_float_array(weights, "weights")
    if w.shape != x.shape or np.any(w < 0) or np.count_nonzero(w) <= degree:
        raise ValueError(
            f"weights must have shape {x.shape}, be >= 0 and have more than "
            f"degree = {degree} positive entries"
        )
    root_w = np.sqrt(w)
    design = np.vander(x, degree + 1, increasing=True) * root_w[:, None]
    coef, *_ = np.linalg.lstsq(design, y * root_w, rcond=None)
    return coef


def expected_squared_error(coef: Any, true_coef: Any, mean: float, std: float) -> float:
    """``E[(p(x) - f(x))**2]`` for ``x ~ N(mean, std**2)``, exactly.

    Parameters
    ----------
    coef, true_coef : array_like, shape ``(k,)`` and ``(m,)``
        Coefficients, in increasing powers, of a fitted polynomial ``p`` and of the
        true regression function ``f``.
    mean, std : float
        The Gaussian input distribution (``std > 0``).

    Returns
    -------
    float
        The mean squared error of ``p`` as an estimate of ``f`` under that input
        distribution. Adding the noise variance gives the expected test loss.

    Notes
    -----
    The integrand is a polynomial of degree ``2d``, so Gauss-Hermite quadrature
    with ``d + 1`` nodes is exact:

    .. math:: \\int (p-f)^2(x)\\,\\mathcal N(x;\\mu,\\sigma^2)\\,dx
        = \\sum_j \\omega_j\\,(p-f)^2(\\mu + \\sigma t_j) \\Big/ \\sum_j \\omega_j.
    """
    diff = np.polynomial.polynomial.polysub(
        _as_float_array(coef, "coef"), _as_float_array(true_coef, "true_coef")
    )
    std = float(_as_std(std, "std"))
    nodes, weights = _hermite_rule(len(diff))
    values = np.polynomial.polynomial.polyval(float(mean) + std * nodes, diff)
    return float(weights @ values**2 / weights.sum())


@lru_cache(maxsize=16)
def _hermite_rule(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Hermite nodes and weights for the weight ``exp(-t**2 / 2)``."""
    return np.polynomial.hermite_e.hermegauss(n)


def derive_gaussian_kl() -> tuple[Any, tuple[Any, ...]]:
    """Derive ``KL(N(mu0, s0**2) || N(mu1, s1**2))`` by symbolic integration.

    Returns
    -------
    kl : sympy.Expr
        The integral of ``p log(p / q)`` over the real line, simplified.
    symbols : tuple of sympy.Symbol
        ``(mu0, s0, mu1, s1)``: real means and positive standard deviations.

    Notes
    -----
    Needs SymPy. The log-ratio of two Gaussian densities is a quadratic in ``x``,
    so the integral is a Gaussian moment computation that SymPy does exactly.
    """
    import sympy as sp

    x, mu0, mu1 = sp.symbols("x mu0 mu1", real=True)
    s0, s1 = sp.symbols("s0 s1", positive=True)

    def density(mu: sp.Symbol, s: sp.Symbol) -> sp.Expr:
        return sp.exp(-((x - mu) ** 2) / (2 * s**2)) / sp.sqrt(2 * sp.pi * s**2)

    p, q = density(mu0, s0), density(mu1, s1)
    log_ratio = sp.expand(sp.expand_log(sp.log(p / q), force=True))
    kl = sp.integrate(p * log_ratio, (x, -sp.oo, sp.oo))
    return sp.simplify(kl), (mu0, s0, mu1, s1)
