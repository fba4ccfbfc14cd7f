"""The distribution of an adaptive optimizer's update, and tools to fit it to data.

Zhang and Ziyin, "On the Distributional Properties of Adaptive Gradients",
study the update Δθ := (θ_t − θ_{t−1}) / λ of an adaptive method without
momentum. For i.i.d. N(0, σ²) gradients and a preconditioner that is
the plain average of the t squared gradients (n_t = Σ_{i≤t} g_i², c_n = 1/t),
Theorem 1 gives its law exactly (`AdaptiveUpdate`, with m = t). This module
provides

* `AdaptiveUpdate(m)`: that law as a `tfp.distributions.Distribution`;
* `update_variance`, `abs_update_mean`, `abs_update_variance` (Corollaries 1
  and 2), `gaussian_limit` (Eq. 31) and `effective_sample_size` (Eq. 12, and
  the exact Kish count of Adam's bias-corrected EMA weights);
* `fit_update_distribution`: the maximum-likelihood m of measured updates,
  with goodness of fit (Kolmogorov–Smirnov, Wasserstein-1) and an optional
  mixture of shifted `AdaptiveUpdate` laws for multi-modal updates (the
  transformer updates of the paper's Fig. 4);
* `ks_statistic` and `wasserstein_1`: the goodness-of-fit measures, for any
  scalar distribution with a cdf.

Numerical results are `tf.Tensor`s unless stated otherwise. The functions of m
and β take Python numbers, NumPy arrays or tensors; floating inputs keep their
dtype, Python numbers and integer inputs are computed in float64.
"""

import dataclasses
import math
from typing import NamedTuple, Optional

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

__all__ = [
    "AdaptiveUpdate",
    "KSTest",
    "MixtureFit",
    "UpdateDistributionFit",
    "abs_update_mean",
    "abs_update_variance",
    "effective_sample_size",
    "fit_update_distribution",
    "gaussian_limit",
    "kolmogorov_survival_function",
    "ks_statistic",
    "update_variance",
    "wasserstein_1",
]


def _as_float_tensor(*values, dtype=None):
    """Converts values to tensors of one floating dtype.

    The dtype is that of the floating inputs that carry one (tensors, NumPy
    arrays and scalars) when they agree, float64 otherwise (Python numbers,
    integers, mixed precisions).
    """
    if dtype is None:
        dtypes = set()
        for value in values:
            if hasattr(value, "dtype"):
                value_dtype = tf.as_dtype(value.dtype)
                if value_dtype.is_floating:
                    dtypes.add(value_dtype)
        dtype = dtypes.pop() if len(dtypes) == 1 else tf.float64
    tensors = [
        tf.cast(tf.convert_to_tensor(v), dtype)
        if hasattr(v, "dtype")
        else tf.convert_to_tensor(v, dtype)
        for v in values
    ]
    return tensors[0] if len(tensors) == 1 else tensors


