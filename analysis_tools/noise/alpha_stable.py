"""Symmetric α-stable laws: a TFP distribution that samples, and its characteristic function.

TensorFlow Probability 0.25 has no α-stable distribution. Zhang et al. ("Why
are adaptive methods good for attention models?", 2020, §2 and Fig. 2e)
compare gradient noise with Lévy α-stable draws, and the tail-index estimators
of `analysis_tools.noise.tail_estimators` are checked against them, so we provide one.

X ~ SαS(α, σ, μ) has the characteristic function

    E exp(i t X) = exp(i μ t − |σ t|^α),      0 < α ≤ 2, σ > 0.

α = 2 is the Gaussian N(μ, 2σ²); α = 1 is the Cauchy law with scale σ; for
α < 2 the variance is infinite and P(|X| > x) ~ C x^(−α), for α ≤ 1 the mean
too.

No density. SαS densities have no closed form except at α ∈ {1/2, 1, 2};
an accurate one needs a numerical integral (Nolan's, or Fourier inversion)
whose error control near α = 1 and in the far tails is a project of its own.
`log_prob` therefore raises `NotImplementedError`, and tail indices are
estimated with the density-free estimators of `analysis_tools.noise.tail_estimators`,
not by maximum likelihood.
"""

import math

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import (
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

__all__ = ["SymmetricAlphaStable"]


class SymmetricAlphaStable(tfd.AutoCompositeTensorDistribution):
    """The symmetric α-stable law SαS(α, σ, μ): E e^{itX} = exp(iμt − |σt|^α).

    Sampling is the Chambers–Mallows–Stuck method (Chambers, Mallows and
    Stuck 1976; Weron 1996, Eq. 3.2 with β = 0): with V ~ Uniform(−π/2, π/2)
    and W ~ Exponential(1) independent,

        X = μ + σ · sin(αV) / cos(V)^(1/α) · (cos((1 − α) V) / W)^((1 − α)/α),

    which reduces to μ + 2σ sin(V) √W (Gaussian, variance 2σ²) at α = 2 and to
    μ + σ tan(V) (Cauchy) at α = 1. The draws are computed in float64 and cast
    to the distribution's dtype. Seeds follow TFP's conventions (an int, None,
    or a stateless `(int, int)` seed). The draws are fully reparameterized: for
    fixed (V, W) the map above is smooth in α, σ and μ (at α = 1 too, where the
    factor's exponent (1 − α)/α passes through 0), so gradients of samples with
    respect to the parameters are exact.

    `log_prob`, `prob`, `cdf` and `entropy` are not implemented (no density:
    see the module docstring); `characteristic_function(t)` is exact.
    `mean()` is μ for α > 1 and NaN otherwise; `variance()` is 2σ² at α = 2
    and +inf below. The same source runs on TFP's JAX substrate:
    `analysis_tools.substrates.jax.SymmetricAlphaStable`.

    Args:
        alpha: Stability index in (0, 2]. Any batch shape.
        scale: σ > 0. Defaults to 1.
        loc: μ. Defaults to 0.
        validate_args: Whether to check 0 < α ≤ 2 and σ > 0.
        allow_nan_stats: Whether an undefined mean (α ≤ 1) is NaN (True) or raises (False).
        name: Name scope of the ops.
    """

    def __init__(
        self, alpha, scale=1.0, loc=0.0, validate_args=False, allow_nan_stats=True, name="SymmetricAlphaStable"
    ):
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            dtype = dtype_util.common_dtype([alpha, scale, loc], dtype_hint=tf.float32)
            self._alpha = tensor_util.convert_nonref_to_tensor(alpha, dtype=dtype, name="alpha")
            self._scale = tensor_util.convert_nonref_to_tensor(scale, dtype=dtype, name="scale")
            self._loc = tensor_util.convert_nonref_to_tensor(loc, dtype=dtype, name="loc")
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
            alpha=parameter_properties.ParameterProperties(
                # In the parameter's dtype: a Sigmoid from Python floats is float32, and would refuse
                # float64 parameters (`make_trainable(..., parameter_dtype=tf.float64)`).
                default_constraining_bijector_fn=lambda: tfb.Sigmoid(
                    low=tf.constant(0.0, dtype), high=tf.constant(2.0, dtype)
                )
            ),
            scale=parameter_properties.ParameterProperties(
                default_constraining_bijector_fn=lambda: tfb.Softplus(low=dtype_util.eps(dtype))
            ),
            loc=parameter_properties.ParameterProperties(),
        )

    @property
    def alpha(self):
        """The stability (tail) index α in (0, 2]."""
        return self._alpha

    @property
    def scale(self):
        """The scale σ."""
        return self._scale

    @property
    def loc(self):
        """The location μ (the median)."""
        return self._loc

    def _event_shape_tensor(self):
        return tf.constant([], dtype=tf.int32)

    def _event_shape(self):
        return tf.TensorShape([])

    def _sample_n(self, n, seed=None):
        seed = samplers.sanitize_seed(seed, salt="SymmetricAlphaStable")
        angle_seed, exponential_seed = samplers.split_seed(seed, salt="SymmetricAlphaStable")
        alpha, scale, loc = (tf.convert_to_tensor(p) for p in (self.alpha, self.scale, self.loc))
        batch_shape = self._batch_shape_tensor(alpha=alpha, scale=scale, loc=loc)
        shape = prefer_static.concat([[n], batch_shape], axis=0)
        half_pi = math.pi / 2.0
        # Open interval: cos(±π/2) = 0 would divide by zero.
        tiny = np.finfo(np.float64).tiny
        v = samplers.uniform(shape, minval=-half_pi, maxval=half_pi, dtype=tf.float64, seed=angle_seed)
        v = tf.clip_by_value(v, -half_pi + 1e-12, half_pi - 1e-12)
        w = -tf.math.log(samplers.uniform(shape, minval=tiny, maxval=1.0, dtype=tf.float64, seed=exponential_seed))
        a = tf.broadcast_to(tf.cast(alpha, tf.float64), shape)
        log_cos_v = tf.math.log(tf.cos(v))
        # (1 − α)/α · log(cos((1 − α)V) / W), zero at α = 1 (Cauchy).
        log_factor = (1.0 - a) / a * (tf.math.log(tf.cos((1.0 - a) * v)) - tf.math.log(w))
        x = tf.sin(a * v) * tf.exp(log_factor - log_cos_v / a)
        x = tf.cast(x, self.dtype)
        return loc + scale * x

    def characteristic_function(self, t):
        """E exp(i t X) = exp(i μ t − |σ t|^α), as a complex tensor."""
        t = tf.convert_to_tensor(t, dtype=self.dtype)
        modulus = tf.exp(-tf.pow(tf.abs(self.scale * t), self.alpha))
        return tf.complex(modulus * tf.cos(self.loc * t), modulus * tf.sin(self.loc * t))

    def _mean(self):
        loc = tf.broadcast_to(self.loc, self._batch_shape_tensor())
        alpha = tf.broadcast_to(self.alpha, prefer_static.shape(loc))
        if self.allow_nan_stats:
            return tf.where(alpha > 1.0, loc, tf.constant(np.nan, self.dtype))
        with tf.control_dependencies(
            [tf.debugging.assert_greater(alpha, tf.ones([], self.dtype), message="The mean exists only for alpha > 1.")]
        ):
            return tf.identity(loc)

    def _variance(self):
        alpha = tf.broadcast_to(self.alpha, self._batch_shape_tensor())
        gaussian = 2.0 * tf.square(tf.broadcast_to(self.scale, prefer_static.shape(alpha)))
        return tf.where(alpha >= 2.0, gaussian, np.inf)

    def _parameter_control_dependencies(self, is_init):
        if not self.validate_args:
            return []
        checks = []
        if is_init != tensor_util.is_ref(self._alpha):
            alpha = tf.convert_to_tensor(self._alpha)
            checks.append(tf.debugging.assert_positive(alpha, message="`alpha` must be > 0."))
            checks.append(
                tf.debugging.assert_less_equal(alpha, tf.constant(2.0, self.dtype), message="`alpha` must be <= 2.")
            )
        if is_init != tensor_util.is_ref(self._scale):
            checks.append(tf.debugging.assert_positive(self._scale, message="`scale` must be > 0."))
        return checks
