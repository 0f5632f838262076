"""bnbook.lab.shift: Gaussian KL, importance weights, weighted least squares, risk."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate, stats

from bnbook.lab import shift

means = st.floats(-5, 5)
stds = st.floats(0.05, 5)


def _normal(mean, std) -> torch.distributions.Normal:
    return torch.distributions.Normal(
        torch.as_tensor(mean, dtype=torch.float64),
        torch.as_tensor(std, dtype=torch.float64),
    )


def test_gaussian_kl_matches_torch(rng):
    m0, m1 = rng.normal(size=(2, 50)) * 3
    s0, s1 = rng.uniform(0.1, 4, size=(2, 50))
    ours = shift.gaussian_kl(m0, s0, m1, s1)
    ref = torch.distributions.kl_divergence(_normal(m0, s0), _normal(m1, s1))
    np.testing.assert_allclose(ours, ref.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    ("m0", "s0", "m1", "s1"),
    [(0.5, 0.5, 0.0, 0.3), (0.0, 0.3, 0.5, 0.5), (2, 1, -1, 3)],
)
def test_gaussian_kl_matches_numerical_integration(m0, s0, m1, s1):
    p, q = stats.norm(m0, s0), stats.norm(m1, s1)
    value, _ = integrate.quad(
        lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)), -np.inf, np.inf
    )
    assert shift.gaussian_kl(m0, s0, m1, s1) == pytest.approx(value, rel=1e-9)


def test_gaussian_kl_matches_monte_carlo(rng):
    m0, s0, m1, s1 = 0.5, 0.5, 0.0, 0.3
    x = rng.normal(m0, s0, size=400_000)
    log_ratio = shift.gaussian_log_pdf(x, m0, s0) - shift.gaussian_log_pdf(x, m1, s1)
    standard_error = log_ratio.std() / np.sqrt(x.size)
    kl = shift.gaussian_kl(m0, s0, m1, s1)
    assert abs(log_ratio.mean() - kl) < 4 * standard_error


@given(means, stds, means, stds)
def test_gaussian_kl_is_nonnegative_and_zero_only_for_equal(m0, s0, m1, s1):
    kl = float(shift.gaussian_kl(m0, s0, m1, s1))
    assert kl >= -1e-12
    assert float(shift.gaussian_kl(m0, s0, m0, s0)) == 0.0
    if abs(m0 - m1) > 1e-3 or abs(s0 - s1) > 1e-3:
        assert kl > 0


def test_gaussian_kl_broadcasts():
    kl = shift.gaussian_kl(np.zeros((3, 1)), 1.0, np.zeros(4), np.arange(1, 5))
    assert kl.shape == (3, 4)


def test_diag_gaussian_kl_matches_torch_multivariate(rng):
    m0, m1 = rng.normal(size=(2, 6, 4))
    s0, s1 = rng.uniform(0.2, 3, size=(2, 6, 4))

    def mvn(m, s):
        return torch.distributions.MultivariateNormal(
            torch.from_numpy(m), covariance_matrix=torch.diag_embed(torch.tensor(s**2))
        )

    ref = torch.distributions.kl_divergence(mvn(m0, s0), mvn(m1, s1)).numpy()
    ours = shift.diag_gaussian_kl(m0, s0, m1, s1)
    assert ours.shape == (6,)
    np.testing.assert_allclose(ours, ref, rtol=1e-10)


def test_diag_gaussian_kl_rejects_scalars():
    with pytest.raises(ValueError, match="last axis"):
        shift.diag_gaussian_kl(0.0, 1.0, 1.0, 1.0)


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ((0.0, 0.0, 0.0, 1.0), ValueError, "std0 must be > 0"),
        ((0.0, 1.0, 0.0, -1.0), ValueError, "std1 must be > 0"),
        ((np.nan, 1.0, 0.0, 1.0), ValueError, "mean0 must be finite"),
        ((0.0, 1.0, "a", 1.0), TypeError, "mean1 must be real numbers"),
        ((0.0, 1.0, None, 1.0), TypeError, "mean1 must be real numbers"),
    ],
)
def test_gaussian_kl_rejects_bad_input(args, error, message):
    with pytest.raises(error, match=message):
        shift.gaussian_kl(*args)


def test_gaussian_log_pdf_matches_torch(rng):
    x = rng.normal(size=20) * 2
    ref = _normal(0.3, 0.7).log_prob(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(shift.gaussian_log_pdf(x, 0.3, 0.7), ref, rtol=1e-13)


def test_importance_weights_full_ratio_matches_scipy(rng):
    x = rng.normal(0.5, 0.5, size=30)
    ref = stats.norm(0.0, 0.3).pdf(x) / stats.norm(0.5, 0.5).pdf(x)
    ours = shift.importance_weights(x, train=(0.5, 0.5), test=(0.0, 0.3), lam=1.0)
    np.testing.assert_allclose(ours, ref, rtol=1e-12)


def test_importance_weights_flatten_with_lam(rng):
    x = rng.normal(0.5, 0.5, size=30)
    full = shift.importance_weights(x, (0.5, 0.5), (0.0, 0.3), 1.0)
    half = shift.importance_weights(x, (0.5, 0.5), (0.0, 0.3), 0.5)
    np.testing.assert_array_equal(shift.importance_weights(x, (0.5, 0.5), (0, 1), 0), 1)
    np.testing.assert_allclose(half, np.sqrt(full), rtol=1e-12)


def test_importance_weights_are_finite_where_both_densities_underflow():
    x = np.array([-40.0, 40.0])
    assert stats.norm.pdf(x).max() == 0.0  # the naive ratio would be 0 / 0
    w = shift.importance_weights(x, (0.0, 1.0), (0.1, 1.0))
    np.testing.assert_allclose(w, np.exp(0.1 * x - 0.005), rtol=1e-12)


def test_importance_weights_reject_overflowing_ratios():
    with pytest.raises(ValueError, match="overflow"):
        shift.importance_weights(np.array([0.0, 40.0]), (0.0, 0.1), (0.0, 10.0))


@pytest.mark.parametrize(
    ("x", "lam", "message"),
    [(np.zeros(3), 1.5, "lam must be in"), (np.zeros((3, 2)), 1.0, "shape")],
)
def test_importance_weights_rejects_bad_input(x, lam, message):
    with pytest.raises(ValueError, match=message):
        shift.importance_weights(x, (0, 1), (0, 1), lam)


def test_importance_weights_rejects_bad_density():
    with pytest.raises(ValueError, match="std must be > 0"):
        shift.importance_weights(np.zeros(3), (0, 1), (0, 0), 1.0)


def test_effective_sample_size_extremes():
    assert shift.effective_sample_size(np.full(40, 3.0)) == pytest.approx(40)
    assert shift.effective_sample_size(np.array([1.0, 0, 0, 0])) == pytest.approx(1)
    assert shift.effective_sample_size(np.array([1.0, 1.0, 2.0])) == pytest.approx(
        16 / 6
    )


@pytest.mark.parametrize("w", [np.zeros(3), np.array([1.0, -1.0]), np.ones((2, 2))])
def test_effective_sample_size_rejects_bad_weights(w):
    with pytest.raises(ValueError, match="weights must be"):
        shift.effective_sample_size(w)


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_weighted_polyfit_matches_numpy_polyfit(rng, degree):
    x = rng.normal(0.5, 0.5, size=40)
    y = -x + x**3 + rng.normal(0, 0.3, size=40)
    w = rng.uniform(0.1, 5, size=40)
    # numpy's polyfit multiplies each residual by w, so it takes sqrt(weights).
    ref = np.polynomial.polynomial.polyfit(x, y, degree, w=np.sqrt(w))
    np.testing.assert_allclose(shift.weighted_polyfit(x, y, degree, w), ref, rtol=1e-10)


def test_weighted_polyfit_solves_the_normal_equations(rng):
    x, y = rng.normal(size=(2, 25))
    w = rng.uniform(0, 2, size=25)
    design = np.vander(x, 3, increasing=True)
    ref = np.linalg.solve(design.T @ (w[:, None] * design), design.T @ (w * y))
    np.testing.assert_allclose(shift.weighted_polyfit(x, y, 2, w), ref, rtol=1e-10)


def test_weighted_polyfit_without_weights_is_ordinary_least_squares(rng):
    x, y = rng.normal(size=(2, 25))
    ref = np.polynomial.polynomial.polyfit(x, y, 1)
    np.testing.assert_allclose(shift.weighted_polyfit(x, y, 1), ref, rtol=1e-12)


def test_weighted_polyfit_recovers_an_exact_cubic(rng):
    x = rng.uniform(-1, 2, size=12)
    true = np.array([0.2, -1.0, 0.5, 1.0])
    y = np.polynomial.polynomial.polyval(x, true)
    coef = shift.weighted_polyfit(x, y, 3, rng.uniform(0.5, 3, size=12))
    np.testing.assert_allclose(coef, true, atol=1e-12)


def test_weighted_polyfit_ignores_zero_weight_points(rng):
    x = rng.normal(size=10)
    y = 2 * x + 1
    y_outliers, w = y.copy(), np.ones(10)
    y_outliers[:3], w[:3] = 1e6, 0.0
    np.testing.assert_allclose(
        shift.weighted_polyfit(x, y_outliers, 1, w), [1, 2], atol=1e-10
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"degree": 1.0}, TypeError, "degree must be an int"),
        ({"degree": True}, TypeError, "degree must be an int"),
        ({"degree": -1}, ValueError, "degree"),
        ({"degree": 5}, ValueError, "degree < n = 5"),
        ({"y": np.zeros(4)}, ValueError, "same shape"),
        ({"x": np.zeros((5, 1))}, ValueError, "same shape"),
        ({"y": np.array([0, 1, np.inf, 0, 0])}, ValueError, "y must be finite"),
        ({"weights": -np.ones(5)}, ValueError, "weights must"),
        ({"weights": np.ones(4)}, ValueError, "weights must"),
        ({"weights": np.array([1.0, 0, 0, 0, 0])}, ValueError, "positive entries"),
    ],
)
def test_weighted_polyfit_rejects_bad_input(kwargs, error, message):
    args = {"x": np.arange(5.0), "y": np.arange(5.0), "degree": 1} | kwargs
    with pytest.raises(error, match=message):
        shift.weighted_polyfit(**args)


def test_expected_squared_error_of_a_line_matches_moments():
    # (p - f)(x) = a + b x, so E[(a + b x)^2] = (a + b mu)^2 + b^2 sigma^2.
    a, b, mu, sigma = 0.3, -1.7, 0.4, 0.6
    got = shift.expected_squared_error([a + 1, b], [1.0], mu, sigma)
    assert got == pytest.approx((a + b * mu) ** 2 + b**2 * sigma**2, rel=1e-13)


def test_expected_squared_error_of_a_cubic_matches_gaussian_moments():
    # p - f = 2x - x^3 under N(0, s^2): 4 s^2 - 4 * 3 s^4 + 15 s^6.
    s = 0.3
    got = shift.expected_squared_error([0.0, 1.0], [0, -1, 0, 1], 0.0, s)
    assert got == pytest.approx(4 * s**2 - 12 * s**4 + 15 * s**6, rel=1e-13)


def test_expected_squared_error_matches_monte_carlo(rng):
    coef, true = np.array([0.1, 0.4, -0.2]), np.array([0, -1, 0, 1])
    x = rng.normal(0.5, 0.5, size=400_000)
    polyval = np.polynomial.polynomial.polyval
    sq = (polyval(x, coef) - polyval(x, true)) ** 2
    got = shift.expected_squared_error(coef, true, 0.5, 0.5)
    assert abs(got - sq.mean()) < 4 * sq.std() / np.sqrt(x.size)


def test_expected_squared_error_is_zero_for_the_truth():
    assert shift.expected_squared_error([0, -1, 0, 1], [0, -1, 0, 1], 2.0, 3.0) == 0


def test_expected_squared_error_rejects_bad_std():
    with pytest.raises(ValueError, match="std must be > 0"):
        shift.expected_squared_error([0.0], [1.0], 0.0, 0.0)


def test_derive_gaussian_kl_equals_the_closed_form():
    kl, (mu0, s0, mu1, s1) = shift.derive_gaussian_kl()
    closed = sp.log(s1 / s0) + (s0**2 + (mu0 - mu1) ** 2) / (2 * s1**2) - sp.S.Half
    assert sp.simplify(kl - closed) == 0
    numeric = sp.lambdify((mu0, s0, mu1, s1), kl)
    assert numeric(0.5, 0.5, 0.0, 0.3) == pytest.approx(
        float(shift.gaussian_kl(0.5, 0.5, 0.0, 0.3)), rel=1e-13
    )
