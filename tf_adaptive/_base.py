"""What every tf_adaptive optimizer shares.

* `PreconditionedOptimizer`, the base class. It implements the
  **preconditioner protocol** that `analysis_tools` reads:

  - ``preconditioner(variable)``: the diagonal P_t of the most recent update,
    written so that the update reads x_t = x_{t-1} - η P_t⁻¹ m_t for the
    method's own momentum m_t (its gradient, for methods without momentum).
    For non-linear methods (clipping, sign, variance adaptation) P_t is the
    *effective* preconditioner: the element-wise ratio m_t / (applied step / η).
    Before the first update, P_0 = 1 (no update has divided by anything yet).
  - ``stability_threshold()``: the largest stable λ1(P⁻¹H) at the current
    learning rate, from `tf_adaptive.thresholds` and the method's momentum type.

* Float32 coefficient helpers. Keras's own optimizers cast β and the step
  count to the variable's dtype; in bfloat16 0.999 rounds to 1 and Adam's
  update vanishes. Here every coefficient, and the update itself, is computed
  in float32 for float16/bfloat16 variables (`compute_dtype`), and only the
  results are cast back when they are stored.

* Hyperparameter validation that raises `ValueError` naming the argument.
"""

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


class PreconditionedOptimizer(keras.optimizers.Optimizer):
    """Base class of every tf_adaptive optimizer (see the module docstring).

    Subclasses set:

    * ``momentum_type``: one of `tf_adaptive.thresholds.MOMENTUM_TYPES`.
    * ``momentum_coefficient_name``: the attribute holding β (``None`` if
      the method has no momentum).
    * ``hyperparameter_names``: the per-optimizer `__init__` arguments, which
      `get_config` and `from_config` round-trip (schedules included).

    and implement ``build``, ``update_step`` and ``_preconditioner(index, dtype)``.
    """

    momentum_type = thresholds.NONE
    momentum_coefficient_name = None
    hyperparameter_names = ()

    def __init__(self, learning_rate, name, **kwargs):
        super().__init__(
            learning_rate=check_learning_rate(learning_rate), name=name, **kwargs
        )

    # ----------------------------------------------------------- coefficients
    def _update_step_count(self):
        """t of the update being computed (1 for the first), in float32."""
        return ops.cast(self.iterations + 1, "float32")

    def _completed_step_count(self):
        """t of the most recent update (0 before the first), in float32."""
        return ops.cast(self.iterations, "float32")

    # --------------------------------------------------------------- protocol
    def preconditioner(self, variable):
        """The diagonal preconditioner P_t of the most recent update of `variable`.

        Same shape as `variable`, in its compute dtype (float32 for 16-bit
        variables). Entries are +inf where the method did not move that
        coordinate for a reason other than a zero momentum (e.g. a clipping
        threshold of zero). Before the first update it is all ones.
        """
        if not self.built:
            raise ValueError(
                f"{type(self).__name__} is not built yet: call "
                "`optimizer.build(variables)` or take a step first."
            )
        dtype = compute_dtype(variable)
        value = ops.broadcast_to(
            ops.cast(self._preconditioner(self._get_variable_index(variable), dtype), dtype),
            variable.shape,
        )
        return ops.where(self.iterations > 0, value, ops.ones_like(value))

    def _preconditioner(self, index, dtype):
        raise NotImplementedError

    def stability_threshold(self):
        """The threshold on λ1(P⁻¹H) at the current learning rate (a Python float).

        From `tf_adaptive.thresholds.stability_threshold` with this method's
        momentum type (Cohen et al. 2022, §2 and Appendix A); evaluate it eagerly.
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
            value = getattr(self, name)
            if callable(value):
                value = keras.saving.serialize_keras_object(value)
            config[name] = value
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for name in cls.hyperparameter_names:
            if isinstance(config.get(name), dict):
                config[name] = keras.saving.deserialize_keras_object(
                    config[name], custom_objects=custom_objects
                )
        return super().from_config(config, custom_objects=custom_objects)


def register_optimizer(cls=None, /, **substitutions):
    """Class decorator: fill in the docstring's ``{{name}}`` fields and register for saving.

    ``{{base_optimizer_keyword_args}}`` becomes Keras's shared argument list;
    other fields come from `substitutions`. Use as ``@register_optimizer`` or
    ``@register_optimizer(field="text")``.
    """
    if cls is None:
        return functools.partial(register_optimizer, **substitutions)
    from keras.src.optimizers import base_optimizer

    substitutions.setdefault(
        "base_optimizer_keyword_args", base_optimizer.base_optimizer_keyword_args
    )
    if cls.__doc__ is not None:
        for field, text in substitutions.items():
            cls.__doc__ = cls.__doc__.replace("{{%s}}" % field, text)
    return keras.saving.register_keras_serializable(package="tf_adaptive")(cls)
