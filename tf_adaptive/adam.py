"""The Adam family with an exposed preconditioner: Adam, AMSGrad, Padam, Nadam.

One core, `_AdaptiveMomentum`, holds the shared math (Cohen et al., "Adaptive
Gradient Methods at the Edge of Stability", 2022, §2 Eq. 1–2 and Appendix A);
the public classes choose its options:

    m_t = β1 m_{t-1} + (1 - β1) g_t
    v_t = β2 v_{t-1} + (1 - β2) g_t²
    ν_t = v_t, or max(ν_{t-1}, v_t) with AMSGrad (the running max of the un-corrected v)
    P_t = (1 - β1^t) ((ν_t / (1 - β2^t))^p + ε)     with bias correction
    P_t = ν_t^p + ε                                  without
    u_t = m_t (heavy ball), or β1 m_t + (1 - β1) g_t (Nesterov)
    x_t = x_{t-1} - η P_t⁻¹ u_t

with p = 1/2 for Adam and Nadam, and p = `partial` for Padam.
"""

from keras import ops

from tf_adaptive import thresholds
from tf_adaptive._base import (
    EMA,
    PreconditionedOptimizer,
    SecondMoment,
    check_beta,
    check_nonnegative,
    check_positive,
    compute_dtype,
    dense_gradient,
    moment_corrections,
    register_optimizer,
    root,
    safe_divide,
)

_COMMON_ARGS_DOC = """beta_1: Decay rate of the momentum m_t, in [0, 1). Defaults to `0.9`.
        beta_2: Decay rate of the second moment v_t, in [0, 1). Defaults to `0.999`.
        epsilon: ε ≥ 0, added to the (bias-corrected) root of the second moment.
            Defaults to `1e-8`."""


class _AdaptiveMomentum(PreconditionedOptimizer):
    """The shared core of Adam, Padam and Nadam (see the module docstring)."""

    momentum_type = thresholds.EMA_HEAVY_BALL
    momentum_coefficient_name = "beta_1"
    hyperparameter_names = ("beta_1", "beta_2", "epsilon", "bias_correction", "amsgrad")
    power = 0.5

    def __init__(self, learning_rate, beta_1, beta_2, epsilon, bias_correction, amsgrad, name, **kwargs):
        super().__init__(learning_rate, name, **kwargs)
        self.beta_1 = check_beta("beta_1", beta_1)
        self.beta_2 = check_beta("beta_2", beta_2)
        self.epsilon = check_nonnegative("epsilon", epsilon)
        self.bias_correction = bool(bias_correction)
        self.amsgrad = bool(amsgrad)

    @property
    def nesterov(self):
        return self.momentum_type == thresholds.EMA_NESTEROV

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(var_list, ["momentum", "velocity"])
        if self.amsgrad:
            self._velocity_maxima = self.add_optimizer_variables(var_list, "velocity_max")

    def _corrections(self, t):
        return moment_corrections(t, self.beta_1, self.beta_2, self.power, self.bias_correction)

    def _scaled_root(self, nu, second_scale):
        """(ν / (1 - β2^t))^p + ε, the preconditioner before the (1 - β1^t) factor."""
        return root(nu, self.power) * second_scale + self.epsilon

    def update_step(self, gradient, variable, learning_rate):
        dtype = compute_dtype(variable)
        index = self._get_variable_index(variable)
        momentum, velocity = self._momentums[index], self._velocities[index]
        g = dense_gradient(gradient, variable, dtype)
        first, second_scale = self._corrections(self._update_step_count())
        step_size = ops.cast(ops.cast(learning_rate, "float32") / first, dtype)
        second_scale = ops.cast(second_scale, dtype)

        m = ops.cast(momentum, dtype)
        m = m + (g - m) * (1.0 - self.beta_1)
        v = ops.cast(velocity, dtype)
        v = v + (ops.square(g) - v) * (1.0 - self.beta_2)
        nu = v
        if self.amsgrad:
            velocity_max = self._velocity_maxima[index]
            nu = ops.maximum(ops.cast(velocity_max, dtype), v)
            self.assign(velocity_max, nu)
        step = step_size * safe_divide(self.epsilon)(self._direction(m, g), self._scaled_root(nu, second_scale))

        self.assign(momentum, m)
        self.assign(velocity, v)
        self.assign_sub(variable, step)

    def _direction(self, m, g):
        """u_t: m_t (heavy ball) or β1 m_t + (1 - β1) g_t (Nesterov)."""
        return m + (g - m) * (1.0 - self.beta_1) if self.nesterov else m

    def _preconditioner(self, index, dtype):
        first, second_scale = self._corrections(self._completed_step_count())
        states = self._velocity_maxima if self.amsgrad else self._velocities
        nu = ops.cast(states[index], "float32")
        return first * self._scaled_root(nu, second_scale)

    @property
    def momentum_needs_gradient(self):
        return self.nesterov

    def _momentum(self, index, dtype, gradient):
        return self._direction(ops.cast(self._momentums[index], dtype), gradient)

    @property
    def second_moment(self):
        return SecondMoment(EMA, beta=self.beta_2, power=self.power)


