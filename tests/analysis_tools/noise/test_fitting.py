"""Maximum-likelihood noise fits: the right law wins, parameters come back, densities normalize."""

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from analysis_tools.noise.fitting import _log_chi_norm, _log_t_norm, fit_noise_distribution

RNG = np.random.default_rng(0)


def _gaussian_norms(n, d, rng):
    return np.linalg.norm(rng.standard_normal((n, d)), axis=1)


def _t_norms(n, d, df, rng):
    return _gaussian_norms(n, d, rng) / np.sqrt(rng.chisquare(df, n) / df)


@pytest.mark.slow
def test_gaussian_coordinates_pick_the_gaussian():
    fit = fit_noise_distribution(np.random.default_rng(1).normal(2.0, 3.0, 20_000))
    assert fit.kind == "coordinates" and fit.best == "normal"
    assert fit.light.parameters["scale"] == pytest.approx(3.0, rel=0.02)
    assert fit.delta_aic <= 0 and not fit.tail.heavy
    assert "normal is indistinguishable from student_t" in fit.verdict


def test_student_t_one_and_a_half_picks_the_heavy_tail():
    fit = fit_noise_distribution(np.random.default_rng(2).standard_t(1.5, 20_000))
    assert fit.best == "student_t" and fit.delta_aic > 10
    assert fit.heavy.parameters["df"] == pytest.approx(1.5, abs=0.1)
    assert fit.tail.heavy and fit.tail.tail_index == pytest.approx(1.5, abs=0.3)
    assert fit.verdict.startswith("student_t is decisively better than normal")


@pytest.mark.slow
def test_norms_of_gaussian_vectors_pick_the_chi_law_with_the_dimension():
    fit = fit_noise_distribution(3.0 * _gaussian_norms(5000, 40, np.random.default_rng(3)))
    assert fit.kind == "norms" and fit.best == "scaled_chi"
    assert fit.light.parameters["k"] == pytest.approx(40, rel=0.05)
    assert fit.light.parameters["scale"] == pytest.approx(3.0, rel=0.03)
    assert fit.heavy.log_likelihood >= fit.light.log_likelihood


@pytest.mark.parametrize("k", [1e4, 1e5, 1e6])
@pytest.mark.slow
def test_very_concentrated_norms_of_high_dimensional_noise_stay_finite_and_pick_the_chi_law(k):
    # Noise of a model with many parameters: 200 norms of a k-dimensional Gaussian vector.
    r = 0.01 * np.sqrt(np.random.default_rng(6).chisquare(k, 200))
    fit = fit_noise_distribution(r, kind="norms")
    assert fit.best == "scaled_chi" and -2.0 - 1e-9 <= fit.delta_aic <= 2.0
    assert fit.light.parameters["k"] == pytest.approx(k, rel=0.3)


@pytest.mark.slow
def test_norms_of_multivariate_t_vectors_pick_the_heavy_law():
    fit = fit_noise_distribution(_t_norms(5000, 40, 1.5, np.random.default_rng(4)))
    assert fit.best == "multivariate_t_norm" and fit.delta_aic > 10
    assert fit.heavy.parameters["df"] == pytest.approx(1.5, abs=0.15)
    # k and s are nearly confounded on 5000 heavy-tailed norms (k = 22 here);
    # k s², the bulk scale of r², is what the data determine.
    assert fit.heavy.parameters["k"] * fit.heavy.parameters["scale"] ** 2 == pytest.approx(40, rel=0.1)


@pytest.mark.parametrize("k, scale, df", [(1.0, 1.0, 3.0), (7.5, 0.3, 1.2), (60.0, 2.0, 40.0)])
def test_multivariate_t_norm_density_integrates_to_one_and_tends_to_chi(k, scale, df):
    r = tf.constant(np.linspace(1e-6, 2000.0 * scale, 2_000_001), tf.float64)
    density = np.exp(_log_t_norm(r, k, scale, df).numpy())
    step = float(r[1] - r[0])
    mass = np.sum(density) * step
    upper_tail = (2000.0 / math.sqrt(k)) ** -df  # P(r > x) ~ x^-ν: what the grid leaves out, roughly
    assert mass == pytest.approx(1.0, abs=2e-3 + upper_tail)
    large_df = _log_t_norm(r[:1000], k, scale, 1e7).numpy()
    np.testing.assert_allclose(large_df, _log_chi_norm(r[:1000], k, scale).numpy(), atol=1e-4)


