"""Second-order differentiation through what Keras models run: what TensorFlow gets wrong or lacks.

A Hessian-vector product differentiates a gradient. Every op in the first
backward pass therefore needs a gradient rule of its own, and every
`stop_gradient` that leaves a first derivative exact must leave the second
exact too. Two places in a Keras model on TensorFlow break this.

**Moments (`ExactMoments`).** `tf.nn.moments`, which Keras's `ops.moments`
runs (LayerNormalization, BatchNormalization in training mode,
GroupNormalization, and so every KerasHub transformer and most
keras.applications networks), computes

    μ = mean(x),   σ² = mean((x − stop_gradient(μ))²).

The first derivative is exact: ∂σ²/∂μ = −2·mean(x − μ) = 0. The second is
not: the derivative of ∂σ²/∂x_i = 2(x_i − μ)/n along x misses the
−(2/n)·∂μ/∂x term, so H v through every normalization layer is silently
wrong (by 4–5 % of ‖H v‖ on a small GPT-2, ViT or Gemma; against central
differences of the gradient). `ExactMoments` is a context in which Keras
computes σ² = mean((x − μ)²) without the stop: the same values to the last
bit, and the derivatives of every order exact. `analysis_tools._model_loss`
evaluates every loss it differentiates inside it.

**Resizing (`ExactResizeGradients`).** The gradient of a bilinear resize,
y = A x for a fixed linear map A (upsampling in DeepLabV3, SegFormer and
feature pyramids), is TensorFlow's op ``ResizeBilinearGrad``: ḡ ↦ Aᵀḡ. A
Hessian-vector product differentiates that op again, along ḡ, and
TensorFlow declares it not differentiable, so the term is silently zero:
the "Hessian" of a network with bilinear upsampling was not even symmetric
(uᵀHv and vᵀHu differed by 7 % on a small DeepLabV3 in float64, and
Lanczos from different seeds gave λ1 = 176.9 … 182.4). The derivative of
ḡ ↦ Aᵀḡ is Aᵀ, whose gradient is A: the resize itself, with the same
attributes, back to the size of ḡ. Nor can a rule be given to
``ResizeBilinearGrad`` itself: TensorFlow's tape keeps no inputs for an op
it considers not differentiable. `ExactResizeGradients` therefore replaces,
while a product is traced, the gradient rules of the forward ops
``ResizeBilinear``, ``ResizeNearestNeighbor`` and ``ResizeBicubic`` (the
last two's gradient ops have no derivative in TensorFlow at all, which
raised ``LookupError``): a separable resize is Y = R X Cᵀ, with the small
interpolation matrices R and C read off the resize of an identity, and the
rule computes Aᵀḡ = Rᵀ Ḡ C as an einsum, whose derivatives of every order,
reverse and forward, under XLA or not, are exact. It costs O(h + w) per
pixel instead of O(1): nothing next to the convolutions around it at the
sizes of the sweep. TensorFlow's registry is restored afterwards.

**The slice rule under XLA.** TensorFlow's rule
for `tf.slice` (what `keras.ops.slice` runs; KerasHub's `PositionEmbedding`
slices its table with it in GPT-2, BERT and others) emits an
``XlaDynamicUpdateSlice`` op when it is traced inside an XLA context:

    ∂/∂x slice(x, b, s) applied to g  =  DynamicUpdateSlice(zeros_like(x), g, b)

and TensorFlow registers no gradient for ``XlaDynamicUpdateSlice``. A
second derivative through a slice in a ``jit_compile=True`` function then
fails with ``LookupError: gradient registry has no entry for:
XlaDynamicUpdateSlice``. This module registers that rule, once, when
`analysis_tools` is imported (if TensorFlow or another library already
registered one, theirs is kept).

For y = DynamicUpdateSlice(x, u, b) (u written into x at the start indices b,
which XLA clamps so that u fits: b_i ← min(max(b_i, 0), dim(x)_i − dim(u)_i)):

    ∂L/∂x = DynamicUpdateSlice(ḡ, 0, b)     (ḡ with the written window zeroed)
    ∂L/∂u = slice(ḡ, b, shape(u))           (the window of ḡ)
    ∂L/∂b = None                            (integer indices)

with ḡ = ∂L/∂y. Both are linear in ḡ and are themselves a DynamicUpdateSlice
and a slice, so derivatives of any order close over the two rules.
"""

