"""What every tf_adaptive optimizer shares.

* `PreconditionedOptimizer`, the base class. It implements the
  **preconditioner protocol** that `analysis_tools` reads:

  - ``preconditioner(variable)``: the diagonal P_t of the most recent update,
    written so that the update reads x_t = x_{t-1} - η P_t⁻¹ u_t for the
    method's own momentum u_t (its gradient, for methods without momentum).
    For non-linear methods (clipping, sign, variance adaptation) P_t is the
    *effective* preconditioner: the element-wise ratio u_t / (applied step / η).
    Before the first update, P_0 = 1 (no update has divided by anything yet).
  - ``momentum(variable)``: that u_t, so that the most recent update is
    exactly x_t - x_{t-1} = -η_t P_t⁻¹ u_t (decoupled weight decay aside).
    Before the first update, u_0 = 0.
  - ``second_moment``: a `SecondMoment`, how P_t depends on a second moment
    of the gradient (P_t ∝ ν_t^p), so that analysis code reads it off the
    optimizer instead of keeping a table of classes.
  - ``stability_threshold()``: the largest stable λ1(P⁻¹H) at the current
    learning rate, from `tf_adaptive.thresholds` and the method's momentum type,
    where the frozen-P linear analysis applies; ``None`` where it does not
    (sign descent). Clipping methods give the threshold of their unclipped
    form and also have ``clipped_fraction(variables)``.

* Float32 coefficient helpers. Keras's own optimizers cast β and the step
  count to the variable's dtype; in bfloat16 0.999 rounds to 1 and Adam's
  update vanishes. Here every coefficient, and the update itself, is computed
  in float32 for float16/bfloat16 variables (`compute_dtype`), and only the
  results are cast back when they are stored.

* The shared pieces of the Adam-like updates: `root`, `moment_corrections`
  and `safe_divide`.

* Hyperparameter validation that raises `ValueError` naming the argument.
"""

import dataclasses
import functools
import math
import numbers

import keras
from keras import ops

from tf_adaptive import thresholds

_LOW_PRECISION_DTYPES = ("float16", "bfloat16")


def compute_dtype(variable):
    """The dtype update math runs in: float32 for 16-bit variables, else theirs."""
    dtype = keras.backend.standardize_dtype(variable.dtype)
    return "float32" if dtype in _LOW_PRECISION_DTYPES else dtype


def dense_gradient(gradient, variable, dtype):
    """`gradient` cast to `dtype`, densified if it is an `IndexedSlices`.

    Every optimizer here has state that decays in every row (a momentum or a
    moving average), so a sparse gradient is exactly the dense gradient with
    zero rows, and the dense update is the correct one.
    """
    gradient = ops.cast(gradient, dtype)
    if hasattr(gradient, "indices"):
        gradient = ops.add(ops.zeros(variable.shape, dtype), gradient)
    return gradient


def evaluate_schedule(value, step):
    """A float hyperparameter, or a schedule evaluated at `step`."""
    return value(step) if callable(value) else value


def bias_corrections(t, beta_1, beta_2):
    """(1 - β1^t, 1 - β2^t) for step t, in float32 (never in a 16-bit dtype)."""
    first = 1.0 - ops.power(ops.cast(beta_1, "float32"), t)
    second = 1.0 - ops.power(ops.cast(beta_2, "float32"), t)
    return first, second


def root(value, power):
    """value^power; 1/2, 1/4 and 1/8 as repeated square roots (pow is exp∘log, several times slower)."""
    if power in (0.5, 0.25, 0.125):
        for _ in range({0.5: 1, 0.25: 2, 0.125: 3}[power]):
            value = ops.sqrt(value)
        return value
    return ops.power(value, power)


def moment_corrections(t, beta_1, beta_2, power=0.5, bias_correction=True):
    """(1 - β1^t, (1 - β2^t)^(-p)) in float32, or (1, 1) without bias correction."""
    if not bias_correction:
        return ops.ones((), "float32"), ops.ones((), "float32")
    first, second = bias_corrections(t, beta_1, beta_2)
    return first, root(1.0 / second, power)


def safe_divide(epsilon):
    """Division for m / (root(ν) + ε): with ε = 0, a coordinate with ν = 0 has m = 0 and does not move."""
    return ops.divide_no_nan if epsilon == 0.0 else ops.divide


# `_needed_gradient`'s answer before the first update, when a needed gradient may be left out.
_AT_START = object()


def _known_to_be_zero(count):
    """True if `count` is eagerly readable and 0 (False for a symbolic, traced value)."""
    try:
        return int(ops.convert_to_numpy(count)) == 0
    except Exception:  # a symbolic tensor inside a traced function
        return False


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _require_real(name, value):
    if not _is_real(value) or math.isnan(value):
        raise ValueError(f"`{name}` must be a real number, got {value!r}.")
    return float(value)


