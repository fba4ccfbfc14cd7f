"""RMSProp with an exposed preconditioner."""

from keras import ops

from tf_adaptive._base import (
    EMA,
    PreconditionedOptimizer,
    SecondMoment,
    check_beta,
    check_nonnegative,
    compute_dtype,
    dense_gradient,
    register_optimizer,
    safe_divide,
)


@register_optimizer
class RMSProp(PreconditionedOptimizer):
    """RMSProp, in the form of Cohen et al. 2022, Eq. 1.

    Tieleman and Hinton, "Lecture 6.5 — RMSProp", COURSERA: Neural Networks for
    Machine Learning, 2012:

        ν_t = β2 ν_{t-1} + (1 - β2) g_t²
        x_t = x_{t-1} - η g_t / (sqrt(ν_t) + ε)

    ε is added outside the square root, as in the paper; `keras.optimizers.RMSprop`
    adds it inside (sqrt(ν_t + ε)), which `analysis_tools.preconditioners`
    accounts for. There is no momentum (Keras's `momentum` argument is a
    different method).

    Preconditioner: P_t = sqrt(ν_t) + ε. Momentum: u_t = g_t, which ν_t does
    not determine and no slot keeps: pass it, ``momentum(variable, gradient)``.
    Second moment: EMA of g² with β2, power 1/2. Momentum type: none,
    so `stability_threshold()` is 2/η.

    Stability threshold: given, for the frozen form (P held fixed; Cohen et al.
    2022, §2 and App. A). The adaptive method follows it while P_t changes slowly
    compared with the growth of an oscillation; in full-batch training its
    λ1(P⁻¹H) rises to it and hovers there (their Figs. 1 and 5).

    Args:
        learning_rate: A float, a `keras.optimizers.schedules.LearningRateSchedule`,
            or a callable. Defaults to `1e-3`.
        beta_2: Decay rate of ν_t, in [0, 1) (Keras calls it `rho`). Defaults to `0.9`.
        epsilon: ε ≥ 0. Defaults to `1e-7`.
        {{base_optimizer_keyword_args}}
    """

    hyperparameter_names = ("beta_2", "epsilon")

    def __init__(self, learning_rate=1e-3, beta_2=0.9, epsilon=1e-7, name="rmsprop", **kwargs):
        super().__init__(learning_rate, name, **kwargs)
        self.beta_2 = check_beta("beta_2", beta_2)
        self.epsilon = check_nonnegative("epsilon", epsilon)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._velocities = self.add_optimizer_variables(var_list, "velocity")

    def update_step(self, gradient, variable, learning_rate):
        dtype = compute_dtype(variable)
        velocity = self._velocities[self._get_variable_index(variable)]
        g = dense_gradient(gradient, variable, dtype)
        v = ops.cast(velocity, dtype)
        v = v + (ops.square(g) - v) * (1.0 - self.beta_2)
        step = ops.cast(learning_rate, dtype) * safe_divide(self.epsilon)(g, ops.sqrt(v) + self.epsilon)
        self.assign(velocity, v)
        self.assign_sub(variable, step)

    def _preconditioner(self, index, dtype):
        return ops.sqrt(ops.cast(self._velocities[index], dtype)) + self.epsilon

    momentum_needs_gradient = True

    def _momentum(self, index, dtype, gradient):
        return gradient

    @property
    def second_moment(self):
        return SecondMoment(EMA, beta=self.beta_2, power=0.5)