def _lbeta_half(b):
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
    log_norm = tf.where(a == 0.5, _lbeta_half(b), _lbeta_half(a))
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
        validate_args: Whether to check m > 1 and the support of samples.
        allow_nan_stats: Whether undefined statistics (the mode for m < 3)
            are NaN (True) or raise (False).
        name: Name scope of the ops.
    """

    def __init__(self, m, validate_args=False, allow_nan_stats=True, name="AdaptiveUpdate"):
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            dtype = dtype_util.common_dtype([m], dtype_hint=tf.float32)
            self._m = tensor_util.convert_nonref_to_tensor(m, dtype=dtype, name="m")
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
        return _lbeta_half((m - 1.0) / 2.0) + 0.5 * tf.math.log(m)

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


# ---------------------------------------------------------------------------
# Moments and limits.


def update_variance(m):
    """Var[Δθ] = 1 for every m (Zhang & Ziyin, Corollary 1): ones shaped like m."""
    return tf.ones_like(_as_float_tensor(m))


def abs_update_mean(m):
    """E|Δθ| = sqrt(m/π) Γ(m/2) / Γ((m+1)/2) under `AdaptiveUpdate(m)`.

    From E[B^{1/2}] = Γ(m/2) / (√π Γ((m+1)/2)) for B ~ Beta(1/2, (m−1)/2).
    The log-gamma difference is TFP's, accurate for large m; the limit is
    sqrt(2/π) ≈ 0.7979.
    """
    m = _as_float_tensor(m)
    half = tf.constant(0.5, m.dtype)
    return tf.sqrt(m / math.pi) * tf.exp(tfp.math.log_gamma_difference(half, m / 2.0))


def abs_update_variance(m):
    """Var|Δθ| = 1 − 4 m Γ(m/2)² / ((m−1)² π Γ((m−1)/2)²) (Zhang & Ziyin, Corollary 2).

    Computed as 1 − (E|Δθ|)², since 2 √m Γ(m/2) / ((m−1) √π Γ((m−1)/2))
    = sqrt(m/π) Γ(m/2)/Γ((m+1)/2). Increasing in m, from 0 at m = 1 to
    1 − 2/π ≈ 0.3634 as m → ∞; no overflow for large m.
    """
    return 1.0 - tf.square(abs_update_mean(m))


def gaussian_limit(dtype=tf.float32):
    """The m → ∞ limit of `AdaptiveUpdate(m)` (Zhang & Ziyin, Eq. 31): `tfd.Normal(0, 1)`."""
    return tfd.Normal(tf.zeros([], dtype), tf.ones([], dtype))


def effective_sample_size(beta, step=None):
    """The number m of squared gradients that an exponential average stands for.

    Without `step`: m = 2 / (1 − β) (Zhang & Ziyin, Eq. 12), from matching the
    variance (1 − β)/(1 + β) of a converged EMA (Eq. 10) with 1/(m − 1) of a
    simple average (Eq. 11).

    With `step=t`: the exact Kish effective sample size 1 / Σ_i w_i² of the
    bias-corrected EMA weights w_i = (1 − β) β^{t−i} / (1 − β^t), i ≤ t, used
    by Adam's second moment:

        n_eff(β, t) = (1 + β)(1 − β^t) / ((1 − β)(1 + β^t))
                    = tanh(t ℓ/2) / tanh(ℓ/2),   ℓ = −log β,

    the reciprocal of the relative variance ρ(β, t) of a bias-corrected EMA
    that M-SVAG uses (Balles & Hennig 2018). It is 1 at t = 1, t for β = 1
    (equal weights), and tends to (1 + β)/(1 − β) = 2/(1 − β) − 1, i.e.
    RAdam's ρ_∞, as t → ∞ (19 for β = 0.9, where Eq. 12 says 20). The update
    law is then only approximately `AdaptiveUpdate(n_eff)`: unequal weights
    lower Var(Δθ) below 1.

    Args:
        beta: EMA coefficient in [0, 1], any shape.
        step: Optional step count t ≥ 1, broadcast against beta.

    Returns:
        A tensor of the broadcast shape.
    """
    if step is None:
        beta = _as_float_tensor(beta)
        return 2.0 / (1.0 - beta)
    beta, step = _as_float_tensor(beta, step)
    ell = -tf.math.log(beta)
    safe_ell = tf.where(ell > 0.0, ell, tf.ones_like(ell))
    kish = tf.tanh(step * safe_ell / 2.0) / tf.tanh(safe_ell / 2.0)
    return tf.where(ell > 0.0, kish, step * tf.ones_like(ell))


# ---------------------------------------------------------------------------
# Goodness of fit.


class KSTest(NamedTuple):
    """One-sample Kolmogorov–Smirnov test: sup |F_n − F| and its asymptotic p-value.

    Both are scalar float64 tensors.
    """

    statistic: tf.Tensor
    pvalue: tf.Tensor


def kolmogorov_survival_function(x):
    """P(K > x) for the Kolmogorov distribution K = sup_t |B(t)| of a Brownian bridge.

    1 − (√(2π)/x) Σ_{k≥1} exp(−(2k−1)² π² / (8x²)) for x < 1 and
    2 Σ_{k≥1} (−1)^{k−1} exp(−2k² x²) for x ≥ 1 (100 terms of either series
    reach float64 precision on its side); 1 for x ≤ 0.
    """
    x = _as_float_tensor(x)
    k = tf.range(1, 101, dtype=x.dtype)
    xe = x[..., tf.newaxis]
    safe = tf.where(xe > 0.0, xe, tf.ones_like(xe))
    small = 1.0 - math.sqrt(2.0 * math.pi) / safe[..., 0] * tf.reduce_sum(
        tf.exp(-tf.square(2.0 * k - 1.0) * (math.pi**2) / (8.0 * tf.square(safe))), axis=-1
    )
    signs = tf.where(tf.math.floormod(k, 2.0) == 1.0, 1.0, -1.0)
    signs = tf.cast(signs, x.dtype)
    large = 2.0 * tf.reduce_sum(signs * tf.exp(-2.0 * tf.square(k) * tf.square(safe)), axis=-1)
    sf = tf.where(x < 1.0, small, large)
    return tf.clip_by_value(tf.where(x > 0.0, sf, tf.ones_like(sf)), 0.0, 1.0)


def _sorted_samples(samples):
    x = tf.reshape(_as_float_tensor(samples), [-1])
    return tf.sort(tf.cast(x, tf.float64))


def _check_scalar(distribution):
    ranks = (distribution.batch_shape.rank, distribution.event_shape.rank)
    if any(rank not in (None, 0) for rank in ranks):
        raise ValueError(
            "Expected a scalar distribution (batch and event shape []), got batch shape "
            f"{distribution.batch_shape} and event shape {distribution.event_shape}."
        )


def _cdf64(distribution, x):
    return tf.cast(distribution.cdf(tf.cast(x, distribution.dtype)), tf.float64)


def ks_statistic(samples, distribution):
    """Kolmogorov–Smirnov statistic of samples against a scalar distribution, and its p-value.

    D = sup_x |F_n(x) − F(x)| = max_i max(i/n − F(x_(i)), F(x_(i)) − (i−1)/n)
    over the sorted samples, and the asymptotic p-value P(K > √n D) of
    `kolmogorov_survival_function` (accurate for n ≳ 100; conservative below).

    Args:
        samples: Any shape; flattened. Float64 is used for the statistic.
        distribution: A `tfd.Distribution` with batch and event shape [] and a cdf.

    Returns:
        `KSTest(statistic, pvalue)`, float64 scalar tensors.
    """
    _check_scalar(distribution)
    x = _sorted_samples(samples)
    n = tf.cast(tf.size(x), tf.float64)
    cdf = _cdf64(distribution, x)
    i = tf.range(1.0, n + 1.0, dtype=tf.float64)
    d = tf.maximum(tf.reduce_max(i / n - cdf), tf.reduce_max(cdf - (i - 1.0) / n))
    return KSTest(d, kolmogorov_survival_function(tf.sqrt(n) * d))


def _integration_range(x, distribution):
    """An interval that holds the samples and all but ~1e-10 of the distribution's mass."""
    x_min, x_max = x[0], x[-1]
    try:
        ends = tf.cast(
            distribution.quantile(tf.constant([1e-10, 1.0 - 1e-10], distribution.dtype)), tf.float64
        )
        lo, hi = ends[0], ends[1]
    except NotImplementedError:
        try:
            mean = tf.cast(distribution.mean(), tf.float64)
            spread = 12.0 * tf.cast(distribution.stddev(), tf.float64)
            lo, hi = mean - spread, mean + spread
        except NotImplementedError:
            pad = 3.0 * tf.math.reduce_std(x)
            lo, hi = x_min - pad, x_max + pad
    ok = tf.math.is_finite(lo) & tf.math.is_finite(hi)
    lo = tf.where(ok, tf.minimum(lo, x_min), x_min)
    hi = tf.where(ok, tf.maximum(hi, x_max), x_max)
    return lo, hi


