"""The law of an adaptive optimizer's normalized update (Zhang and Ziyin, Theorem 1).

Zhang and Ziyin, "On the Distributional Properties of Adaptive Gradients"
(UAI 2021), study the update Δθ := (θ_t − θ_{t−1}) / λ of an adaptive method
without momentum. For i.i.d. N(0, σ²) gradients and a preconditioner that is
the plain average of the t squared gradients (n_t = Σ_{i≤t} g_i², c_n = 1/t),
Theorem 1 gives its law exactly: `AdaptiveUpdate(m)`, with m = t, as a
`tfp.distributions.Distribution`. Its moments are in
`analysis_tools.updates.moments`, goodness of fit in
`analysis_tools.updates.goodness_of_fit` and the maximum-likelihood fit in
`analysis_tools.updates.fitting`.
"""

import math

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import (
    assert_util,
    dtype_util,
    parameter_properties,
    prefer_static,
    samplers,
    tensor_util,
)

# One module on every substrate (TFP's substrates import it from here too).
from tensorflow_probability.python.internal.reparameterization import FULLY_REPARAMETERIZED

tfd = tfp.distributions
tfb = tfp.bijectors

__all__ = ["AdaptiveUpdate"]


def log_beta_half(b):
    """log B(1/2, b) = log √π + log Γ(b) − log Γ(b + 1/2), accurate for large b.

    (TFP's log-gamma difference; `tfp.math.lbeta` would do too, but it is a
    `tf.function` that retraces for every new shape.)
    """
    half = tf.constant(0.5, b.dtype)
    return 0.5 * math.log(math.pi) + tfp.math.log_gamma_difference(half, b)


def _betaincinv(a, b, y, newton_steps=4):
    """I⁻¹_y(a, b) for a = 1/2 or b = 1/2: TFP's inverse, polished by safeguarded Newton steps.

    `tfp.math.betaincinv` can be far off at y = 1/2 exactly (e.g. 0.618 for
    a = b = 1/2, where the answer is 1/2). Each Newton step is kept only
    where it lowers the residual |I_q(a, b) − y|.
    """
    q = tfp.math.betaincinv(a, b, y)
    interior = (y > 0.0) & (y < 1.0)
    shape = prefer_static.broadcast_shape(prefer_static.shape(a), prefer_static.shape(b))  # static under jax.jit
    a, b = tf.broadcast_to(a, shape), tf.broadcast_to(b, shape)
    log_norm = tf.where(a == 0.5, log_beta_half(b), log_beta_half(a))
    low, high = tf.constant(1e-300, y.dtype), 1.0 - dtype_util.eps(y.dtype)
    for _ in range(newton_steps):
        safe_q = tf.clip_by_value(q, low, high)
        residual = tfp.math.betainc(a, b, safe_q) - y
        log_density = tf.math.xlogy(a - 1.0, safe_q) + tf.math.xlog1py(b - 1.0, -safe_q) - log_norm
        step = q - residual * tf.exp(-log_density)
        # Stay inside (0, 1): at most halfway to an end.
        step = tf.clip_by_value(step, 0.5 * q, 0.5 * (1.0 + q))
        new_residual = tfp.math.betainc(a, b, tf.clip_by_value(step, low, high)) - y
        better = interior & tf.math.is_finite(step) & (tf.abs(new_residual) < tf.abs(residual))
        q = tf.where(better, step, q)
    return q


def in_support(x, m):
    """|x| ≤ √m: the one support test, shared by sampling, `log_prob`, validation and the bijector.

    (The cdf evaluates the incomplete beta strictly inside, |x| < √m, and is 0 or 1 from the edges on.)

    Written on |x| and √m, never x² ≤ m: rounding makes fl(√m)² > m for most m,
    so a squared test would reject the sampler's own ±√m.
    """
    return tf.abs(x) <= tf.sqrt(m)


def _broadcast(x, m):
    shape = prefer_static.broadcast_shape(prefer_static.shape(x), prefer_static.shape(m))
    return tf.broadcast_to(x, shape), tf.broadcast_to(m, shape)


