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
    reparameterization,
    samplers,
    tensor_util,
)

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
    a, b = tf.broadcast_to(a, tf.shape(a + b)), tf.broadcast_to(b, tf.shape(a + b))
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
    TFP's seed conventions (an int, None, or a stateless `(int, int)` seed).
    The cdf is 1/2 ± I_{x²/m}(1/2, (m−1)/2)/2 in terms of the regularised
    incomplete beta function, evaluated on the side where it does not cancel;
    it and the quantile are computed in float64 for every dtype. As m → 1
    the mass piles up at ±√m (m = 1 is a random sign), closer than floating
    point resolves: at m = 1.01 most samples are exactly ±√m.

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
                reparameterization_type=reparameterization.FULLY_REPARAMETERIZED,
                parameters=parameters,
                name=name,
            )

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return dict(
            m=parameter_properties.ParameterProperties(
                default_constraining_bijector_fn=(
                    lambda: tfb.Softplus(low=1.0 + dtype_util.eps(dtype))
                )
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
        shape = tf.concat([[n], batch_shape], axis=0)
        u = samplers.uniform(shape, dtype=self.dtype, seed=sign_seed)
        sign = tf.where(u < 0.5, -tf.ones([], self.dtype), tf.ones([], self.dtype))
        return sign * tf.sqrt(m * b)

    @staticmethod
    def _log_normalization(m):
        """log(√m B(1/2, (m−1)/2)), accurate for large m."""
        return log_beta_half((m - 1.0) / 2.0) + 0.5 * tf.math.log(m)

    def _log_prob(self, x):
        m = tf.convert_to_tensor(self.m)
        root_m = tf.sqrt(m)
        ax = tf.abs(x)
        inside = ax <= root_m
        z = tf.square(ax) / m
        near_edge = z >= 0.5
        # log(1 − x²/m): log1p in the bulk (large m, float32), and near ±√m
        # the log of (1 − |x|/√m)(1 + |x|/√m), which is exact there; xlogy
        # makes the edge finite for m = 3.
        one_minus = (1.0 - ax / root_m) * (1.0 + ax / root_m)
        one_minus = tf.where(inside & near_edge, one_minus, tf.ones([], self.dtype))
        exponent = (m - 3.0) / 2.0
        bulk = exponent * tf.math.log1p(-tf.where(near_edge, tf.zeros([], self.dtype), z))
        edge = tf.math.xlogy(exponent, one_minus)
        lp = tf.where(near_edge, edge, bulk) - self._log_normalization(m)
        return tf.where(inside, lp, tf.constant(-np.inf, self.dtype))

    def _prob(self, x):
        return tf.exp(self._log_prob(x))

    def _cdf(self, x):
        # In float64 whatever the dtype: TFP's float32 incomplete beta loses
        # all accuracy for large second parameters (m ≳ 10⁴).
        m = tf.cast(tf.convert_to_tensor(self.m), tf.float64)
        x = tf.cast(x, tf.float64)
        root_m = tf.sqrt(m)
        half = tf.constant(0.5, tf.float64)
        b = (m - 1.0) / 2.0
        ax = tf.abs(x)
        inside = ax < root_m
        # The incomplete beta is evaluated away from its endpoints only.
        ax = tf.where(inside, ax, tf.zeros([], tf.float64))
        z = tf.square(ax) / m
        one_minus = (1.0 - ax / root_m) * (1.0 + ax / root_m)
        # x ≥ 0: 1/2 + I_{x²/m}(1/2, b)/2 ; x < 0: I_{1 - x²/m}(b, 1/2)/2.
        upper = 0.5 + 0.5 * tfp.math.betainc(half, b, z)
        lower = 0.5 * tfp.math.betainc(b, half, one_minus)
        cdf = tf.where(x >= 0.0, upper, lower)
        outside = tf.where(x > 0.0, tf.ones([], tf.float64), tf.zeros([], tf.float64))
        return tf.cast(tf.where(inside, cdf, outside), self.dtype)

    def _survival_function(self, x):
        return self._cdf(-x)

    def _quantile(self, p):
        # In float64, as the cdf.
        m = tf.cast(tf.convert_to_tensor(self.m), tf.float64)
        p = tf.cast(p, tf.float64)
        half = tf.constant(0.5, tf.float64)
        b = (m - 1.0) / 2.0
        upper_p = tf.where(p >= 0.5, 2.0 * p - 1.0, tf.zeros([], tf.float64))
        lower_p = tf.where(p < 0.5, 2.0 * p, tf.ones([], tf.float64))
        upper = tf.sqrt(m * _betaincinv(half, b, upper_p))
        lower = -tf.sqrt(m * (1.0 - _betaincinv(b, half, lower_p)))
        return tf.cast(tf.where(p >= 0.5, upper, lower), self.dtype)

    def _mean(self):
        return tf.zeros(self._batch_shape_tensor(), dtype=self.dtype)

    def _variance(self):
        return tf.ones(self._batch_shape_tensor(), dtype=self.dtype)

    def _stddev(self):
        return tf.ones(self._batch_shape_tensor(), dtype=self.dtype)

    def _mode(self):
        """0 for m ≥ 3; undefined (poles at ±√m) for m < 3."""
        m = tf.convert_to_tensor(self.m)
        assertions = []
        if not self.allow_nan_stats:
            assertions.append(
                assert_util.assert_greater_equal(
                    m, tf.constant(3.0, self.dtype), message="Mode undefined for m < 3."
                )
            )
        with tf.control_dependencies(assertions):
            return tf.where(m >= 3.0, tf.zeros_like(m), tf.constant(np.nan, self.dtype))

    def _default_event_space_bijector(self):
        root_m = tf.sqrt(tf.convert_to_tensor(self.m))
        return tfb.Sigmoid(low=-root_m, high=root_m, validate_args=self.validate_args)

    def _sample_control_dependencies(self, x):
        if not self.validate_args:
            return []
        return [
            assert_util.assert_less_equal(
                tf.square(x),
                tf.convert_to_tensor(self.m),
                message="Sample must be in [-√m, √m].",
            )
        ]

    def _parameter_control_dependencies(self, is_init):
        if not self.validate_args or is_init == tensor_util.is_ref(self.m):
            return []
        return [
            assert_util.assert_greater(
                self.m, tf.ones([], self.dtype), message="Argument `m` must be greater than 1."
            )
        ]