def check_beta(name, value):
    """A decay rate in [0, 1)."""
    value = _require_real(name, value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be in [0, 1), got {value}.")
    return value


def check_nonnegative(name, value):
    value = _require_real(name, value)
    if value < 0.0:
        raise ValueError(f"`{name}` must be >= 0, got {value}.")
    return value


def check_positive(name, value):
    value = _require_real(name, value)
    if not value > 0.0:
        raise ValueError(f"`{name}` must be > 0, got {value}.")
    return value


def check_positive_or_schedule(name, value):
    """A positive float, or a schedule (a callable of the step)."""
    if callable(value):
        return value
    return check_positive(name, value)


def check_learning_rate(value):
    """Keras accepts floats, schedules and callables; we add an int→float cast and a sign check."""
    if callable(value):
        return value
    value = check_nonnegative("learning_rate", value)
    return value


SUM = "sum"
EMA = "ema"
FACTORED = "factored"
NONE = "none"


@dataclasses.dataclass(frozen=True)
class SecondMoment:
    """How an optimizer's preconditioner depends on a second moment ν_t of the gradient.

    P_t ∝ ν_t^p (up to ε and the bias corrections), with `form` one of:

    * ``SUM``: the sum ν_t = Σ_{s≤t} g_s² (Adagrad).
    * ``EMA``: ν_t = β ν_{t-1} + (1 - β) g_t² with a constant β (Adam, RMSProp,
      ...), or AMSGrad's running maximum of it.
    * ``FACTORED``: Adafactor's row/column estimate of the EMA of g², with the
      decay 1 - t^(-c) (no constant β).
    * ``NONE``: no second moment that P_t is a power of (momentum methods,
      clipping, sign and variance adaptation, a frozen P).

    Attributes:
        form: `SUM`, `EMA`, `FACTORED` or `NONE` (also available as
            ``SecondMoment.SUM`` etc.).
        beta: β for the ``EMA`` form, a float; ``None`` otherwise.
        power: p, a float; ``None`` for the ``NONE`` form.
    """

    SUM = SUM
    EMA = EMA
    FACTORED = FACTORED
    NONE = NONE

    form: str
    beta: float | None = None
    power: float | None = None

    def __post_init__(self):
        if self.form not in (SUM, EMA, FACTORED, NONE):
            raise ValueError(f"`form` must be one of {(SUM, EMA, FACTORED, NONE)}, got {self.form!r}.")
        if (self.beta is None) != (self.form != EMA):
            raise ValueError(f"`beta` is a float for the {EMA!r} form and None otherwise, got {self.beta!r}.")
        if (self.power is None) != (self.form == NONE):
            raise ValueError(f"`power` is None for the {NONE!r} form only, got {self.power!r}.")


class PreconditionedOptimizer(keras.optimizers.Optimizer):
    """Base class of every tf_adaptive optimizer (see the module docstring).

    Subclasses set:

    * ``momentum_type``: one of `tf_adaptive.thresholds.MOMENTUM_TYPES`.
    * ``momentum_coefficient_name``: the attribute holding β (``None`` if
      the method has no momentum).
    * ``hyperparameter_names``: the per-optimizer `__init__` arguments, which
      `get_config` and `from_config` round-trip (schedules included), and
      ``hyperparameter_attributes``, the attribute of each whose name differs.

    implement ``build``, ``update_step``, ``_preconditioner(index, dtype)`` and
    ``_momentum(index, dtype, gradient)``, override ``second_moment`` unless
    its form is ``NONE``, and ``momentum_needs_gradient`` where u_t contains
    the gradient itself.
    """

    momentum_type = thresholds.NONE
    momentum_coefficient_name = None
    hyperparameter_names = ()
    hyperparameter_attributes = {}

    def __init__(self, learning_rate, name, **kwargs):
        super().__init__(learning_rate=check_learning_rate(learning_rate), name=name, **kwargs)

    # ----------------------------------------------------------- coefficients
    def _apply_weight_decay(self, variables):
        """Decoupled weight decay θ ← θ − λ η θ (Loshchilov and Hutter 2019), as in Keras.

        On the TensorFlow and JAX backends this is Keras's own. Keras's torch
        backend multiplies instead by the factor (1 − λη) rounded to float32,
        which at λη = 1e-5 misstates λη by up to 0.3 %; here λη is formed first
        and the decay taken in the variable's compute dtype, as on the others.
        """
        if self.weight_decay is None or keras.backend.backend() != "torch":
            return super()._apply_weight_decay(variables)
        for variable in variables:
            if self._use_weight_decay(variable):
                dtype = compute_dtype(variable)
                decay = ops.cast(self.weight_decay, dtype) * ops.cast(self.learning_rate, dtype)
                value = ops.cast(variable, dtype)
                variable.assign(ops.cast(value - value * decay, variable.dtype))
        return None

    def _update_step_count(self):
        """t of the update being computed (1 for the first), in float32."""
        return ops.cast(self.iterations + 1, "float32")

    def _completed_step_count(self):
        """t of the most recent update (0 before the first), in float32."""
        return ops.cast(self.iterations, "float32")

    # --------------------------------------------------------------- protocol
    def _state_of(self, variable, hook):
        """`hook(index, dtype)` for `variable`, broadcast to its shape, in its compute dtype."""
        if not self.built:
            raise ValueError(
                f"{type(self).__name__} is not built yet: call `optimizer.build(variables)` or take a step first."
            )
        dtype = compute_dtype(variable)
        return ops.broadcast_to(ops.cast(hook(self._get_variable_index(variable), dtype), dtype), variable.shape)

    @property
    def preconditioner_needs_gradient(self):
        """Whether P_t is made of the gradient g_t itself, which no slot keeps (SSD: P_t = |g_t|).

        Then `preconditioner` needs the gradient of the most recent update,
        as `momentum` does where ``momentum_needs_gradient``: keeping g_t in a
        slot would cost every user of the optimizer one more write per step,
        for the sake of a measurement.
        """
        return False

    def preconditioner(self, variable, gradient=None):
        """The diagonal preconditioner P_t of the most recent update of `variable`.

        Same shape as `variable`, in its compute dtype (float32 for 16-bit
        variables). Entries are +inf where the method did not move that
        coordinate for a reason other than a zero momentum (e.g. a clipping
        threshold of zero). Before the first update it is all ones.

        Args:
            variable: A variable the optimizer was built with.
            gradient: The gradient g_t of the most recent update of `variable`,
                as the update rule received it. Needed where
                ``preconditioner_needs_gradient``; ignored otherwise.

        Raises:
            ValueError: if the optimizer is not built, or the gradient is
                needed and missing after the first update.
        """
        gradient = self._needed_gradient(variable, gradient, self.preconditioner_needs_gradient, "preconditioner")
        if gradient is _AT_START:
            return ops.ones(variable.shape, compute_dtype(variable))
        if self.preconditioner_needs_gradient:
            value = self._state_of(variable, lambda index, dtype: self._preconditioner_of_gradient(gradient))
        else:
            value = self._state_of(variable, self._preconditioner)
        return ops.where(self.iterations > 0, value, ops.ones_like(value))

    def _preconditioner(self, index, dtype):
        raise NotImplementedError

    def _preconditioner_of_gradient(self, gradient):
        """P_t from g_t (dense, the variable's compute dtype), where ``preconditioner_needs_gradient``."""
        raise NotImplementedError

    def _needed_gradient(self, variable, gradient, needed, method):
        """`gradient` made dense where `needed`, None where not, `_AT_START` before the first update.

        Raises the ValueError of a needed gradient missing after the first update.
        """
        dtype = compute_dtype(variable)
        if not needed:
            return None
        if gradient is not None:
            return dense_gradient(gradient, variable, dtype)
        if self.built and _known_to_be_zero(self.iterations):
            return _AT_START
        if self.built:
            raise ValueError(
                f"{type(self).__name__}.{method} needs the gradient of the most recent update: its "
                f"{'P_t' if method == 'preconditioner' else 'u_t'} contains g_t, which the optimizer does not "
                f"store. Pass `{method}(variable, gradient)`, with the gradient as the update rule received it "
                f"(after loss-scale division, clipping and gradient-accumulation averaging, if any)."
            )
        return None

    @property
    def momentum_needs_gradient(self):
        """Whether u_t contains the gradient g_t itself, which no slot keeps.

        Then `momentum` needs the gradient of the most recent update. Keeping
        g_t in a slot would cost every user of the optimizer one more array per
        variable and one more write per step, for the sake of a measurement.
        """
        return False

    def momentum(self, variable, gradient=None):
        """The momentum u_t of the most recent update of `variable`.

        u_t is what P_t = `preconditioner(variable)` divides: the most recent
        update is x_t - x_{t-1} = -η_t P_t⁻¹ u_t, decoupled weight decay
        aside (the gradient itself for methods without momentum). Same shape as
        `variable`, in its compute dtype (float32 for 16-bit variables). Before
        the first update it is all zeros.

        Args:
            variable: A variable the optimizer was built with.
            gradient: The gradient g_t of the most recent update of `variable`,
                as the update rule received it (after loss-scale division,
                clipping and gradient-accumulation averaging, if any). Needed
                where ``momentum_needs_gradient`` (u_t contains g_t and no slot
                keeps it); ignored otherwise.

        Raises:
            ValueError: if the optimizer is not built, or the gradient is
                needed and missing after the first update.
        """
        gradient = self._needed_gradient(variable, gradient, self.momentum_needs_gradient, "momentum")
        if gradient is _AT_START:
            return ops.zeros(variable.shape, compute_dtype(variable))
        value = self._state_of(variable, lambda index, dtype: self._momentum(index, dtype, gradient))
        return ops.where(self.iterations > 0, value, ops.zeros_like(value))

    def _momentum(self, index, dtype, gradient):
        """u_t of variable `index`; `gradient` is g_t (dense, `dtype`) where needed, else None."""
        raise NotImplementedError

    @property
    def second_moment(self):
        """The `SecondMoment` that P_t is a power of; ``SecondMoment(NONE)`` here."""
        return SecondMoment(NONE)

    def stability_threshold(self):
        """The threshold on λ1(P⁻¹H) at the current learning rate: a Python float, or ``None``.

        From `tf_adaptive.thresholds.stability_threshold` with this method's
        momentum type (Cohen et al. 2022, §2 and Appendix A); evaluate it
        eagerly. It is the threshold of the *frozen* form: with P held fixed the
        method is a linear recurrence on a quadratic, unstable exactly above it.
        It describes the method itself only while P changes slowly compared
        with the oscillation it would have to damp; each class docstring says
        which case applies. A method whose step is not a linear function of the
        gradient for any frozen P (sign descent) returns ``None``.
        """
        beta = 0.0
        if self.momentum_coefficient_name is not None:
            beta = getattr(self, self.momentum_coefficient_name)
        learning_rate = float(ops.convert_to_numpy(self.learning_rate))
        return thresholds.stability_threshold(learning_rate, self.momentum_type, beta)

    # ---------------------------------------------------------- serialization
    def get_config(self):
        config = super().get_config()
        for name in self.hyperparameter_names:
            value = getattr(self, self.hyperparameter_attributes.get(name, name))
            if callable(value):
                value = keras.saving.serialize_keras_object(value)
            config[name] = value
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for name in cls.hyperparameter_names:
            if isinstance(config.get(name), dict):
                config[name] = keras.saving.deserialize_keras_object(config[name], custom_objects=custom_objects)
        return super().from_config(config, custom_objects=custom_objects)


class ClippingOptimizer(PreconditionedOptimizer):
    """Base class of the clipping methods (ACClip, CClip, GClip): adds `clipped_fraction`.

    Their `stability_threshold()` is that of the unclipped method (P = 1),
    which describes the method only while nothing is clipped; the fraction
    of clipped coordinates says how far that holds at a measurement.
    Subclasses implement ``_clipped(index, dtype)``: 1 where the most recent
    update clipped the coordinate, 0 where it did not, NaN where the state it
    is read from is not finite.
    """

    def clipped_fraction(self, variables):
        """The fraction of the coordinates of `variables` that the most recent update clipped.

        A coordinate counts as clipped where the update multiplied its
        momentum by a factor below 1, that is where P_t > 1 in
        `preconditioner`: the fraction is 0 exactly when P_t = 1 everywhere.
        The decision is read from the optimizer's state as the update made it,
        so no gradient is needed. A float32 scalar: 0 before the first update,
        NaN if the state of any of `variables` is not finite.
        """
        variables = list(variables)
        if not variables:
            raise ValueError("`variables` is empty: there is no coordinate to count.")
        clipped = [ops.sum(ops.cast(self._state_of(v, self._clipped), "float32")) for v in variables]
        fraction = sum(clipped) / float(sum(math.prod(v.shape) for v in variables))
        return ops.where(self.iterations > 0, fraction, ops.zeros((), "float32"))

    def _clipped(self, index, dtype):
        raise NotImplementedError


def register_optimizer(cls=None, /, **substitutions):
    """Class decorator: fill in the docstring's ``{{name}}`` fields and register for saving.

    ``{{base_optimizer_keyword_args}}`` becomes Keras's shared argument list;
    other fields come from `substitutions`. Use as ``@register_optimizer`` or
    ``@register_optimizer(field="text")``.
    """
    if cls is None:
        return functools.partial(register_optimizer, **substitutions)
    from keras.src.optimizers import base_optimizer

    substitutions.setdefault("base_optimizer_keyword_args", base_optimizer.base_optimizer_keyword_args)
    if cls.__doc__ is not None:
        for field, text in substitutions.items():
            cls.__doc__ = cls.__doc__.replace("{{%s}}" % field, text)
    return keras.saving.register_keras_serializable(package="tf_adaptive")(cls)