def wasserstein_1(samples, distribution, num_grid=8192):
    """Wasserstein-1 distance ∫ |F_n(x) − F(x)| dx between samples and a scalar distribution.

    F_n is constant between consecutive samples, so the integral is taken on
    the union of the sorted samples and `num_grid` equispaced points of an
    interval holding the samples and all but ~1e-10 of the distribution's
    mass (its quantiles if implemented, else mean ± 12 sd, else the sample
    range padded by 3 sample sd), with the trapezoidal rule for |c − F(x)| on
    each piece.

    Args:
        samples: Any shape; flattened.
        distribution: A `tfd.Distribution` with batch and event shape [] and a cdf.
        num_grid: Number of extra grid points.

    Returns:
        A float64 scalar tensor, in the units of the samples.
    """
    _check_scalar(distribution)
    x = _sorted_samples(samples)
    n = tf.cast(tf.size(x), tf.float64)
    lo, hi = _integration_range(x, distribution)
    grid = tf.sort(tf.concat([x, tf.linspace(lo, hi, num_grid)], axis=0))
    empirical = tf.cast(tf.searchsorted(x, grid, side="right"), tf.float64) / n
    cdf = _cdf64(distribution, grid)
    left = tf.abs(empirical[:-1] - cdf[:-1])
    right = tf.abs(empirical[:-1] - cdf[1:])
    return tf.reduce_sum(0.5 * (left + right) * (grid[1:] - grid[:-1]))


