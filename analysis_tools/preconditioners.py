"""The diagonal preconditioner, momentum and stability threshold of an optimizer.

Cohen et al., "Adaptive Gradient Methods at the Edge of Stability" (2022),
§2 and Appendix A, write every adaptive method as a preconditioned momentum
method,

    x_t = x_{t-1} - η_t · P_t⁻¹ · u_t,

with a diagonal preconditioner P_t and a momentum u_t, and show that the
method is unstable on a quadratic with Hessian H (P held fixed) once
λ1(P⁻¹H) exceeds a threshold set by η and the momentum type alone
(`tf_adaptive.thresholds`). This module reads P_t, u_t and the threshold off a
live optimizer:

* `preconditioner_of(optimizer, variables)`: P_t of the most recent update,
  one tensor per variable, of the variable's shape.
* `momentum_of(optimizer, variables)`: u_t of the most recent update.
* `last_learning_rate_of(optimizer, variables=None)`: η_t of the most
  recent update (the learning-rate schedule evaluated at the step that
  update used); with `variables`, one per variable.
* `stability_threshold_of(optimizer)`: the threshold on λ1(P⁻¹H) at the
  learning rate the next update will use, or ``None`` for a method without
  one (sign descent).
* `clipped_fraction_of(optimizer, variables)`: for a clipping method (ACClip,
  CClip, GClip), the fraction of coordinates its most recent update clipped;
  ``None`` for every other optimizer.
* `second_moment_of(optimizer)`: the optimizer's description of the second
  moment that P is a power of (a `tf_adaptive.SecondMoment`: a sum or an
  exponential average of g², its β2 and the power p), which
  `analysis_tools.updates.reference_law_of` reads.

so that the most recent update of every variable is, exactly up to floating
point rounding, ``x_t - x_{t-1} = -η_t · u_t / P_t`` (plus decoupled weight
decay, see below).

Supported optimizers
--------------------
* Any object with the tf_adaptive preconditioner protocol: callable
  ``preconditioner(variable)`` and ``stability_threshold()`` (and, for
  `momentum_of`, ``momentum(variable)``; for `second_moment_of`, a
  ``second_moment`` attribute). The functions delegate to it, so a new
  tf_adaptive optimizer needs no change here.
* `keras.optimizers.LossScaleOptimizer`: unwrapped (``inner_optimizer``).
* `keras.optimizers.MultiOptimizer` of supported sub-optimizers. It splits
  the variables into blocks B_1, ..., B_K and updates block B_k with its own
  sub-optimizer k, so each variable x ∈ B_k moves by
  x_t - x_{t-1} = -η_t^(k) · (P_t^(k))⁻¹ · u_t^(k), read off sub-optimizer k
  (its slots, its step count, its schedule): every per-variable function
  returns, for each variable, what it returns for that variable's
  sub-optimizer, and P of the whole network is block-diagonal,
  P = diag(P^(1), ..., P^(K)). One threshold bounds λ1(P⁻¹H) only where all
  sub-optimizers share their frozen form (see `stability_threshold_of`).
* Exactly these Keras classes (not subclasses, whose update rule may differ),
  and the backend-specific subclasses Keras builds for them itself (on
  PyTorch, `keras.optimizers.Adam(...)` is a fused `torch_adam.Adam`: the same
  rule and slots):

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

Conventions shared by all:

* **Before the first update** (t = 0) P = 1 and u = 0, as in the tf_adaptive
  protocol (no update has divided by anything yet).
* **Gradients.** Where u (or, for Adafactor, P) involves g itself, which the
  optimizer does not store, pass ``gradients``: the gradients of the most
  recent update as the update rule received them, that is after Keras's
  ``loss_scale_factor`` division (and a LossScaleOptimizer's unscaling), its
  ``clipnorm`` / ``clipvalue`` / ``global_clipnorm`` clipping and its
  gradient-accumulation averaging (the gradients passed to ``apply`` when none
  of these is configured). Without them these functions raise `ValueError`
  (except at t = 0).
* **Learning rate.** η_t is the optimizer's schedule evaluated at the step
  Keras used for the most recent update: the schedule reads ``iterations``
  *before* it is incremented, so after t updates (with
  ``gradient_accumulation_steps`` = k, after t·k ``apply`` calls) that is
  step t·k - 1. A plain float learning rate is its current value; a callable
  without arguments is called now. (The momenta -m/η of SGD and P·mom/η of
  RMSprop need η_t > 0.)
* **Weight decay** (the ``weight_decay`` argument, AdamW's by default) is
  decoupled in Keras: before the update, x ← x - η_t λ x. It is left out of P
  and u, which describe the gradient part only:
  x_t = (1 - η_t λ) x_{t-1} - η_t P_t⁻¹ u_t for every variable that is not
  excluded from weight decay. Variable constraints (applied after the update)
  and model-weight EMA overwrites are not part of the identity either.
* **Precision.** Everything is computed with `keras.ops` (any backend), in
  float32 for float16 / bfloat16 variables and in the variable's dtype
  otherwise.
* **Threshold.** `stability_threshold_of` uses the learning rate the next
  update will use (``optimizer.learning_rate``), as the tf_adaptive protocol
  does, and `tf_adaptive.thresholds.stability_threshold` with the momentum type
  of the table (thresholds: none 2/η, heavy ball (2+2β)/η, Nesterov
  (2+2β)/((1+2β)η), EMA heavy ball (2+2β)/((1-β)η), EMA Nesterov
  (2+2β)/((1-β)(1+2β)η)). It is the threshold of the frozen form (P held
  fixed), which a tf_adaptive optimizer's class docstring relates to the
  method itself: given (adaptive methods, which follow it while P changes
  slowly), that of the unclipped method (ACClip, CClip, GClip: it holds
  while `clipped_fraction_of` is 0), or none (sign descent, whose step has
  length η at any curvature: ``None``).

References: J. M. Cohen, B. Ghorbani, S. Krishnan, N. Agarwal, S. Medapati,
M. Badura, D. Suo, D. Cardoze, Z. Nado, G. E. Dahl, J. Gilmer, "Adaptive
Gradient Methods at the Edge of Stability", 2022, §2 and Appendix A;
T. Dozat, "Incorporating Nesterov Momentum into Adam", 2016 (Nadam);
N. Shazeer and M. Stern, "Adafactor: Adaptive Learning Rates with Sublinear
Memory Cost", ICML 2018.
"""

