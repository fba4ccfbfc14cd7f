"""Stochastic variance-adapted gradient: SVAG and its momentum form M-SVAG."""

from keras import ops

from tf_adaptive import thresholds
from tf_adaptive._base import (
    PreconditionedOptimizer,
    check_beta,
    compute_dtype,
    dense_gradient,
    register_optimizer,
)

_MAX_RELATIVE_VARIANCE = 0.9999

_ESTIMATES_DOC = """m̃_t = β m̃_{t-1} + (1 - β) g_t ;   ṽ_t = β ṽ_{t-1} + (1 - β) g_t²
        m_t = m̃_t / (1 - β^t) ;             v_t = ṽ_t / (1 - β^t)
        ρ_t = min((1 - β)(1 + β^t) / ((1 + β)(1 - β^t)), 0.9999)
        s_t = (v_t - m_t²) / (1 - ρ_t)   for t > 1 ;   s_1 = 0

    ρ_t is the relative variance of the bias-corrected EMA m_t, with t = 1 for
    the first step (so ρ_1 = 1, hence the cap). This is the index convention of
    the authors' published TensorFlow implementation (lballes/msvag), which
    writes it as (1-β)²(1-β^{2t}) / ((1-β^t)²(1-β²)); the paper's
    (1-β)(1+β^{t+1}) / ((1+β)(1-β^{t+1})) counts steps from 0. Following the
    same implementation, γ_t is clipped to [0, 1] and a NaN γ_t (m_t = v_t = 0)
    becomes 0. s_1 = 0 is the exact value of the capped formula at t = 1 (one
    sample), which float32 would otherwise return as rounding noise × 10⁴."""


class _VarianceAdaptation(PreconditionedOptimizer):
    """Shared moment estimates of SVAG and M-SVAG (Balles and Hennig 2018, §4)."""

    hyperparameter_names = ("beta",)
    momentum_coefficient_name = "beta"
    steps_along_gradient = False

    def __init__(self, learning_rate, beta, name, **kwargs):
        super().__init__(learning_rate, name, **kwargs)
        self.beta = check_beta("beta", beta)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._second_moments = self.add_optimizer_variables(var_list, ["momentum", "second_moment"])

    def _scalars(self, t, dtype):
        """(1 - β^t, ρ_t, 1 / (1 - ρ_t)) of step t, computed in float32.

        At t = 1 the variance estimate is 0/0 in exact arithmetic (one sample):
        the capped ρ_1 = 0.9999 makes it (v_1 - m_1²) · 10⁴, i.e. float32 rounding
        noise amplified 10⁴ times. We set 1 / (1 - ρ_1) to 0, so s_1 = 0 and
        γ_1 = 1 exactly, the exact-arithmetic value of the published formula.
        """
        beta_power = ops.power(ops.cast(self.beta, "float32"), t)
        correction = 1.0 - beta_power
        rho = (1.0 - self.beta) * (1.0 + beta_power) / ((1.0 + self.beta) * correction)
        rho = ops.minimum(rho, _MAX_RELATIVE_VARIANCE)
        variance_scale = ops.where(t > 1.0, 1.0 / (1.0 - rho), 0.0)
        return ops.cast(correction, dtype), ops.cast(rho, dtype), ops.cast(variance_scale, dtype)

    def _adaptation_factor(self, m_tilde, v_tilde, t, dtype):
        correction, rho, variance_scale = self._scalars(t, dtype)
        inverse_correction = 1.0 / correction  # one scalar division, not one per coordinate
        m = m_tilde * inverse_correction
        m_squared = ops.square(m)
        variance = (v_tilde * inverse_correction - m_squared) * variance_scale
        factor = m_squared / (m_squared + self._variance_weight(rho) * variance)
        factor = ops.clip(factor, 0.0, 1.0)
        return ops.where(ops.isnan(factor), 0.0, factor), correction, m

    def update_step(self, gradient, variable, learning_rate):
        dtype = compute_dtype(variable)
        index = self._get_variable_index(variable)
        momentum, second_moment = self._momentums[index], self._second_moments[index]
        g = dense_gradient(gradient, variable, dtype)

        m_tilde = ops.cast(momentum, dtype)
        m_tilde = m_tilde + (g - m_tilde) * (1.0 - self.beta)
        v_tilde = ops.cast(second_moment, dtype)
        v_tilde = v_tilde + (ops.square(g) - v_tilde) * (1.0 - self.beta)
        factor, _, m = self._adaptation_factor(m_tilde, v_tilde, self._update_step_count(), dtype)

        self.assign(momentum, m_tilde)
        self.assign(second_moment, v_tilde)
        self.assign_sub(variable, ops.cast(learning_rate, dtype) * factor * self._direction(g, m))

    def _preconditioner(self, index, dtype):
        m_tilde = ops.cast(self._momentums[index], dtype)
        v_tilde = ops.cast(self._second_moments[index], dtype)
        factor, correction, _ = self._adaptation_factor(m_tilde, v_tilde, self._completed_step_count(), dtype)
        preconditioner = self._momentum_scale(correction) / factor
        # A NaN or infinite state (after such a gradient) makes γ_t NaN, which the update treats as 0
        # (no step); P is then NaN, not the +inf of a coordinate that has seen only zeros.
        finite = ops.logical_and(ops.isfinite(m_tilde), ops.isfinite(v_tilde))
        return ops.where(finite, preconditioner, float("nan"))

    @property
    def momentum_needs_gradient(self):
        return self.steps_along_gradient

    def _momentum(self, index, dtype, gradient):
        return gradient if self.steps_along_gradient else ops.cast(self._momentums[index], dtype)


