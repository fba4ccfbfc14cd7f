"""What the rules for reading an optimizer share: dtypes, hyperparameters, t and η_t, and the errors."""

import keras
from keras import ops

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


def _compute_dtype(variable):
    dtype = keras.backend.standardize_dtype(variable.dtype)
    return "float32" if dtype in _LOW_PRECISION_DTYPES else dtype


def _scalar(value):
    """A hyperparameter (float, tensor, variable, or a callable returning one) as a Python float."""
    if callable(value):
        value = value()
    return float(ops.convert_to_numpy(value))


def _has_protocol(optimizer):
    return callable(getattr(optimizer, "preconditioner", None)) and callable(
        getattr(optimizer, "stability_threshold", None)
    )


def _unsupported(optimizer, function):
    return TypeError(
        f"`{function}` does not support {type(optimizer).__module__}.{type(optimizer).__name__}. {_SUPPORTED_MESSAGE}"
    )


def _not_built(optimizer):
    return ValueError(
        f"{type(optimizer).__name__} is not built yet: call `optimizer.build(variables)` or take a step first."
    )


def _unknown_variable(variable, optimizer):
    return ValueError(
        f"Variable {getattr(variable, 'name', variable)!r} is not one the optimizer {optimizer.name!r} was built with."
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