import contextlib
import re

import tensorflow as tf

_OP = "XlaDynamicUpdateSlice"


def _exact_moments(x, axes, keepdims):
    """(mean, variance) of `x` over `axes`, with every derivative exact (no stop-gradient)."""
    mean = tf.reduce_mean(x, axes, keepdims=True)
    variance = tf.reduce_mean(tf.square(x - mean), axes, keepdims=True)
    if not keepdims:
        mean, variance = tf.squeeze(mean, axes), tf.squeeze(variance, axes)
    return mean, variance


class ExactMoments:
    """Within the block, Keras's TensorFlow backend computes moments without `stop_gradient` (see above).

    Affects only what is traced inside the block (the loss a Hessian-vector
    product differentiates); values are unchanged. Not thread-safe, like any
    tracing-time switch.
    """

    def __enter__(self):
        from keras.src.backend.tensorflow import nn as backend_nn

        self._module = backend_nn
        self._previous = backend_nn._compute_moments
        backend_nn._compute_moments = _exact_moments
        return self

    def __exit__(self, *exc):
        self._module._compute_moments = self._previous
        return False


def _separable_rule(resize):
    """The gradient rule of a resize as two small matrix products, differentiable to every order.

    A bilinear, bicubic or nearest-neighbour resize of an [h, w] image to
    [h', w'] is separable: Y = R X Cᵀ per image and channel, R the [h', h]
    matrix of the rows' interpolation weights and C the [w', w] one of the
    columns'. Each matrix is read off the resize itself, as the resize of an
    identity (its columns are the images of the unit vectors), so it has
    TensorFlow's weights to their last bit. The gradient is then
    Rᵀ Ḡ C, an einsum in the image's dtype.
    """

    def rule(op, grad):
        image = op.inputs[0]
        options = {name: op.get_attr(name) for name in ("align_corners", "half_pixel_centers")}
        before, after = tf.shape(image), tf.shape(grad)

        def weights(n_in, n_out):  # [n_out, n_in]
            identity = tf.reshape(tf.eye(n_in, dtype=tf.float32), [1, n_in, 1, n_in])
            resized = resize(identity, tf.stack([n_out, 1]), **options)
            return tf.cast(tf.reshape(resized, [n_out, n_in]), image.dtype)

        rows, columns = weights(before[1], after[1]), weights(before[2], after[2])
        return [tf.einsum("bhwc,hH,wW->bHWc", tf.cast(grad, image.dtype), rows, columns), None]

    return rule


# Each rule replaces TensorFlow's while a product is traced.
_RESIZE_RULES = {
    "ResizeBilinear": _separable_rule(lambda x, size, **a: tf.raw_ops.ResizeBilinear(images=x, size=size, **a)),
    "ResizeNearestNeighbor": _separable_rule(
        lambda x, size, **a: tf.raw_ops.ResizeNearestNeighbor(images=x, size=size, **a)
    ),
    "ResizeBicubic": _separable_rule(lambda x, size, **a: tf.raw_ops.ResizeBicubic(images=x, size=size, **a)),
}


class ExactResizeGradients:
    """Within the block, image resizing has gradients whose derivatives are exact (see the module docstring).

    Entered around everything a Hessian-vector product differentiates
    twice. The gradient registry is changed only inside the block and
    restored on exit, so the rest of the program keeps TensorFlow's rules.
    Not thread-safe, like any tracing-time switch.
    """

    def __enter__(self):
        from tensorflow.python.framework import ops, registry

        self._entries = ops._gradient_registry._registry
        self._previous = {name: self._entries.get(name) for name in _RESIZE_RULES}
        for name, rule in _RESIZE_RULES.items():
            self._entries[name] = {registry._TYPE_TAG: rule, registry._LOCATION_TAG: None}
        return self

    def __exit__(self, *exc):
        for name, entry in self._previous.items():
            if entry is None:
                self._entries.pop(name, None)
            else:
                self._entries[name] = entry
        return False


