"""bnbook.lab.shimodaira: the batched lambda sweep and the size of Gaussian weights."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, optimize, stats

from bnbook.lab import shift, shimodaira

Q0, Q1 = (0.5, 0.5), (0.0, 0.3)
TRUE = np.array([0.0, -1.0, 0.0, 1.0])
polyval = np.polynomial.polynomial.polyval


def _data(rng, reps=4, n=30, noise=0.3):
    x = rng.normal(*Q0, size=(reps, n))
    return x, polyval(x, TRUE) + rng.normal(0.0, noise, size=x.shape)


def _quad_error(coef):
    """E_{q1}[(p - f)^2] by numerical integration: independent of the quadrature."""
    p1 = stats.norm(*Q1)
    value, _ = integrate.quad(
        lambda t: (polyval(t, coef) - polyval(t, TRUE)) ** 2 * p1.pdf(t),
        -np.inf,
        np.inf,
    )
    return value


@pytest.mark.parametrize("degree", [1, 3])
def test_lambda_sweep_matches_numpy_polyfit_and_quadrature(rng, degree):
    x, y = _data(rng)
    lams = np.array([0.0, 0.4, 1.0])
    ours = shimodaira.lambda_sweep(x, y, degree, lams, Q0, Q1, TRUE)
    assert ours.shape == (4, 3)
    for r in range(4):
        ratio = stats.norm(*Q1).pdf(x[r]) / stats.norm(*Q0).pdf(x[r])
        for j, lam in enumerate(lams):
            # numpy's polyfit weights the unsquared residuals: pass sqrt(w)
            fit = np.polyfit(x[r], y[r], degree, w=np.sqrt(ratio**lam))[::-1]
            assert ours[r, j] == pytest.approx(_quad_error(fit), rel=1e-7)


def test_lambda_sweep_matches_one_fit_at_a_time(rng):
    x, y = _data(rng, reps=3, n=50)
    lams = np.linspace(0, 1, 6)
    ours = shimodaira.lambda_sweep(x, y, 2, lams, Q0, Q1, TRUE)
    for r in range(3):
        for j, lam in enumerate(lams):
            w = shift.importance_weights(x[r], Q0, Q1, lam)
            c = shift.weighted_polyfit(x[r], y[r], 2, w)
            ref = shift.expected_squared_error(c, TRUE, *Q1)
            assert ours[r, j] == pytest.approx(ref, rel=1e-9)


def test_lambda_sweep_of_the_true_model_without_noise_is_exact(rng):
    x, y = _data(rng, noise=0.0)
    errors = shimodaira.lambda_sweep(x, y, 3, [0.0, 1.0], Q0, Q1, TRUE)
    assert np.abs(errors).max() < 1e-20


def test_lambda_sweep_constant_fit_error_is_a_gaussian_moment(rng):
    # degree 0 with lam = 0 fits the mean of y; E_q1[(c - f)^2] by moments of N(0, s^2)
    x, y = _data(rng)
    ours = shimodaira.lambda_sweep(x, y, 0, [0.0], Q0, Q1, TRUE)[:, 0]
    s2 = Q1[1] ** 2  # f = -x + x^3, mean 0: E f^2 = s2 - 2 * 3 s2^2 + 15 s2^3
    c = y.mean(axis=1)
    np.testing.assert_allclose(ours, c**2 + s2 - 6 * s2**2 + 15 * s2**3, rtol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"x": np.zeros(5)}, ValueError, "same shape"),
        ({"y": np.zeros((4, 29))}, ValueError, "same shape"),
        ({"degree": 30}, ValueError, "degree < n"),
        ({"degree": 1.0}, TypeError, "degree must be an int"),
        ({"degree": True}, TypeError, "degree must be an int"),
        ({"lams": [0.5, 1.5]}, ValueError, "lams must be"),
        ({"lams": []}, ValueError, "lams must be"),
        ({"train": (0.5,)}, TypeError, "train must be a pair"),
        ({"test": (0.0, -0.3)}, ValueError, "test std must be > 0"),
        ({"test": (np.zeros(2), 0.3)}, ValueError, "two numbers"),
        ({"x": np.full((4, 30), np.nan)}, ValueError, "x must be finite"),
    ],
)
def test_lambda_sweep_rejects_bad_input(rng, kwargs, error, message):
    x, y = _data(rng)
    args = {"x": x, "y": y, "degree": 1, "lams": [0.0, 1.0], "train": Q0}
    args |= {"test": Q1, "true_coef": TRUE} | kwargs
    with pytest.raises(error, match=message):
        shimodaira.lambda_sweep(**args)


@pytest.mark.parametrize(
    ("train", "test"), [(Q0, Q1), ((1.0, 2.0), (-2.0, 0.5)), ((0.0, 1.0), (0.0, 0.9))]
)
def test_max_weight_matches_a_numerical_maximum(train, test):
    p0, p1 = stats.norm(*train), stats.norm(*test)
    res = optimize.minimize_scalar(lambda t: -(p1.logpdf(t) - p0.logpdf(t)))
    assert shimodaira.max_weight(train, test) == pytest.approx(
        np.exp(-res.fun), rel=1e-9
    )


def test_max_weight_is_unbounded_for_a_test_density_as_wide():
    assert shimodaira.max_weight((0.0, 1.0), (1.0, 1.0)) == np.inf
    assert shimodaira.max_weight((0.0, 1.0), (0.0, 2.0)) == np.inf
    assert shimodaira.max_weight((0.3, 1.0), (0.3, 1.0)) == 1.0


@pytest.mark.parametrize(
    ("train", "test"), [(Q0, Q1), ((1.0, 2.0), (-0.5, 1.5)), ((0.0, 1.0), (0.3, 1.2))]
)
def test_expected_squared_weight_matches_numerical_integration(train, test):
    p0, p1 = stats.norm(*train), stats.norm(*test)
    value, _ = integrate.quad(
        lambda t: np.exp(2 * p1.logpdf(t) - p0.logpdf(t)), -np.inf, np.inf
    )
    assert shimodaira.expected_squared_weight(train, test) == pytest.approx(
        value, rel=1e-8
    )


def test_expected_squared_weight_is_the_limit_of_kish_ess(rng):
    x = rng.normal(*Q0, size=2_000_000)
    w = stats.norm(*Q1).pdf(x) / stats.norm(*Q0).pdf(x)
    ess_share = shift.effective_sample_size(w) / x.size
    assert ess_share == pytest.approx(
        1 / shimodaira.expected_squared_weight(Q0, Q1), rel=0.01
    )


def test_expected_squared_weight_diverges_for_a_wide_test_density():
    assert shimodaira.expected_squared_weight((0.0, 1.0), (0.0, np.sqrt(2))) == np.inf
    assert shimodaira.expected_squared_weight((0.0, 1.0), (0.0, 1.0)) == 1.0


@pytest.mark.parametrize(
    "func", [shimodaira.max_weight, shimodaira.expected_squared_weight]
)
@pytest.mark.parametrize(
    ("train", "error", "message"),
    [
        ([0.0, 1.0, 2.0], TypeError, "pair"),
        (np.array([0.0, 1.0]), TypeError, "pair"),
        ((0.0, 0.0), ValueError, "train std must be > 0"),
        (("a", 1.0), TypeError, "train mean must be real"),
    ],
)
def test_gaussian_weight_sizes_reject_bad_densities(func, train, error, message):
    with pytest.raises(error, match=message):
        func(train, Q1)
