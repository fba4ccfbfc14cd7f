"""`analysis_tools.updates.law`: Zhang & Ziyin's update law (Theorem 1) as a TFP distribution.

Oracles: closed forms (the arcsine law at m = 2, the uniform law at m = 3),
quadrature, and Monte-Carlo simulations of the adaptive update
x = g_t / sqrt(mean_{i≤t} g_i²) for i.i.d. N(0, 1) gradients with fixed seeds.
"""

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from analysis_tools.updates.fitting import fit_update_distribution
from analysis_tools.updates.goodness_of_fit import ks_statistic
from analysis_tools.updates.law import AdaptiveUpdate
from analysis_tools.updates.moments import (
    abs_update_mean,
    abs_update_variance,
    gaussian_limit,
    update_variance,
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


# ---------------------------------------------------------------------------
# The density.


@pytest.mark.parametrize("m", [2.5, 3.0, 5.0, 10.0, 50.0])
@pytest.mark.slow
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
    gaps = [np.max(np.abs(AdaptiveUpdate(np.float64(m)).cdf(x) - normal.cdf(x))) for m in (10.0, 100.0, 1e4)]
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
    arcsine = tfd.TransformedDistribution(AdaptiveUpdate(np.float64(2.0)), tfb.Scale(np.float64(math.sqrt(1.0 / 2.0))))
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


@pytest.mark.parametrize(
    "m",
    [
        0.5,
        -1,
        1.0,
        float("nan"),
        np.float32(0.9),
        np.array([2.0, 0.5, 3.0]),
        tf.constant(0.5),
        tf.constant([1.0, 4.0], tf.float64),
    ],
    ids=["half", "negative", "one", "nan", "numpy_scalar", "numpy_batch", "eager_tensor", "eager_batch"],
)
def test_m_at_most_one_is_refused_at_construction(m):
    # Unchecked, m = 0.5 gave NaN samples and m = -1 a variance of 1.
    with pytest.raises(ValueError, match="`m` must be > 1"):
        AdaptiveUpdate(m)


def test_m_unknown_at_construction_is_accepted():
    # Inside a traced function m is symbolic; the law is built and used as usual.
    @tf.function
    def log_prob_at_zero(m):
        return AdaptiveUpdate(m).log_prob(0.0)

    assert float(log_prob_at_zero(tf.constant(3.0))) == pytest.approx(-math.log(2.0 * math.sqrt(3.0)))
    assert float(AdaptiveUpdate(tf.Variable(0.5)).m) == 0.5


def test_tfp_machinery():
    bijector = AdaptiveUpdate.parameter_properties()["m"].default_constraining_bijector_fn()
    assert np.all(bijector(tf.constant([-30.0, 0.0, 30.0])).numpy() > 1.0)
    # A variable m is read when the law is used: validate_args checks it then.
    with pytest.raises(tf.errors.InvalidArgumentError, match="greater than 1"):
        AdaptiveUpdate(tf.Variable(0.5), validate_args=True).log_prob(0.0)
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