# ---------------------------------------------------------------------------
# Maximum-likelihood fits.


@dataclasses.dataclass(frozen=True)
class MixtureFit:
    """A mixture of location-shifted `AdaptiveUpdate` laws fitted by EM.

    Attributes:
        distribution: `tfd.MixtureSameFamily` of `AdaptiveUpdate(m_k)` shifted by `locs[k]`.
        weights, locs, m: NumPy arrays of shape [K], sorted by location.
        log_likelihood: Σ log p(x_i) at the fit (float).
        iterations: EM iterations run.
        converged: Whether the log-likelihood stopped changing before the limit.
        ks_statistic, ks_pvalue, wasserstein_1: Goodness of fit (floats).
    """

    distribution: tfd.Distribution
    weights: np.ndarray
    locs: np.ndarray
    m: np.ndarray
    log_likelihood: float
    iterations: int
    converged: bool
    ks_statistic: float
    ks_pvalue: float
    wasserstein_1: float


@dataclasses.dataclass(frozen=True)
class UpdateDistributionFit:
    """The result of `fit_update_distribution`.

    Attributes:
        m: Maximum-likelihood m (float).
        m_stderr: Its asymptotic standard error 1/sqrt(J), J the observed
            Fisher information −∂²/∂m² Σ log f_m(x_i) at m̂ (float); NaN when
            m̂ is the support edge (m < 3), where the estimator converges
            faster than 1/√n. For a sense of scale: at n = 50,000 it is about
            0.3 % of m for m = 5 but 5.6 % for m = 20, since the law changes
            slowly with m once m is large.
        distribution: `AdaptiveUpdate(m)` in the samples' floating dtype
            (float32 otherwise), with m rounded up into that dtype.
        log_likelihood: Σ log p(x_i) at m (float).
        converged: Whether the optimizer converged (always True when the
            likelihood is unbounded at the support edge, see
            `fit_update_distribution`).
        ks_statistic, ks_pvalue: One-sample Kolmogorov–Smirnov test of the
            samples against the fitted law (floats).
        wasserstein_1: ∫ |F_n − F| dx between samples and fitted law (float).
        num_samples: Number of samples used.
        mixture: A `MixtureFit` when `mixture_components` was given, else None.
    """

    m: float
    m_stderr: float
    distribution: tfd.Distribution
    log_likelihood: float
    converged: bool
    ks_statistic: float
    ks_pvalue: float
    wasserstein_1: float
    num_samples: int
    mixture: Optional[MixtureFit] = None


def _log_density(y2, floor, s):
    """log f_m(y) for m = floor + s; m − y² is formed as (floor − y²) + s, exact near the edge."""
    m = floor + s
    log_norm = _lbeta_half((m - 1.0) / 2.0) + 0.5 * tf.math.log(m)
    return ((m - 3.0) / 2.0) * (tf.math.log((floor - y2) + s) - tf.math.log(m)) - log_norm