import math

import keras
from keras import ops

from tf_adaptive import SecondMoment, thresholds

__all__ = [
    "clipped_fraction_of",
    "last_learning_rate_of",
    "momentum_of",
    "preconditioner_of",
    "second_moment_of",
    "stability_threshold_of",
]

_LOW_PRECISION_DTYPES = ("float16", "bfloat16")

_SUPPORTED_MESSAGE = (
    "Supported: any optimizer with the tf_adaptive preconditioner protocol "
    "(callable `preconditioner(variable)` and `stability_threshold()`; "
    "`momentum(variable)` too for `momentum_of`), "
    "keras.optimizers.LossScaleOptimizer wrapping a supported optimizer, "
    "keras.optimizers.MultiOptimizer of supported sub-optimizers, and "
    "exactly these Keras optimizers (not subclasses): keras.optimizers.Adam "
    "(incl. amsgrad), AdamW, Nadam, RMSprop (incl. momentum and centered), "
    "Adagrad, Adafactor, SGD (incl. momentum and nesterov), Adamax, Adadelta, Lamb."
)


# ----------------------------------------------------------------- helpers
def _compute_dtype(variable):
    dtype = keras.backend.standardize_dtype(variable.dtype)
    return "float32" if dtype in _LOW_PRECISION_DTYPES else dtype


def _scalar(value):
    """A hyperparameter (float, tensor, variable, or a callable returning one) as a Python float."""
    if callable(value):
        value = value()
    return float(ops.convert_to_numpy(value))


def _unwrap(optimizer):
    while isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer
    return optimizer


def _is_multi(optimizer):
    return isinstance(optimizer, keras.optimizers.MultiOptimizer)