def test_chi_norm_matches_the_norm_of_gaussian_vectors():
    from analysis_tools.updates.goodness_of_fit import ks_statistic

    tfd = tfp.distributions
    r = 2.0 * _gaussian_norms(20_000, 5, np.random.default_rng(5))
    law = tfd.TransformedDistribution(
        tfd.Chi(tf.constant(5.0, tf.float64)), tfp.bijectors.Scale(tf.constant(2.0, tf.float64))
    )
    assert float(ks_statistic(r, law).pvalue) > 0.01
    np.testing.assert_allclose(_log_chi_norm(tf.constant(r[:10]), 5.0, 2.0), law.log_prob(r[:10]), rtol=1e-12)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="kind"):
        fit_noise_distribution(np.ones(200), kind="vectors")
    with pytest.raises(ValueError, match="100 finite"):
        fit_noise_distribution(np.ones(50))
    with pytest.raises(ValueError, match="positive"):
        fit_noise_distribution(np.linspace(-1, 1, 200), kind="norms")
    with pytest.raises(ValueError, match="tail_fraction"):
        fit_noise_distribution(np.linspace(-1, 1, 200), tail_fraction=1.5)


# ---------------------------------------------------------------------------
# Standard errors and distribution objects (coverage over 100 seeds: benchmarks/coverage.py, RESULTS.md).


@pytest.mark.slow
def test_each_fit_comes_with_its_distribution():
    rng = np.random.default_rng(7)
    x = 2.0 * rng.standard_t(3.0, 4000) + 1.0
    fit = fit_noise_distribution(x, kind="coordinates")
    for law in (fit.light, fit.heavy):
        assert float(tf.reduce_sum(law.distribution.log_prob(x))) == pytest.approx(law.log_likelihood, rel=1e-10)
    excess = np.abs(x - np.median(x))
    excess = excess[excess > fit.tail.threshold]
    assert isinstance(fit.tail.distribution, tfp.distributions.GeneralizedPareto)
    assert np.all(np.isfinite(fit.tail.distribution.log_prob(excess).numpy()))
    r = _t_norms(3000, 20, 4.0, rng)
    fit = fit_noise_distribution(r, kind="norms")
    for law in (fit.light, fit.heavy):
        assert float(tf.reduce_sum(law.distribution.log_prob(r))) == pytest.approx(law.log_likelihood, rel=1e-8)
    assert fit.heavy.distribution.sample(5, seed=(1, 1)).shape == [5]


def test_student_t_standard_errors_against_a_finite_difference_information_matrix():
    import scipy.stats

    x = 0.5 * np.random.default_rng(8).standard_t(4.0, 5000) - 0.3
    fit = fit_noise_distribution(x, kind="coordinates")
    names = ("df", "loc", "scale")
    theta = np.array([fit.heavy.parameters[n] for n in names])

    def log_likelihood(t):
        return np.sum(scipy.stats.t.logpdf(x, t[0], loc=t[1], scale=t[2]))

    steps = 1e-4 * np.maximum(np.abs(theta), 0.1)
    hessian = np.empty((3, 3))
    for i in range(3):
        for j in range(3):
            e_i, e_j = np.eye(3)[i] * steps[i], np.eye(3)[j] * steps[j]
            hessian[i, j] = (
                log_likelihood(theta + e_i + e_j)
                - log_likelihood(theta + e_i - e_j)
                - log_likelihood(theta - e_i + e_j)
                + log_likelihood(theta - e_i - e_j)
            ) / (4 * steps[i] * steps[j])
    expected = np.sqrt(np.diag(np.linalg.inv(-hessian)))
    np.testing.assert_allclose([fit.heavy.standard_errors[n] for n in names], expected, rtol=1e-3)


def test_the_heavy_law_at_its_light_limit_has_no_standard_error_for_nu():
    fit = fit_noise_distribution(np.random.default_rng(9).standard_normal(3000), kind="coordinates")
    assert fit.heavy.parameters["df"] == math.inf and math.isnan(fit.heavy.standard_errors["df"])
    assert fit.heavy.standard_errors["loc"] == fit.light.standard_errors["loc"]
    assert fit.heavy.distribution is fit.light.distribution