def _tiny(floor):
    return 1e-12 * tf.maximum(floor, 1.0)


@tf.function(reduce_retracing=True)
def _fit_m(x2, z0, max_iterations, tolerance):
    """Minimises −Σ log f_m(x_i) over z, m = max(max x², 1) + softplus(z) + tiny."""
    floor = tf.maximum(tf.reduce_max(x2), tf.constant(1.0, tf.float64))
    tiny = _tiny(floor)
    n = tf.cast(tf.size(x2), tf.float64)

    def nll(z):
        s = tf.math.softplus(z[0]) + tiny
        return -tf.reduce_sum(_log_density(x2, floor, s)) / n

    def value_and_gradients(z):
        return tfp.math.value_and_gradient(nll, z)

    result = tfp.optimizer.lbfgs_minimize(
        value_and_gradients,
        initial_position=z0,
        tolerance=tolerance,
        max_iterations=max_iterations,
    )
    m_opt = floor + tf.math.softplus(result.position[0]) + tiny
    nll_opt = result.objective_value
    # For m < 3 the density has poles at ±√m and the likelihood grows without
    # bound as m ↓ max x²: the maximum is then the edge itself.
    edge = floor + tiny
    nll_edge = -tf.reduce_sum(_log_density(x2, floor, tiny)) / n
    use_edge = nll_edge < nll_opt
    m_hat = tf.where(use_edge, edge, m_opt)
    nll_hat = tf.where(use_edge, nll_edge, nll_opt)
    converged = result.converged | use_edge
    information = _observed_information(x2, m_hat)
    stderr = tf.where(
        use_edge | (information <= 0.0),
        tf.constant(np.nan, tf.float64),
        tf.math.rsqrt(tf.maximum(information, 1e-300)),
    )
    return m_hat, -nll_hat * n, converged, stderr


def _observed_information(x2, m):
    """−Σ ∂² log f_m(x_i) / ∂m², in closed form (trigamma terms of the normaliser)."""
    one = tf.constant(1.0, tf.float64)
    n = tf.cast(tf.size(x2), tf.float64)
    d = m - x2
    # ∂²/∂m² of −log B(1/2, (m−1)/2) − (1/2) log m, per sample.
    normaliser = -0.25 * (
        tf.math.polygamma(one, (m - 1.0) / 2.0) - tf.math.polygamma(one, m / 2.0)
    ) + 0.5 / tf.square(m)
    # ∂²/∂m² of ((m−3)/2)(log(m − x²) − log m).
    shape = (1.0 / d - 1.0 / m) + ((m - 3.0) / 2.0) * (1.0 / tf.square(m) - 1.0 / tf.square(d))
    return -(n * normaliser + tf.reduce_sum(shape))


def _initial_m(x2):
    """Method of moments on the kurtosis E x⁴ / (E x²)² = 3m/(m+2), i.e. m = 2κ/(3 − κ)."""
    kurtosis = np.mean(x2**2) / np.mean(x2) ** 2
    return 2.0 * kurtosis / (3.0 - kurtosis) if kurtosis < 2.99 else 1e3


@tf.function(reduce_retracing=True)
def _weighted_m_step(x, r, p0, max_iterations):
    """EM M-step for one shifted component: maximise Σ r_i log f_m(x_i − μ) over (μ, m).

    m = max(max_{r_i>0} (x_i − μ)², 1) + softplus(z) + tiny keeps every point
    with r_i > 0 inside the support (the caller zeroes responsibilities below
    the floor), so the weighted log-likelihood stays finite.
    """
    active = r > 0.0
    total = tf.reduce_sum(r)

    def objective(p):
        y2 = tf.square(x - p[0])
        floor = tf.maximum(
            tf.reduce_max(tf.where(active, y2, tf.zeros_like(y2))), tf.constant(1.0, tf.float64)
        )
        s = tf.math.softplus(p[1]) + _tiny(floor)
        safe_y2 = tf.where(active, y2, tf.zeros_like(y2))
        ll = _log_density(safe_y2, floor, s)
        return -tf.reduce_sum(tf.where(active, r * ll, tf.zeros_like(ll))) / total

    def value_and_gradients(p):
        return tfp.math.value_and_gradient(objective, p)

    start = objective(p0)
    result = tfp.optimizer.lbfgs_minimize(
        value_and_gradients, initial_position=p0, tolerance=1e-9, max_iterations=max_iterations
    )
    better = result.objective_value < start
    p = tf.where(better, result.position, p0)
    y2 = tf.square(x - p[0])
    floor = tf.maximum(
        tf.reduce_max(tf.where(active, y2, tf.zeros_like(y2))), tf.constant(1.0, tf.float64)
    )
    return p[0], floor + tf.math.softplus(p[1]) + _tiny(floor)


