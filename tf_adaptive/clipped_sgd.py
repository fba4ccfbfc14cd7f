"""Clipped SGD with momentum: global (GClip) and coordinate-wise (CClip) clipping."""

import keras
from keras import ops

from tf_adaptive import thresholds
from tf_adaptive._base import (
    ClippingOptimizer,
    check_beta,
    check_positive_or_schedule,
    compute_dtype,
    dense_gradient,
    evaluate_schedule,
    register_optimizer,
)

_ARGS_DOC = """learning_rate: A float, a `keras.optimizers.schedules.LearningRateSchedule`,
            or a callable. The step size η_t.
        beta_1: Decay rate of the momentum m_t, in [0, 1). Defaults to `0.9`.
        threshold: The clipping threshold τ_k > 0: a float, or a schedule, any
            callable of the update count k (an integer tensor, k = 1 at the
            first update, as in the paper's Algorithm 1), e.g. a
            `keras.optimizers.schedules.LearningRateSchedule`; the theory's
            growing τ_k = G k^(1/(α-1)) is one. Defaults to `1.0`."""


_THRESHOLD_DOC = """Stability threshold: that of the unclipped method. While nothing is
    clipped, P_t = 1 and the method is EMA heavy ball, on a quadratic
    x_{t+1} = (1 + β1) x_t - β1 x_{t-1} - η (1 - β1) H x_t (Cohen et al. 2022,
    §2 and App. A), unstable exactly when λ1(H) exceeds
    `stability_threshold()` = (2 + 2β1) / ((1 - β1) η). Above it the
    oscillation grows until the momentum reaches τ_k; from then on the step is
    capped at η τ_k, so with a constant τ the iterates stay bounded (a
    bounded oscillation, not a divergence), and with a growing τ_k the cap
    grows with it. Clipped steps are outside the frozen-P analysis; read
    λ1(P⁻¹H) against the threshold together with `clipped_fraction`."""


class _ClippedMomentum(ClippingOptimizer):
    """Shared state of GClip and CClip: an EMA momentum and a threshold τ_k."""

    momentum_type = thresholds.EMA_HEAVY_BALL
    momentum_coefficient_name = "beta_1"
    hyperparameter_names = ("beta_1", "threshold")

    def __init__(self, learning_rate, beta_1, threshold, name, **kwargs):
        super().__init__(learning_rate, name, **kwargs)
        self.beta_1 = check_beta("beta_1", beta_1)
        self.threshold = check_positive_or_schedule("threshold", threshold)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums = self.add_optimizer_variables(var_list, "momentum")

    def _threshold_at(self, step, dtype):
        """τ_k at update count k = `step` (1 for the first update)."""
        return ops.cast(evaluate_schedule(self.threshold, step), dtype)

    def _update_threshold(self, dtype):
        """τ_k of the update being computed: k = iterations + 1."""
        return self._threshold_at(self.iterations + 1, dtype)

    def _last_threshold(self, dtype):
        """τ_k of the most recent update: k = iterations (τ_1 before the first, unused then)."""
        return self._threshold_at(ops.maximum(self.iterations, 1), dtype)

    def _new_momentum(self, gradient, variable, dtype):
        """(the momentum slot, m_t = β1 m_{t-1} + (1 - β1) g_t); the slot is not written."""
        momentum = self._momentums[self._get_variable_index(variable)]
        m = ops.cast(momentum, dtype)
        return momentum, m + (dense_gradient(gradient, variable, dtype) - m) * (1.0 - self.beta_1)

    def _momentum(self, index, dtype, gradient):
        return ops.cast(self._momentums[index], dtype)


@register_optimizer(clipping_args=_ARGS_DOC, threshold=_THRESHOLD_DOC)
class CClip(_ClippedMomentum):
    """SGD with momentum, clipped coordinate-wise (CClip).

    Zhang et al., "Why are Adaptive Methods Good for Attention Models?",
    NeurIPS 2020, Algorithm 1 with the (CClip) rule:

        m_t = β1 m_{t-1} + (1 - β1) g_t
        x_t = x_{t-1} - η_t min(τ_t / |m_t|, 1) m_t        (element-wise)

    This clips the *momentum*; Keras's `clipvalue` clips the raw gradient
    before the update, which is a different method.

    Preconditioner: P_t = max(|m_t| / τ_t, 1) with τ_t the threshold of the
    most recent update; NaN where m_t is not finite (after a NaN or infinite
    gradient). Momentum: u_t = m_t, the momentum before clipping.
    Second moment: none. Momentum type: EMA heavy ball with β1.

    {{threshold}}

    Args:
        {{clipping_args}}
        {{base_optimizer_keyword_args}}
    """

    def __init__(self, learning_rate=0.01, beta_1=0.9, threshold=1.0, name="cclip", **kwargs):
        super().__init__(learning_rate, beta_1, threshold, name, **kwargs)

    def update_step(self, gradient, variable, learning_rate):
        dtype = compute_dtype(variable)
        momentum, m = self._new_momentum(gradient, variable, dtype)
        self.assign(momentum, m)
        tau = self._update_threshold(dtype)
        magnitude = ops.abs(m)
        clip = ops.where(magnitude > tau, tau / magnitude, 1.0)
        self.assign_sub(variable, ops.cast(learning_rate, dtype) * clip * m)

    def _preconditioner(self, index, dtype):
        magnitude = ops.abs(ops.cast(self._momentums[index], dtype))
        tau = self._last_threshold(dtype)
        clipped = ops.where(magnitude > tau, magnitude / tau, 1.0)
        # A NaN or infinite momentum fails every comparison, which would read as P = 1.
        return ops.where(ops.isfinite(magnitude), clipped, float("nan"))

    def _clipped(self, index, dtype):
        magnitude = ops.abs(ops.cast(self._momentums[index], dtype))
        clipped = ops.cast(magnitude > self._last_threshold(dtype), dtype)
        return ops.where(ops.isfinite(magnitude), clipped, float("nan"))