def _log_normalization(m):
    """log(√m B(1/2, (m−1)/2)), accurate for large m: −log f_m(0)."""
    return log_beta_half((m - 1.0) / 2.0) + 0.5 * tf.math.log(m)


# The cdf's odd series about the median replaces the incomplete beta where z (|a| + 3) ≤ this
# (z = x²/m, a = (m − 3)/2): its first omitted term is below 1e-16/200 of the sum.
_SERIES_LIMIT = 1e-4


def _log_density64(x, m):
    """log f_m(x) (Eq. 30) for x and m of one shape and dtype; −inf outside |x| ≤ √m.

    log(1 − x²/m) is log1p in the bulk (large m, float32), and near ±√m the
    log of (1 − |x|/√m)(1 + |x|/√m), which is exact there; xlogy makes the
    edge finite for m = 3.
    """
    dtype = x.dtype
    root_m = tf.sqrt(m)
    ax = tf.abs(x)
    inside = in_support(x, m)
    z = tf.square(ax) / m
    near_edge = z >= 0.5
    one_minus = (1.0 - ax / root_m) * (1.0 + ax / root_m)
    one_minus = tf.where(inside & near_edge, one_minus, tf.ones([], dtype))
    exponent = (m - 3.0) / 2.0
    bulk = exponent * tf.math.log1p(-tf.where(near_edge, tf.zeros([], dtype), z))
    edge = tf.math.xlogy(exponent, one_minus)
    log_density = tf.where(near_edge, edge, bulk) - _log_normalization(m)
    return tf.where(inside, log_density, tf.constant(-np.inf, dtype))


def _series_terms(z, m):
    """Σ_{k≤3} C(a, k) (−z)^k / (2k + 1), a = (m − 3)/2: F_m(x) − 1/2 = f_m(0) x · this, z = x²/m."""
    a = (m - 3.0) / 2.0
    c1 = a
    c2 = c1 * (a - 1.0) / 2.0
    c3 = c2 * (a - 2.0) / 3.0
    return 1.0 - z * (c1 / 3.0 - z * (c2 / 5.0 - z * c3 / 7.0))


def _in_series_range(z, m):
    return z * (tf.abs((m - 3.0) / 2.0) + 3.0) <= _SERIES_LIMIT


def _cdf64(x, m):
    """F_m(x) in float64, for x and m of one shape; finite gradients everywhere inside the support.

    With z = x²/m and b = (m − 1)/2, the tail is P(X ≤ −|x|) = (1 − I_z(1/2, b))/2
    = I_{1−z}(b, 1/2)/2 (Eq. 28: X²/m ~ Beta(1/2, b)). Each form is used where
    it does not cancel, chosen by I_z(1/2, b) against 1/2 (not by the sign of
    x): the first while I ≤ 1/2, the second, with 1 − z = (1 − |x|/√m)(1 + |x|/√m)
    exact to rounding, beyond. Next to the median (z (|a| + 3) ≤ 1e-4, a = (m − 3)/2)
    the incomplete beta's gradient is infinite (z^(−1/2)) or NaN at z = 0, so
    there the cdf is the integral of the density's binomial series,

        F_m(x) = 1/2 + f_m(0) x Σ_{k≤3} C(a, k) (−z)^k / (2k + 1),

    which is odd in x, smooth in x and m, and exact to double precision.
    """
    half = tf.constant(0.5, tf.float64)
    zero = tf.zeros([], tf.float64)
    root_m = tf.sqrt(m)
    b = (m - 1.0) / 2.0
    inside = tf.abs(x) < root_m
    x_in = tf.where(inside, x, zero)
    ax = tf.abs(x_in)
    z = tf.square(x_in) / m
    series = _in_series_range(z, m)
    # Near the median. Every branch's inputs are kept where that branch is finite (and so are its
    # gradients, which tf.where would otherwise mix in as 0 · NaN).
    near = half + tf.exp(-_log_normalization(m)) * tf.where(series, x_in, zero) * _series_terms(
        tf.where(series, z, zero), m
    )
    # Away from it.
    z_away = tf.where(series, half, z)
    one_minus = tf.where(series, half, (1.0 - ax / root_m) * (1.0 + ax / root_m))
    beta_z = tfp.math.betainc(half, b, z_away)
    tail = tf.where(beta_z <= half, half - half * beta_z, half * tfp.math.betainc(b, half, one_minus))
    away = tf.where(x_in < 0.0, tail, 1.0 - tail)
    cdf = tf.where(series, near, away)
    return tf.where(inside, cdf, tf.where(x > 0.0, tf.ones([], tf.float64), zero))


