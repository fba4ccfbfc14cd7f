"""The rules that read P_t, u_t and the momentum type off Keras's built-in optimizers.

Each rule is read off the Keras update rule of exactly one class (subclasses
may change the rule, so they are not matched; Keras's own backend-specific
subclasses, such as the fused `torch_adam.Adam` on PyTorch, are: the same rule
and slots). `preconditioner_of` and the other public functions of
`analysis_tools.preconditioners` dispatch here for these classes.

Notation: t = ``optimizer.iterations``, the number of updates applied so far
(so t = 1 after the first); g = g_t, the gradient the update rule received;
η = η_t; m, v, ... the optimizer's slots after the update; RMS(z) =
sqrt(mean(z²)) over one variable.

For each optimizer: u_t (momentum); P_t (diagonal preconditioner); momentum type, β.

* SGD, momentum μ = 0: u_t = g; P_t = 1; none.
* SGD, μ > 0: u_t = -m / η (Keras m = μ m - η g); P_t = 1; heavy ball, β = μ.
* SGD, μ > 0, nesterov: u_t = g - μ m / η; P_t = 1; Nesterov, β = μ.
* Adam, AdamW: u_t = m (m = β1 m + (1-β1) g); P_t = (1-β1^t) / sqrt(1-β2^t) · (sqrt(v) + ε); EMA heavy ball, β = β1.
* Adam / AdamW, amsgrad: u_t = m; P_t as Adam, with v → v̂ = max_{s≤t} v_s; EMA heavy ball, β = β1.
* Nadam: u_t = (a m + b g) / (a + b); P_t = (sqrt(v / (1-β2^t)) + ε) / (a + b); EMA Nesterov, β = β1.
* RMSprop, momentum μ = 0: u_t = g; P_t = sqrt(v + ε) (centered: sqrt(v - ḡ² + ε)); none.
* RMSprop, μ > 0: u_t = P · mom / η; P_t as above; heavy ball, β = μ.
* Adagrad: u_t = g; P_t = sqrt(A + ε), A = A_0 + Σ_s g_s², A_0 = initial_accumulator_value; none.
* Adafactor: u_t = g; P_t = η · sqrt(v) · c / (ρ · max(ε2, RMS(x_{t-1}))); none.

Details, each read off the Keras update rule:

* **Adam / AdamW.** Keras's ε is Kingma and Ba's "epsilon hat": it is added to
  sqrt(v) of the *un-corrected* v, and the bias corrections multiply the step
  size, η sqrt(1-β2^t)/(1-β1^t) · m / (sqrt(v) + ε). With u = m (the stored
  EMA, not bias-corrected) the bias correction lands in P: it makes P small
  early on, the paper's "bias correction decreases the preconditioner".
* **Nadam.** Keras uses Dozat's momentum schedule μ_s = β1 (1 - ½ · 0.96^s)
  and its running product Π_s = μ_1 ⋯ μ_s (the ``u_product`` slot), with the
  plain EMA m = β1 m + (1-β1) g, v = β2 v + (1-β2) g², and the update
  η (a m + b g) / (sqrt(v / (1-β2^t)) + ε), a = μ_{t+1} / (1 - Π_{t+1}),
  b = (1 - μ_t) / (1 - Π_t). We normalize the momentum to a convex
  combination, u = β̃ m + (1-β̃) g with β̃ = a / (a+b): the EMA-Nesterov form
  of `tf_adaptive.thresholds` with a β̃ that tends to β1 (and a + b to 1) as
  t grows, and put 1 / (a+b) (large early on, like Adam's bias correction)
  into P.
* **RMSprop.** ε sits *inside* the square root: η g / sqrt(v + ε) (centered:
  sqrt(v - ḡ² + ε), ḡ the EMA of g; still diagonal). With ``momentum`` μ > 0
  Keras keeps a momentum of *preconditioned steps*, mom = μ mom + η g / P,
  and moves by -mom. We report u = P · mom / η, which satisfies
  u_t = g_t + μ (η_{t-1} P_t) / (η_t P_{t-1}) · u_{t-1}: the standard heavy
  ball m ← μ m + g whenever η and P are frozen, hence its threshold.
* **Adagrad.** ε sits inside the square root, and the accumulator starts at
  ``initial_accumulator_value`` (0.1 by default), not 0.
* **SGD.** Keras stores the velocity m = μ m - η g and moves by m (heavy ball)
  or by μ m - η g (Nesterov). u = -m / η is the standard heavy-ball momentum
  u ← μ u + g when η is constant (with a schedule, the step-size ratio
  η_{t-1}/η_t multiplies μ, exactly as Keras does).
* **Adafactor** (Keras has no first moment, so u = g and the threshold is 2/η).
  Keras moves by ρ · max(ε2, RMS(x_{t-1})) · û with the relative step size
  ρ = min(η, 1/sqrt(t)), the normalized gradient g / sqrt(v) (v the factored
  second moment, with ε1 added to g²) and the update clipping
  û = (g / sqrt(v)) / c, c = max(1, RMS(g / sqrt(v)) / clip_threshold).
  P folds the relative step size, the parameter scale and the clipping in,
  so P depends on the gradient and on the variable value x_{t-1} the update
  read. That value is recovered from x_t (x_{t-1} = x_t + ρ s û with
  s = max(ε2, RMS(x_{t-1})), a quadratic in s with exactly one positive root
  while ρ · RMS(û) < 1, e.g. whenever η · clip_threshold < 1).


References: Cohen et al., "Adaptive Gradient Methods at the Edge of Stability"
(2022), §2 and Appendix A; T. Dozat, "Incorporating Nesterov Momentum into
Adam" (2016); N. Shazeer and M. Stern, "Adafactor: Adaptive Learning Rates
with Sublinear Memory Cost" (ICML 2018).
"""

