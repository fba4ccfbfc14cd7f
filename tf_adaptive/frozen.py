"""Frozen-preconditioner Adam: EMA heavy ball under a fixed diagonal preconditioner."""

import numpy as np
from keras import initializers, ops

from tf_adaptive import thresholds
from tf_adaptive._base import (
    PreconditionedOptimizer,
    check_beta,
    check_nonnegative,
    compute_dtype,
    dense_gradient,
    register_optimizer,
)


@register_optimizer
class FrozenAdam(PreconditionedOptimizer):
    """Adam with its preconditioner frozen: preconditioned EMA heavy ball.

    Cohen et al., "Adaptive Gradient Methods at the Edge of Stability", 2022,
    §2 ("PrecondEMAHB(η, β1, P)") and Fig. 2 / Appendix D ("frozen Adam"):

        m_t = β1 m_{t-1} + (1 - β1) g_t
        x_t = x_{t-1} - η (P + ε)⁻¹ m_t          P fixed

    On a quadratic with Hessian H this is a linear recurrence, stable exactly
    while λ1(P⁻¹H) < (2 + 2β1)/((1 - β1)η), which is what makes it the reference
    point for Adam's adaptive edge of stability.

    The frozen P is optimizer state, not configuration: it is stored in one
    slot per variable ("preconditioner"), saved with the model and restored by
    checkpoints, but not part of `get_config()`. Give it as `preconditioner`
    (one array per variable, in the order of the variables the optimizer is
    built with), take it from a running optimizer with `from_optimizer`, or
    replace it later with `freeze`. Without one it is all ones (plain EMA heavy
    ball). The momentum starts at zero.

    Preconditioner: P + ε. Momentum: u_t = m_t. Second moment: none (P is
    frozen). Momentum type: EMA heavy ball with β1.

    Stability threshold: exact. P is fixed, so on a quadratic the method is a
    linear recurrence, unstable exactly when λ1(P⁻¹H) exceeds it (Cohen et al.
    2022, §2 and App. A).

    Args:
        learning_rate: A float, a `keras.optimizers.schedules.LearningRateSchedule`,
            or a callable. Defaults to `1e-3`.
        beta_1: Decay rate of the momentum, in [0, 1). Defaults to `0.9`.
        epsilon: ε ≥ 0 added to P (a floor for a P with zeros; a P taken from
            Adam already contains Adam's ε). Defaults to `0.0`.
        preconditioner: Optional list of arrays, the frozen P of each variable
            (same shapes, all > 0 unless ε > 0).
        {{base_optimizer_keyword_args}}
    """

    momentum_type = thresholds.EMA_HEAVY_BALL
    momentum_coefficient_name = "beta_1"
    hyperparameter_names = ("beta_1", "epsilon")

    def __init__(
        self,
        learning_rate=1e-3,
        beta_1=0.9,
        epsilon=0.0,
        preconditioner=None,
        name="frozen_adam",
        **kwargs,
    ):
        super().__init__(learning_rate, name, **kwargs)
        self.beta_1 = check_beta("beta_1", beta_1)
        self.epsilon = check_nonnegative("epsilon", epsilon)
        self._initial_preconditioner = (
            None if preconditioner is None else [np.asarray(ops.convert_to_numpy(p)) for p in preconditioner]
        )

    @classmethod
    def from_optimizer(cls, optimizer, variables, **kwargs):
        """A FrozenAdam with the current P, learning rate and β1 of a running optimizer.

        `optimizer` must implement the preconditioner protocol (every
        tf_adaptive optimizer does). For Keras's built-ins, take P with
        `analysis_tools.preconditioners.preconditioner_of(optimizer, variables)`
        and pass it as `preconditioner`. Keyword arguments override the copied
        hyperparameters. Call `build(variables)` (or take a step) before use.
        """
        if not callable(getattr(optimizer, "preconditioner", None)):
            raise TypeError(
                f"{type(optimizer).__name__} does not expose a preconditioner; use "
                "analysis_tools.preconditioners.preconditioner_of and pass `preconditioner=`."
            )
        beta_1 = 0.0
        if getattr(optimizer, "momentum_coefficient_name", None) is not None:
            beta_1 = getattr(optimizer, optimizer.momentum_coefficient_name)
        kwargs.setdefault("learning_rate", float(ops.convert_to_numpy(optimizer.learning_rate)))
        kwargs.setdefault("beta_1", beta_1)
        kwargs["preconditioner"] = [optimizer.preconditioner(v) for v in variables]
        return cls(**kwargs)

    def build(self, var_list):
        if self.built:
            return
        if self._initial_preconditioner is not None:
            self._check_shapes(self._initial_preconditioner, var_list)
        super().build(var_list)
        self._momentums = self.add_optimizer_variables(var_list, "momentum")
        initial = self._initial_preconditioner or [None] * len(var_list)
        self._preconditioners = [
            self.add_variable_from_reference(
                variable,
                name="preconditioner",
                initializer="ones" if value is None else initializers.Constant(value),
            )
            for variable, value in zip(var_list, initial)
        ]

    @staticmethod
    def _check_shapes(values, variables):
        if len(values) != len(variables):
            raise ValueError(f"`preconditioner` has {len(values)} arrays for {len(variables)} variables.")
        for value, variable in zip(values, variables):
            if tuple(np.shape(value)) != tuple(variable.shape):
                raise ValueError(
                    f"`preconditioner` for {variable.path} has shape {np.shape(value)}, "
                    f"expected {tuple(variable.shape)}."
                )

    def freeze(self, variables, values):
        """Replace the frozen P of `variables` by `values` (arrays or tensors, same shapes)."""
        self._check_shapes(values, variables)
        for variable, value in zip(variables, values):
            slot = self._preconditioners[self._get_variable_index(variable)]
            slot.assign(ops.cast(value, slot.dtype))

    def update_step(self, gradient, variable, learning_rate):
        dtype = compute_dtype(variable)
        index = self._get_variable_index(variable)
        momentum = self._momentums[index]
        g = dense_gradient(gradient, variable, dtype)
        m = ops.cast(momentum, dtype)
        m = m + (g - m) * (1.0 - self.beta_1)
        p = ops.cast(self._preconditioners[index], dtype) + self.epsilon
        self.assign(momentum, m)
        self.assign_sub(variable, ops.cast(learning_rate, dtype) * m / p)

    def _preconditioner(self, index, dtype):
        return ops.cast(self._preconditioners[index], dtype) + self.epsilon

    def _momentum(self, index, dtype, gradient):
        return ops.cast(self._momentums[index], dtype)

    def preconditioner(self, variable, gradient=None):
        """The frozen P + ε of `variable`; unlike the adaptive methods' P, defined before any step (`gradient`
        unused)."""
        del gradient
        return self._state_of(variable, self._preconditioner)