@register_optimizer(common_args=_COMMON_ARGS_DOC)
class Adam(_AdaptiveMomentum):
    """Adam (and AMSGrad) with an exposed preconditioner.

    Kingma and Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015,
    Algorithm 1; AMSGrad from Reddi, Kale and Kumar, "On the Convergence of Adam
    and Beyond", ICLR 2018; the preconditioner of Cohen et al. 2022, Eq. 2:

        m_t = β1 m_{t-1} + (1 - β1) g_t ;   v_t = β2 v_{t-1} + (1 - β2) g_t²
        x_t = x_{t-1} - η m̂_t / (sqrt(v̂_t) + ε),   m̂_t = m_t / (1 - β1^t), v̂_t = v_t / (1 - β2^t)

    i.e. x_t = x_{t-1} - η P_t⁻¹ m_t with P_t = (1 - β1^t)(sqrt(v_t / (1 - β2^t)) + ε).
    Without bias correction, P_t = sqrt(v_t) + ε and the step is η m_t / P_t. With
    `amsgrad=True`, v_t in P_t is replaced by the running maximum of the
    un-corrected v_s, s ≤ t.

    Where ε sits: here (as in the paper and in optax) ε is added to the
    bias-corrected sqrt(v̂_t). `keras.optimizers.Adam(epsilon=ε̂)` folds the bias
    corrections into the step size and adds ε̂ to the un-corrected sqrt(v_t),
    which is this update with ε = ε̂ / sqrt(1 - β2^t): an ε that starts
    1/sqrt(1 - β2) times larger (32× at β2 = 0.999) and decays to ε̂. With
    ε = ε̂ = 0 the two coincide.

    Preconditioner: P_t as above (ones before the first step). Momentum:
    u_t = m_t (Algorithm 1's first moment, un-corrected). Second moment: EMA
    of g² with β2 (its running maximum with AMSGrad), power 1/2. Momentum type:
    EMA heavy ball with β1, so `stability_threshold()` is (2 + 2β1)/((1 - β1)η),
    38/η at β1 = 0.9.

    Stability threshold: given, for the frozen form (P held fixed; Cohen et al.
    2022, §2 and App. A). The adaptive method follows it while P_t changes slowly
    compared with the growth of an oscillation; in full-batch training its
    λ1(P⁻¹H) rises to it and hovers there (their Figs. 1 and 5).

    Args:
        learning_rate: A float, a `keras.optimizers.schedules.LearningRateSchedule`,
            or a callable. Defaults to `1e-3`.
        {{common_args}}
        bias_correction: Whether to divide the moments by (1 - β^t). Defaults to `True`.
        amsgrad: Whether to use the running maximum of v_t (AMSGrad). Defaults to `False`.
        {{base_optimizer_keyword_args}}
    """

    def __init__(
        self,
        learning_rate=1e-3,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        bias_correction=True,
        amsgrad=False,
        name="adam",
        **kwargs,
    ):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, bias_correction, amsgrad, name, **kwargs)