def _softplus_inverse(y):
    return float(tfp.math.softplus_inverse(tf.constant(max(y, 1e-12), tf.float64)))


def _mixture_distribution(weights, locs, m, dtype):
    return tfd.MixtureSameFamily(
        mixture_distribution=tfd.Categorical(probs=tf.constant(weights, dtype)),
        components_distribution=tfd.TransformedDistribution(
            AdaptiveUpdate(tf.constant(m, dtype)), tfb.Shift(tf.constant(locs, dtype))
        ),
    )


def _component_log_probs(x, locs, m):
    """[n, K] log f_{m_k}(x_i − μ_k) in float64."""
    return AdaptiveUpdate(tf.constant(m, tf.float64)).log_prob(
        x[:, tf.newaxis] - tf.constant(locs, tf.float64)
    )


# Responsibilities below this do not hold a point inside a component's support
# in the M-step, so that supports can shrink.
_RESPONSIBILITY_FLOOR = 1e-4


def _kmeans_1d(x, num_components, max_iterations=100):
    """Lloyd's algorithm on the line, from the (k + 1/2)/K quantiles."""
    centers = np.quantile(x, (np.arange(num_components) + 0.5) / num_components)
    labels = np.zeros(x.shape[0], dtype=int)
    for _ in range(max_iterations):
        labels = np.argmin(np.abs(x[:, None] - centers[None, :]), axis=1)
        new = np.array(
            [
                x[labels == k].mean() if np.any(labels == k) else centers[k]
                for k in range(num_components)
            ]
        )
        if np.allclose(new, centers, rtol=0.0, atol=1e-12):
            break
        centers = new
    return centers, labels


def _cover(x, locs, m):
    """Gives each point outside every support to the component needing the least increase of m."""
    excess = (x[:, None] - locs[None, :]) ** 2 - m[None, :]
    uncovered = np.all(excess >= 0.0, axis=1)
    if np.any(uncovered):
        nearest = np.argmin(excess[uncovered], axis=1)
        reach = (x[uncovered] - locs[nearest]) ** 2
        for k in np.unique(nearest):
            m[k] = max(m[k], reach[nearest == k].max() * (1.0 + 1e-9) + 1e-12)


def _initial_mixture(x, num_components, init):
    """Starting (weights, locs, m) from 1-D k-means groups.

    "moments": m_k from the kurtosis of the group about its mean; "broad":
    m_k = 1.5 × the group's largest squared distance to its mean. Both are
    then widened where needed so that every point lies in some support.
    """
    n = x.shape[0]
    locs, labels = _kmeans_1d(x, num_components)
    m = np.empty(num_components)
    for k in range(num_components):
        y2 = (x[labels == k] - locs[k]) ** 2
        if init == "broad" or y2.size <= 3:
            m[k] = max(1.5 * (y2.max() if y2.size else 0.0), 1.5)
        else:
            m[k] = min(max(_initial_m(y2), 1.5), 1e3)
    _cover(x, locs, m)
    weights = np.maximum(np.bincount(labels, minlength=num_components) / n, 1.0 / n)
    return weights / weights.sum(), locs, m