def _has_protocol(optimizer):
    return callable(getattr(optimizer, "preconditioner", None)) and callable(
        getattr(optimizer, "stability_threshold", None)
    )


def _unsupported(optimizer, function):
    return TypeError(
        f"`{function}` does not support {type(optimizer).__module__}."
        f"{type(optimizer).__name__}. {_SUPPORTED_MESSAGE}"
    )


def _not_built(optimizer):
    return ValueError(
        f"{type(optimizer).__name__} is not built yet: call "
        "`optimizer.build(variables)` or take a step first."
    )


def _unknown_variable(variable, optimizer):
    return ValueError(
        f"Variable {getattr(variable, 'name', variable)!r} is not one the "
        f"optimizer {optimizer.name!r} was built with."
    )


def _gradient_list(gradients, variables):
    """`gradients` as a list matching `variables` one to one, or None."""
    if gradients is None:
        return None
    gradients = list(gradients)
    if len(gradients) != len(variables):
        raise ValueError(
            f"`gradients` must match `variables` one to one: got "
            f"{len(gradients)} gradients for {len(variables)} variables."
        )
    return gradients


def _blocks(multi, variables):
    """[(sub-optimizer k, the positions in `variables` of block B_k)] of a MultiOptimizer."""
    if not multi.built:
        raise _not_built(multi)
    blocks = {}
    for position, variable in enumerate(variables):
        index = multi._var_to_optimizer_idx.get(multi._var_key(variable))
        if index is None:
            raise _unknown_variable(variable, multi)
        blocks.setdefault(index, []).append(position)
    return [(multi.optimizers[index], positions) for index, positions in blocks.items()]


def _by_sub_optimizer(multi, variables, gradients, function):
    """`function(sub-optimizer, its variables, their gradients)` per block, in the caller's order."""
    variables = list(variables)
    gradients = _gradient_list(gradients, variables)
    results = [None] * len(variables)
    for optimizer, positions in _blocks(multi, variables):
        block_gradients = None if gradients is None else [gradients[i] for i in positions]
        values = function(optimizer, [variables[i] for i in positions], block_gradients)
        for position, value in zip(positions, values):
            results[position] = value
    return results


def _sub_optimizers(multi):
    """The sub-optimizers of a MultiOptimizer that update a variable (unbuilt: all it lists)."""
    if multi.built:
        indices = sorted(set(multi._var_to_optimizer_idx.values()))
        optimizers = [multi.optimizers[index] for index in indices]
    else:
        optimizers = list(multi.optimizers)
    if not optimizers:  # a callable optimizer map names them at build
        raise _not_built(multi)
    return optimizers


def _completed_updates(optimizer):
    """t, the number of updates applied so far (an integer tensor)."""
    return optimizer.iterations


def _known_to_be_first_step(optimizer):
    """True if eagerly readable and no update has been applied yet."""
    try:
        return int(ops.convert_to_numpy(_completed_updates(optimizer))) == 0
    except Exception:  # symbolic (traced) step count: unknown
        return False


def _dense(gradient, variable, dtype):
    gradient = ops.cast(gradient, dtype)
    if hasattr(gradient, "indices"):  # IndexedSlices: densify
        gradient = ops.add(ops.zeros(variable.shape, dtype), gradient)
    return gradient


def _rms(x):
    return ops.sqrt(ops.mean(ops.square(x)))


