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

import warnings

import keras
import numpy as np
import tensorflow as tf

from analysis_tools._backend import require_tensorflow_backend
from analysis_tools._probe import batch_count
from analysis_tools._second_order import ExactMoments, ExactResizeGradients

MODES = ("train", "inference")

# Keras's losses that compare targets and outputs element by element (after aligning a trailing axis
# of size 1), and the one that takes integer labels without the outputs' class axis.
_SAME_SHAPE_LOSSES = frozenset(
    {
        "binary_crossentropy",
        "binary_focal_crossentropy",
        "categorical_crossentropy",
        "categorical_focal_crossentropy",
        "categorical_hinge",
        "cosine_similarity",
        "dice",
        "hinge",
        "huber",
        "kl_divergence",
        "log_cosh",
        "mean_absolute_error",
        "mean_absolute_percentage_error",
        "mean_squared_error",
        "mean_squared_logarithmic_error",
        "poisson",
        "squared_hinge",
        "tversky",
    }
)
_SPARSE_LOSSES = frozenset({"sparse_categorical_crossentropy"})


def trainable_variables_of(model, purpose):
    """`model.trainable_variables`, checked: the model is built and has at least one.

    Raises:
        ValueError: naming the problem and what is measured (`purpose`, e.g. "its Hessian").
    """
    if not model.built:
        raise ValueError(f"Build the model (call it once, or fit it) before measuring {purpose}.")
    variables = list(model.trainable_variables)
    if not variables:
        raise ValueError(
            f"The model has no trainable variables: there is nothing to measure {purpose} over "
            "(every layer is frozen, or has no weights)."
        )
    return variables


def resolve_loss(model, loss):
    """A callable loss(y_true, y_pred) -> scalar mean: `loss`, or the model's compiled loss."""
    if loss is None:
        loss = getattr(model, "loss", None)
        if loss is None:
            raise ValueError("Pass `loss=`, or compile the model with a loss first.")
    if isinstance(loss, (dict, list, tuple)):
        raise ValueError("Only single-output models with one loss are supported; pass `loss=`.")
    return keras.losses.get(loss) if isinstance(loss, str) else loss


