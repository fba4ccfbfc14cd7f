"""RAdam: Adam with a rectified adaptive learning rate."""

import math

from keras import ops

from tf_adaptive import thresholds
from tf_adaptive._base import (
    EMA,
    PreconditionedOptimizer,
    SecondMoment,
    bias_corrections,
    check_beta,
    check_nonnegative,
    compute_dtype,
    dense_gradient,
    register_optimizer,
    safe_divide,
)


def sma_length(t, beta_2):
    """ρ_t = ρ_∞ - 2 t β2^t / (1 - β2^t), the length of the approximated SMA, in float32.

    Written directly, ρ_t is the small difference of two numbers near
    ρ_∞ ≈ 2 / (1 - β2) (1999 at β2 = 0.999), which loses three to four digits in
    float32 just where r_t is most sensitive (the first rectified steps). With
    ℓ = -log β2 and x = t ℓ, 2t / (β2^{-t} - 1) = 2t / expm1(x); expanding
    x / expm1(x) in Bernoulli numbers gives, for small x,

        ρ_t = (ρ_∞ - 2/ℓ) + t (1 - x/6 + x³/360 - x⁵/15120 + x⁷/604800 - …)

    whose constant is computed in float64 and whose series has no cancellation.
    For x ≥ 1/2 the direct form is accurate and is used instead.
    """
    rho_inf = 2.0 / (1.0 - beta_2) - 1.0
    if beta_2 == 0.0:
        return ops.full_like(t, rho_inf)
    log_beta_2 = -math.log(beta_2)
    x = t * log_beta_2
    x_squared = ops.square(x)
    series = 1.0 - x / 6.0 * (1.0 - x_squared / 60.0 * (1.0 - x_squared / 42.0 * (1.0 - x_squared / 40.0)))
    small = (rho_inf - 2.0 / log_beta_2) + t * series
    direct = rho_inf - 2.0 * t / ops.expm1(ops.maximum(x, 0.5))
    return ops.where(x < 0.5, small, direct)


