"""The Keras backend the measurements need, checked before any of them touches a model.

`analysis_tools` differentiates the model with `tf.GradientTape`, runs its
loops in `tf.function` and reads the optimizer's variables as TensorFlow
tensors, so its measurements and callbacks work on Keras's TensorFlow backend
only. On another backend they would fail deep inside TensorFlow, and a
callback only after `fit` had already run training steps. The entry points
call `require_tensorflow_backend` first instead.

The error is a `RuntimeError`, not a `ValueError`: no argument is wrong, the
process is configured for another backend (``KERAS_BACKEND`` is read once,
when Keras is imported).
"""

import keras


def require_tensorflow_backend(what):
    """Raises a `RuntimeError` naming `what` unless Keras runs on its TensorFlow backend."""
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise RuntimeError(
            f"{what} needs Keras's TensorFlow backend (it differentiates the model with "
            f"tf.GradientTape and runs in tf.function); the current backend is {backend!r}. "
            "Set KERAS_BACKEND=tensorflow before importing keras. The optimizers and "
            "`preconditioner_of`, `momentum_of` and `stability_threshold_of` work on every backend."
        )
