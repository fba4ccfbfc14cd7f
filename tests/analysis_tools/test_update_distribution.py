"""`analysis_tools.update_distribution`: Zhang & Ziyin's update law, its moments and fits.

Oracles: closed forms (the arcsine law at m = 2, the uniform law at m = 3,
Corollaries 1–2 in their Γ form), quadrature, and Monte-Carlo simulations
of the adaptive update x = g_t / sqrt(mean_{i≤t} g_i²) for i.i.d. N(0, 1)
gradients with fixed seeds.
"""

import keras
import pytest

if keras.backend.backend() != "tensorflow":
    pytest.skip(
        "analysis_tools.update_distribution needs the TensorFlow backend", allow_module_level=True
    )

import math

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from analysis_tools.update_distribution import (
    AdaptiveUpdate,
    abs_update_mean,
    abs_update_variance,
    effective_sample_size,
    fit_update_distribution,
    gaussian_limit,
    kolmogorov_survival_function,
    ks_statistic,
    update_variance,
    wasserstein_1,
)

tfd = tfp.distributions
tfb = tfp.bijectors


def simple_average_updates(m, n, seed, normalization=None):
    """n draws of g_m / sqrt(Σ_{i≤m} g_i² / c), g ~ N(0, 1) i.i.d.; c = m by default (Theorem 1)."""
    rng = np.random.default_rng(seed)
    sum_squares = np.zeros(n)
    for _ in range(m):
        g = rng.standard_normal(n)
        sum_squares += g * g
    c = m if normalization is None else normalization
    return g / np.sqrt(sum_squares / c)


def ema_updates(beta, steps, n, seed):
    """n draws of Adam's update with β1 = 0: g_t / sqrt(v_t / (1 − β^t))."""
    rng = np.random.default_rng(seed)
    v = np.zeros(n)
    for _ in range(steps):
        g = rng.standard_normal(n)
        v = beta * v + (1.0 - beta) * g * g
    return g / np.sqrt(v / (1.0 - beta**steps))


def corollary_2(m):
    """Var|Δθ| exactly as written in Corollary 2, with lgamma."""
    log_ratio = 2.0 * (math.lgamma(m / 2.0) - math.lgamma((m - 1.0) / 2.0))
    return 1.0 - 4.0 * m * math.exp(log_ratio) / ((m - 1.0) ** 2 * math.pi)


# ---------------------------------------------------------------------------
# The density.


@pytest.mark.parametrize("m", [2.5, 3.0, 5.0, 10.0, 50.0])
def test_density_integrates_to_one(m):
    d = AdaptiveUpdate(tf.constant(m, tf.float64))
    root_m = math.sqrt(m)
    # x = √m sin θ removes the (integrable, m < 3) poles at ±√m:
    # f(x) dx ∝ cos^{m-2} θ dθ.
    nodes, weights = np.polynomial.legendre.leggauss(400)
    theta = nodes * math.pi / 2
    integrand = d.prob(root_m * np.sin(theta)).numpy() * root_m * np.cos(theta)
    assert np.sum(weights * integrand) * math.pi / 2 == pytest.approx(1.0, abs=2e-4)
    # The cdf spans the whole mass on the support.
    assert float(d.cdf(root_m) - d.cdf(-root_m)) == pytest.approx(1.0, abs=1e-12)
    # Away from the edges the density is smooth: plain quadrature = cdf differences.
    a, b = -0.9 * root_m, 0.7 * root_m
    x = (b - a) / 2 * nodes + (a + b) / 2
    integral = (b - a) / 2 * np.sum(weights * d.prob(x).numpy())
    assert integral == pytest.approx(float(d.cdf(b) - d.cdf(a)), rel=1e-9)


def test_arcsine_law_at_m_2():
    d = AdaptiveUpdate(tf.constant(2.0, tf.float64))
    x = np.linspace(-1.41, 1.41, 41)
    np.testing.assert_allclose(d.prob(x), 1.0 / (math.pi * np.sqrt(2.0 - x**2)), rtol=1e-10)
    np.testing.assert_allclose(d.cdf(x), 0.5 + np.arcsin(x / math.sqrt(2.0)) / math.pi, atol=1e-12)
    p = np.linspace(0.0, 1.0, 21)
    expected = math.sqrt(2.0) * np.sin(math.pi * (p - 0.5))
    np.testing.assert_allclose(d.quantile(p), expected, atol=1e-9)