import keras
from keras import ops

from analysis_tools.preconditioners._common import (
    _SUPPORTED_MESSAGE,
    _completed_updates,
    _compute_dtype,
    _dense,
    _gradient_list,
    _known_to_be_first_step,
    _last_learning_rate,
    _not_built,
    _rms,
    _scalar,
    _unknown_variable,
    _unsupported,
)
from tf_adaptive import SecondMoment, thresholds


class _Context:
    """What every rule needs for one variable: its slots' index, dtype, t and η."""

    def __init__(self, optimizer, variable, gradient):
        self.optimizer = optimizer
        self.variable = variable
        self.dtype = _compute_dtype(variable)
        if getattr(variable, "overwrite_with_gradient", False):
            raise ValueError(
                f"Variable {variable.name!r} is overwritten with its gradient by "
                "the optimizer: it has no preconditioned update."
            )
        try:
            self.index = optimizer._get_variable_index(variable)
        except KeyError:
            raise _unknown_variable(variable, optimizer) from None
        self.t = ops.cast(_completed_updates(optimizer), self.dtype)
        self.eta = ops.cast(_last_learning_rate(optimizer), self.dtype)
        self._gradient = gradient

    def slot(self, slots):
        return ops.cast(slots[self.index], self.dtype)

    def constant(self, value):
        return ops.cast(value, self.dtype)

    @property
    def gradient(self):
        return _dense(self._gradient, self.variable, self.dtype)

    def value(self):
        return ops.cast(self.variable, self.dtype)


class _Rule:
    """One Keras optimizer class: its threshold type, its second moment and its (P, u)."""

    def momentum_type(self, opt):
        """(momentum type, β) for `tf_adaptive.thresholds.stability_threshold`."""
        return thresholds.NONE, 0.0

    def second_moment(self, opt):
        """The `SecondMoment` that P is a power of."""
        return SecondMoment(SecondMoment.NONE)

    def p_needs_gradient(self, opt):
        return False

    def u_needs_gradient(self, opt):
        return True

    def preconditioner(self, ctx):
        raise NotImplementedError

    def momentum(self, ctx):
        return ctx.gradient


class _Adam(_Rule):
    def momentum_type(self, opt):
        return thresholds.EMA_HEAVY_BALL, _scalar(opt.beta_1)

    def second_moment(self, opt):
        return SecondMoment(SecondMoment.EMA, _scalar(opt.beta_2), 0.5)

    def u_needs_gradient(self, opt):
        return False

    def preconditioner(self, ctx):
        opt = ctx.optimizer
        beta_1_power = ops.power(ctx.constant(opt.beta_1), ctx.t)
        beta_2_power = ops.power(ctx.constant(opt.beta_2), ctx.t)
        v = ctx.slot(opt._velocity_hats if opt.amsgrad else opt._velocities)
        scale = (1.0 - beta_1_power) / ops.sqrt(1.0 - beta_2_power)
        return scale * (ops.sqrt(v) + ctx.constant(opt.epsilon))

    def momentum(self, ctx):
        return ctx.slot(ctx.optimizer._momentums)