def _warn_if_loss_is_coarser(loss, dtype):
    """Warns when a Keras `Loss` casts the model's outputs to a coarser dtype than the model's weights.

    A `keras.losses.Loss` computes in its own ``dtype`` (the float type at its
    construction, float32 by default) and casts ``y_pred`` to it, so a float64
    model with a default loss has a float32 loss: its curvature is then only
    float32-accurate (‖H − Hᵀ‖ about 1e-8 of ‖H‖ instead of 1e-16).
    """
    loss_dtype = getattr(loss, "dtype", None) if isinstance(loss, keras.losses.Loss) else None
    if loss_dtype is None:
        return
    loss_dtype = tf.as_dtype(keras.backend.standardize_dtype(loss_dtype))
    if loss_dtype.is_floating and loss_dtype.size < dtype.size:
        warnings.warn(
            f"The loss {type(loss).__name__} computes in {loss_dtype.name} (its `dtype`) while the model's weights "
            f"are {dtype.name}: it casts the outputs to {loss_dtype.name}, so the curvature is only "
            f"{loss_dtype.name}-accurate. Pass the loss with dtype={dtype.name!r}.",
            stacklevel=3,
        )


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
        self.model = model
        self.variables = trainable_variables_of(model, purpose)
        self.loss = resolve_loss(model, loss)
        self.mode = mode
        self.training = mode == "train"
        self.dropout_off = self.training and not dropout
        self.include_regularization = bool(include_regularization)
        dtype = tf.as_dtype(keras.backend.standardize_dtype(self.variables[0].dtype))
        self.dtype = tf.float32 if dtype in (tf.float16, tf.bfloat16) else dtype
        _warn_if_loss_is_coarser(self.loss, self.dtype)
        self.shapes = [tuple(v.shape) for v in self.variables]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.dimension = sum(self.sizes)
        self._unconnected = None
        self._stopped = None

    def gradients(self, tape, target, sources, positions):
        """∂target/∂sources from `tape`, dense, with zeros where the target does not depend on a source.

        Resizing takes the exact rules of `ExactResizeGradients` here too: under
        XLA, TensorFlow's own `ResizeBilinearGrad` in a float64 model mixes
        float32 and float64 and does not compile (SegFormer's gradient).

        Keras's `fit` skips a trainable variable the loss does not use (a
        KerasHub DINOv2's mask token, a head left out of the forward pass): it
        has no gradient. Here it is a direction of zero gradient and zero
        curvature (its rows and columns of H are 0), and the first trace that
        meets one warns, naming it (see `unconnected_variables`).

        Args:
            tape: The `tf.GradientTape` that watched `sources`.
            target: The scalar to differentiate.
            sources: Tensors standing for trainable variables.
            positions: Their positions in `variables`.
        """
        with ExactResizeGradients():  # XLA cannot compile TensorFlow's own rule in float64 (mixed precisions)
            raw = tape.gradient(target, sources)
        self._note_unconnected([p for p, g in zip(positions, raw) if g is None])
        return [tf.zeros_like(s) if g is None else tf.convert_to_tensor(g) for g, s in zip(raw, sources)]

    @tf.autograph.experimental.do_not_convert
    def _note_unconnected(self, positions):
        known = set(self._unconnected or ())
        if self._unconnected is not None and known.issuperset(positions):
            return
        self._unconnected = sorted(known.union(positions))
        new = [self.variables[p].path for p in positions if p not in known]
        if new:
            warnings.warn(
                f"The loss does not depend on the trainable variables {new}: they have no gradient (Keras's "
                "`fit` skips them) and are measured as directions of zero gradient and zero curvature.",
                stacklevel=2,
            )

    def unconnected_variables(self, batch_spec):
        """The trainable variables the loss does not depend on (their paths), for batches shaped like `batch_spec`.

        Known from the first traced gradient or product; otherwise found by
        tracing one gradient on `batch_spec` ((x, y) of `tf.TensorSpec`s),
        which runs nothing.
        """
        if self._unconnected is None:
            self._trace_gradient(batch_spec)
        return [self.variables[p].path for p in self._unconnected]

    def stopped_gradients(self, batch_spec):
        """The forward pass's `stop_gradient` ops on values that depend on the weights (their names).

        A model may stop gradients on purpose (D-FINE detaches its refined
        boxes between decoder layers). Autodiff's gradient is then the
        gradient of the surrogate loss L̃(θ) = L(θ; s₀), in which the stopped
        values s are held at their current values s₀ = s(θ), not the gradient
        of the loss L(θ) the model computes; every derivative here (gradient,
        H v, the GGN's Jacobians) is L̃'s: exact and symmetric for L̃, not L's
        Hessian. Finite differences of the gradient move s too, and disagree
        (D-FINE: by 0.18 of ‖H v‖). The first trace that meets such an op
        warns, naming it. Ops inside loop bodies and nested functions are not
        inspected. Found like `unconnected_variables`.
        """
        if self._stopped is None:
            self._trace_gradient(batch_spec)
        return list(self._stopped)

    def _trace_gradient(self, batch_spec):
        def gradient(x, y):
            trainable, non_trainable = self.values()
            with tf.GradientTape() as tape:
                tape.watch(trainable)
                loss = tf.add_n(self(trainable, non_trainable, x, y))
            return self.gradients(tape, loss, trainable, range(len(trainable)))

        tf.function(gradient).get_concrete_function(*batch_spec)

    @tf.autograph.experimental.do_not_convert
    def _note_stopped(self, names):
        if self._stopped is not None:
            return
        self._stopped = names
        if names:
            layers = sorted({name.rsplit("/", 1)[0] for name in names})
            shown = ", ".join(layers[:4]) + (f" and {len(layers) - 4} more" if len(layers) > 4 else "")
            warnings.warn(
                f"The model stops gradients (stop_gradient) on {len(names)} "
                f"{'value that depends' if len(names) == 1 else 'values that depend'} on the weights "
                f"(in {shown}): every gradient and curvature measured is that of the loss with those values "
                "held at their current values, not of the loss itself (finite differences of the gradient "
                "disagree). See `HessianOperator.stopped_gradients`.",
                stacklevel=3,
            )

    def values(self):
        """The trainable values now (in `dtype`) and the non-trainable ones, as tensors."""
        trainable = [tf.cast(tf.convert_to_tensor(v.value), self.dtype) for v in self.variables]
        non_trainable = [tf.convert_to_tensor(v.value) for v in self.model.non_trainable_variables]
        return trainable, non_trainable

    def __call__(self, trainable, non_trainable, x, y):
        """(mean loss on the batch (x, y), sum of `model.losses`) at the given values, in `dtype`."""
        y_pred, regularization = self.outputs(trainable, non_trainable, x)
        scale = 1.0 / self._count(y)
        return self.weighted_loss(y, y_pred, None, scale), regularization

    def outputs(self, trainable, non_trainable, x):
        """(the model's outputs on x, sum of `model.losses` in `dtype`) at the given values.

        The forward pass that every derivative here differentiates; the first
        trace notes the `stop_gradient`s on weight-dependent values in it (see
        `stopped_gradients`).
        """
        values = [tf.cast(t, v.dtype) for t, v in zip(trainable, self.variables)]
        graph = None if tf.executing_eagerly() or self._stopped is not None else tf.compat.v1.get_default_graph()
        if graph is not None:  # the first trace: values made in this graph, to follow what depends on them
            values = [tf.identity(v) for v in values]
            first_op = len(graph.get_operations())
        with _DropoutOff(self.model if self.dropout_off else None), ExactMoments():
            y_pred, _, losses = self.model.stateless_call(
                values, non_trainable, x, return_losses=True, training=self.training
            )
        if losses:
            regularization = tf.add_n([tf.cast(term, self.dtype) for term in losses])
        else:
            regularization = tf.zeros([], self.dtype)
        if graph is not None:
            self._note_stopped(_stops_on(graph.get_operations()[first_op:], values))
        return y_pred, regularization

    def weighted_loss(self, y, y_pred, mask, scale):
        """scale · Σ_i mask_i ℓ_i over the examples i of a batch, from the model's outputs `y_pred`, in `dtype`.

        ℓ_i is example i's loss as Keras's compiled loss defines it: the
        mean of the loss's values over the example's positions (a
        `keras.losses.Loss`'s unreduced ``call``, or a loss function's
        per-example values). With ``scale = 1/n`` and no mask (None: every
        example counts) it is Keras's "sum_over_batch_size" mean. The
        per-example form is what lets a padded batch carry mask 0 on its
        padding: those examples add exactly nothing.

        Where the outputs carry a Keras mask (padded sequence positions),
        Keras averages over the batch's unmasked positions; here that mean
        is over the share's unmasked positions of its real examples, times
        their number. A loss with reduction "sum" keeps Keras's sum (of the
        real examples), times their number. A loss callable that returns a
        scalar (already reduced) is taken as the mean of the batch; it
        cannot be masked, and raises a ValueError if the batch is padded.
        """
        values, keras_mask, reduction = self._loss_values(y, y_pred)
        if mask is None:
            count = self._count(y)
            weights = None
        else:
            weights = tf.cast(mask, self.dtype)
            count = tf.reduce_sum(weights)
        if values.shape.rank == 0:
            if weights is not None:
                raise ValueError(
                    "The loss returns one value for the whole batch, so padded examples cannot be left out of it: "
                    "return one value per example (as Keras's loss functions do), or choose a batch size that "
                    "divides the number of examples and is a multiple of the replicas."
                )
            return scale * count * values
        if weights is not None:
            weights = tf.reshape(weights, [-1] + [1] * (values.shape.rank - 1))
        if keras_mask is not None or reduction == "sum":
            elementwise = (
                tf.ones_like(values) if keras_mask is None else tf.cast(keras_mask, self.dtype) * tf.ones_like(values)
            )
            if weights is not None:
                elementwise = elementwise * weights
            total = tf.reduce_sum(values * elementwise)
            if reduction != "sum":
                total = tf.math.divide_no_nan(total, tf.reduce_sum(elementwise))
            return scale * count * total
        per_example = (
            tf.reduce_mean(values, axis=list(range(1, values.shape.rank))) if values.shape.rank > 1 else values
        )
        if weights is not None:
            per_example = per_example * tf.reshape(weights, [-1])
        return scale * tf.reduce_sum(per_example)

    def _count(self, y):
        """The examples in a batch (y its targets), in `dtype`."""
        return tf.cast(batch_count(y), self.dtype)

    def _loss_values(self, y, y_pred):
        """(the loss's unreduced values in `dtype`, the Keras mask on them or None, the reduction)."""
        loss = self.loss
        if isinstance(loss, keras.losses.Loss):
            in_mask = getattr(y_pred, "_keras_mask", None)  # where Keras keeps a tensor's mask
            convert = lambda t: keras.ops.convert_to_tensor(t, dtype=loss.dtype)  # noqa: E731 (as Loss.__call__)
            values = loss.call(tf.nest.map_structure(convert, y), tf.nest.map_structure(convert, y_pred))
            out_mask = getattr(values, "_keras_mask", None)
            masks = [m for m in (in_mask, out_mask) if m is not None]
            keras_mask = None if not masks else masks[0] if len(masks) == 1 else tf.logical_and(*masks)
            reduction = loss.reduction or "none"
        else:
            values, keras_mask, reduction = loss(y, y_pred), None, "none"
        return tf.cast(values, self.dtype), keras_mask, reduction

    def check_batch(self, spec, first_batch, source):
        """Checks that one batch fits the model and the loss, before any measurement runs.

        The model is run symbolically (`model.compute_output_spec`) on inputs
        shaped like `spec`'s; only where that fails is it run on the real first
        batch (`first_batch()`, a stateless forward pass, no gradients), so that
        a model that cannot be traced symbolically is not refused. For Keras's
        element-wise losses (mean squared error, cross-entropy on one-hot
        targets, ...) the targets must have the outputs' shape, up to a
        trailing axis of size 1, and for sparse categorical cross-entropy the
        outputs' shape without the class axis: other shapes would be broadcast
        against each other and give a wrong loss silently. Custom losses are
        not checked, as their targets may have any shape.

        Args:
            spec: (x, y) of one batch as `tf.TensorSpec` structures (the batch
                dimension may be None).
            first_batch: A callable returning the first (x, y) batch.
            source: What the data are, for messages ("the probe set").

        Raises:
            ValueError: If the model cannot take the inputs, or the targets'
                shape does not match the outputs' for the loss.
        """
        x_spec, y_spec = spec
        symbolic = tf.nest.map_structure(lambda s: keras.KerasTensor(s.shape, dtype=s.dtype.name), x_spec)
        try:
            output = self.model.compute_output_spec(symbolic)
        except Exception:
            x, _ = first_batch()
            trainable, non_trainable = self.values()
            try:
                output = self.model.stateless_call(trainable, non_trainable, x, training=self.training)[0]
            except Exception as error:
                raise ValueError(
                    f"The model cannot run on the first batch of {source} (inputs of shape {_shapes(x_spec)}): {error}"
                ) from error
        if tf.nest.is_nested(output) or tf.nest.is_nested(y_spec):
            return
        _check_targets(self.loss, tuple(y_spec.shape), tuple(output.shape), source)

    def share(self, trainable, non_trainable, x, y, mask, scale, regularization_weight):
        """scale · Σ_i mask_i ℓ_i on (x, y), plus (with `include_regularization`) regularization_weight · R.

        A replica's part of a loss that is summed over batches and replicas
        (`weighted_loss`): `scale` is 1 over the examples of the whole sum,
        `mask` marks the real examples (None: all), `regularization_weight`
        the part of R it carries (1 / replicas, on one batch only).
        """
        y_pred, regularization = self.outputs(trainable, non_trainable, x)
        value = self.weighted_loss(y, y_pred, mask, scale)
        if self.include_regularization:
            value += regularization * tf.cast(regularization_weight, self.dtype)
        return value