@register_optimizer(clipping_args=_ARGS_DOC, threshold=_THRESHOLD_DOC)
class GClip(_ClippedMomentum):
    """SGD with momentum, clipped by the global norm of the momentum (GClip).

    Zhang et al., "Why are Adaptive Methods Good for Attention Models?",
    NeurIPS 2020, Algorithm 1 with the (GClip) rule:

        m_t = β1 m_{t-1} + (1 - β1) g_t                       (every variable)
        x_t = x_{t-1} - η_t min(τ_t / ‖m_t‖, 1) m_t

    where ‖m_t‖ is the L2 norm of the momentum over *all* the variables the
    optimizer was built with. Keras's `global_clipnorm` clips the raw gradient
    before the update instead, which is a different method.

    The update runs in two passes over the variables, both inside Keras's
    (distributed) update path after the gradients are all-reduced: the first
    computes every new momentum and its squared norm, the second sums those
    into ‖m_t‖ (once per replica), then stores the momenta and applies the
    step. Each momentum is read once and written once per step.

    Preconditioner: P_t = max(‖m_t‖ / τ_t, 1) in every coordinate; NaN
    everywhere once ‖m_t‖ is not finite (after a NaN or infinite gradient in
    any variable). Momentum:
    u_t = m_t, the momentum before clipping. Second moment: none. Momentum
    type: EMA heavy ball with β1.

    {{threshold}} Every coordinate is clipped or none is, so
    `clipped_fraction` is 0 or 1.

    Args:
        {{clipping_args}}
        {{base_optimizer_keyword_args}}
    """

    def __init__(self, learning_rate=0.01, beta_1=0.9, threshold=1.0, name="gclip", **kwargs):
        super().__init__(learning_rate, beta_1, threshold, name, **kwargs)
        self._applying_step = False
        self._new_momentums = {}
        self._squared_norms = {}
        self._clip_factors = {}

    def _global_momentum_norm(self):
        return ops.sqrt(sum(ops.sum(ops.square(ops.cast(m, "float32"))) for m in self._momentums))

    def _in_two_passes(self, run_pass):
        """Run `update_step` over every variable twice: momentum first, then the step."""
        self._applying_step = False
        run_pass()
        self._applying_step = True
        run_pass()
        self._applying_step = False
        self._new_momentums, self._squared_norms, self._clip_factors = {}, {}, {}

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if keras.backend.backend() == "tensorflow":
            # The TF backend all-reduces the gradients here, once, then calls
            # _distributed_tf_update_step, where the two passes happen.
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        parent = super()._backend_update_step
        self._in_two_passes(lambda: parent(grads, trainable_variables, learning_rate))

    def _distributed_tf_update_step(self, distribution, grads_and_vars, learning_rate):
        parent = super()._distributed_tf_update_step
        self._in_two_passes(lambda: parent(distribution, grads_and_vars, learning_rate))

    def update_step(self, gradient, variable, learning_rate):
        dtype = compute_dtype(variable)
        index = self._get_variable_index(variable)
        # Under tf.distribute each replica updates its own copies: key by device.
        device = getattr(variable, "device", None)
        if not self._applying_step:
            momentum, m = self._new_momentum(gradient, variable, dtype)
            m = ops.cast(m, momentum.dtype)  # the value the slot will hold
            self._new_momentums[(device, index)] = m
            self._squared_norms.setdefault(device, []).append(ops.sum(ops.square(ops.cast(m, "float32"))))
            return
        if device not in self._clip_factors:
            norm = ops.sqrt(sum(self._squared_norms[device]))
            tau = self._update_threshold("float32")
            self._clip_factors[device] = ops.where(norm > tau, tau / norm, 1.0)
        m = self._new_momentums[(device, index)]
        self.assign(self._momentums[index], m)
        clip = ops.cast(self._clip_factors[device], dtype)
        self.assign_sub(variable, ops.cast(learning_rate, dtype) * clip * ops.cast(m, dtype))

    def _preconditioner(self, index, dtype):
        norm = self._global_momentum_norm()
        tau = self._last_threshold("float32")
        clipped = ops.where(norm > tau, norm / tau, 1.0)
        # A NaN or infinite momentum anywhere fails every comparison, which would read as P = 1.
        return ops.cast(ops.where(ops.isfinite(norm), clipped, float("nan")), dtype)

    def _clipped(self, index, dtype):
        norm = self._global_momentum_norm()
        clipped = ops.cast(norm > self._last_threshold("float32"), "float32")
        return ops.cast(ops.where(ops.isfinite(norm), clipped, float("nan")), dtype)
