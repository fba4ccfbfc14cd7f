"""Sign descent: stochastic sign descent (SSD) and its momentum form (M-SSD)."""

from keras import ops

from tf_adaptive import thresholds
from tf_adaptive._base import (
    PreconditionedOptimizer,
    check_beta,
    compute_dtype,
    dense_gradient,
    register_optimizer,
)


class _SignDescent(PreconditionedOptimizer):
    """x_t = x_{t-1} - η sign(m_t), m_t an EMA of the gradient with decay β (β = 0: m_t = g_t)."""

    def __init__(self, learning_rate, beta, name, **kwargs):
        super().__init__(learning_rate, name, **kwargs)
        self.beta = check_beta("beta", beta)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        # β = 0 (SSD): m_t = g_t, which the update reads and nothing else needs: no slot.
        self._momentums = self.add_optimizer_variables(var_list, "momentum") if self.beta > 0.0 else None

    def update_step(self, gradient, variable, learning_rate):
        dtype = compute_dtype(variable)
        m = dense_gradient(gradient, variable, dtype)
        if self.beta > 0.0:
            momentum = self._momentums[self._get_variable_index(variable)]
            previous = ops.cast(momentum, dtype)
            m = previous + (m - previous) * (1.0 - self.beta)
            self.assign(momentum, m)
        self.assign_sub(variable, ops.cast(learning_rate, dtype) * ops.sign(m))

    @property
    def preconditioner_needs_gradient(self):
        return self.beta == 0.0

    @property
    def momentum_needs_gradient(self):
        return self.beta == 0.0

    def _preconditioner(self, index, dtype):
        return ops.abs(ops.cast(self._momentums[index], dtype))

    def _preconditioner_of_gradient(self, gradient):
        return ops.abs(gradient)

    def _momentum(self, index, dtype, gradient):
        return gradient if self.beta == 0.0 else ops.cast(self._momentums[index], dtype)

    def stability_threshold(self):
        """``None``: sign descent has no stability threshold.

        The step η sign(m_t) has length η in every coordinate whatever the
        curvature, so on a quadratic the iterates close in on the minimum and
        then oscillate around it within a few η: bounded at any curvature.
        The effective P_t = |m_t| is set by that same oscillation (on
        f(x) = a x²/2, λ1(P⁻¹H) = a / |m_t| grows without bound as x_t
        approaches the minimum, whatever a), so no frozen P describes the
        method and the frozen-P threshold of Cohen et al. 2022, §2, says
        nothing about it.
        """
        return None


@register_optimizer
class SSD(_SignDescent):
    """Stochastic sign descent (SSD).

    Balles and Hennig, "Dissecting Adam: The Sign, Magnitude and Variance of
    Stochastic Gradients", ICML 2018, Fig. 1:

        x_t = x_{t-1} - η sign(g_t)

    No state: the update reads g_t and writes x_t, the fewest bytes an update
    can move. Its preconditioner is P_t = |g_t| (sign(g) = g / |g|; a
    coordinate with g = 0 does not move and has P = 0 there, with P⁻¹ g read
    as sign(0) = 0) and its momentum u_t = g_t, so `preconditioner` and
    `momentum` need the gradient of the most recent update
    (``preconditioner_needs_gradient`` and ``momentum_needs_gradient``), as
    `analysis_tools` passes it from inside the train step. Second moment: none.
    Momentum type: none.

    Stability threshold: none, `stability_threshold()` is ``None``. The step has
    length η at any curvature, so SSD stays bounded on every quadratic, and
    λ1(P⁻¹H) measures the distance to the minimum, not a stability margin: on
    f(x) = a x²/2 it is a / |g_t| = 1 / |x_{t-1}| (see `stability_threshold`).

    Args:
        learning_rate: A float, a `keras.optimizers.schedules.LearningRateSchedule`,
            or a callable. Defaults to `1e-3`.
        {{base_optimizer_keyword_args}}
    """

    momentum_type = thresholds.NONE

    def __init__(self, learning_rate=1e-3, name="ssd", **kwargs):
        super().__init__(learning_rate, 0.0, name, **kwargs)


@register_optimizer
class MSSD(_SignDescent):
    """Stochastic sign descent with momentum (M-SSD).

    Balles and Hennig, "Dissecting Adam", ICML 2018, Fig. 1 ("m-ssd"), with the
    momentum written as an exponential moving average:

        m_t = β m_{t-1} + (1 - β) g_t
        x_t = x_{t-1} - η sign(m_t)

    Preconditioner: P_t = |m_t| (P⁻¹ m read as sign(0) = 0 where m_t = 0).
    Momentum: u_t = m_t. Second moment: none. Momentum type: EMA heavy ball
    with β (the form of m_t; it sets no threshold here).

    Stability threshold: none, `stability_threshold()` is ``None``. The step has
    length η at any curvature, so M-SSD stays bounded on every quadratic (it
    oscillates around the minimum within a few η), and λ1(P⁻¹H) with
    P = |m_t| measures the distance to the minimum, not a stability margin
    (see `stability_threshold`).

    Args:
        learning_rate: A float, a `keras.optimizers.schedules.LearningRateSchedule`,
            or a callable. Defaults to `1e-3`.
        beta: Decay rate of the momentum, in [0, 1). Defaults to `0.9`.
        {{base_optimizer_keyword_args}}
    """

    momentum_type = thresholds.EMA_HEAVY_BALL
    momentum_coefficient_name = "beta"
    hyperparameter_names = ("beta",)

    def __init__(self, learning_rate=1e-3, beta=0.9, name="mssd", **kwargs):
        super().__init__(learning_rate, beta, name, **kwargs)
