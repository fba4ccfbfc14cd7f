"""ACClip: adaptive coordinate-wise clipping."""

from keras import ops

from tf_adaptive import thresholds
from tf_adaptive._base import (
    ClippingOptimizer,
    check_beta,
    check_nonnegative,
    check_positive,
    compute_dtype,
    dense_gradient,
    register_optimizer,
)


@register_optimizer
class ACClip(ClippingOptimizer):
    """Adaptive coordinate-wise clipping of the momentum (ACClip).

    Zhang, Karimireddy, Veit, Kim, Reddi, Kumar and Sra, "Why are Adaptive
    Methods Good for Attention Models?", NeurIPS 2020, §3, equation (ACClip)
    inside Algorithm 1. Per coordinate, with g_t the gradient:

        m_t = β1 m_{t-1} + (1 - β1) g_t
        a_t = β2 a_{t-1} + (1 - β2) |g_t|^α        (a_t = τ_t^α)
        τ_t = a_t^(1/α)
        x_t = x_{t-1} - η min(τ_t / (|m_t| + ε), 1) m_t

    There is no bias correction, as in the paper. ``alpha`` = 1 is the paper's
    default ("a conservative bound" on the noise's α-moment); the theory takes
    α ∈ (1, 2]. The paper's BERT settings are the defaults here, with
    ``weight_decay=1e-5`` (decoupled and multiplied by the learning rate, the
    Keras convention).

    Preconditioner: P_t = max((|m_t| + ε) / τ_t, 1), so that the step is
    η P_t⁻¹ m_t exactly; it is +inf where τ_t = 0 (the coordinate has seen only
    zero gradients and does not move), and NaN where m_t or a_t is not finite
    (after a NaN or infinite gradient). Momentum: u_t = m_t, the momentum
    before clipping. Second moment: none (a_t sets a clipping threshold, not a
    power of P_t). Momentum type: EMA heavy ball with β1.

    Stability threshold: that of the unclipped method. While no coordinate is
    clipped, P_t = 1 and ACClip is EMA heavy ball, on a quadratic
    x_{t+1} = (1 + β1) x_t - β1 x_{t-1} - η (1 - β1) H x_t (Cohen et al. 2022,
    §2 and App. A), unstable exactly when λ1(H) exceeds
    `stability_threshold()` = (2 + 2β1) / ((1 - β1) η). Clipping does not stop
    that divergence: τ_t is an average of |g| and grows with the oscillation,
    so the clipping factor τ_t / (|m_t| + ε) does not shrink as it grows. On a
    1-D quadratic with the default β's, ACClip started unclipped converges
    below the threshold and diverges above it, every step then clipped by a
    factor of about 0.97, 0.8 and 0.5 at 1.05, 1.25 and 2 times the threshold.
    Clipped steps are outside the frozen-P analysis (P_t changes every step
    with |m_t| / τ_t): from the zero state, whose first steps are all clipped
    (τ_1 = (1 - β2) |g_1| < |m_1| = (1 - β1) |g_1|), the same quadratic at 0.8
    times the threshold settled into a growing clipped cycle. Read
    λ1(P⁻¹H) against the threshold together with `clipped_fraction`.

    Step size: the step is gradient-sized (at most η τ_t per coordinate, τ_t an
    average of |g|), not normalized like Adam's. At the paper's η = 1e-4 it
    barely moves a small model: on the 133 k-parameter byte transformer of
    `examples/acclip_vs_adam.py` (batch 32), ACClip at η = 1e-4 moved the
    weights about 6000 times less than Adam at η = 1e-3 over the first 10
    steps and about 400 times less over 100 (median ratios of the update
    norms), while η = 1 matched Adam's update norm and η = 0.3 gave half of it.
    On small models start from η ≈ 0.3 to 1, or from Adam's η divided by the
    typical |g| of a coordinate.

    ACClip is covered by US patent 12,001,509 B2 (Google LLC), for your
    information.

    Args:
        learning_rate: A float, a `keras.optimizers.schedules.LearningRateSchedule`,
            or a callable. Defaults to `1e-4`.
        beta_1: Decay rate of the momentum m_t, in [0, 1). Defaults to `0.9`.
        beta_2: Decay rate of the α-moment a_t, in [0, 1). Defaults to `0.99`.
        epsilon: ε ≥ 0 added to |m_t| in the clipping ratio. Defaults to `1e-5`.
        alpha: The moment order α ∈ (0, 2]. Defaults to `1.0`.
        {{base_optimizer_keyword_args}}
    """

    momentum_type = thresholds.EMA_HEAVY_BALL
    momentum_coefficient_name = "beta_1"
    hyperparameter_names = ("beta_1", "beta_2", "epsilon", "alpha")

    def __init__(
        self,
        learning_rate=1e-4,
        beta_1=0.9,
        beta_2=0.99,
        epsilon=1e-5,
        alpha=1.0,
        name="acclip",
        **kwargs,
    ):
        super().__init__(learning_rate, name, **kwargs)
        self.beta_1 = check_beta("beta_1", beta_1)
        self.beta_2 = check_beta("beta_2", beta_2)
        self.epsilon = check_nonnegative("epsilon", epsilon)
        self.alpha = check_positive("alpha", alpha)
        if self.alpha > 2.0:
            raise ValueError(f"`alpha` must be in (0, 2], got {alpha}.")

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._alpha_moments = self.add_optimizer_variables(var_list, ["momentum", "alpha_moment"])

    def _threshold(self, alpha_moment):
        if self.alpha == 1.0:
            return alpha_moment
        return ops.power(alpha_moment, 1.0 / self.alpha)

    def update_step(self, gradient, variable, learning_rate):
        dtype = compute_dtype(variable)
        index = self._get_variable_index(variable)
        momentum, alpha_moment = self._momentums[index], self._alpha_moments[index]
        g = dense_gradient(gradient, variable, dtype)
        lr = ops.cast(learning_rate, dtype)

        m = ops.cast(momentum, dtype)
        m = m + (g - m) * (1.0 - self.beta_1)
        a = ops.cast(alpha_moment, dtype)
        g_alpha = ops.abs(g) if self.alpha == 1.0 else ops.power(ops.abs(g), self.alpha)
        a = a + (g_alpha - a) * (1.0 - self.beta_2)
        denominator = ops.abs(m) + self.epsilon
        tau = self._threshold(a)
        clip = ops.where(denominator > tau, tau / denominator, 1.0)

        self.assign(momentum, m)
        self.assign(alpha_moment, a)
        self.assign_sub(variable, lr * clip * m)

    def _preconditioner(self, index, dtype):
        m = ops.cast(self._momentums[index], dtype)
        a = ops.cast(self._alpha_moments[index], dtype)
        denominator = ops.abs(m) + self.epsilon
        tau = self._threshold(a)
        clipped = ops.where(denominator > tau, denominator / tau, 1.0)
        # A NaN or infinite state fails every comparison, which would read as P = 1.
        return ops.where(ops.logical_and(ops.isfinite(m), ops.isfinite(a)), clipped, float("nan"))

    def _momentum(self, index, dtype, gradient):
        return ops.cast(self._momentums[index], dtype)

    def _clipped(self, index, dtype):
        m = ops.cast(self._momentums[index], dtype)
        a = ops.cast(self._alpha_moments[index], dtype)
        clipped = ops.cast(ops.abs(m) + self.epsilon > self._threshold(a), dtype)
        return ops.where(ops.logical_and(ops.isfinite(m), ops.isfinite(a)), clipped, float("nan"))
