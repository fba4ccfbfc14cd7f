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
  rule and slots): Adam, AdamW, Nadam, RMSprop, Adagrad, Adafactor, SGD,
  Adamax, Adadelta and Lamb. The tables of `preconditioner_of`, `momentum_of`,
  `second_moment_of` and `stability_threshold_of` give their P_t, u_t, second
  moment and threshold; the rules, each read off the Keras update rule with
  its derivation, are in the private module `_keras.py` beside this one.
  Lion, Muon, Ftrl and ScheduleFreeAdamW take no step of the form -η P⁻¹u
  with a diagonal P: the functions raise a `TypeError` that says why.

`preconditioner_of`, `momentum_of`, `stability_threshold_of` and
`second_moment_of` read an optimizer in one order (`_dispatch`): a
LossScaleOptimizer is unwrapped, a MultiOptimizer is read per sub-optimizer,
an object with the protocol is delegated to, and a Keras class goes to its
rule.

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
  of its table (thresholds: none 2/η, heavy ball (2+2β)/η, Nesterov
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

from keras import ops

from analysis_tools.preconditioners._common import (
    _SUPPORTED_MESSAGE,
    _gradient_list,
    _has_protocol,
    _last_learning_rate,
    _scalar,
)
from analysis_tools.preconditioners._keras import _per_variable, _rule
from analysis_tools.preconditioners._multi import (
    _blocks,
    _by_sub_optimizer,
    _is_multi,
    _leaves,
    _sub_optimizers,
    _unwrap,
)
from tf_adaptive import SecondMoment, thresholds

__all__ = [
    "clipped_fraction_of",
    "last_learning_rate_of",
    "momentum_of",
    "preconditioner_of",
    "second_moment_of",
    "stability_threshold_of",
]


def _dispatch(optimizer, function, multi, protocol, keras_rule):
    """Reads `optimizer` the one way the readings of P, u, the threshold and the second moment do.

    (`last_learning_rate_of` and `clipped_fraction_of` need no per-class rule:
    they unwrap and split a MultiOptimizer themselves.)

    A LossScaleOptimizer is unwrapped; then `multi(optimizer)` for a
    MultiOptimizer, `protocol(optimizer)` for an object with the tf_adaptive
    protocol, and `keras_rule(optimizer, rule)` for a supported Keras class
    (`function`, the public name, goes into the error for any other).
    """
    optimizer = _unwrap(optimizer)
    if _is_multi(optimizer):
        return multi(optimizer)
    if _has_protocol(optimizer):
        return protocol(optimizer)
    return keras_rule(optimizer, _rule(optimizer, function))


def _read_per_variable(function, optimizer, variables, gradients, protocol, needs_gradient, compute, at_start):
    """`_dispatch` for a reading with one tensor per variable (`preconditioner_of`, `momentum_of`).

    `protocol(optimizer, variables)` reads a protocol object;
    `needs_gradient(rule, optimizer)` says whether a Keras class's rule needs
    the gradients, `compute` names the rule's method and `at_start` gives the
    value before the first update.
    """
    variables = list(variables)
    return _dispatch(
        optimizer,
        function.__name__,
        multi=lambda multi: _by_sub_optimizer(multi, variables, gradients, function),
        protocol=lambda optimizer: protocol(optimizer, variables),
        keras_rule=lambda optimizer, rule: _per_variable(
            optimizer,
            variables,
            gradients,
            function.__name__,
            needs_gradient(rule, optimizer),
            getattr(rule, compute),
            at_start,
        ),
    )


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
            optimizer,
            variables,
            None,
            lambda sub, block, _: [_last_learning_rate(sub)] * len(block),
        )
    if variables is not None:
        return [_last_learning_rate(optimizer)] * len(list(variables))
    return _last_learning_rate(optimizer)


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

    def protocol(optimizer, variables):
        if not getattr(optimizer, "preconditioner_needs_gradient", False):
            return [optimizer.preconditioner(variable) for variable in variables]
        given = _gradient_list(gradients, variables) or [None] * len(variables)
        return [optimizer.preconditioner(variable, gradient) for variable, gradient in zip(variables, given)]

    return _read_per_variable(
        preconditioner_of,
        optimizer,
        variables,
        gradients,
        protocol,
        lambda rule, optimizer: rule.p_needs_gradient(optimizer),
        "preconditioner",
        ops.ones,
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

    def protocol(optimizer, variables):
        if not callable(getattr(optimizer, "momentum", None)):
            raise TypeError(
                f"`momentum_of` needs a `momentum(variable)` method on "
                f"{type(optimizer).__name__}, which has the preconditioner "
                f"protocol but no such method. {_SUPPORTED_MESSAGE}"
            )
        given = _gradient_list(gradients, variables)
        if given is None:
            return [optimizer.momentum(variable) for variable in variables]
        return [optimizer.momentum(v, g) for v, g in zip(variables, given)]

    return _read_per_variable(
        momentum_of,
        optimizer,
        variables,
        gradients,
        protocol,
        lambda rule, optimizer: rule.u_needs_gradient(optimizer),
        "momentum",
        ops.zeros,
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

    def multi(optimizer):
        optimizers = _sub_optimizers(optimizer)
        forms = {_frozen_form(sub) for sub in optimizers}
        if len(forms) != 1 or None in forms:
            return None
        values = [stability_threshold_of(sub) for sub in optimizers]
        return None if None in values else values[0]

    def protocol(optimizer):
        threshold = optimizer.stability_threshold()
        return None if threshold is None else float(threshold)

    def keras_rule(optimizer, rule):
        momentum_type, beta = rule.momentum_type(optimizer)
        return thresholds.stability_threshold(_scalar(optimizer.learning_rate), momentum_type, beta)

    return _dispatch(optimizer, "stability_threshold_of", multi, protocol, keras_rule)


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

    def multi(optimizer):
        moments = {second_moment_of(sub) for sub in _sub_optimizers(optimizer)}
        return moments.pop() if len(moments) == 1 else SecondMoment(SecondMoment.NONE)

    def protocol(optimizer):
        moment = getattr(optimizer, "second_moment", None)
        if moment is None:
            raise TypeError(
                f"`second_moment_of` needs a `second_moment` attribute on "
                f"{type(optimizer).__name__}, which has the preconditioner "
                f"protocol but no such attribute. {_SUPPORTED_MESSAGE}"
            )
        return moment

    return _dispatch(
        optimizer, "second_moment_of", multi, protocol, lambda optimizer, rule: rule.second_moment(optimizer)
    )


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