def last_learning_rate_of(optimizer, variables=None):
    """η_t, the learning rate of the most recent update (a scalar tensor or float).

    Keras evaluates a `keras.optimizers.schedules.LearningRateSchedule` at
    ``iterations`` before incrementing it, so the update that made
    ``iterations`` equal to t used the schedule at step t - 1 (at step
    t·k - 1 with ``gradient_accumulation_steps`` = k, since the schedule reads
    the raw count of ``apply`` calls). Before the first update this is the
    schedule at step 0. A float learning rate (a variable) is its current
    value and a callable without arguments is called now: neither keeps a
    history. A LossScaleOptimizer is unwrapped.

    This is the η of the identity x_t - x_{t-1} = -η_t P_t⁻¹ u_t of
    `preconditioner_of` and `momentum_of` (Cohen et al. 2022, §2).

    With `variables`, a list with the η_t of each variable's update: the
    same η_t for each, except for a `keras.optimizers.MultiOptimizer`, where
    it is η_t^(k) of the sub-optimizer k that updates the variable. A
    MultiOptimizer has no single η_t (like Keras, which refuses its
    ``learning_rate``), so it needs `variables`.

    Raises:
        ValueError: for a MultiOptimizer, without `variables`, before it is
            built, or with a variable it was not built with.
    """
    optimizer = _unwrap(optimizer)
    if _is_multi(optimizer):
        if variables is None:
            raise ValueError(
                "A MultiOptimizer has one learning rate per sub-optimizer: pass "
                "`variables` to get the η_t of each variable's sub-optimizer."
            )
        return _by_sub_optimizer(
            optimizer, variables, None,
            lambda sub, block, _: [_last_learning_rate(sub)] * len(block),
        )
    if variables is not None:
        return [_last_learning_rate(optimizer)] * len(list(variables))
    return _last_learning_rate(optimizer)


def _last_learning_rate(optimizer):
    learning_rate = getattr(optimizer, "_learning_rate", None)
    if learning_rate is None:
        return optimizer.learning_rate
    if isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        steps = getattr(optimizer, "gradient_accumulation_steps", None) or 1
        step = ops.maximum(_completed_updates(optimizer) * steps - 1, 0)
        return learning_rate(step)
    if isinstance(learning_rate, keras.Variable):
        return learning_rate.value
    if callable(learning_rate):
        return learning_rate()
    return learning_rate


# ------------------------------------------------------- per-optimizer rules
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
        clip = ops.maximum(
            ctx.constant(1.0), _rms(normalized) / ctx.constant(opt.clip_threshold)
        )
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
            raise TypeError(f"`{function}` does not apply to keras.optimizers.{cls.__name__}: {reason}. "
                            f"{_SUPPORTED_MESSAGE}")
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


# ------------------------------------------------------------------ public
def preconditioner_of(optimizer, variables, gradients=None):
    """The diagonal preconditioner P_t of the most recent update, per variable.

    P_t is what the update divided by: the most recent update of each variable
    is x_t - x_{t-1} = -η_t · P_t⁻¹ · u_t (plus Keras's decoupled weight decay
    -η_t λ x_{t-1}, which P leaves out), with u_t = `momentum_of` and
    η_t = `last_learning_rate_of` (Cohen et al. 2022, §2 and Appendix A).
    Per optimizer (t = updates so far, slots after the update):

    | optimizer           | P_t                                                  |
    |---------------------|------------------------------------------------------|
    | SGD (any momentum)  | 1                                                    |
    | Adam, AdamW         | (1-β1^t) / sqrt(1-β2^t) · (sqrt(v) + ε)  (amsgrad: v̂)  |
    | Nadam               | (sqrt(v / (1-β2^t)) + ε) / (a + b)                    |
    | RMSprop             | sqrt(v + ε)  (centered: sqrt(v - ḡ² + ε))             |
    | Adagrad             | sqrt(A_0 + Σ g² + ε),  A_0 = initial_accumulator_value |
    | Adafactor           | η · sqrt(v) · c / (ρ · max(ε2, RMS(x_{t-1})))         |
    | Adamax              | (1-β1^t) · (u + ε),  u = max(β2 u, abs(g))            |
    | Adadelta            | sqrt(G_t + ε) / sqrt(D_{t-1} + ε)  (u = g)            |
    | Lamb                | (1-β1^t) · (sqrt(v̂) + ε) / r_t, r_t the trust ratio  |

    with Nadam's a = μ_{t+1}/(1-Π_{t+1}), b = (1-μ_t)/(1-Π_t) and Adafactor's
    ρ = min(η, 1/sqrt(t)) and clipping factor
    c = max(1, RMS(g/sqrt(v)) / clip_threshold) (see the module docstring).
    Lion, Muon, Ftrl and ScheduleFreeAdamW have no such P: a TypeError says
    why. Before the first update P = 1. For a `keras.optimizers.MultiOptimizer`,
    each variable's P is that of the sub-optimizer k that updates it,
    P_t^(k) (its slots, its t), so that P of the whole network is
    diag(P^(1), ..., P^(K)) over the blocks B_k of the sub-optimizers.

    Args:
        optimizer: a tf_adaptive optimizer or any object with the
            preconditioner protocol (delegated to), a supported Keras
            optimizer, a `keras.optimizers.MultiOptimizer` of those, or a
            `keras.optimizers.LossScaleOptimizer` of one.
        variables: the model variables (those the optimizer was built with).
        gradients: the gradients of the most recent update, as the update rule
            received them; needed for Adafactor only (ignored otherwise).

    Returns:
        A list with one tensor per variable, of its shape, in float32 for
        float16/bfloat16 variables and in the variable's dtype otherwise.

    Raises:
        TypeError: for an unsupported optimizer (the message lists the
            supported ones).
        ValueError: if the optimizer is not built, a variable is unknown to
            it, or Adafactor's `gradients` are missing after the first update.
    """
    optimizer = _unwrap(optimizer)
    if _is_multi(optimizer):
        return _by_sub_optimizer(optimizer, variables, gradients, preconditioner_of)
    if _has_protocol(optimizer):
        if not getattr(optimizer, "preconditioner_needs_gradient", False):
            return [optimizer.preconditioner(variable) for variable in variables]
        variables = list(variables)
        gradients = _gradient_list(gradients, variables) or [None] * len(variables)
        return [optimizer.preconditioner(variable, gradient) for variable, gradient in zip(variables, gradients)]
    rule = _rule(optimizer, "preconditioner_of")
    return _per_variable(
        optimizer, variables, gradients, "preconditioner_of",
        rule.p_needs_gradient(optimizer), rule.preconditioner, ops.ones,
    )