def _quantile_value(p, m):
    """F_m⁻¹(p) in float64, by symmetry: q(p) = −q(1 − p), |q| from the side that does not cancel.

    y = |2p − 1| = I_{q²/m}(1/2, b) is exact for 1/4 ≤ p ≤ 3/4; in the tails its
    complement s = 1 − y = 2 min(p, 1 − p) is (1 − p is exact for p ≥ 1/2), and
    q²/m = 1 − I⁻¹_s(b, 1/2). Next to the median, where the inverse incomplete
    beta is inaccurate (3e-5 at m = 5, p = 1/2 − 10⁻⁶), Newton's method on the
    cdf's series (`_cdf64`) from q₀ = (p − 1/2)/f_m(0).
    """
    half = tf.constant(0.5, tf.float64)
    zero = tf.zeros([], tf.float64)
    b = (m - 1.0) / 2.0
    y = tf.abs(2.0 * p - 1.0)
    s = 2.0 * tf.where(p < half, p, 1.0 - p)
    bulk = y <= half
    # One inverse for both sides (`_betaincinv` takes a = 1/2 or b = 1/2 elementwise): z = I⁻¹_y(1/2, b) in
    # the bulk, 1 − z = I⁻¹_s(b, 1/2) in the tails.
    inverse = _betaincinv(tf.where(bulk, half, b), tf.where(bulk, b, half), tf.where(bulk, y, s))
    magnitude = tf.sqrt(m * tf.where(bulk, inverse, 1.0 - inverse))
    away = tf.where(p < half, -magnitude, magnitude)
    # Near the median: p − 1/2 is exact for p ≥ 1/4. The series holds where q₀'s z is a quarter of its
    # range; Newton converges in three steps from there (the cdf's curvature is O(z)).
    density_0 = tf.exp(-_log_normalization(m))
    offset = p - half
    q0 = offset / density_0
    near = _in_series_range(4.0 * tf.square(q0) / m, m)
    q = tf.where(near, q0, zero)
    for _ in range(3):
        z_q = tf.square(q) / m
        residual = density_0 * q * _series_terms(z_q, m) - tf.where(near, offset, zero)
        slope = density_0 * tf.exp((m - 3.0) / 2.0 * tf.math.log1p(-z_q))
        q = q - residual / slope
    return tf.where(near, q, away)


def _quantile64(p, m):
    """F_m⁻¹(p) in float64 (p, m of one shape), differentiated implicitly.

    From F_m(q(p, m)) = p: ∂q/∂p = 1/f_m(q) and ∂q/∂m = −(∂F_m/∂m)(q)/f_m(q),
    finite at the median (where the inverse incomplete beta's own gradient is
    not) and defined in m, which `tfp.math.betaincinv` has no gradient for.
    They are the gradients of the Newton step δ = −(F_m(q₀) − p)/f_m(q₀) at the
    root q₀ (held constant), added as δ − δ, which is 0: the value stays q₀.
    Written with ordinary ops, so that it holds on every substrate and under
    XLA. Where f_m(q₀) is 0 or infinite (p ∈ {0, 1}), the gradient is 0.
    """
    root = tf.stop_gradient(_quantile_value(p, m))
    density = tf.exp(_log_density64(root, m))
    usable = (density > 0.0) & tf.math.is_finite(density)
    safe_density = tf.where(usable, density, tf.ones([], tf.float64))
    step = tf.where(usable, -(_cdf64(root, m) - p) / safe_density, tf.zeros([], tf.float64))
    return root + (step - tf.stop_gradient(step))


