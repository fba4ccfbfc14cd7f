"""The training loss over a fixed probe set, as a symmetric linear operator.

The sharpness of Cohen et al. ("Gradient Descent on Neural Networks Typically
Occurs at the Edge of Stability", 2021; "Adaptive Gradient Methods at the Edge
of Stability", 2022, §2) is the top eigenvalue of the Hessian H of the
*full-batch* training loss. `HessianOperator` fixes that loss:

    L(θ) = Σ_b (n_b / N) · loss(y_b, f_θ(x_b)) + R(θ)

over the probe batches b (n_b examples each, N in all), with R the model's
regularization losses (`model.losses`), which the optimizer differentiates
too. It exposes v ↦ H v on the flat vector of the trainable variables (in the
order of `model.trainable_variables`), and its preconditioned form
v ↦ P^{-1/2} H P^{-1/2} v, whose eigenvalues are those of P⁻¹H (the two
matrices are similar).

Side-effect free. The loss is evaluated with `model.stateless_call` and the
model's non-trainable values captured once, when the operator is built:

* ``mode="train"`` (the default): layers run in training mode. BatchNorm
  normalizes with each probe batch's own statistics and its moving averages are
  not updated; Dropout draws its masks from the captured seed state, so every
  product applies the same masks (the same operator every time). Use
  ``dropout=False`` to switch Dropout off while BatchNorm stays in training mode.
* ``mode="inference"``: BatchNorm uses its moving statistics and Dropout is off
  (PyHessian's convention; a different Hessian).

The model's variables, BatchNorm statistics, seed generators and the optimizer
are never written.

Hessian-vector products run inside `tf.function`, one probe batch at a time
(memory stays that of one batch), by reverse-over-reverse differentiation (two
nested `GradientTape`s, about 2× the cost of a gradient) or, with
``method="forward_over_reverse"``, a `tf.autodiff.ForwardAccumulator` over a
`GradientTape`. In float32 models the product is computed in float32 and
returned in the dtype of the input vector (the Lanczos basis is float64).
"""

import tensorflow as tf

from analysis_tools._model_loss import MODES, ModelLoss

METHODS = ("reverse_over_reverse", "forward_over_reverse")
__all__ = ["HessianOperator", "METHODS", "MODES", "probe_batches"]


def probe_batches(data, batch_size=None):
    """A fixed list of (x, y) tensor pairs from arrays, a tuple of arrays, or a `tf.data.Dataset`.

    Arrays are split into batches of `batch_size` (one batch if None) in their
    order; a dataset is iterated once and cached. Either way the same batches
    serve every product, so the operator is fixed.
    """
    if isinstance(data, tf.data.Dataset):
        batches = []
        for element in data:
            if not isinstance(element, (tuple, list)) or len(element) < 2:
                raise ValueError("A probe dataset must yield (x, y) pairs.")
            batches.append((element[0], element[1]))
        if not batches:
            raise ValueError("The probe dataset is empty.")
        return batches
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError("`data` must be an (x, y) pair of arrays or a tf.data.Dataset of (x, y).")
    x, y = data
    n = len(x)
    if n == 0 or len(y) != n:
        raise ValueError(f"`data` needs as many targets as inputs, got {len(x)} and {len(y)}.")
    size = n if batch_size is None else int(batch_size)
    if size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}.")
    return [
        (tf.convert_to_tensor(x[i:i + size]), tf.convert_to_tensor(y[i:i + size]))
        for i in range(0, n, size)
    ]


