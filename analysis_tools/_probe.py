"""The probe set every curvature and gradient measurement sums over: streamed, and split across replicas.

A probe set is a finite `tf.data.Dataset` of (x, y) batches in a fixed order.
`ProbeSet.sum` iterates it inside the caller's `tf.function`: the model is
traced once whatever the number of batches, no probe data is embedded in the
traced function, and memory stays that of one batch. Under a
`tf.distribute` strategy each batch is split across the replicas by
`Replicas`, the one place that knows how: the batch is padded to a static
size (a multiple of the replicas) with a mask, each replica computes its
share inside `strategy.run` as one `ReplicaProgram` (XLA-compiled, traced
once, static shapes, in the model's dtype: no float64 on a float32 model's
replicas), and the shares are summed with an all-reduce, the `TPUStrategy`
pattern. Each example's loss is weighted by its mask over N, the probe set's
size, so that the sum is the loss averaged over all N examples, whatever
the batch sizes and the split. The batches' reduced results are added in
float64 outside the replicas (on the host).
"""

import numpy as np
import tensorflow as tf

from analysis_tools._second_order import explained

__all__ = [
    "FullGradient",
    "ProbeSet",
    "ReplicaProgram",
    "Replicas",
    "batch_count",
    "check_data",
    "probe_dataset",
    "probe_share",
]


def probe_dataset(data, batch_size=None):
    """The probe set as a `tf.data.Dataset` of (x, y) batches, in a fixed order.

    Arrays (x may be a nested structure) are batched in their order, `batch_size`
    examples a batch (one batch if None), without shuffling. A dataset is used
    as it is (elements beyond (x, y), such as sample weights, are dropped): it
    must be finite and yield the same batches on every pass.
    """
    if isinstance(data, tf.data.Dataset):
        spec = data.element_spec
        if not isinstance(spec, (tuple, list)) or len(spec) < 2:
            raise ValueError("A probe dataset must yield (x, y) pairs.")
        if data.cardinality() == tf.data.INFINITE_CARDINALITY:
            raise ValueError("The probe dataset is infinite: take a finite part of it (`.take(n)`).")
        return data.map(lambda *element: (element[0], element[1]))
    _, size = _array_sizes(data, batch_size)
    return tf.data.Dataset.from_tensor_slices(tuple(data)).batch(size)


def _array_sizes(data, batch_size):
    """(examples, batch size) of an (x, y) pair of arrays, checked."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError("`data` must be an (x, y) pair of arrays or a tf.data.Dataset of (x, y).")
    sizes = {len(a) for a in tf.nest.flatten(tuple(data))}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(f"`data` needs as many targets as inputs, and at least one; got sizes {sorted(sizes)}.")
    n = sizes.pop()
    size = n if batch_size is None else int(batch_size)
    if size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}.")
    return n, size


def check_data(model_loss, data, batch_size, source):
    """Checks that `data` fits the model and its loss (`ModelLoss.check_batch`), from one batch.

    Args:
        model_loss: The `ModelLoss` the data will be fed to.
        data: (x, y) arrays or a `tf.data.Dataset` of (x, y) batches.
        batch_size: Batch size for array data (one batch if None).
        source: What the data are, for messages.

    Raises:
        ValueError: If `data` is not (x, y) data, or does not fit the model and the loss.
    """
    if isinstance(data, tf.data.Dataset):
        dataset = probe_dataset(data)
        spec = dataset.element_spec

        def first_batch():
            return next(iter(dataset))
    else:
        _, size = _array_sizes(data, batch_size)
        spec = tf.nest.map_structure(_batch_spec, tuple(data))

        def first_batch():
            return tf.nest.map_structure(lambda a: a[:size], tuple(data))

    model_loss.check_batch(spec, first_batch, source)


def _batch_spec(array):
    """The `tf.TensorSpec` of a batch of `array`'s examples (batch dimension None)."""
    dtype = getattr(array, "dtype", None)
    dtype = tf.as_dtype(dtype if dtype is not None else np.asarray(array).dtype)
    return tf.TensorSpec((None,) + tuple(np.shape(array))[1:], dtype)