class _Nadam(_Rule):
    def momentum_type(self, opt):
        return thresholds.EMA_NESTEROV, _scalar(opt.beta_1)

    def second_moment(self, opt):
        return SecondMoment(SecondMoment.EMA, _scalar(opt.beta_2), 0.5)

    @staticmethod
    def _coefficients(ctx):
        """a = μ_{t+1} / (1 - Π_{t+1}) and b = (1 - μ_t) / (1 - Π_t), Keras's Nadam."""
        opt = ctx.optimizer
        beta_1 = ctx.constant(opt.beta_1)
        decay = ctx.constant(0.96)
        mu_t = beta_1 * (1.0 - 0.5 * ops.power(decay, ctx.t))
        mu_next = beta_1 * (1.0 - 0.5 * ops.power(decay, ctx.t + 1.0))
        product_t = ops.cast(opt._u_product, ctx.dtype)
        product_next = product_t * mu_next
        return mu_next / (1.0 - product_next), (1.0 - mu_t) / (1.0 - product_t)

    def preconditioner(self, ctx):
        opt = ctx.optimizer
        a, b = self._coefficients(ctx)
        beta_2_power = ops.power(ctx.constant(opt.beta_2), ctx.t)
        v_hat = ctx.slot(opt._velocities) / (1.0 - beta_2_power)
        return (ops.sqrt(v_hat) + ctx.constant(opt.epsilon)) / (a + b)

    def momentum(self, ctx):
        a, b = self._coefficients(ctx)
        return (a * ctx.slot(ctx.optimizer._momentums) + b * ctx.gradient) / (a + b)


class _RMSprop(_Rule):
    def momentum_type(self, opt):
        if opt.momentum > 0:
            return thresholds.HEAVY_BALL, _scalar(opt.momentum)
        return thresholds.NONE, 0.0

    def second_moment(self, opt):
        if opt.centered:  # divides by sqrt(v − ḡ²), a variance estimate, not a power of v
            return SecondMoment(SecondMoment.NONE)
        return SecondMoment(SecondMoment.EMA, _scalar(opt.rho), 0.5)

    def u_needs_gradient(self, opt):
        return not opt.momentum > 0

    def preconditioner(self, ctx):
        opt = ctx.optimizer
        denominator = ctx.slot(opt._velocities)
        if opt.centered:
            denominator = denominator - ops.square(ctx.slot(opt._average_gradients))
        return ops.sqrt(denominator + ctx.constant(opt.epsilon))

    def momentum(self, ctx):
        opt = ctx.optimizer
        if opt.momentum > 0:
            return self.preconditioner(ctx) * ctx.slot(opt._momentums) / ctx.eta
        return ctx.gradient


class _Adagrad(_Rule):
    def second_moment(self, opt):
        return SecondMoment(SecondMoment.SUM, None, 0.5)

    def preconditioner(self, ctx):
        opt = ctx.optimizer
        return ops.sqrt(ctx.slot(opt._accumulators) + ctx.constant(opt.epsilon))


class _SGD(_Rule):
    def momentum_type(self, opt):
        if opt.momentum == 0:
            return thresholds.NONE, 0.0
        kind = thresholds.NESTEROV if opt.nesterov else thresholds.HEAVY_BALL
        return kind, _scalar(opt.momentum)

    def u_needs_gradient(self, opt):
        return opt.momentum == 0 or bool(opt.nesterov)

    def preconditioner(self, ctx):
        return ops.ones(ctx.variable.shape, ctx.dtype)

    def momentum(self, ctx):
        opt = ctx.optimizer
        if opt.momentum == 0:
            return ctx.gradient
        heavy_ball = -ctx.slot(opt.momentums) / ctx.eta
        if opt.nesterov:
            return ctx.gradient + ctx.constant(opt.momentum) * heavy_ball
        return heavy_ball