class HessianOperator:
    """v ↦ H v for the training loss over a fixed probe set (see the module docstring).

    Args:
        model: A built Keras model.
        data: The probe set: an (x, y) pair of arrays, or a `tf.data.Dataset`
            of (x, y) batches (iterated once and cached).
        loss: A loss (string, `keras.losses.Loss` or callable y_true, y_pred →
            mean). Defaults to the model's compiled loss.
        batch_size: Batch size for array data; default one batch. With
            BatchNorm in training mode the Hessian depends on it: use the
            training batch size.
        method: ``"reverse_over_reverse"`` (default) or ``"forward_over_reverse"``.
        mode: ``"train"`` (default) or ``"inference"``.
        dropout: With ``mode="train"``, whether Dropout layers stay active
            (fixed masks). Defaults to `True`.
        include_regularization: Whether `model.losses` are part of L. Defaults to `True`.
    """

    def __init__(
        self,
        model,
        data,
        loss=None,
        batch_size=None,
        method="reverse_over_reverse",
        mode="train",
        dropout=True,
        include_regularization=True,
    ):
        if method not in METHODS:
            raise ValueError(f"`method` must be one of {METHODS}, got {method!r}.")
        self._loss = ModelLoss(model, loss, mode, dropout, include_regularization, "its Hessian")
        self.model = model
        self.method = method
        self.mode = mode
        self.include_regularization = self._loss.include_regularization
        self.loss = self._loss.loss
        self.batches = probe_batches(data, batch_size)
        sizes = [int(tf.shape(x)[0]) for x, _ in self.batches]
        self.num_examples = sum(sizes)
        self._weights = [size / self.num_examples for size in sizes]
        self._variables = self._loss.variables
        self.shapes = self._loss.shapes
        self.sizes = self._loss.sizes
        self.dimension = self._loss.dimension
        self.dtype = self._loss.dtype
        self._scale = None
        self._hvp = tf.function(self._hessian_vector_product, reduce_retracing=True)
        self._gradient = tf.function(self._flat_gradient, reduce_retracing=True)

    # ------------------------------------------------------------------ values
    def _current_values(self):
        """The trainable values now (float, `self.dtype`) and the frozen non-trainable ones."""
        return self._loss.values()

    def _flatten(self, tensors, dtype):
        return tf.concat([tf.reshape(tf.cast(t, dtype), [-1]) for t in tensors], axis=0)

    def _unflatten(self, flat):
        parts = tf.split(tf.cast(flat, self.dtype), self.sizes)
        return [tf.reshape(p, s) for p, s in zip(parts, self.shapes)]

    def _batch_loss(self, trainable, non_trainable, batch_index):
        """(n_b / N) loss on probe batch b, plus the regularization losses on batch 0."""
        x, y = self.batches[batch_index]
        data_loss, regularization = self._loss(trainable, non_trainable, x, y)
        value = data_loss * self._weights[batch_index]
        if self.include_regularization and batch_index == 0:
            value += regularization
        return value

    def _total_loss(self, trainable, non_trainable):
        return tf.add_n([
            self._batch_loss(trainable, non_trainable, b) for b in range(len(self.batches))
        ])

    def _flat_gradient(self, trainable, non_trainable):
        with tf.GradientTape() as tape:
            tape.watch(trainable)
            loss = self._total_loss(trainable, non_trainable)
        return self._flatten(tape.gradient(loss, trainable), tf.float64), loss

    def _batch_hvp(self, trainable, non_trainable, tangents, batch_index):
        if self.method == "forward_over_reverse":
            with tf.autodiff.ForwardAccumulator(trainable, tangents) as accumulator:
                with tf.GradientTape() as tape:
                    tape.watch(trainable)
                    loss = self._batch_loss(trainable, non_trainable, batch_index)
                grads = tape.gradient(loss, trainable)
            return accumulator.jvp(grads)
        with tf.GradientTape() as outer:
            outer.watch(trainable)
            with tf.GradientTape() as inner:
                inner.watch(trainable)
                loss = self._batch_loss(trainable, non_trainable, batch_index)
            grads = inner.gradient(loss, trainable)
            inner_product = tf.add_n([tf.reduce_sum(g * t) for g, t in zip(grads, tangents)])
        return outer.gradient(inner_product, trainable)

    def _hessian_vector_product(self, trainable, non_trainable, vector):
        tangents = self._unflatten(vector)
        total = None
        for b in range(len(self.batches)):
            product = self._flatten(
                self._batch_hvp(trainable, non_trainable, tangents, b), vector.dtype
            )
            total = product if total is None else total + product
        return total

    # ------------------------------------------------------------------ public
    def matvec(self, vector):
        """H v at the model's current weights, for a flat `vector` of length `dimension`.

        The weights are read when the product runs, so one traced function
        serves the whole of training. Returned in the dtype of `vector`.
        """
        trainable, non_trainable = self._current_values()
        return self._hvp(trainable, non_trainable, vector)

    def set_preconditioner(self, preconditioner):
        """Store P (one tensor per trainable variable) for `preconditioned_matvec`."""
        if len(preconditioner) != len(self._variables):
            raise ValueError(
                f"`preconditioner` has {len(preconditioner)} tensors for "
                f"{len(self._variables)} trainable variables."
            )
        flat = self._flatten(preconditioner, tf.float64)
        if not bool(tf.reduce_all(flat > 0.0)):
            raise ValueError("The preconditioner must be positive in every coordinate.")
        if self._scale is None:
            self._scale = tf.Variable(tf.math.rsqrt(flat), trainable=False, name="preconditioner_scale")
        else:
            self._scale.assign(tf.math.rsqrt(flat))

    def preconditioned_matvec(self, vector):
        """P^{-1/2} H P^{-1/2} v, with the P of the last `set_preconditioner`; same eigenvalues as P⁻¹H."""
        if self._scale is None:
            raise ValueError("Call `set_preconditioner` first.")
        scale = tf.cast(self._scale, vector.dtype)
        return scale * self.matvec(scale * vector)

    @property
    def preconditioner_scale(self):
        """The flat float64 P^{-1/2} last set (a `tf.Variable`), or None."""
        return self._scale

    def gradient(self):
        """(flat float64 gradient of L at the current weights, L)."""
        trainable, non_trainable = self._current_values()
        return self._gradient(trainable, non_trainable)

    def flatten(self, tensors):
        """Per-variable tensors → one flat float64 vector, in the operator's order."""
        return self._flatten(tensors, tf.float64)

    def unflatten(self, flat):
        """One flat vector → per-variable tensors (in the operator's dtype)."""
        return self._unflatten(flat)
