"""Small tensor helpers shared by the measurement modules."""

import numpy as np
import tensorflow as tf


def as_float_tensor(*values, dtype=None):
    """Converts values to tensors of one floating dtype.

    The dtype is that of the floating inputs that carry one (tensors, NumPy
    arrays and scalars) when they agree, float64 otherwise (Python numbers,
    integers, mixed precisions).
    """
    if dtype is None:
        dtypes = set()
        for value in values:
            if hasattr(value, "dtype"):
                value_dtype = tf.as_dtype(value.dtype)
                if value_dtype.is_floating:
                    dtypes.add(value_dtype)
        dtype = dtypes.pop() if len(dtypes) == 1 else tf.float64
    tensors = [
        tf.cast(tf.convert_to_tensor(v), dtype) if hasattr(v, "dtype") else tf.convert_to_tensor(v, dtype)
        for v in values
    ]
    return tensors[0] if len(tensors) == 1 else tensors


def rademacher(rng, shape):
    """A float64 tensor of independent ±1 entries drawn from the NumPy generator `rng`.

    The probe vectors of Hutchinson's estimator, Hutch++ and stochastic
    Lanczos quadrature: one generator and seed give the same vectors to each.
    """
    return tf.constant(rng.choice(np.array([-1.0, 1.0]), size=shape))


def check_count(name, value, smallest=1):
    """`value` as an int, refused unless it is an integer (not a bool) ≥ `smallest`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < smallest:
        raise ValueError(f"`{name}` must be an integer >= {smallest}, got {value!r}.")
    return int(value)


def standard_error(values):
    """The standard error of the mean of `values`: sample standard deviation / √n; NaN for one value."""
    values = np.asarray(values, dtype=np.float64)
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