def momentum_of(optimizer, variables, gradients=None):
    """The momentum u_t of the most recent update, per variable.

    u_t is what the update applied P_t⁻¹ to:
    x_t - x_{t-1} = -η_t · P_t⁻¹ · u_t (Cohen et al. 2022, §2), with P_t =
    `preconditioner_of` and η_t = `last_learning_rate_of`. Per optimizer
    (slots after the update, g the gradient of the update):

    | optimizer                 | u_t                                     | recurrence (η, P frozen)       |
    |---------------------------|-----------------------------------------|--------------------------------|
    | SGD μ = 0, RMSprop μ = 0, Adagrad, Adafactor | g                    | none                           |
    | SGD μ > 0                 | -m / η  (Keras velocity m = μ m - η g)   | u ← μ u + g                    |
    | SGD μ > 0, nesterov       | g - μ m / η                              | Nesterov on u ← μ u + g        |
    | Adam, AdamW               | m                                       | m ← β1 m + (1-β1) g            |
    | Nadam                     | (a m + b g) / (a + b)                    | EMA Nesterov, β̃ = a/(a+b) → β1 |
    | RMSprop μ > 0             | P · mom / η  (Keras mom = μ mom + η g/P) | u ← μ u + g                    |

    Before the first update u = 0. For a tf_adaptive optimizer this delegates
    to its ``momentum(variable, gradient)`` method (see each class docstring
    for its u_t); for a `keras.optimizers.MultiOptimizer`, each variable's u
    is u_t^(k) of the sub-optimizer k that updates it.

    Args:
        optimizer: as for `preconditioner_of`.
        variables: the model variables.
        gradients: the gradients of the most recent update, as the update rule
            received them (after loss-scale division, clipping and
            gradient-accumulation averaging). Needed wherever u contains g:
            Keras's SGD without momentum or with nesterov, RMSprop without
            momentum, Adagrad, Adafactor and Nadam, and the tf_adaptive
            optimizers whose ``momentum_needs_gradient`` is true (RMSProp,
            Adagrad, SVAG, Nadam, Nesterov, HeavyBall at β = 0, Adafactor at
            β1 = 0); ignored otherwise.

    Returns:
        A list with one tensor per variable, of its shape, in float32 for
        float16/bfloat16 variables and in the variable's dtype otherwise.

    Raises:
        TypeError: for an unsupported optimizer, or a protocol optimizer
            without a ``momentum(variable)`` method.
        ValueError: if the optimizer is not built, a variable is unknown to
            it, or needed `gradients` are missing after the first update.
    """
    optimizer = _unwrap(optimizer)
    if _is_multi(optimizer):
        return _by_sub_optimizer(optimizer, variables, gradients, momentum_of)
    if _has_protocol(optimizer):
        if not callable(getattr(optimizer, "momentum", None)):
            raise TypeError(
                f"`momentum_of` needs a `momentum(variable)` method on "
                f"{type(optimizer).__name__}, which has the preconditioner "
                f"protocol but no such method. {_SUPPORTED_MESSAGE}"
            )
        variables = list(variables)
        gradients = _gradient_list(gradients, variables)
        if gradients is None:
            return [optimizer.momentum(variable) for variable in variables]
        return [optimizer.momentum(v, g) for v, g in zip(variables, gradients)]
    rule = _rule(optimizer, "momentum_of")
    return _per_variable(
        optimizer, variables, gradients, "momentum_of",
        rule.u_needs_gradient(optimizer), rule.momentum, ops.zeros,
    )


