"""`AdaptiveUpdate` against TFP's contract for a distribution (as TFP's own `beta_test.py`, `student_t_test.py`).

Oracle: scipy's Student-t. With ν = m − 1, t = x √(ν/m) / √(1 − x²/m) is an
increasing map of X onto a Student-t(ν) variable (g_m over the root mean
square of the other m − 1 gradients), so F_m(x) = F_t(t(x)) and
q_m(p) = √m t_p / √(t_p² + ν), both computed by scipy (Boost) without the
cancellations this file tests for in the tails. Next to the median, where
scipy's Student-t is itself off (its cdf rounds to 1/2 at x = 1e-9 √2 for
m = 2, its quantile is 4e-5 off at m = 5, p = 1/2 − 10⁻⁶), the oracle is a
40-digit mpmath incomplete beta.
"""

import math

import mpmath
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf
import tensorflow_probability as tfp

from analysis_tools.updates.law import AdaptiveUpdate
from analysis_tools.updates.moments import abs_update_mean

tfd = tfp.distributions


def scipy_cdf(x, m):
    x = np.asarray(x, np.float64)
    root = math.sqrt(m)
    t = x * math.sqrt((m - 1.0) / m) / np.sqrt((1.0 - np.abs(x) / root) * (1.0 + np.abs(x) / root))
    return scipy.stats.t.cdf(t, m - 1.0)


def scipy_quantile(p, m):
    t = scipy.stats.t.ppf(p, m - 1.0)
    return math.sqrt(m) * t / np.sqrt(t * t + m - 1.0)


def mpmath_cdf(x, m):
    with mpmath.workdps(40):
        m, x = mpmath.mpf(m), mpmath.mpf(x)
        i = mpmath.betainc(mpmath.mpf(1) / 2, (m - 1) / 2, 0, x * x / m, regularized=True)
        return mpmath.mpf(1) / 2 + mpmath.sign(x) * i / 2


def law64(m, **kwargs):
    return AdaptiveUpdate(tf.constant(m, tf.float64), **kwargs)


# Relative accuracy of the float64 cdf and quantile, as measured against the oracle: TFP's float64
# incomplete beta limits it for large second parameters b = (m − 1)/2.
TOLERANCE = {1.5: 1e-12, 2.0: 1e-12, 3.0: 1e-12, 5.0: 1e-12, 20.0: 1e-12, 1e3: 1e-11, 1e6: 2e-9, 1e8: 1e-7}


# Derivatives in m go through TFP's gradient of the incomplete beta in its parameters, which is off by
# up to 1.3 % (at m = 3, x = 0.7: the b-derivative of I_z(1/2, 1) = √z), as measured against central
# differences; next to the median the cdf's series is exact.
M_GRADIENT_TOLERANCE = 2e-2


# ---------------------------------------------------------------------------
# Shapes, dtypes, parameter properties.


def test_batch_shapes_broadcast_and_dtypes_follow_m():
    d = AdaptiveUpdate(tf.constant([[2.0], [5.0], [20.0]], tf.float64))
    assert d.batch_shape == [3, 1] and d.event_shape == [] and d.dtype == tf.float64
    x = tf.constant([-0.5, 0.0, 0.5, 1.0], tf.float64)
    for method in (d.log_prob, d.cdf, d.survival_function, d.prob):
        assert method(x).shape == [3, 4] and method(x).dtype == tf.float64
    assert d.quantile(tf.constant([0.1, 0.5, 0.9, 0.99], tf.float64)).shape == [3, 4]
    assert d.sample([2, 5], seed=(1, 2)).shape == [2, 5, 3, 1]
    assert d.entropy().shape == [3, 1]
    assert AdaptiveUpdate(5.0).cdf(0.3).dtype == tf.float32


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_parameter_properties_and_make_trainable_in_either_dtype(dtype):
    bijector = AdaptiveUpdate.parameter_properties(dtype)["m"].default_constraining_bijector_fn()
    values = bijector(tf.constant([-30.0, 0.0, 30.0], dtype))
    assert values.dtype == dtype and np.all(values.numpy() > 1.0)
    law = tfp.experimental.util.make_trainable(AdaptiveUpdate, parameter_dtype=dtype, seed=(1, 1))
    assert law.dtype == dtype and np.isfinite(law.log_prob(tf.constant(0.5, dtype)).numpy())


