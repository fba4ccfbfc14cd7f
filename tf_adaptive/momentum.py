"""Gradient descent with heavy-ball or Nesterov momentum, standard or EMA form."""

from keras import ops

from tf_adaptive import thresholds
from tf_adaptive._base import (
    PreconditionedOptimizer,
    check_beta,
    compute_dtype,
    dense_gradient,
    register_optimizer,
)

_ARGS_DOC = """learning_rate: A float, a `keras.optimizers.schedules.LearningRateSchedule`,
            or a callable. Defaults to `0.01`.
        momentum: The momentum coefficient β ∈ [0, 1). Defaults to `0.9`.
        ema: Whether to use the EMA form, m_t = β m_{t-1} + (1 - β) g_t (True),
            or the standard one, m_t = β m_{t-1} + g_t (False). Defaults to `True`."""


class _Momentum(PreconditionedOptimizer):
    """m_t = β m_{t-1} + c g_t, c = 1 - β (EMA) or 1; the step direction is set by the subclass.

    β is the attribute ``beta`` (the argument and config key ``momentum``), as
    ``momentum(variable)`` is the protocol's u_t. With β = 0 there is no slot
    (gradient descent), and u_t = g_t is passed to ``momentum(variable, gradient)``.
    """

    momentum_coefficient_name = "beta"
    hyperparameter_names = ("momentum", "ema")
    hyperparameter_attributes = {"momentum": "beta"}
    standard_type = thresholds.HEAVY_BALL
    ema_type = thresholds.EMA_HEAVY_BALL
    direction_uses_gradient = False

    def __init__(self, learning_rate, momentum, ema, name, **kwargs):
        super().__init__(learning_rate, name, **kwargs)
        self.beta = check_beta("momentum", momentum)
        self.ema = bool(ema)
        if self.beta == 0.0:
            self.momentum_type = thresholds.NONE  # plain gradient descent
        else:
            self.momentum_type = self.ema_type if self.ema else self.standard_type

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        if self.beta > 0.0:
            self._momentums = self.add_optimizer_variables(var_list, "momentum")

    def _scaled(self, g):
        """c g_t."""
        return g * (1.0 - self.beta) if self.ema else g

    def _direction(self, m, scaled_gradient):
        raise NotImplementedError

    def update_step(self, gradient, variable, learning_rate):
        dtype = compute_dtype(variable)
        g = dense_gradient(gradient, variable, dtype)
        lr = ops.cast(learning_rate, dtype)
        if self.beta == 0.0:
            self.assign_sub(variable, lr * g)
            return
        momentum = self._momentums[self._get_variable_index(variable)]
        scaled_gradient = self._scaled(g)
        m = ops.cast(momentum, dtype) * self.beta + scaled_gradient
        self.assign(momentum, m)
        self.assign_sub(variable, lr * self._direction(m, scaled_gradient))

    def _preconditioner(self, index, dtype):
        return ops.ones((), dtype)

    @property
    def momentum_needs_gradient(self):
        return self.beta == 0.0 or self.direction_uses_gradient

    def _momentum(self, index, dtype, gradient):
        if self.beta == 0.0:
            return gradient
        m = ops.cast(self._momentums[index], dtype)
        return self._direction(m, self._scaled(gradient)) if self.direction_uses_gradient else m


@register_optimizer(momentum_args=_ARGS_DOC)
class HeavyBall(_Momentum):
    """Gradient descent with heavy-ball (Polyak) momentum.

    Polyak, "Some methods of speeding up the convergence of iteration methods",
    1964; the two parameterizations of Cohen et al. 2022, §2:

        standard:  m_t = β m_{t-1} + g_t
        EMA:       m_t = β m_{t-1} + (1 - β) g_t
        x_t = x_{t-1} - η m_t

    `HeavyBall(momentum=0)` is plain gradient descent. The standard form is
    `keras.optimizers.SGD(momentum=β)` up to Keras's velocity bookkeeping.

    Preconditioner: P = 1 (the identity). Momentum: u_t = m_t (u_t = g_t at
    β = 0, where no slot keeps it: pass it, ``momentum(variable, gradient)``).
    Second moment: none. Momentum type:
    heavy ball or EMA heavy ball, so `stability_threshold()` is (2 + 2β)/η or
    (2 + 2β)/((1 - β)η) (2/η at β = 0).

    Stability threshold: exact. P is fixed, so on a quadratic the method is a
    linear recurrence, unstable exactly when λ1(P⁻¹H) exceeds it (Cohen et al.
    2022, §2 and App. A).

    Args:
        {{momentum_args}}
        {{base_optimizer_keyword_args}}
    """

    def __init__(self, learning_rate=0.01, momentum=0.9, ema=True, name="heavy_ball", **kwargs):
        super().__init__(learning_rate, momentum, ema, name, **kwargs)

    def _direction(self, m, scaled_gradient):
        return m


@register_optimizer(momentum_args=_ARGS_DOC)
class Nesterov(_Momentum):
    """Gradient descent with Nesterov momentum.

    Nesterov, "A method for solving the convex programming problem with
    convergence rate O(1/k²)", 1983, in the "look-ahead gradient" form of
    Sutskever et al. 2013 and Cohen et al. 2022, §2 and Appendix A:

        standard:  m_t = β m_{t-1} + g_t ;           x_t = x_{t-1} - η (β m_t + g_t)
        EMA:       m_t = β m_{t-1} + (1 - β) g_t ;   x_t = x_{t-1} - η (β m_t + (1 - β) g_t)

    The standard form is `keras.optimizers.SGD(momentum=β, nesterov=True)`.

    Preconditioner: P = 1. Momentum: u_t = β m_t + g_t (standard) or
    β m_t + (1 - β) g_t (EMA), which needs g_t (no slot keeps it: pass it,
    ``momentum(variable, gradient)``). Second moment: none.
    Momentum type: Nesterov or EMA Nesterov, so `stability_threshold()` is
    (2 + 2β)/((1 + 2β)η) or (2 + 2β)/((1 - β)(1 + 2β)η).

    Stability threshold: exact. P is fixed, so on a quadratic the method is a
    linear recurrence, unstable exactly when λ1(P⁻¹H) exceeds it (Cohen et al.
    2022, §2 and App. A).

    Args:
        {{momentum_args}}
        {{base_optimizer_keyword_args}}
    """

    standard_type = thresholds.NESTEROV
    ema_type = thresholds.EMA_NESTEROV
    direction_uses_gradient = True

    def __init__(self, learning_rate=0.01, momentum=0.9, ema=True, name="nesterov", **kwargs):
        super().__init__(learning_rate, momentum, ema, name, **kwargs)

    def _direction(self, m, scaled_gradient):
        return m * self.beta + scaled_gradient