def stability_threshold_of(optimizer):
    """The stability threshold on λ1(P⁻¹H) at the optimizer's current learning rate.

    Cohen et al. 2022, §2 and Appendix A: on a quadratic with Hessian H and P
    held fixed, the method diverges once λ1(P⁻¹H) exceeds this value. It is
    `tf_adaptive.thresholds.stability_threshold(η, type, β)` with η =
    ``optimizer.learning_rate`` (the learning rate of the *next* update, as in
    the tf_adaptive protocol) and:

    | optimizer                        | momentum type     | β   | threshold                |
    |----------------------------------|-------------------|-----|--------------------------|
    | SGD μ = 0, RMSprop μ = 0, Adagrad, Adafactor | none  | -   | 2/η                      |
    | SGD μ > 0, RMSprop μ > 0         | heavy ball        | μ   | (2+2μ)/η                 |
    | SGD μ > 0, nesterov              | Nesterov          | μ   | (2+2μ)/((1+2μ)η)         |
    | Adam, AdamW (incl. amsgrad)      | EMA heavy ball    | β1  | (2+2β1)/((1-β1)η) = 38/η at β1 = 0.9 |
    | Nadam                            | EMA Nesterov      | β1  | (2+2β1)/((1-β1)(1+2β1)η) |

    Objects with the tf_adaptive protocol are delegated to; a
    LossScaleOptimizer is unwrapped. Evaluate it eagerly.

    The threshold is that of the frozen form, P held fixed. Where no frozen
    form describes the method the protocol returns ``None``, and so does
    this function: sign descent (tf_adaptive's SSD and M-SSD) moves every
    coordinate by η whatever the curvature and stays bounded on any
    quadratic, and its λ1(P⁻¹H) with P = |m_t| tracks the distance to the
    minimum, not a stability margin. Callers that divide by the threshold
    must skip ``None``. For the clipping methods (ACClip, CClip, GClip) it is
    the threshold of the unclipped method (P = 1), which describes them while
    nothing is clipped: read it with `clipped_fraction_of`.

    A `keras.optimizers.MultiOptimizer` updates block B_k of the variables
    with sub-optimizer k, whose frozen form has its own momentum type, β_k
    and η_k. If all of them share the momentum type, β and η (a momentum
    with β = 0 counts as none: every form is then gradient descent), the
    whole network follows one frozen recurrence of the table's form with
    P = diag(P^(1), ..., P^(K)), and its threshold on λ1(P⁻¹H) is theirs,
    which this returns (the sub-optimizers may still differ in what shapes
    P alone: β2, ε, the power, ...). Otherwise it returns ``None``: no single
    threshold bounds λ1(P⁻¹H), since the blocks follow different recurrences
    coupled through the off-diagonal blocks of H (with a common type and β
    but different η_k, the common threshold at η_1 bounds λ1(P̃⁻¹H) with
    P̃ = diag(η_1/η_k · P^(k)), not λ1(P⁻¹H)). ``None`` also where a
    sub-optimizer has no threshold (sign descent) or does not name its
    ``momentum_type`` (a protocol object other than a tf_adaptive
    optimizer). The sub-optimizers compared are those that update a
    variable (before the MultiOptimizer is built, all that it lists).

    Returns:
        A Python float, or ``None`` for a method without a threshold, or a
        MultiOptimizer whose sub-optimizers differ in momentum type, β or η.

    Raises:
        TypeError: for an unsupported optimizer (the message lists the
            supported ones).
        ValueError: for a MultiOptimizer that is not built and names no
            sub-optimizer yet (a callable optimizer map).
    """
    optimizer = _unwrap(optimizer)
    if _is_multi(optimizer):
        optimizers = _sub_optimizers(optimizer)
        forms = {_frozen_form(sub) for sub in optimizers}
        if len(forms) != 1 or None in forms:
            return None
        values = [stability_threshold_of(sub) for sub in optimizers]
        return None if None in values else values[0]
    if _has_protocol(optimizer):
        threshold = optimizer.stability_threshold()
        return None if threshold is None else float(threshold)
    rule = _rule(optimizer, "stability_threshold_of")
    momentum_type, beta = rule.momentum_type(optimizer)
    learning_rate = _scalar(optimizer.learning_rate)
    return thresholds.stability_threshold(learning_rate, momentum_type, beta)