def _stops_on(operations, sources):
    """The names of the StopGradient ops among `operations` (in creation order) whose input depends on `sources`."""
    dependent = {t.ref() for t in sources}
    stops = []
    for op in operations:
        if any(t.ref() in dependent for t in op.inputs):
            if op.type == "StopGradient":
                stops.append(op.name)
            else:
                dependent.update(t.ref() for t in op.outputs)
    return stops


def _shapes(spec):
    return tf.nest.map_structure(lambda s: tuple(s.shape), spec)


def _loss_name(loss):
    """The name of Keras's own loss function behind `loss`, or None for any other loss."""
    function = getattr(loss, "fn", loss)
    if not getattr(function, "__module__", "").startswith("keras."):
        return None
    return getattr(function, "__name__", None)


def _check_targets(loss, target_shape, output_shape, source):
    """Raises a ValueError where `loss` would broadcast targets against outputs (see `check_batch`)."""
    name = _loss_name(loss)
    if not output_shape:  # a scalar output: nothing to align
        return
    if name in _SPARSE_LOSSES:
        expected = output_shape[:-1]
        given = target_shape
        if given and len(given) == len(output_shape) and given[-1] == 1:
            given = given[:-1]
        if not _compatible(given, expected):
            raise ValueError(
                f"The targets of {source} have shape {target_shape}, but {name} takes integer class "
                f"labels of shape {expected}: the model's outputs {output_shape} without their class axis."
            )
    elif name in _SAME_SHAPE_LOSSES:
        given, expected = target_shape, output_shape
        # Keras aligns a trailing axis of size 1 (y of shape (n,) against outputs of shape (n, 1)).
        if given and len(given) == len(expected) + 1 and given[-1] == 1:
            given = given[:-1]
        elif len(expected) == len(given) + 1 and expected[-1] == 1:
            expected = expected[:-1]
        if not _compatible(given, expected):
            raise ValueError(
                f"The targets of {source} have shape {target_shape}, but the model's outputs have shape "
                f"{output_shape}: {name} compares them element by element, so they would be broadcast "
                f"against each other and the loss would be wrong. Give targets of shape {output_shape} "
                "(integer class labels go with sparse_categorical_crossentropy)."
            )


def _compatible(first, second):
    """Whether two shapes are equal where both are known."""
    return len(first) == len(second) and all(a is None or b is None or a == b for a, b in zip(first, second))


class _DropoutOff:
    """Within the block, Dropout layers of `model` pass their inputs through (nothing for None)."""

    def __init__(self, model):
        kinds = (keras.layers.Dropout, keras.layers.GaussianDropout, keras.layers.AlphaDropout)
        self.layers = (
            []
            if model is None
            else [layer for layer in model._flatten_layers(include_self=False) if isinstance(layer, kinds)]
        )

    def __enter__(self):
        self.rates = [layer.rate for layer in self.layers]
        for layer in self.layers:
            layer.rate = 0.0
        return self

    def __exit__(self, *exc):
        for layer, rate in zip(self.layers, self.rates):
            layer.rate = rate
        return False