@register_optimizer(estimates=_ESTIMATES_DOC)
class MSVAG(_VarianceAdaptation):
    """Stochastic variance-adapted gradient with momentum (M-SVAG).

    Balles and Hennig, "Dissecting Adam: The Sign, Magnitude and Variance of
    Stochastic Gradients", ICML 2018, §4.3 (Algorithm "m-svag"):

        {{estimates}}

        γ_t = m_t² / (m_t² + ρ_t s_t)
        x_t = x_{t-1} - η γ_t m_t

    Preconditioner: P_t = (1 - β^t) / γ_t, so that the step is η P_t⁻¹ m̃_t for
    the stored (un-corrected) momentum m̃_t, the same convention as Adam's
    bias correction; +inf where γ_t = 0, NaN where m̃_t or ṽ_t is not finite
    (after a NaN or infinite gradient). Momentum: u_t = m̃_t. Second moment:
    none (ṽ_t enters through γ_t, not as a power). Momentum type: EMA heavy
    ball with β.

    Stability threshold: (2 + 2β) / ((1 - β) η) on λ1(P⁻¹H), assuming γ_t and
    1 - β^t frozen. With P held fixed M-SVAG is preconditioned EMA heavy ball
    with β (`FrozenAdam` with ``beta_1=β`` and this P; Cohen et al. 2022, §2
    and App. A). The assumption is weaker here than for Adam: γ_t comes from
    m̃_t and ṽ_t, which share β with the momentum, so P_t moves on the same
    time scale 1/(1 - β) as the momentum itself, and an oscillation across a
    minimum, whose gradients alternate in sign, reads as variance and lowers
    γ_t. On f(x) = a x²/2 from the zero state (β = 0.9), M-SVAG converged at
    a = 1.25 times the threshold and |x| passed 10⁶ within a few steps at 1.5
    times.

    Args:
        learning_rate: A float, a `keras.optimizers.schedules.LearningRateSchedule`,
            or a callable. The paper has no default; `1e-2` here.
        beta: Decay rate of both moving averages, in [0, 1). Defaults to `0.9`.
        {{base_optimizer_keyword_args}}
    """

    momentum_type = thresholds.EMA_HEAVY_BALL

    def __init__(self, learning_rate=1e-2, beta=0.9, name="msvag", **kwargs):
        super().__init__(learning_rate, beta, name, **kwargs)

    def _variance_weight(self, rho):
        return rho

    def _direction(self, gradient, momentum):
        return momentum

    def _momentum_scale(self, correction):
        return correction


@register_optimizer(estimates=_ESTIMATES_DOC)
class SVAG(_VarianceAdaptation):
    """Stochastic variance-adapted gradient (SVAG).

    Balles and Hennig, "Dissecting Adam", ICML 2018, §4 (Algorithm "svag"): the
    same estimates as M-SVAG,

        {{estimates}}

        γ_t = m_t² / (m_t² + s_t)          (the factor for a single gradient)
        x_t = x_{t-1} - η γ_t g_t

    Preconditioner: P_t = 1 / γ_t (the method steps along the gradient);
    +inf where γ_t = 0, NaN where m̃_t or ṽ_t is not finite. Momentum: u_t = g_t, which m̃_t and ṽ_t do not
    determine and no slot keeps: pass it, ``momentum(variable, gradient)``.
    Second moment: none (ṽ_t enters through γ_t, not as a power). Momentum
    type: none (the step uses g_t itself), so `stability_threshold()` is 2 / η.

    Stability threshold: 2 / η on λ1(P⁻¹H), assuming γ_t frozen: with P = 1/γ_t
    held fixed SVAG is preconditioned gradient descent (Cohen et al. 2022, §2
    and App. A). γ_t is an average over about 1/(1 - β) steps, so the
    assumption holds while an oscillation grows faster than m̃_t and ṽ_t move
    (β close to 1, or an oscillation small against the gradient's mean). An
    oscillation across a minimum, whose gradients alternate in sign, reads as
    variance and lowers γ_t: on f(x) = a x²/2 from the zero state (β = 0.9,
    so γ_1 = 1 and P_1 = 1), SVAG converged at a = 10 times the threshold and
    |x| passed 10⁶ within a few steps at 100 times.

    Args:
        learning_rate: A float, a `keras.optimizers.schedules.LearningRateSchedule`,
            or a callable. The paper has no default; `1e-2` here.
        beta: Decay rate of both moving averages, in [0, 1). Defaults to `0.9`.
        {{base_optimizer_keyword_args}}
    """

    momentum_type = thresholds.NONE
    momentum_coefficient_name = None
    steps_along_gradient = True

    def __init__(self, learning_rate=1e-2, beta=0.9, name="svag", **kwargs):
        super().__init__(learning_rate, beta, name, **kwargs)

    def _variance_weight(self, rho):
        return 1.0

    def _direction(self, gradient, momentum):
        return gradient

    def _momentum_scale(self, correction):
        return 1.0