class _Adafactor(_Rule):
    def p_needs_gradient(self, opt):
        return True

    def preconditioner(self, ctx):
        opt = ctx.optimizer
        v = ctx.slot(opt._v)
        normalized = ctx.gradient / ops.sqrt(v)
        clip = ops.maximum(ctx.constant(1.0), _rms(normalized) / ctx.constant(opt.clip_threshold))
        clipped = normalized / clip
        rho = ops.minimum(ctx.eta, 1.0 / ops.sqrt(ctx.t))
        # s = max(ε2, RMS(x_{t-1})) from x_t = x_{t-1} - ρ s û.
        scale = ops.maximum(ctx.constant(opt.epsilon_2), _norm_before_step(ctx.value(), clipped, rho, ops.mean))
        return ctx.eta * ops.sqrt(v) * clip / (rho * scale)


def _norm_before_step(x, direction, step, reduce):
    """s > 0 with x = x_prev - step · s · direction and s² = reduce(x_prev²): the norm before a step it scaled.

    reduce(x + step s d)² = s² is (1 - step²C) s² - 2 step B s - A = 0 with
    A = reduce(x²), B = reduce(x d), C = reduce(d²); its positive root, in
    the form without cancellation. Adafactor scales by RMS(x_prev) (reduce =
    mean), Lamb by ‖x_prev‖ (reduce = sum).
    """
    a = reduce(ops.square(x))
    rb = step * reduce(x * direction)
    q = 1.0 - ops.square(step) * reduce(ops.square(direction))
    d = ops.sqrt(ops.square(rb) + q * a)
    return ops.where(rb >= 0, (rb + d) / q, a / (d - rb))


class _Adamax(_Adam):
    """x_t = x_(t-1) - η m / ((1 - β1^t)(u + ε)), u = max(β2 u, |g|): P = (1 - β1^t)(u + ε); Adam's u and threshold."""

    def second_moment(self, opt):  # an infinity norm, not a power of an average of g²
        return SecondMoment(SecondMoment.NONE)

    def preconditioner(self, ctx):
        opt = ctx.optimizer
        beta_1_power = ops.power(ctx.constant(opt.beta_1), ctx.t)
        return (1.0 - beta_1_power) * (ctx.slot(opt._u) + ctx.constant(opt.epsilon))

    def momentum(self, ctx):
        return ctx.slot(ctx.optimizer._m)


class _Adadelta(_Rule):
    """x_t = x_(t-1) - η √(D_(t-1) + ε) / √(G_t + ε) g: P = √(G_t + ε) / √(D_(t-1) + ε), u = g.

    G is the EMA of g², D that of the squared steps, which the update writes
    after the step; D_(t-1) is recovered from D_t = ρ D_(t-1) + (1 - ρ) δ²
    with δ² = (D_(t-1) + ε) g² / (G_t + ε), linear in D_(t-1).
    """

    def p_needs_gradient(self, opt):
        return True

    def preconditioner(self, ctx):
        opt = ctx.optimizer
        rho, epsilon = ctx.constant(opt.rho), ctx.constant(opt.epsilon)
        accumulated = ctx.slot(opt._accumulated_grads) + epsilon
        ratio = ops.square(ctx.gradient) / accumulated
        previous = (ctx.slot(opt._accumulated_delta_vars) - (1.0 - rho) * epsilon * ratio) / (rho + (1.0 - rho) * ratio)
        return ops.sqrt(accumulated) / ops.sqrt(ops.maximum(previous, 0.0) + epsilon)


class _Lamb(_Adam):
    """x_t = x_(t-1) - η r_t m / ((1 - β1^t)(√v̂ + ε)) with Lamb's trust ratio r_t = ‖x_(t-1)‖ / ‖m̂ / (√v̂ + ε)‖.

    P = (1 - β1^t)(√v̂ + ε) / r_t, one scale per variable; Adam's u = m and threshold. ‖x_(t-1)‖
    is recovered from x_t (the norm before a step it scaled); Keras's ratio
    is 1 where x_(t-1) = 0 (a zero-initialized bias at the first step),
    recognized by x_t = -η m̂ / (√v̂ + ε).
    """

    def second_moment(self, opt):  # scaled per variable by the trust ratio
        return SecondMoment(SecondMoment.NONE)

    def preconditioner(self, ctx):
        opt = ctx.optimizer
        beta_1_power = ops.power(ctx.constant(opt.beta_1), ctx.t)
        beta_2_power = ops.power(ctx.constant(opt.beta_2), ctx.t)
        denominator = ops.sqrt(ctx.slot(opt._velocities) / (1.0 - beta_2_power)) + ctx.constant(opt.epsilon)
        update = ctx.slot(opt._momentums) / (1.0 - beta_1_power) / denominator
        update_norm = ops.sqrt(ops.sum(ops.square(update)))
        x = ctx.value()
        previous = _norm_before_step(x, update / update_norm, ctx.eta, ops.sum)
        from_zero = ops.sqrt(ops.sum(ops.square(x + ctx.eta * update))) <= 1e-6 * ops.sqrt(ops.sum(ops.square(x)))
        ratio = ops.where(ops.logical_or(from_zero, ops.logical_not(update_norm > 0)), 1.0, previous / update_norm)
        return (1.0 - beta_1_power) * denominator / ratio