def _em(x, weights, locs, m, max_iterations, tolerance, inner_iterations):
    """EM iterations from (weights, locs, m); returns the best parameters seen.

    Returns:
        (log_likelihood, weights, locs, m, iterations, converged).
    """
    x_tf = tf.constant(x, tf.float64)
    weights, locs, m = weights.copy(), locs.copy(), m.copy()
    best = (-np.inf, weights.copy(), locs.copy(), m.copy())
    previous = -np.inf
    converged = False
    iterations = 0
    while True:
        # E-step (and the log-likelihood of the current parameters).
        joint = np.log(weights)[None, :] + _component_log_probs(x_tf, locs, m).numpy()
        norm = np.logaddexp.reduce(joint, axis=1)
        log_likelihood = float(norm.sum())
        if log_likelihood > best[0]:
            best = (log_likelihood, weights.copy(), locs.copy(), m.copy())
        if abs(log_likelihood - previous) <= tolerance * max(1.0, abs(log_likelihood)):
            converged = True
            break
        if iterations == max_iterations:
            break
        previous = log_likelihood
        iterations += 1
        r = np.exp(joint - norm[:, None])
        # M-step, one component at a time.
        weights = r.mean(axis=0)
        for k in range(weights.shape[0]):
            active = r[:, k] > _RESPONSIBILITY_FLOOR
            if not np.any(active):
                continue
            rk = np.where(active, r[:, k], 0.0)
            floor = max(((x[active] - locs[k]) ** 2).max(), 1.0)
            z0 = _softplus_inverse(max(m[k] - floor, 1e-6 * floor))
            loc_k, m_k = _weighted_m_step(
                x_tf,
                tf.constant(rk, tf.float64),
                tf.constant([locs[k], z0], tf.float64),
                tf.constant(inner_iterations),
            )
            locs[k], m[k] = float(loc_k), float(m_k)
        _cover(x, locs, m)
    return best + (iterations, converged)


def _fit_mixture(x, num_components, max_iterations, tolerance, inner_iterations, dtype):
    """EM for Σ_k w_k AdaptiveUpdate(m_k)(x − μ_k), best of two starts (`fit_update_distribution`)."""
    runs = []
    for init in ("moments", "broad"):
        start = _initial_mixture(x, num_components, init)
        runs.append(_em(x, *start, max_iterations, tolerance, inner_iterations))
    log_likelihood, weights, locs, m, iterations, converged = max(runs, key=lambda run: run[0])
    order = np.argsort(locs)
    weights, locs, m = weights[order], locs[order], m[order]
    distribution = _mixture_distribution(weights, locs, m, dtype)
    check = _mixture_distribution(weights, locs, m, tf.float64)
    ks = ks_statistic(x, check)
    return MixtureFit(
        distribution=distribution,
        weights=weights,
        locs=locs,
        m=m,
        log_likelihood=log_likelihood,
        iterations=iterations,
        converged=converged,
        ks_statistic=float(ks.statistic),
        ks_pvalue=float(ks.pvalue),
        wasserstein_1=float(wasserstein_1(x, check)),
    )