@register_optimizer(common_args=_COMMON_ARGS_DOC)
class Padam(_AdaptiveMomentum):
    """Padam: Adam with a partially adaptive exponent p on the second moment.

    Chen, Zhou, Tang, Yang, Cao and Gu, "Closing the Generalization Gap of
    Adaptive Gradient Methods in Training Deep Neural Networks", IJCAI 2020,
    Algorithm 1 (which builds on AMSGrad and has no bias correction):

        m_t = β1 m_{t-1} + (1 - β1) g_t ;   v_t = β2 v_{t-1} + (1 - β2) g_t²
        ν_t = max(ν_{t-1}, v_t)                     (amsgrad=True)
        x_t = x_{t-1} - η m_t / (ν_t^p + ε)

    p = 1/2 is AMSGrad; p → 0 approaches SGD with momentum. With
    `bias_correction=True`, P_t = (1 - β1^t)((ν_t / (1 - β2^t))^p + ε).

    Preconditioner: P_t = ν_t^p + ε (the Padam row of Cohen et al. 2022,
    Fig. 5). Momentum: u_t = m_t. Second moment: EMA of g² with β2 (its running
    maximum with AMSGrad), power p = `partial`. Momentum type: EMA heavy ball
    with β1.

    Stability threshold: given, for the frozen form (P held fixed; Cohen et al.
    2022, §2 and App. A). The adaptive method follows it while P_t changes slowly
    compared with the growth of an oscillation; in full-batch training its
    λ1(P⁻¹H) rises to it and hovers there (their Figs. 1 and 5).

    Args:
        learning_rate: A float, a `keras.optimizers.schedules.LearningRateSchedule`,
            or a callable. Padam takes SGD-sized rates; defaults to `0.1`.
        {{common_args}}
        partial: The exponent p ∈ (0, 1/2]. Defaults to `0.25` (Cohen et al.'s setting;
            the Padam paper recommends 1/8).
        bias_correction: Whether to divide the moments by (1 - β^t). Defaults to `False`.
        amsgrad: Whether to use the running maximum of v_t. Defaults to `True`.
        {{base_optimizer_keyword_args}}
    """

    hyperparameter_names = _AdaptiveMomentum.hyperparameter_names + ("partial",)

    def __init__(
        self,
        learning_rate=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        partial=0.25,
        bias_correction=False,
        amsgrad=True,
        name="padam",
        **kwargs,
    ):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, bias_correction, amsgrad, name, **kwargs)
        self.partial = check_positive("partial", partial)
        if self.partial > 0.5:
            raise ValueError(f"`partial` must be in (0, 0.5], got {partial}.")

    @property
    def power(self):
        return self.partial


@register_optimizer(common_args=_COMMON_ARGS_DOC)
class Nadam(_AdaptiveMomentum):
    """Nadam: Adam with EMA Nesterov momentum.

    Dozat, "Incorporating Nesterov Momentum into Adam", ICLR 2016 workshop, in
    the form Cohen et al. 2022 analyse (Fig. 5, "Nadam | as Adam | EMA Nesterov"):

        m_t = β1 m_{t-1} + (1 - β1) g_t ;   v_t = β2 v_{t-1} + (1 - β2) g_t²
        u_t = β1 m_t + (1 - β1) g_t
        x_t = x_{t-1} - η P_t⁻¹ u_t,   P_t = (1 - β1^t)(sqrt(v_t / (1 - β2^t)) + ε)

    (P_t = sqrt(v_t) + ε without bias correction). There is no momentum-decay
    schedule: `keras.optimizers.Nadam` multiplies β1 by (1 - 0.5·0.96^(t/250))
    and corrects m_t and g_t by different products, so its steps differ from
    these; `analysis_tools.preconditioners` reads Keras's own convention.

    Preconditioner: P_t as above. Momentum: u_t = β1 m_t + (1 - β1) g_t, which
    needs g_t (no slot keeps it: pass it, ``momentum(variable, gradient)``).
    Second moment: EMA of g² with β2, power 1/2. Momentum type: EMA Nesterov
    with β1, so `stability_threshold()` is (2 + 2β1)/((1 - β1)(1 + 2β1)η),
    13.57/η at β1 = 0.9.

    Stability threshold: given, for the frozen form (P held fixed; Cohen et al.
    2022, §2 and App. A). The adaptive method follows it while P_t changes slowly
    compared with the growth of an oscillation; in full-batch training its
    λ1(P⁻¹H) rises to it and hovers there (their Figs. 1 and 5).

    Args:
        learning_rate: A float, a `keras.optimizers.schedules.LearningRateSchedule`,
            or a callable. Defaults to `1e-3`.
        {{common_args}}
        bias_correction: Whether to divide the moments by (1 - β^t). Defaults to `True`.
        {{base_optimizer_keyword_args}}
    """

    momentum_type = thresholds.EMA_NESTEROV
    hyperparameter_names = ("beta_1", "beta_2", "epsilon", "bias_correction")

    def __init__(
        self,
        learning_rate=1e-3,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        bias_correction=True,
        name="nadam",
        **kwargs,
    ):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, bias_correction, False, name, **kwargs)
