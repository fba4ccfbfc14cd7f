"""The training loss of a Keras model at given weights, evaluated without side effects.

Both the curvature tools (the Hessian of the loss over a probe set) and the
gradient-noise tools (mini-batch gradients at fixed weights) differentiate
the same quantity: the model's loss, plus its regularization losses
(`model.losses`), at weights passed in as tensors. `ModelLoss` holds that
set-up once. It evaluates the model with `model.stateless_call`, so the
model's variables, BatchNorm statistics, seed generators and the optimizer
are never written:

* ``mode="train"``: layers run in training mode (BatchNorm normalizes with the
  batch's own statistics, its moving averages are not updated; Dropout draws
  its masks from the captured seed state). ``dropout=False`` switches Dropout
  off while BatchNorm stays in training mode.
* ``mode="inference"``: BatchNorm uses its moving statistics and Dropout is off.

16-bit models are differentiated in float32: curvature and noise in 16 bits
are rounding noise.
"""

import keras
import numpy as np
import tensorflow as tf

from analysis_tools._backend import require_tensorflow_backend

MODES = ("train", "inference")


def resolve_loss(model, loss):
    """A callable loss(y_true, y_pred) -> scalar mean: `loss`, or the model's compiled loss."""
    if loss is None:
        loss = getattr(model, "loss", None)
        if loss is None:
            raise ValueError("Pass `loss=`, or compile the model with a loss first.")
    if isinstance(loss, (dict, list, tuple)):
        raise ValueError("Only single-output models with one loss are supported; pass `loss=`.")
    return keras.losses.get(loss) if isinstance(loss, str) else loss


class ModelLoss:
    """The loss of `model` at weights given as tensors (see the module docstring).

    Args:
        model: A built Keras model with at least one trainable variable.
        loss: A loss (string, `keras.losses.Loss` or callable y_true, y_pred →
            mean); default the model's compiled loss.
        mode: ``"train"`` or ``"inference"``.
        dropout: With ``mode="train"``, whether Dropout layers stay active.
        include_regularization: Whether `model.losses` are part of the loss.
        purpose: What the caller measures, for error messages ("its Hessian").
    """

    def __init__(self, model, loss, mode, dropout, include_regularization, purpose):
        require_tensorflow_backend(f"Measuring {purpose}")
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}, got {mode!r}.")
        if not model.built:
            raise ValueError(f"Build the model (call it once, or fit it) before measuring {purpose}.")
        self.model = model
        self.variables = list(model.trainable_variables)
        if not self.variables:
            raise ValueError(
                f"The model has no trainable variables: there is nothing to measure {purpose} over."
            )
        self.loss = resolve_loss(model, loss)
        self.mode = mode
        self.training = mode == "train"
        self.dropout_off = self.training and not dropout
        self.include_regularization = bool(include_regularization)
        dtype = tf.as_dtype(keras.backend.standardize_dtype(self.variables[0].dtype))
        self.dtype = tf.float32 if dtype in (tf.float16, tf.bfloat16) else dtype
        self.shapes = [tuple(v.shape) for v in self.variables]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.dimension = sum(self.sizes)

    def values(self):
        """The trainable values now (in `dtype`) and the non-trainable ones, as tensors."""
        trainable = [tf.cast(tf.convert_to_tensor(v.value), self.dtype) for v in self.variables]
        non_trainable = [tf.convert_to_tensor(v.value) for v in self.model.non_trainable_variables]
        return trainable, non_trainable

    def __call__(self, trainable, non_trainable, x, y):
        """(mean loss on the batch (x, y), sum of `model.losses`) at the given values, in `dtype`.

        Loss functions (as `keras.losses.get("mse")` returns) give one value
        per example; like Keras's compiled loss ("sum_over_batch_size") they
        are averaged.
        """
        values = [tf.cast(t, v.dtype) for t, v in zip(trainable, self.variables)]
        with _DropoutOff(self.model if self.dropout_off else None):
            y_pred, _, losses = self.model.stateless_call(
                values, non_trainable, x, return_losses=True, training=self.training
            )
        data_loss = tf.reduce_mean(tf.cast(self.loss(y, y_pred), self.dtype)) * self._replica_scale()
        if losses:
            regularization = tf.add_n([tf.cast(l, self.dtype) for l in losses])
        else:
            regularization = tf.zeros([], self.dtype)
        return data_loss, regularization

    def _replica_scale(self):
        """Undoes Keras's scaling of a mean-reduced `keras.losses.Loss` by 1/replicas under a strategy.

        Keras divides such a loss by the number of replicas in sync (so that
        summing the replicas' gradients gives the mean); callers here weight
        each replica's share by its examples themselves.
        """
        mean_reductions = ("sum_over_batch_size", "mean", "mean_with_sample_weight")
        if not isinstance(self.loss, keras.losses.Loss) or self.loss.reduction not in mean_reductions:
            return 1.0
        return float(tf.distribute.get_strategy().num_replicas_in_sync)

    def share(self, trainable, non_trainable, x, y, weight, regularization_weight):
        """weight · mean loss on (x, y), plus (with `include_regularization`) regularization_weight · R.

        A replica's part of a loss that is summed over batches and replicas:
        `weight` is its examples over the total, `regularization_weight` the
        part of R it carries (1 / replicas, on one batch only).
        """
        data_loss, regularization = self(trainable, non_trainable, x, y)
        value = data_loss * tf.cast(weight, self.dtype)
        if self.include_regularization:
            value += regularization * tf.cast(regularization_weight, self.dtype)
        return value


class _DropoutOff:
    """Within the block, Dropout layers of `model` pass their inputs through (nothing for None)."""

    def __init__(self, model):
        kinds = (keras.layers.Dropout, keras.layers.GaussianDropout, keras.layers.AlphaDropout)
        self.layers = [] if model is None else [
            layer for layer in model._flatten_layers(include_self=False) if isinstance(layer, kinds)
        ]

    def __enter__(self):
        self.rates = [layer.rate for layer in self.layers]
        for layer in self.layers:
            layer.rate = 0.0
        return self

    def __exit__(self, *exc):
        for layer, rate in zip(self.layers, self.rates):
            layer.rate = rate
        return False