def fit_update_distribution(
    samples,
    mixture_components=None,
    initial_m=None,
    max_iterations=200,
    tolerance=1e-10,
    mixture_max_iterations=200,
    mixture_tolerance=1e-9,
):
    """Fits `AdaptiveUpdate(m)` to measured updates by maximum likelihood, and scores the fit.

    The samples are standardized updates Δθ / λ (one per coordinate, one
    step), whose law under Zhang & Ziyin's assumptions is `AdaptiveUpdate(m)`
    with m the (effective) number of averaged squared gradients.

    Maximum likelihood. The support [−√m, √m] depends on m, so m > max x² is
    imposed through the parameterisation m = max(max x², 1) + softplus(z) +
    tiny, and −Σ log f_m(x_i) is minimised over z with
    `tfp.optimizer.lbfgs_minimize` in float64, from the kurtosis estimate
    m₀ = 2κ/(3 − κ) (κ = E x⁴/(E x²)² = 3m/(m+2)). A looser lower bound
    biases m̂ upward. For m < 3 the density has poles at ±√m and the
    likelihood is unbounded as m ↓ max x²; the estimate is then that edge,
    max x² + tiny, which converges to m from below. Gaussian samples (the
    m → ∞ limit) give a large m̂.

    Goodness of fit. The one-sample Kolmogorov–Smirnov statistic and its
    asymptotic p-value (`ks_statistic`), and the Wasserstein-1 distance
    (`wasserstein_1`), against the fitted law. With m estimated from the same
    samples the p-value is conservative (Lilliefors effect).

    Mixtures. With `mixture_components=K`, also fits
    p(x) = Σ_k w_k f_{m_k}(x − μ_k), K location-shifted laws for multi-modal
    updates (e.g. the transformer updates of the paper's Fig. 4), by EM. The
    E-step computes responsibilities r_ik; the M-step sets w_k = mean_i r_ik
    and, one component at a time, maximises Σ_i r_ik log f_{m_k}(x_i − μ_k)
    over (μ_k, m_k) with L-BFGS, under m_k > max (x_i − μ_k)² over the points
    with r_ik > 1e-4 (points below that may leave the support, so supports
    can shrink); a point that then lies in no support is given to the
    component that needs the smallest increase of m_k, so the likelihood stays
    finite. It stops when the log-likelihood changes by less than
    `mixture_tolerance` (relative). Starts: 1-D k-means groups, with m_k from
    the group's kurtosis or 1.5 × its largest squared spread; the run with
    the higher likelihood is kept (and, within a run, the best iterate). EM
    finds a local maximum: well separated or moderately overlapping modes are
    recovered, but strongly overlapping bimodal components (m < 3, whose
    poles pin the support edges) can stay at a worse optimum; check
    `mixture.ks_pvalue`. Compare `log_likelihood` of the single and the
    mixture fit (e.g. by BIC with 1 vs 3K − 1 parameters).

    Args:
        samples: Any shape; flattened; must be finite.
        mixture_components: Optional integer K ≥ 1 for the mixture fit.
        initial_m: Optional starting m (> max x²); default: the kurtosis estimate.
        max_iterations, tolerance: L-BFGS limits for m.
        mixture_max_iterations, mixture_tolerance: EM limits.

    Returns:
        An `UpdateDistributionFit`.
    """
    values = np.asarray(tf.reshape(tf.convert_to_tensor(samples), [-1]))
    dtype = tf.as_dtype(values.dtype) if np.issubdtype(values.dtype, np.floating) else tf.float32
    x = values.astype(np.float64)
    if x.size < 2:
        raise ValueError(f"Need at least 2 samples, got {x.size}.")
    if not np.all(np.isfinite(x)):
        raise ValueError("`samples` must be finite.")
    x2 = x**2
    floor = max(x2.max(), 1.0)
    m0 = _initial_m(x2) if initial_m is None else float(initial_m)
    z0 = _softplus_inverse(max(m0 - floor, 1e-3 * floor))
    m_hat, log_likelihood, converged, m_stderr = _fit_m(
        tf.constant(x2),
        tf.constant([z0], tf.float64),
        tf.constant(max_iterations),
        tf.constant(tolerance, tf.float64),
    )
    m_hat = float(m_hat)
    check = AdaptiveUpdate(tf.constant(m_hat, tf.float64))
    ks = ks_statistic(x, check)
    mixture = None
    if mixture_components is not None:
        if int(mixture_components) < 1:
            raise ValueError(f"`mixture_components` must be >= 1, got {mixture_components}.")
        mixture = _fit_mixture(
            x,
            int(mixture_components),
            mixture_max_iterations,
            mixture_tolerance,
            inner_iterations=50,
            dtype=dtype,
        )
    # Round up into the samples' dtype, so that every sample stays in the support.
    m_cast = np.asarray(m_hat, dtype.as_numpy_dtype)
    if float(m_cast) < m_hat:
        m_cast = np.nextafter(m_cast, m_cast.dtype.type(np.inf))
    return UpdateDistributionFit(
        m=m_hat,
        m_stderr=float(m_stderr),
        distribution=AdaptiveUpdate(tf.constant(m_cast, dtype)),
        log_likelihood=float(log_likelihood),
        converged=bool(converged),
        ks_statistic=float(ks.statistic),
        ks_pvalue=float(ks.pvalue),
        wasserstein_1=float(wasserstein_1(x, check)),
        num_samples=int(x.size),
        mixture=mixture,
    )
