"""`analysis_tools.updates.fitting`: maximum-likelihood m and mixtures of shifted laws."""

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from analysis_tools.updates.fitting import fit_update_distribution
from analysis_tools.updates.goodness_of_fit import ks_statistic, wasserstein_1
from analysis_tools.updates.law import AdaptiveUpdate

tfd = tfp.distributions
tfb = tfp.bijectors


# ---------------------------------------------------------------------------
# Fits.


@pytest.mark.slow
def test_fit_recovers_m_5():
    x = AdaptiveUpdate(np.float64(5.0)).sample(50_000, seed=(31, 1))
    fit = fit_update_distribution(x)
    assert fit.m == pytest.approx(5.0, rel=0.05)
    assert fit.converged and fit.num_samples == 50_000
    # m ≤ 5 is not a regular likelihood (Smith 1985): no standard error where m̂ ≤ 5.
    assert math.isnan(fit.m_standard_error) == (fit.m <= 5.0)
    below = fit_update_distribution(AdaptiveUpdate(np.float64(4.5)).sample(20_000, seed=(31, 2)))
    assert below.m == pytest.approx(4.5, rel=0.02) and math.isnan(below.m_standard_error)
    assert fit.ks_pvalue > 0.01 and fit.wasserstein_1 < 0.02
    assert fit.distribution.dtype == tf.float64 and float(fit.distribution.m) == fit.m

    # The likelihood is the sum of log_prob, and it is maximal at the fit.
    def log_lik(m):
        return float(tf.reduce_sum(AdaptiveUpdate(np.float64(m)).log_prob(x)))

    assert fit.log_likelihood == pytest.approx(log_lik(fit.m), rel=1e-10)
    assert fit.log_likelihood > max(log_lik(fit.m * 0.98), log_lik(fit.m * 1.02))


def test_fit_recovers_m_20():
    """At n = 50k the standard error of m̂ is ≈ 5.6 % for m = 20 (the law barely changes with m).

    So a 5 % tolerance needs about 10× the samples; at 50k the check is
    against the reported standard error instead.
    """
    x = AdaptiveUpdate(np.float64(20.0)).sample(600_000, seed=(32, 1)).numpy()
    fit = fit_update_distribution(x)
    assert fit.m == pytest.approx(20.0, rel=0.05)
    assert fit.m_standard_error / 20.0 == pytest.approx(0.0165, rel=0.2)
    small = fit_update_distribution(x[:50_000].astype(np.float32))
    assert small.distribution.dtype == tf.float32
    assert 0.03 < small.m_standard_error / 20.0 < 0.08
    assert abs(small.m - 20.0) < 3.0 * small.m_standard_error
    assert small.ks_pvalue > 0.01


def test_fit_below_3_is_the_support_edge():
    x = AdaptiveUpdate(np.float64(2.5)).sample(20_000, seed=(33, 1)).numpy()
    fit = fit_update_distribution(x)
    assert np.max(x**2) < fit.m < 2.5 + 1e-6
    assert fit.m == pytest.approx(2.5, rel=1e-3)
    assert math.isnan(fit.m_standard_error) and fit.ks_pvalue > 0.01


def test_goodness_of_fit_separates_right_and_wrong_laws():
    x3 = AdaptiveUpdate(np.float64(3.0)).sample(50_000, seed=(34, 1))
    right = ks_statistic(x3, AdaptiveUpdate(np.float64(3.0)))
    wrong = ks_statistic(x3, AdaptiveUpdate(np.float64(50.0)))
    assert float(right.pvalue) > 0.01 and float(wrong.pvalue) < 1e-20
    assert float(wasserstein_1(x3, AdaptiveUpdate(np.float64(3.0)))) < 0.01
    assert float(wasserstein_1(x3, AdaptiveUpdate(np.float64(50.0)))) > 0.1
    # Gaussian samples: the fit runs to large m (the Gaussian limit) and fits well.
    z = tf.random.stateless_normal([50_000], seed=(35, 1), dtype=tf.float64)
    fit = fit_update_distribution(z)
    assert fit.m > 200.0 and fit.ks_pvalue > 0.01
    assert float(ks_statistic(z, AdaptiveUpdate(np.float64(3.0))).pvalue) < 1e-20


@pytest.mark.slow
def test_mixture_fit_separates_two_shifted_modes():
    left = AdaptiveUpdate(np.float64(10.0)).sample(3_000, seed=(36, 1)).numpy() - 3.0
    right = AdaptiveUpdate(np.float64(4.0)).sample(7_000, seed=(36, 2)).numpy() + 3.0
    x = np.concatenate([left, right])
    fit = fit_update_distribution(x, mixture_components=2)
    mixture = fit.mixture
    assert isinstance(mixture.distribution, tfd.MixtureSameFamily)
    np.testing.assert_allclose(mixture.locs, [-3.0, 3.0], atol=0.05)
    np.testing.assert_allclose(mixture.weights, [0.3, 0.7], atol=0.01)
    np.testing.assert_allclose(mixture.m, [10.0, 4.0], rtol=0.1)
    assert mixture.ks_pvalue > 0.01 and mixture.wasserstein_1 < 0.05
    # The single law fits badly, and much worse than the mixture.
    assert fit.ks_pvalue < 1e-10 and fit.wasserstein_1 > 10 * mixture.wasserstein_1
    assert mixture.log_likelihood > fit.log_likelihood + 1000.0
    assert float(tf.reduce_sum(mixture.distribution.log_prob(x))) == pytest.approx(mixture.log_likelihood, rel=1e-9)


@pytest.mark.parametrize(
    "samples, message",
    [
        (np.zeros(1000), "all zero"),
        (np.zeros((10, 10), "float32"), "all zero"),
        (np.full(1000, 0.5), "all equal to 0.5"),
    ],
    ids=["zeros", "zero_matrix", "constant"],
)
def test_constant_updates_are_refused(samples, message):
    # Unrefused, all-zero updates reported converged=True at m = 4.7e7.
    with pytest.raises(ValueError, match=message):
        fit_update_distribution(samples)


def test_a_random_sign_is_fitted_at_the_edge_m_1():
    # ±1 updates (the first step of Adam without ε) are not constant: the fit is the support edge m ↓ 1.
    signs = np.where(np.random.default_rng(8).random(1000) < 0.5, -1.0, 1.0)
    assert fit_update_distribution(signs).m == pytest.approx(1.0)
