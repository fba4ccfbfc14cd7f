"""Adagrad with an exposed preconditioner."""

from keras import initializers, ops

from tf_adaptive._base import (
    SUM,
    PreconditionedOptimizer,
    SecondMoment,
    check_nonnegative,
    compute_dtype,
    dense_gradient,
    register_optimizer,
    safe_divide,
)


@register_optimizer
class Adagrad(PreconditionedOptimizer):
    """Adagrad (diagonal).

    Duchi, Hazan and Singer, "Adaptive Subgradient Methods for Online Learning
    and Stochastic Optimization", JMLR 2011, in the form of Cohen et al. 2022
    (Fig. 5, "Adagrad | sqrt(Σ g²) + ε"):

        A_t = A_{t-1} + g_t²,   A_0 = initial_accumulator_value
        x_t = x_{t-1} - η g_t / (sqrt(A_t) + ε)

    ε is added outside the square root; `keras.optimizers.Adagrad` adds it
    inside and starts A at 0.1 (`analysis_tools.preconditioners` reads that
    convention off Keras's optimizer). Here A_0 defaults to 0, the paper's.

    Preconditioner: P_t = sqrt(A_t) + ε. Momentum: u_t = g_t, which A_t does
    not determine and no slot keeps: pass it, ``momentum(variable, gradient)``.
    Second moment: sum of g² (A_t), power 1/2. Momentum type: none, so
    `stability_threshold()` is 2/η.

    Stability threshold: given, for the frozen form (P held fixed; Cohen et al.
    2022, §2 and App. A). The adaptive method follows it while P_t changes slowly
    compared with the growth of an oscillation; in full-batch training its
    λ1(P⁻¹H) rises to it and hovers there (their Figs. 1 and 5).

    Args:
        learning_rate: A float, a `keras.optimizers.schedules.LearningRateSchedule`,
            or a callable. Defaults to `1e-2`.
        epsilon: ε ≥ 0. Defaults to `1e-7`.
        initial_accumulator_value: A_0 ≥ 0. Defaults to `0.0`.
        {{base_optimizer_keyword_args}}
    """

    hyperparameter_names = ("epsilon", "initial_accumulator_value")

    def __init__(
        self,
        learning_rate=1e-2,
        epsilon=1e-7,
        initial_accumulator_value=0.0,
        name="adagrad",
        **kwargs,
    ):
        super().__init__(learning_rate, name, **kwargs)
        self.epsilon = check_nonnegative("epsilon", epsilon)
        self.initial_accumulator_value = check_nonnegative("initial_accumulator_value", initial_accumulator_value)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._accumulators = self.add_optimizer_variables(
            var_list,
            "accumulator",
            initializer=initializers.Constant(self.initial_accumulator_value),
        )

    def update_step(self, gradient, variable, learning_rate):
        dtype = compute_dtype(variable)
        accumulator = self._accumulators[self._get_variable_index(variable)]
        g = dense_gradient(gradient, variable, dtype)
        a = ops.cast(accumulator, dtype) + ops.square(g)
        step = ops.cast(learning_rate, dtype) * safe_divide(self.epsilon)(g, ops.sqrt(a) + self.epsilon)
        self.assign(accumulator, a)
        self.assign_sub(variable, step)

    def _preconditioner(self, index, dtype):
        return ops.sqrt(ops.cast(self._accumulators[index], dtype)) + self.epsilon

    momentum_needs_gradient = True

    def _momentum(self, index, dtype, gradient):
        return gradient

    @property
    def second_moment(self):
        return SecondMoment(SUM, power=0.5)
