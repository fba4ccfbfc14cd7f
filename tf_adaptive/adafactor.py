"""Adafactor with an exposed preconditioner."""

from keras import ops

from tf_adaptive import thresholds
from tf_adaptive._base import (
    FACTORED,
    PreconditionedOptimizer,
    SecondMoment,
    check_beta,
    check_nonnegative,
    check_positive,
    compute_dtype,
    dense_gradient,
    register_optimizer,
)


@register_optimizer
class Adafactor(PreconditionedOptimizer):
    """Adafactor: a factored second moment, optional update clipping and momentum.

    Shazeer and Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory
    Cost", ICML 2018, Algorithms 4 and 5 with the decay β̂2_t = 1 - t^(-c):

        G_t = g_t² + ε1
        rank ≥ 2 (factored over the last two axes, rows i and columns j):
            R_t = β̂2_t R_{t-1} + (1 - β̂2_t) mean_j G_t
            C_t = β̂2_t C_{t-1} + (1 - β̂2_t) mean_i G_t
            V̂_t = R_t C_tᵀ / mean_i R_t
        rank < 2:  V̂_t = β̂2_t V̂_{t-1} + (1 - β̂2_t) G_t
        S_t = sqrt(V̂_t) + ε
        c_t = max(1, RMS(g_t / S_t) / d)             (update clipping; c_t = 1 if d is None)
        m_t = β1 m_{t-1} + (1 - β1) g_t                (m_t = g_t when β1 = 0)
        x_t = x_{t-1} - η m_t / (c_t S_t)

    With β1 > 0 this is the momentum-on-the-gradient form, the preconditioned EMA
    heavy ball that Cohen et al. 2022 analyse (their Fig. 5 Adafactor: decay
    rate 0.8, momentum 0.9, ε = 1e-7). There is no relative step size or
    parameter-scale factor: η is the step size, as for every optimizer here.
    `keras.optimizers.Adafactor` has both (see `analysis_tools.preconditioners`).

    Preconditioner: P_t = c_t S_t. Momentum: u_t = m_t, or u_t = g_t when
    β1 = 0 (no slot keeps g_t, so `momentum(variable, gradient)` needs it
    then: storing it would spend again the memory that factoring V̂ saves).
    Second moment: factored (V̂_t, decay 1 - t^(-c), no constant
    β), power 1/2. Momentum type: EMA heavy ball with β1 (none when β1 = 0), so
    the threshold is 38/η at β1 = 0.9.

    Stability threshold: given, for the frozen form (P = c_t S_t held fixed,
    update clipping included; Cohen et al. 2022, §2 and App. A). The adaptive
    method follows it while P_t changes slowly compared with the growth of an
    oscillation; in full-batch training its λ1(P⁻¹H) rises to it and hovers
    there (their Fig. 5).

    Args:
        learning_rate: A float, a `keras.optimizers.schedules.LearningRateSchedule`,
            or a callable. Defaults to `1e-3`.
        beta_1: Momentum coefficient in [0, 1); 0 (the default) for no momentum.
        decay_rate: c > 0 in β̂2_t = 1 - t^(-c). Defaults to `0.8`.
        epsilon_1: ε1 ≥ 0 added to g². Defaults to `1e-30`.
        epsilon: ε ≥ 0 added to sqrt(V̂). Defaults to `0.0`.
        clip_threshold: d > 0 for update clipping, or `None` for none. Defaults to `1.0`.
        {{base_optimizer_keyword_args}}
    """

    hyperparameter_names = ("beta_1", "decay_rate", "epsilon_1", "epsilon", "clip_threshold")
    momentum_coefficient_name = "beta_1"

    def __init__(
        self,
        learning_rate=1e-3,
        beta_1=0.0,
        decay_rate=0.8,
        epsilon_1=1e-30,
        epsilon=0.0,
        clip_threshold=1.0,
        name="adafactor",
        **kwargs,
    ):
        super().__init__(learning_rate, name, **kwargs)
        self.beta_1 = check_beta("beta_1", beta_1)
        self.decay_rate = check_positive("decay_rate", decay_rate)
        self.epsilon_1 = check_nonnegative("epsilon_1", epsilon_1)
        self.epsilon = check_nonnegative("epsilon", epsilon)
        if self.epsilon_1 == 0.0 and self.epsilon == 0.0:
            raise ValueError("`epsilon_1` and `epsilon` cannot both be 0: S_t would be 0 for g = 0.")
        self.clip_threshold = None if clip_threshold is None else check_positive("clip_threshold", clip_threshold)
        self.momentum_type = thresholds.EMA_HEAVY_BALL if self.beta_1 > 0.0 else thresholds.NONE

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._rows, self._columns, self._second_moments, self._clip_scales = [], [], [], []
        for variable in var_list:
            shape = tuple(variable.shape)
            factored = len(shape) >= 2
            self._rows.append(
                self.add_variable(shape[:-1], dtype=variable.dtype, name=f"{variable.name}_row") if factored else None
            )
            self._columns.append(
                self.add_variable(shape[:-2] + shape[-1:], dtype=variable.dtype, name=f"{variable.name}_column")
                if factored
                else None
            )
            self._second_moments.append(
                None if factored else self.add_variable_from_reference(variable, "second_moment")
            )
            self._clip_scales.append(
                self.add_variable((), initializer="ones", dtype="float32", name=f"{variable.name}_clip_scale")
            )
        if self.beta_1 > 0.0:
            self._momentums = self.add_optimizer_variables(var_list, "momentum")

    def _root_second_moment(self, index, dtype, row=None, column=None, second_moment=None):
        """S = sqrt(V̂) + ε from the given (or the stored) statistics."""
        if self._rows[index] is None:
            v = second_moment if second_moment is not None else ops.cast(self._second_moments[index], dtype)
            return ops.sqrt(v) + self.epsilon
        row = row if row is not None else ops.cast(self._rows[index], dtype)
        column = column if column is not None else ops.cast(self._columns[index], dtype)
        row_scale = ops.expand_dims(row / ops.mean(row, axis=-1, keepdims=True), -1)
        return ops.sqrt(row_scale * ops.expand_dims(column, -2)) + self.epsilon

    def update_step(self, gradient, variable, learning_rate):
        dtype = compute_dtype(variable)
        index = self._get_variable_index(variable)
        g = dense_gradient(gradient, variable, dtype)
        t = self._update_step_count()
        decay = ops.cast(1.0 - ops.power(t, -self.decay_rate), dtype)
        squared = ops.square(g) + self.epsilon_1

        if self._rows[index] is None:
            v = ops.cast(self._second_moments[index], dtype)
            v = squared + (v - squared) * decay
            self.assign(self._second_moments[index], v)
            s = self._root_second_moment(index, dtype, second_moment=v)
        else:
            row = ops.cast(self._rows[index], dtype)
            column = ops.cast(self._columns[index], dtype)
            row_mean, column_mean = ops.mean(squared, axis=-1), ops.mean(squared, axis=-2)
            row = row_mean + (row - row_mean) * decay
            column = column_mean + (column - column_mean) * decay
            self.assign(self._rows[index], row)
            self.assign(self._columns[index], column)
            s = self._root_second_moment(index, dtype, row=row, column=column)

        if self.clip_threshold is None:
            clip_scale = ops.ones((), dtype)
        else:
            rms = ops.sqrt(ops.mean(ops.square(g / s)))
            clip_scale = ops.maximum(1.0, rms / self.clip_threshold)
        self.assign(self._clip_scales[index], ops.cast(clip_scale, "float32"))

        m = g
        if self.beta_1 > 0.0:
            momentum = self._momentums[index]
            m = ops.cast(momentum, dtype)
            m = m + (g - m) * (1.0 - self.beta_1)
            self.assign(momentum, m)
        self.assign_sub(variable, ops.cast(learning_rate, dtype) * m / (clip_scale * s))

    def _preconditioner(self, index, dtype):
        return ops.cast(self._clip_scales[index], dtype) * self._root_second_moment(index, dtype)

    @property
    def momentum_needs_gradient(self):
        return self.beta_1 == 0.0

    def _momentum(self, index, dtype, gradient):
        return ops.cast(self._momentums[index], dtype) if self.beta_1 > 0.0 else gradient

    @property
    def second_moment(self):
        return SecondMoment(FACTORED, power=0.5)