def _count(dataset):
    """(examples, batches, largest batch) of a probe dataset, in one pass over it."""

    def add(state, element):
        size = tf.shape(tf.nest.flatten(element[1])[0], out_type=tf.int64)[0]
        return state[0] + size, state[1] + 1, tf.maximum(state[2], size)

    zero = tf.constant(0, tf.int64)
    examples, batches, largest = dataset.reduce((zero, zero, zero), add)
    return int(examples), int(batches), int(largest)


def batch_count(y):
    """The examples in a batch (y its targets), as an int32 tensor."""
    return tf.shape(tf.nest.flatten(y)[0], out_type=tf.int32)[0]


def has_batch_statistics(model):
    """Whether `model` has layers that normalize with the batch's own statistics in training mode (BatchNorm)."""
    return any(hasattr(layer, "moving_mean") for layer in model._flatten_layers(include_self=True))


class Replicas:
    """The one place that splits a global batch over a strategy's replicas: padded, masked, run and reduced.

    What runs on the replicas has static shapes, as a TPU needs (every new
    shape is a new XLA compilation). A global batch of n ≤ `batch_size`
    examples is padded on the host to ``padded_size = R · share`` examples,
    ``share = ⌈batch_size / R⌉``, by repeating its last example, with a mask
    (1 for its own examples, 0 for the padding): so every batch, the partial
    last one too, has one shape. Replica r takes rows r · share … (r + 1) ·
    share − 1 (a reshape and a gather, static whether the replica id is a
    Python int or, as on a TPU, a graph value) and weights each example's
    loss by its mask: padding adds exactly nothing, and its repeated real
    inputs keep every loss and gradient finite (0 · NaN would not be 0).

    Batch statistics see the padding: `check_model` refuses a model that
    normalizes with them (BatchNorm in training mode) where padding occurs.

    The replicas' outputs are all-reduced (summed) in their own dtype, the
    model's: float32, or bfloat16 where the model computes in it.

    Args:
        strategy: The `tf.distribute.Strategy`.
        batch_size: The largest global batch.
        padded: Whether any batch will need padding (a partial batch, or a
            batch size that R does not divide); False drops the mask (None),
            so the loss is the plain mean of each share.
    """

    def __init__(self, strategy, batch_size, padded):
        self.strategy = strategy
        self.num_replicas = strategy.num_replicas_in_sync
        self.batch_size = int(batch_size)
        self.share = -(-self.batch_size // self.num_replicas)
        self.padded_size = self.share * self.num_replicas
        self.padded = bool(padded) or self.padded_size != self.batch_size

    def check_model(self, model_loss, source):
        """Raises a ValueError where padding would enter a model's batch statistics (see the class docstring)."""
        if self.padded and model_loss.training and has_batch_statistics(model_loss.model):
            raise ValueError(
                f"{source} has batches that do not fill {self.num_replicas} replica share(s) of {self.share} "
                f"examples (batch size {self.batch_size}), so they are padded; the model has BatchNormalization, "
                "which in training mode would normalize with statistics of the padded batch and give a different "
                "curvature. Choose a batch size that divides the number of examples and is a multiple of the "
                'replicas, or measure with mode="inference".'
            )

    def _too_large(self, count=None):
        batch = "A batch" if count is None else f"A batch of {count} examples"
        return (
            f"{batch} is larger than the {self.padded_size} examples the replica programs were built for "
            "(the first or largest batch): give batches of at most that size."
        )

    def pad_indices(self, start, count):
        """Indices start … start + count − 1, then start + count − 1 repeated, to `padded_size` (static)."""
        with tf.control_dependencies(
            [tf.debugging.assert_less_equal(count, self.padded_size, message=self._too_large())]
        ):
            return start + tf.minimum(tf.range(self.padded_size), count - 1)

    def pad(self, batch, model_loss=None, source="`data`"):
        """(`batch` (x, y) padded to `padded_size` examples, its mask or None): on the host.

        Eagerly, a batch larger than `padded_size` raises a ValueError, and
        with `model_loss` a padded batch is first checked by `check_model`
        (in a graph, `pad_indices` asserts the size).
        """
        count = batch_count(batch[1])
        if tf.executing_eagerly():
            if int(count) > self.padded_size:
                raise ValueError(f"{source}: {self._too_large(int(count))}")
            if model_loss is not None and int(count) != self.padded_size:
                self.check_model(model_loss, source)
        index = self.pad_indices(0, count)
        padded = tf.nest.map_structure(lambda a: tf.gather(a, index), tuple(batch))
        return padded, self.mask(count)

    def mask(self, count):
        """1 for the first `count` of `padded_size` examples, 0 for the rest (None without padding)."""
        return tf.range(self.padded_size) < count if self.padded else None

    def counts(self, count):
        """The real examples on each replica when a batch of `count` is padded, an int64 [R] tensor."""
        starts = tf.range(self.num_replicas, dtype=tf.int32) * self.share
        return tf.cast(tf.clip_by_value(count - starts, 0, self.share), tf.int64)

    def part(self, tensors):
        """The calling replica's static share of padded global tensors (inside `strategy.run`)."""
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group

        def take(a):
            a = tf.convert_to_tensor(a)
            return tf.gather(tf.reshape(a, [self.num_replicas, self.share] + a.shape[1:].as_list()), replica)

        return tf.nest.map_structure(take, tensors)

    def run(self, program, args, batch, mask):
        """``program(*args, x, y, mask)`` on every replica's share of the padded `batch`; outputs summed over them.

        `program` is a `ReplicaProgram` (or any function of per-replica
        tensors) returning a tuple; each output is all-reduced in its dtype.
        """

        def on_replica(*arguments):
            *leading, global_batch, global_mask = arguments
            x, y = self.part(global_batch)
            share_mask = None if global_mask is None else tf.cast(self.part(global_mask), tf.float32)
            return program(*leading, x, y, share_mask)

        outputs = self.strategy.run(on_replica, args=tuple(args) + (batch, mask))
        return tuple(self.strategy.reduce(tf.distribute.ReduceOp.SUM, output, axis=None) for output in outputs)


class ReplicaProgram:
    """A replica function compiled once: XLA-compiled, traced for one input signature, refusing any other.

    The signature is that of its first call. A later call with other shapes
    or dtypes raises a ValueError naming both, instead of silently tracing
    and compiling again (on a TPU a compilation costs seconds to minutes).
    Under R replicas the one trace is compiled once per device.

    Args:
        function: The replica function.
        jit_compile: Whether XLA compiles it.
        name: What it computes, for messages ("a Hessian-vector product").
    """

    def __init__(self, function, jit_compile, name):
        self.name = name

        def scoped(*args):
            # Under a root name scope: Keras layers named like "__block_1" are not valid root scope names.
            with tf.name_scope("replica"):
                return function(*args)

        self.function = tf.function(scoped, jit_compile=bool(jit_compile))
        self.signature = None
        self.concrete = None

    def __call__(self, *args):
        signature = tf.nest.map_structure(_spec_of, args)
        if self.signature is None:
            self.signature = signature
        elif signature != self.signature:
            raise ValueError(
                f"The replica program for {self.name} was built for inputs {self.signature} and is now called "
                f"with {signature}: it would be traced and compiled again. Keep the batch size and the "
                "weights' shapes fixed, or build a new operator."
            )
        if self.concrete is None:
            # One concrete function for every replica: a `tf.function` would trace again per replica device.
            self.concrete = self.function.get_concrete_function(*args)
        return self.concrete(*args)

    @property
    def tracing_count(self):
        """How many times the program was traced (1 after any number of calls)."""
        return self.function.experimental_get_tracing_count()


def _spec_of(value):
    if value is None or isinstance(value, (bool, int, float)):
        return value
    value = tf.convert_to_tensor(value) if not hasattr(value, "shape") else value
    return tf.TensorSpec(value.shape, value.dtype)


class ProbeSet:
    """A probe set, counted once, iterated on every pass, split across the strategy's replicas.

    Arrays are kept in (non-trainable) variables and gathered batch by batch
    in a `tf.while_loop`, which costs nothing beyond the arithmetic; a dataset
    is iterated in the graph (a small fixed cost per pass, and nothing needs
    to fit in memory). Every batch is padded to one static shape and split
    by `Replicas`: the first ``share`` examples go to replica 0, the next to
    replica 1, and so on; each replica's loss is Σ_i mask_i ℓ_i / N over its
    share, so that the sum over batches and replicas is the loss averaged
    over the N probe examples, whatever the batch sizes and the split.

    Args:
        data: (x, y) arrays or a finite `tf.data.Dataset` of (x, y) batches (see `probe_dataset`).
        batch_size: Batch size for array data (the global one under a strategy).
        strategy: The `tf.distribute.Strategy` to split the batches over.
    """

    def __init__(self, data, batch_size, strategy):
        self.source = data  # what it was built from, for operators that share it
        self.strategy = strategy
        self.num_replicas = strategy.num_replicas_in_sync
        if isinstance(data, tf.data.Dataset):
            self._arrays = None
            self._dataset = probe_dataset(data)
            self._spec = self._dataset.element_spec
            self.num_examples, self.num_batches, largest = _count(self._dataset)
            self.batch_size = None
            padded = self.num_examples != largest * self.num_batches  # some batch is smaller than the largest
        else:
            self.num_examples, self.batch_size = _array_sizes(data, batch_size)
            self.num_batches = -(-self.num_examples // self.batch_size)
            largest = min(self.batch_size, self.num_examples)
            padded = self.num_examples % largest != 0
            with tf.init_scope():
                self._arrays = tf.nest.map_structure(
                    lambda a: tf.Variable(a, trainable=False, name="probe_data"), tuple(data)
                )
        if self.num_examples == 0:
            raise ValueError("The probe set is empty.")
        self.replicas = Replicas(strategy, largest, padded)
        self.scale = 1.0 / self.num_examples
        self._examples_per_replica = tf.Variable(
            tf.zeros([self.num_replicas], tf.int64), trainable=False, name="examples_per_replica"
        )

    def refill(self, data):
        """Replace the arrays of an array probe set by `data`, (x, y) arrays of the same shapes and dtypes.

        The programs traced for this probe set serve the new arrays as they
        are: nothing is traced or compiled again.

        Raises:
            ValueError: For a dataset probe set, or arrays of other shapes or dtypes.
        """
        if self._arrays is None:
            raise ValueError("Only a probe set of arrays can be refilled.")
        data = tf.nest.map_structure(tf.convert_to_tensor, tuple(data))
        tf.nest.assert_same_structure(data, self._arrays)
        for new, old in zip(tf.nest.flatten(data), tf.nest.flatten(self._arrays)):
            if new.shape != old.shape or new.dtype != old.dtype:
                raise ValueError(
                    f"The new arrays must match the probe set's: {new.shape} {new.dtype.name} "
                    f"against {old.shape} {old.dtype.name}."
                )
            old.assign(new)

    @property
    def padded(self):
        """Whether some batch is padded (a partial batch, or a batch size the replicas do not divide)."""
        return self.replicas.padded

    def check_model(self, model_loss):
        """Raises a ValueError where padding would change the model's batch statistics (`Replicas.check_model`)."""
        self.replicas.check_model(model_loss, "The probe set")

    def batch_spec(self):
        """(x, y) of one batch as `tf.TensorSpec` structures, the batch dimension None."""
        if self._arrays is None:
            return tf.nest.map_structure(lambda s: tf.TensorSpec((None,) + tuple(s.shape[1:]), s.dtype), self._spec)
        return tf.nest.map_structure(lambda a: tf.TensorSpec((None,) + tuple(a.shape[1:]), a.dtype), self._arrays)

    def sum(self, program, initial, *args):
        """Σ over the batches and the replicas of ``program(*args, x, y, mask, first)``, in float64 on the host.

        `program` runs on every replica's static share (x, y) of each padded
        batch, with its mask (None where nothing is padded) and ``first``
        true on the first batch, and returns a tuple of shares in the
        model's dtype. They are all-reduced in that dtype, and each batch's
        reduced result is added to `initial` in float64 outside the
        replicas. The examples each replica processed are kept in
        `examples_per_replica`. Call it inside a `tf.function`.
        """
        replicas = self.replicas

        def step(totals, counts, batch, count, first):
            padded_mask = replicas.mask(count)

            def on_replica(*arguments):
                *leading, x, y, mask = arguments
                return program(*leading, x, y, mask, first)

            shares = replicas.run(on_replica, args, batch, padded_mask)
            totals = tuple(total + tf.cast(share, total.dtype) for total, share in zip(totals, shares))
            return totals, counts + replicas.counts(count)

        totals = tuple(initial)
        counts = tf.zeros([self.num_replicas], tf.int64)
        if self._arrays is None:
            first = tf.constant(True)
            for x, y in self._dataset:
                count = batch_count(y)
                batch, _ = replicas.pad((x, y))
                totals, counts = step(totals, counts, batch, count, first)
                first = tf.constant(False)
        else:
            for b in tf.range(self.num_batches, dtype=tf.int32):
                start = b * self.batch_size
                count = tf.minimum(self.batch_size, self.num_examples - start)
                index = replicas.pad_indices(start, count)
                batch = tf.nest.map_structure(lambda a: tf.gather(a, index), self._arrays)
                totals, counts = step(totals, counts, batch, count, tf.equal(b, 0))
        self._examples_per_replica.assign(counts)
        return totals

    @property
    def examples_per_replica(self):
        """The examples each replica processed in the last pass, one int per replica."""
        return [int(count) for count in self._examples_per_replica.numpy()]


def probe_share(model_loss, probe, trainable, non_trainable, x, y, mask, first):
    """A replica's share of the probe loss on its share (x, y) of a batch: Σ_i mask_i ℓ_i / N (+ R / replicas).

    With `include_regularization`, the regularization losses R / replicas
    are added on the first batch, so that the sum over batches and replicas
    is the loss averaged over the N probe examples plus R once.
    """
    regularization_weight = tf.cast(first, model_loss.dtype) / float(probe.num_replicas)
    return model_loss.share(trainable, non_trainable, x, y, mask, probe.scale, regularization_weight)


class FullGradient:
    """∇L over a probe set at given weights, streamed and split across replicas: (flat float64 ∇L, L).

    Each replica's share of each batch is one `ReplicaProgram` (XLA-compiled
    with `jit_compile`, traced once); it returns its share of the gradient
    and the loss in the model's dtype, all-reduced in that dtype, and the
    batches' reduced results are added in float64 outside the replicas.
    """

    def __init__(self, model_loss, probe, jit_compile):
        self.model_loss = model_loss
        self.probe = probe
        probe.check_model(model_loss)
        self._replica = ReplicaProgram(self._replica_gradient, jit_compile, "the gradient over the probe set")
        self._function = tf.function(self._gradient, reduce_retracing=True)

    def _replica_gradient(self, trainable, non_trainable, x, y, mask, first):
        with tf.GradientTape() as tape:
            tape.watch(trainable)
            loss = probe_share(self.model_loss, self.probe, trainable, non_trainable, x, y, mask, first)
        gradients = self.model_loss.gradients(tape, loss, trainable, range(len(trainable)))
        return tf.concat([tf.reshape(g, [-1]) for g in gradients], axis=0), loss

    def _gradient(self, trainable, non_trainable):
        initial = (tf.zeros([self.model_loss.dimension], tf.float64), tf.zeros([], tf.float64))
        return self.probe.sum(self._replica, initial, trainable, non_trainable)

    def __call__(self, trainable, non_trainable):
        # XLA reports an op it cannot compile (bicubic resizing has no XLA kernel) when the function first runs.
        with explained("the gradient over the probe set"):
            return self._function(trainable, non_trainable)


class ProbeLoss:
    """L over a probe set at given weights, by forward passes only: a float64 scalar.

    The forward half of `FullGradient`: each replica's share of each batch is
    one `ReplicaProgram` (XLA-compiled with `jit_compile`, traced once), its
    share all-reduced in the model's dtype, the batches added in float64
    outside the replicas.
    """

    def __init__(self, model_loss, probe, jit_compile):
        self.model_loss = model_loss
        self.probe = probe
        probe.check_model(model_loss)
        self._replica = ReplicaProgram(self._replica_loss, jit_compile, "the loss over the probe set")
        self._function = tf.function(self._loss, reduce_retracing=True)

    def _replica_loss(self, trainable, non_trainable, x, y, mask, first):
        return (probe_share(self.model_loss, self.probe, trainable, non_trainable, x, y, mask, first),)

    def _loss(self, trainable, non_trainable):
        (loss,) = self.probe.sum(self._replica, (tf.zeros([], tf.float64),), trainable, non_trainable)
        return loss

    def __call__(self, trainable, non_trainable):
        with explained("the loss over the probe set"):
            return self._function(trainable, non_trainable)
