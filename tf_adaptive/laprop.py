"""LaProp: the preconditioner applied before the momentum."""

from keras import ops

from tf_adaptive import thresholds
from tf_adaptive._base import (
    EMA,
    PreconditionedOptimizer,
    SecondMoment,
    check_beta,
    check_nonnegative,
    compute_dtype,
    dense_gradient,
    moment_corrections,
    register_optimizer,
    safe_divide,
)


@register_optimizer
class LaProp(PreconditionedOptimizer):
    """LaProp: momentum over the preconditioned gradient.

    Ziyin, Wang and Ueda, "LaProp: Separating Momentum and Adaptivity in Adam",
    2020, as written in Zhang and Ziyin, "On the Distributional Properties of
    Adaptive Gradients", UAI 2021, Eq. 1–4:

        v_t = β2 v_{t-1} + (1 - β2) g_t²
        S_t = sqrt(v_t / (1 - β2^t)) + ε
        m_t = β1 m_{t-1} + (1 - β1) g_t / S_t
        x_t = x_{t-1} - η m_t / (1 - β1^t)

    (without bias correction: S_t = sqrt(v_t) + ε and x_t = x_{t-1} - η m_t).
    Unlike Adam, the step is bounded by η/(1 - β1^t) in every coordinate and
    the momentum and adaptivity hyperparameters do not interact.

    Preconditioner: P_t = (1 - β1^t) S_t (S_t without bias correction), the
    preconditioner the latest gradient was divided by, scaled like Adam's. With
    P held fixed, LaProp is exactly EMA heavy ball preconditioned by P (the
    frozen form the stability analysis uses); while P changes, the step is
    η m_t / (1 - β1^t) with m_t an average of gradients each divided by its own
    S_s. Momentum: u_t = S_t m_t, so that the step η m_t / (1 - β1^t) is
    η P_t⁻¹ u_t (with S held fixed, u_t is the EMA of g_t). Second moment: EMA
    of g² with β2, power 1/2. Momentum type: EMA heavy ball with β1.

    Stability threshold: given, for the frozen form (P held fixed; Cohen et al.
    2022, §2 and App. A). The adaptive method follows it while P_t changes slowly
    compared with the growth of an oscillation; in full-batch training its
    λ1(P⁻¹H) rises to it and hovers there (their Figs. 1 and 5).

    Args:
        learning_rate: A float, a `keras.optimizers.schedules.LearningRateSchedule`,
            or a callable. Defaults to `4e-4`.
        beta_1: Decay rate of the momentum, in [0, 1). Defaults to `0.9`.
        beta_2: Decay rate of v_t, in [0, 1). Defaults to `0.999`.
        epsilon: ε ≥ 0. Defaults to `1e-15`.
        bias_correction: Whether to correct v_t and m_t by (1 - β^t). Defaults to `True`.
        {{base_optimizer_keyword_args}}
    """

    momentum_type = thresholds.EMA_HEAVY_BALL
    momentum_coefficient_name = "beta_1"
    hyperparameter_names = ("beta_1", "beta_2", "epsilon", "bias_correction")

    def __init__(
        self,
        learning_rate=4e-4,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-15,
        bias_correction=True,
        name="laprop",
        **kwargs,
    ):
        super().__init__(learning_rate, name, **kwargs)
        self.beta_1 = check_beta("beta_1", beta_1)
        self.beta_2 = check_beta("beta_2", beta_2)
        self.epsilon = check_nonnegative("epsilon", epsilon)
        self.bias_correction = bool(bias_correction)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(var_list, ["momentum", "velocity"])

    def _corrections(self, t):
        return moment_corrections(t, self.beta_1, self.beta_2, bias_correction=self.bias_correction)

    def update_step(self, gradient, variable, learning_rate):
        dtype = compute_dtype(variable)
        index = self._get_variable_index(variable)
        momentum, velocity = self._momentums[index], self._velocities[index]
        g = dense_gradient(gradient, variable, dtype)
        first, second_scale = self._corrections(self._update_step_count())
        step_size = ops.cast(ops.cast(learning_rate, "float32") / first, dtype)

        v = ops.cast(velocity, dtype)
        v = v + (ops.square(g) - v) * (1.0 - self.beta_2)
        s = ops.sqrt(v) * ops.cast(second_scale, dtype) + self.epsilon
        m = ops.cast(momentum, dtype)
        m = m + (safe_divide(self.epsilon)(g, s) - m) * (1.0 - self.beta_1)

        self.assign(velocity, v)
        self.assign(momentum, m)
        self.assign_sub(variable, step_size * m)

    def _divisor(self, index):
        """S_t of the most recent update and 1 - β1^t (1 without bias correction), in float32."""
        first, second_scale = self._corrections(self._completed_step_count())
        v = ops.cast(self._velocities[index], "float32")
        return ops.sqrt(v) * second_scale + self.epsilon, first

    def _preconditioner(self, index, dtype):
        s, first = self._divisor(index)
        return first * s

    def _momentum(self, index, dtype, gradient):
        s, _ = self._divisor(index)
        return s * ops.cast(self._momentums[index], "float32")

    @property
    def second_moment(self):
        return SecondMoment(EMA, beta=self.beta_2, power=0.5)