def _frozen_form(optimizer):
    """(momentum type, β, η) of the frozen form whose threshold `stability_threshold_of` gives.

    With β = 0 every momentum type is gradient descent (every threshold is
    2/η), so it reads as type none. ``None`` for a protocol object without a
    ``momentum_type``.
    """
    if _has_protocol(optimizer):
        momentum_type = getattr(optimizer, "momentum_type", None)
        if momentum_type is None:
            return None
        name = getattr(optimizer, "momentum_coefficient_name", None)
        beta = 0.0 if name is None else _scalar(getattr(optimizer, name))
    else:
        momentum_type, beta = _rule(optimizer, "stability_threshold_of").momentum_type(optimizer)
    if beta == 0.0:
        momentum_type = thresholds.NONE
    return momentum_type, beta, _scalar(optimizer.learning_rate)


def clipped_fraction_of(optimizer, variables):
    """The fraction of the coordinates of `variables` that the most recent update clipped.

    For an optimizer with a ``clipped_fraction(variables)`` method (the
    tf_adaptive clipping methods ACClip, CClip and GClip), its value as a
    Python float: 0 when nothing was clipped, so that P = 1 and their
    `stability_threshold_of` (that of the unclipped method, Cohen et al.
    2022, §2) applies to λ1(P⁻¹H) = λ1(H); GClip clips all coordinates or
    none. ``None`` for every other optimizer (Keras's gradient clipping,
    ``clipnorm`` and the like, acts before the update rule and is not
    counted). A LossScaleOptimizer is unwrapped. Evaluate it eagerly.

    For a `keras.optimizers.MultiOptimizer`, the fraction over all of
    `variables`, Σ_k f_k n_k / Σ_k n_k, with n_k the coordinates of
    `variables` in block B_k and f_k the fraction that sub-optimizer k
    clipped (0 for a sub-optimizer that does not clip); ``None`` if no
    sub-optimizer of `variables` clips.
    """
    optimizer = _unwrap(optimizer)
    if _is_multi(optimizer):
        variables = list(variables)
        fractions, sizes = [], []
        for sub, positions in _blocks(optimizer, variables):
            block = [variables[i] for i in positions]
            fractions.append(clipped_fraction_of(sub, block))
            sizes.append(sum(math.prod(variable.shape) for variable in block))
        if all(fraction is None for fraction in fractions):
            return None
        clipped = sum(0.0 if f is None else f * n for f, n in zip(fractions, sizes))
        return clipped / sum(sizes)
    if not callable(getattr(optimizer, "clipped_fraction", None)):
        return None
    return float(ops.convert_to_numpy(optimizer.clipped_fraction(list(variables))))