# ---------------------------------------------------------------------------
# log_prob, cdf, quantile against the oracle, on both sides of the median.


@pytest.mark.parametrize("m", sorted(TOLERANCE))
def test_cdf_and_survival_against_scipy_on_both_sides(m):
    root = math.sqrt(m)
    if m > 100:
        x = np.array([-8.0, -5.0, -3.0, -1.0, -0.1, -1e-3, -1e-6, -1e-9, 0.0, 1e-9, 1e-6, 1e-3, 0.1, 1.0, 3.0, 5.0])
    else:
        x = root * np.array(
            [-0.999999, -0.9, -0.5, -0.1, -1e-3, -1e-6, -1e-9, 0.0, 1e-9, 1e-6, 1e-3, 0.1, 0.5, 0.9, 0.999999]
        )
    d = law64(m)
    # scipy's Student-t cdf rounds to 1/2 next to the median (3e-10 off at x = 1e-9 √2, m = 2): mpmath there.
    expected = np.where(np.abs(x) < 1e-2 * root, [float(mpmath_cdf(v, m)) for v in x], scipy_cdf(x, m))
    # Relative to the smaller tail, so that P(X ≤ x) near 0 and near 1 are both held to it.
    scale = np.minimum(expected, 1.0 - expected)
    np.testing.assert_array_less(np.abs(d.cdf(x).numpy() - expected), TOLERANCE[m] * scale + 1e-300)
    np.testing.assert_array_less(np.abs(d.survival_function(-x).numpy() - expected), TOLERANCE[m] * scale + 1e-300)


def test_cdf_next_to_the_median_on_the_negative_side_does_not_cancel():
    # Filed: 0.4999940553 (the x > 0 side was right); the branch is now chosen by I_z against 1/2.
    assert float(law64(1e6).cdf(-1e-5)) == pytest.approx(0.4999960105801881, rel=1e-13)
    assert float(law64(1e6).cdf(1e-5)) == pytest.approx(1.0 - 0.4999960105801881, rel=1e-13)


@pytest.mark.parametrize("m", sorted(TOLERANCE))
def test_quantile_against_scipy_in_the_tails_and_mpmath_at_the_median(m):
    d = law64(m)
    p = np.array([1e-12, 1e-6, 1e-3, 0.1, 0.25, 0.4, 0.6, 0.75, 0.9, 1 - 1e-3, 1 - 1e-6])
    np.testing.assert_allclose(d.quantile(p).numpy(), scipy_quantile(p, m), rtol=TOLERANCE[m])
    near = np.array([0.5 - 1e-6, 0.5 - 1e-12, 0.5, 0.5 + 1e-12, 0.5 + 1e-6])
    q = d.quantile(near).numpy()
    assert q[2] == 0.0
    # F(q(p)) = p to a few units in the last place of p (mpmath at 40 digits).
    for value, target in zip(q, near):
        assert abs(float(mpmath_cdf(value, m)) - target) < 4e-16


def test_quantile_just_below_the_median_does_not_cancel():
    # Filed: −1.49e-5 at m = 1e6; the quantile is now odd by construction, q(p) = −q(1 − p).
    q = float(law64(1e6).quantile(0.5 - 1e-6))
    assert q == pytest.approx(-2.50663015453972e-6, rel=1e-12)
    # Odd: q(p) = −q(1 − p) exactly, for p whose 1 − p is exact.
    p = 0.5 - 2.0**-20
    assert float(law64(1e6).quantile(p)) == -float(law64(1e6).quantile(1.0 - p))