def test_uniform_law_at_m_3():
    d = AdaptiveUpdate(tf.constant(3.0, tf.float64))
    root_3 = math.sqrt(3.0)
    x = np.linspace(-root_3, root_3, 41)
    np.testing.assert_allclose(d.prob(x), np.full_like(x, 1.0 / (2.0 * root_3)), rtol=1e-12)
    np.testing.assert_allclose(d.cdf(x), (x + root_3) / (2.0 * root_3), atol=1e-12)


def test_outside_the_support():
    for m in (2.5, 3.0, 10.0):
        d = AdaptiveUpdate(tf.constant(m, tf.float64))
        root_m = math.sqrt(m)
        outside = np.array([-root_m * 1.001, root_m * 1.001, -100.0, 100.0, -np.inf, np.inf])
        assert np.all(d.log_prob(outside).numpy() == -np.inf)
        assert np.all(d.prob(outside).numpy() == 0.0)
        np.testing.assert_array_equal(d.cdf(outside), [0.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    # At the edges: poles for m < 3, zeros for m > 3.
    assert AdaptiveUpdate(np.float64(2.5)).log_prob(math.sqrt(2.5)).numpy() == np.inf
    assert AdaptiveUpdate(np.float64(10.0)).log_prob(-math.sqrt(10.0)).numpy() == -np.inf


def test_gaussian_limit():
    normal = gaussian_limit(tf.float64)
    assert isinstance(normal, tfd.Normal)
    assert float(normal.mean()) == 0.0 and float(normal.stddev()) == 1.0
    x = np.linspace(-4.0, 4.0, 81)
    gaps = [
        np.max(np.abs(AdaptiveUpdate(np.float64(m)).cdf(x) - normal.cdf(x)))
        for m in (10.0, 100.0, 1e4)
    ]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-4


# ---------------------------------------------------------------------------
# Sampling and the theorem.


@pytest.mark.parametrize("m", [2.0, 2.5, 3.0, 5.0, 10.0, 50.0])
def test_samples_pass_ks_against_own_cdf(m):
    d = AdaptiveUpdate(tf.constant(m, tf.float64))
    samples = d.sample(20000, seed=(7, int(m * 10)))
    assert samples.dtype == tf.float64
    assert float(tf.reduce_max(tf.square(samples))) <= m
    assert float(ks_statistic(samples, d).pvalue) > 0.01
    # float32 as well.
    d32 = AdaptiveUpdate(np.float32(m))
    samples32 = d32.sample(20000, seed=(8, int(m * 10)))
    assert samples32.dtype == tf.float32
    assert float(ks_statistic(samples32, d32).pvalue) > 0.01


@pytest.mark.parametrize("m", [2, 3, 5, 10, 50])
def test_theorem_1_monte_carlo(m):
    """x = g_m / sqrt(mean g²) follows AdaptiveUpdate(m); Var 1 (Cor. 1); Var|x| (Cor. 2)."""
    x = simple_average_updates(m, 200_000, seed=m)
    d = AdaptiveUpdate(tf.constant(float(m), tf.float64))
    assert float(ks_statistic(x, d).pvalue) > 0.01
    assert np.var(x) == pytest.approx(1.0, abs=0.01)
    assert float(update_variance(float(m))) == 1.0
    assert np.var(np.abs(x)) == pytest.approx(float(abs_update_variance(m)), abs=0.005)
    assert np.mean(np.abs(x)) == pytest.approx(float(abs_update_mean(m)), abs=0.005)


@pytest.mark.parametrize("m", [2.0, 10.0])
def test_sampler_moments(m):
    d = AdaptiveUpdate(tf.constant(m, tf.float64))
    x = d.sample(200_000, seed=(11, 12)).numpy()
    assert np.var(x) == pytest.approx(float(d.variance()), abs=0.01)
    assert np.mean(x) == pytest.approx(float(d.mean()), abs=0.01)
    assert np.var(np.abs(x)) == pytest.approx(float(abs_update_variance(m)), abs=0.005)


def test_scale_of_the_papers_eqs_32_33():
    """Eqs. 32–33 are the c = m − 1 normalisation: sqrt((m−1)/m) X, not X itself."""
    n = 20000
    # m = 2: arcsine on [-1, 1] (Eq. 32); m = 3: uniform on [-√2, √2], density 1/(2√2) (Eq. 33).
    arcsine = tfd.TransformedDistribution(
        AdaptiveUpdate(np.float64(2.0)), tfb.Scale(np.float64(math.sqrt(1.0 / 2.0)))
    )
    uniform = tfd.Uniform(np.float64(-math.sqrt(2.0)), np.float64(math.sqrt(2.0)))
    x2 = simple_average_updates(2, n, seed=21, normalization=1)
    x3 = simple_average_updates(3, n, seed=22, normalization=2)
    assert np.max(np.abs(x2)) <= 1.0 + 1e-12 and np.max(np.abs(x3)) <= math.sqrt(2.0) + 1e-12
    assert float(ks_statistic(x2, arcsine).pvalue) > 0.01
    assert float(ks_statistic(x3, uniform).pvalue) > 0.01
    assert float(uniform.prob(0.0)) == pytest.approx(1.0 / (2.0 * math.sqrt(2.0)))
    x = np.linspace(-0.99, 0.99, 9)
    np.testing.assert_allclose(arcsine.prob(x), 1.0 / (math.pi * np.sqrt(1.0 - x**2)), rtol=1e-9)
    # With Theorem 1's own normalisation (c = m) these laws are rejected.
    assert float(ks_statistic(x2, AdaptiveUpdate(np.float64(2.0))).pvalue) < 1e-6
    assert float(ks_statistic(x3, AdaptiveUpdate(np.float64(3.0))).pvalue) < 1e-6


# ---------------------------------------------------------------------------
# Moments and the effective sample size.


def test_corollary_2():
    m = np.array([1.5, 2.0, 2.5, 3.0, 5.0, 10.0, 50.0, 300.0])
    np.testing.assert_allclose(abs_update_variance(m), [corollary_2(v) for v in m], rtol=1e-12)
    assert float(abs_update_variance(3.0)) == pytest.approx(0.25, rel=1e-12)
    # E|x|: arcsine on [-√2, √2] and uniform on [-√3, √3].
    assert float(abs_update_mean(2.0)) == pytest.approx(2.0 * math.sqrt(2.0) / math.pi, rel=1e-12)
    assert float(abs_update_mean(3.0)) == pytest.approx(math.sqrt(3.0) / 2.0, rel=1e-12)
    # Increasing, bounded by the Gaussian value 1 − 2/π, finite for huge m.
    grid = np.geomspace(1.01, 1e12, 200)
    values = abs_update_variance(grid).numpy()
    assert np.all(np.diff(values) > 0.0)
    assert values[-1] == pytest.approx(1.0 - 2.0 / math.pi, abs=1e-10)
    assert np.all(values < 1.0 - 2.0 / math.pi)
    assert abs_update_variance(np.float32(10.0)).dtype == tf.float32


def test_effective_sample_size():
    assert float(effective_sample_size(0.9)) == pytest.approx(20.0, rel=1e-14)  # Eq. 12
    assert float(effective_sample_size(0.999)) == pytest.approx(2000.0, rel=1e-12)
    for beta in (0.0, 0.5, 0.9, 0.999):
        for t in (1, 2, 10, 200, 5000):
            w = (1.0 - beta) * beta ** (t - np.arange(1, t + 1)) / (1.0 - beta**t)
            kish = 1.0 / np.sum(w**2)
            assert float(effective_sample_size(beta, step=t)) == pytest.approx(kish, rel=1e-10)
    # Limits: t = 1 → 1; β = 1 → t; t → ∞ → (1 + β)/(1 − β) = 2/(1 − β) − 1.
    np.testing.assert_allclose(effective_sample_size([0.3, 0.9, 0.999], step=1), 1.0, rtol=1e-12)
    assert float(effective_sample_size(1.0, step=37)) == 37.0
    assert float(effective_sample_size(0.9, step=10_000)) == pytest.approx(19.0, rel=1e-12)
    assert effective_sample_size(np.zeros([2, 3]), step=np.ones([3])).shape == (2, 3)


def test_ema_deviation_from_the_simple_average_law():
    """Documented deviation: bias-corrected EMA weights (β2 = 0.9, t = 200) give Var(x) ≈ 0.92."""
    m_eff = float(effective_sample_size(0.9, step=200))
    assert m_eff == pytest.approx(19.0, abs=1e-6)
    x = ema_updates(0.9, 200, 200_000, seed=5)
    assert np.var(x) == pytest.approx(0.92, abs=0.01)
    assert np.var(x) < 0.95
    # Var|x| is far below the simple-average value at the same effective m.
    assert np.var(np.abs(x)) < float(abs_update_variance(m_eff)) - 0.03
    assert float(ks_statistic(x[:50_000], AdaptiveUpdate(np.float64(m_eff))).pvalue) < 1e-3
    # While t ≪ 1/(1 − β2) the weights are nearly equal and the law holds.
    x = ema_updates(0.999, 10, 100_000, seed=6)
    assert np.var(x) == pytest.approx(1.0, abs=0.015)
    assert float(ks_statistic(x, AdaptiveUpdate(np.float64(10.0))).pvalue) > 0.01


# ---------------------------------------------------------------------------
# Distribution mechanics.


def test_batch_shapes_dtypes_and_seeds():
    d = AdaptiveUpdate([2.5, 5.0, 10.0])
    assert d.dtype == tf.float32 and d.batch_shape == [3] and d.event_shape == []
    assert d.sample(4, seed=(1, 2)).shape == (4, 3)
    assert d.sample([2, 5], seed=(1, 2)).shape == (2, 5, 3)
    np.testing.assert_array_equal(d.sample(6, seed=(3, 4)), d.sample(6, seed=(3, 4)))
    assert d.mean().shape == (3,) and np.all(d.variance().numpy() == 1.0)
    assert np.all(d.stddev().numpy() == 1.0)
    d2 = AdaptiveUpdate(np.array([[2.0], [50.0]]))
    assert d2.dtype == tf.float64 and d2.batch_shape == [2, 1]
    x = np.array([-1.0, 0.0, 1.2])
    assert d2.log_prob(x).shape == (2, 3) and d2.log_prob(x).dtype == tf.float64
    assert d2.cdf(x).shape == (2, 3)
    np.testing.assert_allclose(d2.cdf(x) + d2.survival_function(x), 1.0, rtol=1e-12)
    np.testing.assert_allclose(d2.quantile(d2.cdf(x)), np.broadcast_to(x, (2, 3)), atol=1e-9)
    # Mode: 0 for m ≥ 3, undefined below.
    np.testing.assert_array_equal(AdaptiveUpdate([2.0, 3.0, 7.0]).mode(), [np.nan, 0.0, 0.0])


def test_float32_accuracy():
    """float32 laws agree with float64 ones, also for large m (cdf and quantile run in float64)."""
    x = np.linspace(-3.0, 3.0, 25)
    for m in (5.0, 1e4, 1e7):
        d32, d64 = AdaptiveUpdate(np.float32(m)), AdaptiveUpdate(np.float64(m))
        np.testing.assert_allclose(d32.cdf(x.astype(np.float32)), d64.cdf(x), atol=1e-6)
        np.testing.assert_allclose(d32.log_prob(x.astype(np.float32)), d64.log_prob(x), atol=1e-5)
        p = np.linspace(0.01, 0.99, 9)
        np.testing.assert_allclose(d32.quantile(p.astype(np.float32)), d64.quantile(p), atol=1e-5)
    # A float32 fit keeps every float32 sample inside the support (m rounded up).
    samples = AdaptiveUpdate(np.float32(2.0)).sample(20_000, seed=(1, 3))
    fit = fit_update_distribution(samples)
    assert fit.distribution.dtype == tf.float32 and float(fit.distribution.m) >= fit.m
    assert np.all(fit.distribution.log_prob(samples).numpy() > -np.inf)


def test_tfp_machinery():
    bijector = AdaptiveUpdate.parameter_properties()["m"].default_constraining_bijector_fn()
    assert np.all(bijector(tf.constant([-30.0, 0.0, 30.0])).numpy() > 1.0)
    with pytest.raises(tf.errors.InvalidArgumentError):
        AdaptiveUpdate(0.5, validate_args=True).log_prob(0.0)
    # A composite tensor: it crosses tf.function boundaries.
    d = AdaptiveUpdate(tf.constant([3.0, 10.0]))

    @tf.function
    def log_prob_at_zero(distribution):
        return distribution.log_prob(0.0)

    np.testing.assert_allclose(log_prob_at_zero(d), d.log_prob(0.0))
    # Gradients of log_prob and of samples with respect to m.
    m = tf.Variable(5.0)
    with tf.GradientTape(persistent=True) as tape:
        lp = AdaptiveUpdate(m).log_prob(1.0)
        s = tf.reduce_sum(tf.abs(AdaptiveUpdate(m).sample(100, seed=(1, 1))))
    assert np.isfinite(tape.gradient(lp, m).numpy())
    assert np.isfinite(tape.gradient(s, m).numpy())
    bijector = d.experimental_default_event_space_bijector()
    edges = bijector(tf.constant([-50.0, 50.0]))
    np.testing.assert_allclose(edges, [-math.sqrt(3.0), math.sqrt(10.0)], rtol=1e-6)
    inside = bijector(tf.constant([0.3, 0.0]))[0]
    assert float(d[0].log_prob(inside)) == pytest.approx(-math.log(2.0 * math.sqrt(3.0)))


# ---------------------------------------------------------------------------
# Goodness of fit.


def test_kolmogorov_survival_function():
    assert float(kolmogorov_survival_function(0.0)) == 1.0
    # Both series agree where they meet.
    below, above = kolmogorov_survival_function([1.0 - 1e-9, 1.0]).numpy()
    assert below == pytest.approx(above, abs=1e-8)
    # P(K > 1.3581) = 0.05, P(K > 1.6276) = 0.01 (tabulated quantiles).
    assert float(kolmogorov_survival_function(1.3581)) == pytest.approx(0.05, abs=1e-4)
    assert float(kolmogorov_survival_function(1.6276)) == pytest.approx(0.01, abs=1e-4)
    special = pytest.importorskip("scipy.special")
    grid = np.linspace(0.05, 3.0, 60)
    np.testing.assert_allclose(
        kolmogorov_survival_function(grid), special.kolmogorov(grid), atol=1e-12
    )


def test_ks_statistic_matches_definition():
    d = AdaptiveUpdate(np.float64(5.0))
    x = d.sample(500, seed=(2, 3)).numpy()
    cdf = np.sort(d.cdf(np.sort(x)).numpy())
    n = x.size
    i = np.arange(1, n + 1)
    expected = max(np.max(i / n - cdf), np.max(cdf - (i - 1) / n))
    result = ks_statistic(x, d)
    assert float(result.statistic) == pytest.approx(expected, rel=1e-12)
    pvalue = float(kolmogorov_survival_function(math.sqrt(n) * expected))
    assert float(result.pvalue) == pytest.approx(pvalue)
    with pytest.raises(ValueError, match="scalar distribution"):
        ks_statistic(x, AdaptiveUpdate([3.0, 5.0]))


def test_wasserstein_1():
    d = AdaptiveUpdate(np.float64(5.0))
    n = 20000
    # Samples at the quantiles (i − 1/2)/n shifted by δ: W1 = δ up to O(1/n).
    x = d.quantile((np.arange(n) + 0.5) / n).numpy()
    assert float(wasserstein_1(x, d)) < 1e-3
    assert float(wasserstein_1(x + 0.1, d)) == pytest.approx(0.1, abs=1e-3)
    # Distributions without a finite support or without a quantile.
    normal = tfd.Normal(np.float64(0.0), np.float64(1.0))
    z = normal.quantile((np.arange(n) + 0.5) / n).numpy()
    assert float(wasserstein_1(z - 0.2, normal)) == pytest.approx(0.2, abs=2e-3)
    mixture = tfd.MixtureSameFamily(
        tfd.Categorical(probs=np.array([0.5, 0.5])),
        tfd.Normal(np.array([-2.0, 2.0]), np.float64(1.0)),
    )
    mixed = np.concatenate([z - 2.0, z + 2.0])
    assert float(wasserstein_1(mixed, mixture)) < 2e-3
    assert float(wasserstein_1(mixed + 0.3, mixture)) == pytest.approx(0.3, abs=3e-3)


# ---------------------------------------------------------------------------
# Fits.


def test_fit_recovers_m_5():
    x = AdaptiveUpdate(np.float64(5.0)).sample(50_000, seed=(31, 1))
    fit = fit_update_distribution(x)
    assert fit.m == pytest.approx(5.0, rel=0.05)
    assert fit.converged and fit.num_samples == 50_000
    assert abs(fit.m - 5.0) < 4.0 * fit.m_stderr and fit.m_stderr / 5.0 < 0.01
    assert fit.ks_pvalue > 0.01 and fit.wasserstein_1 < 0.02
    assert fit.distribution.dtype == tf.float64 and float(fit.distribution.m) == fit.m
    # The likelihood is the sum of log_prob, and it is maximal at the fit.
    log_lik = lambda m: float(tf.reduce_sum(AdaptiveUpdate(np.float64(m)).log_prob(x)))
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
    assert fit.m_stderr / 20.0 == pytest.approx(0.0165, rel=0.2)
    small = fit_update_distribution(x[:50_000].astype(np.float32))
    assert small.distribution.dtype == tf.float32
    assert 0.03 < small.m_stderr / 20.0 < 0.08
    assert abs(small.m - 20.0) < 3.0 * small.m_stderr
    assert small.ks_pvalue > 0.01


def test_fit_below_3_is_the_support_edge():
    x = AdaptiveUpdate(np.float64(2.5)).sample(20_000, seed=(33, 1)).numpy()
    fit = fit_update_distribution(x)
    assert np.max(x**2) < fit.m < 2.5 + 1e-6
    assert fit.m == pytest.approx(2.5, rel=1e-3)
    assert math.isnan(fit.m_stderr) and fit.ks_pvalue > 0.01


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
    assert float(tf.reduce_sum(mixture.distribution.log_prob(x))) == pytest.approx(
        mixture.log_likelihood, rel=1e-9
    )