def _check_m(m):
    """Raises a ValueError if `m` is known now (not a variable, not symbolic) and some entry is not > 1."""
    value = None if tensor_util.is_ref(m) else tf.get_static_value(m)
    if value is None:
        return
    value = np.asarray(value)
    bad = value[~(value > 1.0)]
    if bad.size:
        given = f"{bad[0]}" if value.ndim == 0 else f"{bad.size} of {value.size} entries not > 1, e.g. {bad[0]}"
        raise ValueError(
            f"`m` must be > 1 (the number of averaged squared gradients; m = 1 is a random sign), got {given}."
        )


class AdaptiveUpdate(tfd.AutoCompositeTensorDistribution):
    """The law of an adaptive update with m averaged squared gradients (Zhang & Ziyin, Theorem 1).

    Let g_1, …, g_m be i.i.d. N(0, σ²) and X = g_m / sqrt((1/m) Σ_{i≤m} g_i²),
    the update of an adaptive method without momentum whose preconditioner is
    the simple average of the squared gradients (Adagrad with a mean, or Adam
    and RMSprop while t ≪ 1 / (1 − β2)), at step t = m. Then (Eqs. 14–21)
    X² / m = g_m² / Σ g_i² ~ Beta(1/2, (m − 1)/2), the sign of X is an
    independent fair coin, and (Eq. 30)

        f_m(x) = (1/√m) Γ(m/2) / (Γ((m−1)/2) Γ(1/2)) (1 − x²/m)^((m−3)/2),
                 x ∈ [−√m, √m],

    zero outside. σ cancels. Properties:

    * mean 0 and variance 1 for every m (Corollary 1); E|X| and Var|X| in
      `abs_update_mean` / `abs_update_variance` (Corollary 2);
    * m = 2: the arcsine law on [−√2, √2], f = 1/(π √(2 − x²)),
      F = 1/2 + arcsin(x/√2)/π (bimodal, poles at ±√2);
    * m = 3: uniform on [−√3, √3], f = 1/(2√3);
    * 1 < m < 3 bimodal with integrable poles at ±√m, m > 3 unimodal;
    * m → ∞: the standard normal (Eq. 31, `gaussian_limit`);
    * (X + √m) / (2√m) ~ Beta((m−1)/2, (m−1)/2) (Eq. 29).

    Scale of the paper's Eqs. 30–33. Eq. 30 (the law of Theorem 1, c = m in
    Eq. 14) is the law above, on [−√m, √m]. Eqs. 32 and 33 are not its m = 2
    and m = 3 cases: sampling shows they are the laws of g_m / sqrt(Σ g_i² /
    (m − 1)), the unbiased normalisation c = m − 1 of Eq. 14, i.e. of
    sqrt((m − 1)/m) X, supported on [−√(m−1), √(m−1)] and with variance
    (m − 1)/m: the arcsine law on [−1, 1] (Eq. 32) and the uniform law on
    [−√2, √2] with density 1/(2√2) (Eq. 33). Reading Eq. 32 in the units of
    Eq. 28 (x/√m) also gives [−1, 1] for m = 2, but not Eq. 33 (it would be
    uniform on [−1, 1] with density 1/2). For that normalisation use
    `tfd.TransformedDistribution(AdaptiveUpdate(m), tfb.Scale(sqrt((m-1)/m)))`.

    Exponential averaging. With Adam's bias-corrected EMA the weights are
    unequal and the law is only approximate: `effective_sample_size(β2,
    step=t)` gives the matching m (the Kish count), but Var(X) falls below 1,
    e.g. ≈ 0.92 for β2 = 0.9 at t = 200 (effective m = 19).

    Sampling uses X = ±sqrt(m B), B ~ Beta(1/2, (m−1)/2) from `tfd.Beta`, with
    TFP's seed conventions (an int, None, or a stateless `(int, int)` seed);
    the draws are reparameterized (TFP's implicit Beta gradients). Every
    sample, every output of the event-space bijector (√m tanh), and ±√m pass
    the one support test |x| ≤ √m (`in_support`), which `validate_args` uses.
    As m → 1 the mass piles up at ±√m (m = 1 is a random sign), closer than
    floating point resolves: at m = 1.01 most samples are exactly ±√m.

    The cdf and quantile are computed in float64 for every dtype. The cdf is
    1/2 ± I_{x²/m}(1/2, (m−1)/2)/2 in terms of the regularised incomplete beta
    function, each tail from the form that does not cancel, chosen by the
    incomplete beta against 1/2; next to the median, an odd series (see
    `_cdf64`), which keeps gradients finite there. The quantile is odd by
    construction, q(p) = −q(1 − p), with Newton steps on that series next to
    the median. Measured against scipy's Student-t (X is an increasing map of
    a Student-t with m − 1 degrees of freedom) and 40-digit mpmath, both sides
    of the median: relative error ≤ 1e-12 for m ≤ 10³, 2e-9 at m = 10⁶ and
    1e-7 at m = 10⁸ (TFP's float64 incomplete beta for b = 5·10⁷). Gradients:
    ∂/∂x exact; ∂/∂m through TFP's gradient of the incomplete beta in its
    parameters, which is off by up to 1.3 % in places (m = 3, x = 0.7), and
    exact next to the median; the quantile's by implicit differentiation
    (`_quantile64`). `entropy` is in closed form. The same source runs on
    TFP's JAX substrate: `analysis_tools.substrates.jax.AdaptiveUpdate`.

    Args:
        m: Floating tensor > 1: the number of averaged squared gradients (the
            step t for a simple average). Any batch shape.
        validate_args: Whether to check m > 1 where it is not known at
            construction (a `tf.Variable`, or a tensor inside a traced
            function), and the support of samples.
        allow_nan_stats: Whether undefined statistics (the mode for m < 3)
            are NaN (True) or raise (False).
        name: Name scope of the ops.

    Raises:
        ValueError: If m is known at construction (a Python number, a NumPy
            array or an eager tensor) and some entry is ≤ 1 or NaN: the law
            is defined for m > 1 only (m ≤ 1 would give NaN samples and a
            variance of 1 that means nothing).
    """

    def __init__(self, m, validate_args=False, allow_nan_stats=True, name="AdaptiveUpdate"):
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            dtype = dtype_util.common_dtype([m], dtype_hint=tf.float32)
            self._m = tensor_util.convert_nonref_to_tensor(m, dtype=dtype, name="m")
            _check_m(self._m)
            super().__init__(
                dtype=dtype,
                validate_args=validate_args,
                allow_nan_stats=allow_nan_stats,
                reparameterization_type=FULLY_REPARAMETERIZED,
                parameters=parameters,
                name=name,
            )

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return dict(
            m=parameter_properties.ParameterProperties(
                default_constraining_bijector_fn=(lambda: tfb.Softplus(low=1.0 + dtype_util.eps(dtype)))
            )
        )

    @property
    def m(self):
        """The number of averaged squared gradients (> 1)."""
        return self._m

    def _event_shape_tensor(self):
        return tf.constant([], dtype=tf.int32)

    def _event_shape(self):
        return tf.TensorShape([])

    def _sample_n(self, n, seed=None):
        seed = samplers.sanitize_seed(seed, salt="AdaptiveUpdate")
        beta_seed, sign_seed = samplers.split_seed(seed, salt="AdaptiveUpdate")
        m = tf.convert_to_tensor(self.m)
        batch_shape = self._batch_shape_tensor(m=m)
        m = tf.broadcast_to(m, batch_shape)
        half = tf.constant(0.5, self.dtype)
        b = tfd.Beta(half, (m - 1.0) / 2.0).sample(n, seed=beta_seed)
        shape = prefer_static.concat([[n], batch_shape], axis=0)
        u = samplers.uniform(shape, dtype=self.dtype, seed=sign_seed)
        sign = tf.where(u < 0.5, -tf.ones([], self.dtype), tf.ones([], self.dtype))
        # b ≤ 1, so fl(m b) ≤ m and √(m b) ≤ √m: every sample passes `in_support`.
        return sign * tf.sqrt(m * b)

    def _log_prob(self, x):
        x, m = _broadcast(x, tf.convert_to_tensor(self.m))
        return _log_density64(x, m)

    def _prob(self, x):
        return tf.exp(self._log_prob(x))

    def _cdf(self, x):
        # In float64 whatever the dtype: TFP's float32 incomplete beta loses
        # all accuracy for large second parameters (m ≳ 10⁴).
        m = tf.cast(tf.convert_to_tensor(self.m), tf.float64)
        x = tf.cast(x, tf.float64)
        x, m = _broadcast(x, m)
        return tf.cast(_cdf64(x, m), self.dtype)

    def _survival_function(self, x):
        return self._cdf(-x)

    def _quantile(self, p):
        # In float64, as the cdf.
        m = tf.cast(tf.convert_to_tensor(self.m), tf.float64)
        p = tf.cast(p, tf.float64)
        p, m = _broadcast(p, m)
        return tf.cast(_quantile64(p, m), self.dtype)

    def _mean(self):
        return tf.zeros(self._batch_shape_tensor(), dtype=self.dtype)

    def _variance(self):
        return tf.ones(self._batch_shape_tensor(), dtype=self.dtype)

    def _stddev(self):
        return tf.ones(self._batch_shape_tensor(), dtype=self.dtype)

    def _entropy(self):
        """H = log(√m B(1/2, b)) + a (ψ(b + 1/2) − ψ(b)), a = (m − 3)/2, b = (m − 1)/2.

        −E log f_m(X) with E log(1 − X²/m) = ψ(b) − ψ(b + 1/2), the log-mean of
        1 − Beta(1/2, b). For b ≥ 100 the digamma difference is its asymptotic
        series 1/(2b) + 1/(8b²) − 1/(64b⁴) + 1/(128b⁶) (relative error < 2e-16),
        which does not cancel. m = 3 gives log(2√3) (uniform), m = 2 log(π/√2)
        (arcsine), m → ∞ the normal's ½ log(2πe).
        """
        m = tf.broadcast_to(tf.convert_to_tensor(self.m), self._batch_shape_tensor())
        a, b = (m - 3.0) / 2.0, (m - 1.0) / 2.0
        large = b >= 100.0
        b_large = tf.where(large, b, tf.constant(100.0, self.dtype))
        b_small = tf.where(large, tf.ones([], self.dtype), b)
        inverse = 1.0 / b_large
        series = inverse * (0.5 + inverse * (0.125 + inverse * inverse * (-1.0 / 64.0 + inverse * inverse / 128.0)))
        direct = tf.math.digamma(b_small + 0.5) - tf.math.digamma(b_small)
        return _log_normalization(m) + a * tf.where(large, series, direct)

    def _mode(self):
        """0 for m ≥ 3; undefined (poles at ±√m) for m < 3."""
        m = tf.convert_to_tensor(self.m)
        assertions = []
        if not self.allow_nan_stats:
            assertions.append(
                assert_util.assert_greater_equal(m, tf.constant(3.0, self.dtype), message="Mode undefined for m < 3.")
            )
        with tf.control_dependencies(assertions):
            return tf.where(m >= 3.0, tf.zeros_like(m), tf.constant(np.nan, self.dtype))

    def _default_event_space_bijector(self):
        # √m tanh(y): |tanh| ≤ 1 in floating point, so fl(√m tanh(y)) ≤ √m passes `in_support`
        # (a Sigmoid from −√m to √m can round past √m). In the parameter's dtype.
        root_m = tf.sqrt(tf.convert_to_tensor(self.m))
        return tfb.Chain(
            [tfb.Scale(root_m, validate_args=self.validate_args), tfb.Tanh()], validate_args=self.validate_args
        )

    def _sample_control_dependencies(self, x):
        if not self.validate_args:
            return []
        return [
            assert_util.assert_equal(
                in_support(x, tf.convert_to_tensor(self.m)),
                True,
                message="Sample must be in [-√m, √m].",
            )
        ]

    def _parameter_control_dependencies(self, is_init):
        if not self.validate_args or is_init == tensor_util.is_ref(self.m):
            return []
        return [
            assert_util.assert_greater(self.m, tf.ones([], self.dtype), message="Argument `m` must be greater than 1.")
        ]