@pytest.mark.parametrize("m", [1.5, 2.0, 5.0, 20.0, 1e4])
def test_log_prob_against_scipy(m):
    d = law64(m)
    x = math.sqrt(m) * np.array([-0.99, -0.5, -1e-3, 0.0, 0.3, 0.9]) if m < 100 else np.array([-4.0, 0.0, 0.5, 3.0])
    root = math.sqrt(m)
    t = x * math.sqrt((m - 1) / m) / np.sqrt((1 - np.abs(x) / root) * (1 + np.abs(x) / root))
    # Change of variables: f_X(x) = f_t(t) dt/dx, dt/dx = √(ν/m) (1 − x²/m)^(−3/2).
    expected = scipy.stats.t.logpdf(t, m - 1) + 0.5 * math.log((m - 1) / m) - 1.5 * np.log1p(-x * x / m)
    np.testing.assert_allclose(d.log_prob(x).numpy(), expected, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------
# Gradients, at and around the median too.


def _gradient(function, at):
    at = tf.constant(at, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(at)
        value = function(at)
    return tape.gradient(value, at).numpy()


@pytest.mark.parametrize("m", [1.5, 2.0, 5.0, 20.0, 1e6])
def test_cdf_gradients_are_finite_at_the_median_and_match_finite_differences(m):
    # Filed: NaN for d cdf/dm at 0, and for d cdf/dx and d sf/dx at |x| ≲ 1e-8 √m (betainc's gradient at z = 0).
    density_0 = float(law64(m).prob(0.0))
    x = np.array([0.0, 1e-300, -1e-12, 1e-9 * math.sqrt(m), -1e-8 * math.sqrt(m), 0.2])
    np.testing.assert_allclose(_gradient(lambda v: law64(m).cdf(v), x)[:5], density_0, rtol=1e-9)
    np.testing.assert_allclose(_gradient(lambda v: law64(m).survival_function(v), x)[:5], -density_0, rtol=1e-9)
    assert _gradient(lambda mm: AdaptiveUpdate(mm).cdf(tf.constant(0.0, tf.float64)), m) == 0.0
    if m > 100:
        return  # ∂F/∂m ~ 1e-13 there: central differences of F resolve nothing.
    for point in (1e-3, 0.3, -0.7):
        h = 1e-5 * m
        numeric = (float(law64(m + h).cdf(point)) - float(law64(m - h).cdf(point))) / (2 * h)
        analytic = _gradient(lambda mm: AdaptiveUpdate(mm).cdf(tf.constant(point, tf.float64)), m)
        assert np.isfinite(analytic) and analytic == pytest.approx(numeric, rel=M_GRADIENT_TOLERANCE)


@pytest.mark.parametrize("m", [1.5, 2.0, 5.0, 20.0, 1e6])
@pytest.mark.slow
def test_quantile_gradients_in_p_and_m(m):
    # Filed: d quantile/dp NaN at p = 1/2, and no gradient with respect to m at all.
    density_0 = float(law64(m).prob(0.0))
    assert _gradient(lambda p: law64(m).quantile(p), 0.5) == pytest.approx(1.0 / density_0, rel=1e-12)
    for p in (0.5 - 1e-9, 0.3, 0.9):
        h = 1e-6
        numeric = (float(law64(m).quantile(p + h)) - float(law64(m).quantile(p - h))) / (2 * h)
        assert _gradient(lambda pp: law64(m).quantile(pp), p) == pytest.approx(numeric, rel=1e-5)
        if m > 100:
            continue
        h = 1e-5 * m
        numeric = (float(law64(m + h).quantile(p)) - float(law64(m - h).quantile(p))) / (2 * h)
        analytic = _gradient(lambda mm: AdaptiveUpdate(mm).quantile(tf.constant(p, tf.float64)), m)
        assert analytic == pytest.approx(numeric, rel=M_GRADIENT_TOLERANCE, abs=1e-12)
    assert _gradient(lambda mm: AdaptiveUpdate(mm).quantile(tf.constant(0.5, tf.float64)), m) == 0.0


@pytest.mark.slow
def test_sample_gradients_are_reparameterized():
    # The samples' gradient in m (TFP's implicit reparameterization of the Beta draw) is unbiased for
    # d/dm E g(X): with g = |x|, the derivative of Corollary 2's E|X|, by autodiff of the closed form.
    assert AdaptiveUpdate(5.0).reparameterization_type == tfd.FULLY_REPARAMETERIZED
    for m0 in (2.0, 5.0, 20.0):
        m = tf.constant(m0, tf.float64)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(m)
            magnitudes = tf.abs(AdaptiveUpdate(m).sample(200_000, seed=(4, 2)))
            chunks = tf.split(magnitudes, 40)
            exact = abs_update_mean(m)
        per_sample = tf.stack([tape.gradient(chunk, m) for chunk in chunks])
        estimate = float(tf.reduce_sum(per_sample)) / 200_000
        error = float(tf.math.reduce_std(per_sample)) * math.sqrt(40) / 200_000
        assert abs(estimate - float(tape.gradient(exact, m))) < 4 * error, (m0, estimate, error)


# ---------------------------------------------------------------------------
# validate_args on the law's own samples, boundary points and event-space bijector.


@pytest.mark.parametrize(
    "m, dtype", [(1.01, tf.float32), (1.0 + 1e-6, tf.float64), (2.0, tf.float64), (7.0, tf.float32)]
)
def test_validate_args_accepts_the_laws_own_samples_and_edges(m, dtype):
    # Filed: validation tested x² ≤ m, and fl(√m)² > m rejected 18,337 of 20,000 float32 samples at m = 1.01.
    d = AdaptiveUpdate(tf.constant(m, dtype), validate_args=True)
    samples = d.sample(20_000, seed=(3, 1))
    assert np.all(np.isfinite(d.log_prob(samples).numpy()) | (m < 3))
    edges = tf.constant([-1.0, 1.0], dtype) * tf.sqrt(tf.constant(m, dtype))
    d.log_prob(edges)
    d.cdf(edges)
    outputs = d.experimental_default_event_space_bijector()(tf.constant([-60.0, -3.0, 0.0, 3.0, 60.0], dtype))
    d.log_prob(outputs)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Sample must be in"):
        d.log_prob(edges * (1 + 1e-3))


# ---------------------------------------------------------------------------
# Entropy, XLA.


@pytest.mark.parametrize("m", [1.5, 2.0, 3.0, 5.0, 20.0, 300.0])
def test_entropy_against_the_beta_law_quadrature_and_closed_forms(m):
    # (X + √m)/(2√m) ~ Beta(c, c), c = (m − 1)/2 (Eq. 29): H = H(Beta(c, c)) + log(2√m), with the textbook
    # H(Beta(a, b)) = log B(a, b) − (a − 1)ψ(a) − (b − 1)ψ(b) + (a + b − 2)ψ(a + b).
    with mpmath.workdps(30):
        mm = mpmath.mpf(m)
        c = (mm - 1) / 2
        beta_entropy = (
            mpmath.log(mpmath.beta(c, c)) - 2 * (c - 1) * mpmath.digamma(c) + (2 * c - 2) * mpmath.digamma(2 * c)
        )
        expected = float(beta_entropy + mpmath.log(2 * mpmath.sqrt(mm)))
        if m >= 3:  # a smooth integrand: quadrature of −f log f too
            log_norm = mpmath.log(mpmath.sqrt(mm) * mpmath.beta(mpmath.mpf(1) / 2, c))

            def integrand(u):  # at x = u √m, times dx/du = √m
                log_f = (mm - 3) / 2 * mpmath.log1p(-u * u) - log_norm
                return -mpmath.exp(log_f) * log_f * mpmath.sqrt(mm)

            assert float(2 * mpmath.quad(integrand, [0, 1])) == pytest.approx(expected, rel=1e-12)
    assert float(law64(m).entropy()) == pytest.approx(expected, rel=1e-12)
    if m == 2.0:
        assert float(law64(m).entropy()) == pytest.approx(math.log(math.pi / math.sqrt(2.0)), rel=1e-14)
    if m == 3.0:
        assert float(law64(m).entropy()) == pytest.approx(math.log(2.0 * math.sqrt(3.0)), rel=1e-14)


@pytest.mark.slow
def test_every_method_compiles_under_xla():
    m = tf.constant([1.5, 5.0, 1e6], tf.float64)
    x = tf.constant([-0.3, 0.0, 1.2], tf.float64)
    p = tf.constant([0.1, 0.5, 0.5 - 1e-9], tf.float64)

    @tf.function(jit_compile=True)
    def everything(m, x, p):
        d = AdaptiveUpdate(m)
        with tf.GradientTape() as tape:
            tape.watch(m)
            total = tf.reduce_sum(d.cdf(x) + d.quantile(p))
        return d.log_prob(x), d.cdf(x), d.quantile(p), d.entropy(), tape.gradient(total, m)

    d = AdaptiveUpdate(m)
    for compiled, eager in zip(everything(m, x, p)[:4], (d.log_prob(x), d.cdf(x), d.quantile(p), d.entropy())):
        np.testing.assert_allclose(compiled, eager, rtol=1e-9, atol=1e-300)  # XLA reorders float ops
    assert np.all(np.isfinite(everything(m, x, p)[4].numpy()))