def second_moment_of(optimizer):
    """The second moment that the optimizer's preconditioner is a power of.

    A `tf_adaptive.SecondMoment(form, beta, power)`: P_t ∝ ν_t^p (up to ε and
    bias corrections) with ν_t a sum Σ g² (``form="sum"``) or an exponential
    average v ← β v + (1-β) g² (``form="ema"``, its running maximum for
    AMSGrad), or ``form="none"`` where P is not a power of such a moment
    (momentum, clipping, sign and variance-adapted methods, Adafactor's
    factored estimate). Per optimizer:

    | optimizer                                  | form  | β       | p   |
    |--------------------------------------------|-------|---------|-----|
    | Adam, AdamW (incl. amsgrad), Nadam         | ema   | beta_2  | 1/2 |
    | RMSprop (not centered)                     | ema   | rho     | 1/2 |
    | Adagrad                                    | sum   | -       | 1/2 |
    | RMSprop centered, SGD, Adafactor, Adamax,  | none  | -       | -   |
    | Adadelta, Lamb                             |       |         |     |

    A tf_adaptive optimizer describes itself (its ``second_moment``); a
    LossScaleOptimizer is unwrapped. `analysis_tools.updates.reference_law_of` reads
    this to choose Zhang and Ziyin's reference law. A
    `keras.optimizers.MultiOptimizer` gives its sub-optimizers' description
    where they all give the same one, and ``form="none"`` otherwise (no one
    ν_t that P is a power of); the sub-optimizers are those of
    `stability_threshold_of`.

    Raises:
        TypeError: for an unsupported optimizer (the message lists the
            supported ones).
        ValueError: for a MultiOptimizer that is not built and names no
            sub-optimizer yet (a callable optimizer map).
    """
    optimizer = _unwrap(optimizer)
    if _is_multi(optimizer):
        moments = {second_moment_of(sub) for sub in _sub_optimizers(optimizer)}
        return moments.pop() if len(moments) == 1 else SecondMoment(SecondMoment.NONE)
    if _has_protocol(optimizer):
        moment = getattr(optimizer, "second_moment", None)
        if moment is None:
            raise TypeError(
                f"`second_moment_of` needs a `second_moment` attribute on "
                f"{type(optimizer).__name__}, which has the preconditioner "
                f"protocol but no such attribute. {_SUPPORTED_MESSAGE}"
            )
        return moment
    return _rule(optimizer, "second_moment_of").second_moment(optimizer)


def _leaves(optimizer):
    """The optimizers that make the updates: `optimizer`, or every sub-optimizer a MultiOptimizer lists (unwrapped)."""
    optimizer = _unwrap(optimizer)
    return [_unwrap(sub) for sub in optimizer.optimizers] if _is_multi(optimizer) else [optimizer]


def preconditioner_unavailable(optimizer):
    """Why `preconditioner_of` cannot read a P from `optimizer` (a sentence), or None where it can.

    Decided from the optimizer's type alone, so it can be asked before the
    optimizer is built (a MultiOptimizer's sub-optimizers are all checked).
    """
    for candidate in _leaves(optimizer):
        if _has_protocol(candidate):
            continue
        try:
            _rule(candidate, "preconditioner_of")
        except TypeError as error:
            return str(error)
    return None


def preconditioner_needs_gradients(optimizer):
    """Whether `preconditioner_of` needs the gradients of the latest update to read this optimizer's P.

    True where P is made of the gradient itself, which the optimizer does not
    keep: SSD (P = |g_t|) and Keras's Adafactor. For a MultiOptimizer, where
    any sub-optimizer's P does. An optimizer whose P cannot be read at all
    (see `preconditioner_unavailable`) needs none.
    """
    for candidate in _leaves(optimizer):
        if _has_protocol(candidate):
            if getattr(candidate, "preconditioner_needs_gradient", False):
                return True
            continue
        try:
            rule = _rule(candidate, "preconditioner_of")
        except TypeError:
            continue
        if rule.p_needs_gradient(candidate):
            return True
    return False