@register_optimizer
class RAdam(PreconditionedOptimizer):
    """Rectified Adam (RAdam).

    Liu, Jiang, He, Chen, Liu, Gao and Han, "On the Variance of the Adaptive
    Learning Rate and Beyond", ICLR 2020, Algorithm 2:

        ρ_∞ = 2 / (1 - β2) - 1
        m_t = β1 m_{t-1} + (1 - β1) g_t ;   v_t = β2 v_{t-1} + (1 - β2) g_t²
        m̂_t = m_t / (1 - β1^t) ;            ρ_t = ρ_∞ - 2 t β2^t / (1 - β2^t)
        if ρ_t > threshold:
            r_t = sqrt((ρ_t - 4)(ρ_t - 2) ρ_∞ / ((ρ_∞ - 4)(ρ_∞ - 2) ρ_t))
            x_t = x_{t-1} - η r_t m̂_t / (sqrt(v_t / (1 - β2^t)) + ε)
        else:
            x_t = x_{t-1} - η m̂_t       (degenerated_to_sgd=True)
            x_t = x_{t-1}               (degenerated_to_sgd=False: no step)

    ε is added to the bias-corrected sqrt(v̂_t), as in tensorflow-addons'
    `RectifiedAdam` and optax's `radam` (the authors' PyTorch code adds it to
    the un-corrected sqrt(v_t)). The paper's threshold is 4; the authors' code
    and most implementations use 5, the default here. With β2 = 0.999 the first
    rectified step is then t = 6. With `degenerated_to_sgd=False` the moments
    are still updated during the un-rectified phase, and (Keras convention)
    decoupled weight decay still applies.

    Preconditioner: P_t = (1 - β1^t)(sqrt(v_t / (1 - β2^t)) + ε) / r_t when
    rectified, (1 - β1^t) in the momentum phase, and +inf when the step is
    skipped, so that the step is η P_t⁻¹ m_t. Momentum: u_t = m_t (the
    un-corrected first moment, in both phases). Second moment: EMA of g² with
    β2, power 1/2 (once rectified). Momentum type: EMA heavy ball with β1.

    Stability threshold: given, for the frozen form (P held fixed; Cohen et al.
    2022, §2 and App. A). The adaptive method follows it while P_t changes slowly
    compared with the growth of an oscillation; in full-batch training its
    λ1(P⁻¹H) rises to it and hovers there (their Figs. 1 and 5).

    Args:
        learning_rate: A float, a `keras.optimizers.schedules.LearningRateSchedule`,
            or a callable. Defaults to `1e-3`.
        beta_1: Decay rate of the first moment, in [0, 1). Defaults to `0.9`.
        beta_2: Decay rate of the second moment, in [0, 1). Defaults to `0.999`.
        epsilon: ε ≥ 0. Defaults to `1e-8`.
        rectification_threshold: The variance is tractable, and the adaptive
            step is taken, once ρ_t exceeds this; must be ≥ 4 (r_t is
            imaginary below). Defaults to `5.0`.
        degenerated_to_sgd: Whether to take a bias-corrected momentum step
            while ρ_t is at or below the threshold (True) or no step (False).
            Defaults to `True`.
        {{base_optimizer_keyword_args}}
    """

    momentum_type = thresholds.EMA_HEAVY_BALL
    momentum_coefficient_name = "beta_1"
    hyperparameter_names = (
        "beta_1",
        "beta_2",
        "epsilon",
        "rectification_threshold",
        "degenerated_to_sgd",
    )

    def __init__(
        self,
        learning_rate=1e-3,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        rectification_threshold=5.0,
        degenerated_to_sgd=True,
        name="radam",
        **kwargs,
    ):
        super().__init__(learning_rate, name, **kwargs)
        self.beta_1 = check_beta("beta_1", beta_1)
        self.beta_2 = check_beta("beta_2", beta_2)
        self.epsilon = check_nonnegative("epsilon", epsilon)
        self.rectification_threshold = check_nonnegative("rectification_threshold", rectification_threshold)
        if self.rectification_threshold < 4.0:
            raise ValueError(f"`rectification_threshold` must be >= 4, got {rectification_threshold}.")
        self.degenerated_to_sgd = bool(degenerated_to_sgd)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(var_list, ["momentum", "velocity"])

    def _coefficients(self, t):
        """Scalars of step t (float32): (1 - β1^t, 1 - β2^t, rectified?, r_t)."""
        rho_inf = 2.0 / (1.0 - self.beta_2) - 1.0
        first_correction, second_correction = bias_corrections(t, self.beta_1, self.beta_2)
        rho = sma_length(t, self.beta_2)
        rectified = rho > self.rectification_threshold
        rectifier = ops.sqrt((rho - 4.0) * (rho - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho))
        return first_correction, second_correction, rectified, rectifier

    def update_step(self, gradient, variable, learning_rate):
        dtype = compute_dtype(variable)
        index = self._get_variable_index(variable)
        momentum, velocity = self._momentums[index], self._velocities[index]
        g = dense_gradient(gradient, variable, dtype)
        lr = ops.cast(learning_rate, "float32")
        first_correction, second_correction, rectified, rectifier = self._coefficients(self._update_step_count())
        momentum_coefficient = 1.0 if self.degenerated_to_sgd else 0.0
        adaptive_scale = ops.cast(ops.where(rectified, lr * rectifier / first_correction, 0.0), dtype)
        momentum_scale = ops.cast(ops.where(rectified, 0.0, lr * momentum_coefficient / first_correction), dtype)
        velocity_scale = ops.cast(1.0 / ops.sqrt(second_correction), dtype)

        m = ops.cast(momentum, dtype)
        m = m + (g - m) * (1.0 - self.beta_1)
        v = ops.cast(velocity, dtype)
        v = v + (ops.square(g) - v) * (1.0 - self.beta_2)
        step = adaptive_scale * safe_divide(self.epsilon)(m, ops.sqrt(v) * velocity_scale + self.epsilon)

        self.assign(momentum, m)
        self.assign(velocity, v)
        self.assign_sub(variable, step + momentum_scale * m)

    def _preconditioner(self, index, dtype):
        first_correction, second_correction, rectified, rectifier = self._coefficients(self._completed_step_count())
        v = ops.cast(self._velocities[index], "float32")
        adaptive = first_correction * (ops.sqrt(v / second_correction) + self.epsilon) / rectifier
        unadapted = first_correction if self.degenerated_to_sgd else float("inf")
        return ops.where(rectified, adaptive, unadapted)

    def _momentum(self, index, dtype, gradient):
        return ops.cast(self._momentums[index], dtype)

    @property
    def second_moment(self):
        return SecondMoment(EMA, beta=self.beta_2, power=0.5)