def _dynamic_update_slice_gradient(op, grad):
    operand, update, indices = op.inputs
    index_dtype = indices.dtype
    size = tf.shape(update, out_type=index_dtype)
    start = tf.minimum(tf.maximum(indices, tf.zeros_like(indices)), tf.shape(operand, out_type=index_dtype) - size)
    # The window as a boolean mask (public ops with a dynamic start, compilable by XLA).
    rank = operand.shape.rank
    window = None
    for axis in range(rank):
        position = tf.range(tf.shape(operand, out_type=index_dtype)[axis])
        inside = (position >= start[axis]) & (position < start[axis] + size[axis])
        inside = tf.reshape(inside, [-1 if a == axis else 1 for a in range(rank)])
        window = inside if window is None else window & inside
    operand_grad = grad if window is None else tf.where(window, tf.zeros_like(grad), grad)
    update_grad = tf.slice(grad, start, size)
    return operand_grad, update_grad, None


_NO_XLA_KERNEL = re.compile(
    r"Detected unsupported operations when trying to compile graph \S+ on (?P<device>\w+): (?P<type>\w+)"
)
_REQUESTED_TYPE = re.compile(r"Requested Attributes: T=DT_(?P<dtype>\w+)")

_NO_RULE = (
    re.compile(r"gradient registry has no entry for: (?P<type>[\w.]+)"),
    re.compile(r"No gradient defined for operation '(?P<name>[^']+)' \(op type: (?P<type>[\w.]+)\)"),
)


@contextlib.contextmanager
def explained(purpose):
    """Within the block, errors TensorFlow raises for what a model cannot do are re-raised saying what to do.

    * An op of the model's first backward pass with no gradient rule of its
      own (``LookupError`` from TensorFlow's gradient registry): a product
      differentiates that pass again, so `purpose` cannot be computed for
      this model until the op has a rule. The message names the op.
    * XLA refusing to compile a product because the model reads a tensor's
      shape as a constant (``Reading input as constant from a dynamic
      tensor``): the product runs without XLA with ``jit_compile=False``.
    * XLA with no kernel for an op of the product, raised when the compiled
      function first runs. The known case: TensorFlow's XLA bridge registers
      ``MaxPoolGradGrad`` (the second derivative of max pooling) for float32
      only, so the product of a float64 model with max pooling
      cannot be compiled. The message names the op, the dtype and the
      device, and says to pass ``jit_compile=False``.

    Wrap both where a product is traced and where a function that compiles
    one runs (`HessianOperator.matvec`, `Lanczos.__call__`). Other errors
    pass through unchanged.
    """
    try:
        yield
    except LookupError as error:
        for pattern in _NO_RULE:
            match = pattern.search(str(error))
            if match:
                name = match.groupdict().get("name")
                where = f" ({name})" if name else ""
                subject = purpose[:1].upper() + purpose[1:]
                raise ValueError(
                    f"TensorFlow has no gradient rule for the op {match['type']}{where}, which this model's "
                    f"gradient runs. {subject} differentiates the gradient again, so it cannot be computed "
                    f"for this model: register a rule for it (`tf.RegisterGradient({match['type']!r})`), or "
                    "replace the layer that runs it."
                ) from error
        raise
    except tf.errors.InvalidArgumentError as error:
        if "Reading input as constant from a dynamic tensor" in str(error):
            raise ValueError(
                f"XLA cannot compile {purpose} for this model: it reads a tensor's shape as a constant where "
                "XLA sees a shape that depends on the data. Pass `jit_compile=False` (the same numbers, "
                "without XLA)."
            ) from error
        match = _NO_XLA_KERNEL.search(str(error))
        if match:
            dtype = _REQUESTED_TYPE.search(str(error))
            which = f" for {dtype['dtype'].lower()}" if dtype else ""
            known = " (TensorFlow registers it for float32 only)" if match["type"] == "MaxPoolGradGrad" else ""
            raise ValueError(
                f"XLA has no kernel for the op {match['type']}{which} on {match['device']}, and {purpose} "
                f"for this model runs it in an XLA-compiled function. Pass `jit_compile=False` (the same "
                f"numbers, without XLA), or compute the model in a dtype XLA supports for this op{known}."
            ) from error
        raise


def register():
    """Registers the missing rules (idempotent; keeps a rule registered elsewhere)."""
    try:
        tf.RegisterGradient(_OP)(_dynamic_update_slice_gradient)
    except KeyError:  # already registered (by a later TensorFlow, or another library)
        pass


register()