_RULES = {
    keras.optimizers.Adam: _Adam(),
    keras.optimizers.AdamW: _Adam(),
    keras.optimizers.Nadam: _Nadam(),
    keras.optimizers.RMSprop: _RMSprop(),
    keras.optimizers.Adagrad: _Adagrad(),
    keras.optimizers.Adafactor: _Adafactor(),
    keras.optimizers.SGD: _SGD(),
    keras.optimizers.Adamax: _Adamax(),
    keras.optimizers.Adadelta: _Adadelta(),
    keras.optimizers.Lamb: _Lamb(),
}

# Keras optimizers whose step is not -η P⁻¹ u with a diagonal P, and why: said instead of a number.


_NO_DIAGONAL_P = {
    keras.optimizers.Lion: "its step is η · sign(c) of an interpolation c of momentum and gradient: a sign, "
    "not a division by a preconditioner (sign descent has no P; the tf_adaptive sign "
    "methods state their own convention)",
    keras.optimizers.Muon: "its step on matrices is the orthogonalized momentum (Newton-Schulz), a whole-matrix "
    "map, not a per-coordinate division",
    keras.optimizers.Ftrl: "it sets the weights from accumulated sums (FTRL-proximal, dual averaging), not by a "
    "preconditioned step from the previous weights",
    keras.optimizers.ScheduleFreeAdamW: "its weights are an interpolation of an averaged and a base sequence; "
    "only the base sequence takes a preconditioned step, not the weights",
}


def _rule(optimizer, function):
    cls = type(optimizer)
    if cls not in _RULES and cls.__module__.startswith("keras.src.backend."):
        # Keras's own backend-specific subclass of a Keras class (on torch, `keras.optimizers.Adam`
        # builds a fused `torch_adam.Adam`): the same update rule, the same state.
        cls = next((base for base in cls.__mro__[1:] if base in _RULES or base in _NO_DIAGONAL_P), cls)
    rule = _RULES.get(cls)
    if rule is None:
        reason = _NO_DIAGONAL_P.get(cls)
        if reason is not None:
            raise TypeError(
                f"`{function}` does not apply to keras.optimizers.{cls.__name__}: {reason}. {_SUPPORTED_MESSAGE}"
            )
        raise _unsupported(optimizer, function)
    return rule


def _per_variable(optimizer, variables, gradients, function, needs_gradient, compute, at_start):
    """Shared driver of `preconditioner_of` and `momentum_of` for Keras optimizers."""
    variables = list(variables)
    if not optimizer.built:
        raise _not_built(optimizer)
    gradients = _gradient_list(gradients, variables)
    if gradients is None and needs_gradient and not _known_to_be_first_step(optimizer):
        raise ValueError(
            f"`{function}` needs `gradients` for {type(optimizer).__name__} "
            "with this configuration: its update uses the gradient g_t "
            "itself, which the optimizer does not store. Pass the gradients "
            "of the most recent update, as the update rule received them "
            "(after loss-scale division, clipping and gradient-accumulation "
            "averaging, if any)."
        )
    if gradients is None:
        gradients = [None] * len(variables)

    started = ops.greater(_completed_updates(optimizer), 0)
    results = []
    for variable, gradient in zip(variables, gradients):
        ctx = _Context(optimizer, variable, gradient)
        if needs_gradient and gradient is None:  # t = 0, known eagerly
            results.append(at_start(variable.shape, ctx.dtype))
            continue
        value = ops.broadcast_to(ops.cast(compute(ctx), ctx.dtype), variable.shape)
        results.append(ops.where(started, value, at_start(variable.shape, ctx.dtype)))
    return results
