"""The probe set every curvature and gradient measurement sums over: streamed, and split across replicas.

A probe set is a finite `tf.data.Dataset` of (x, y) batches in a fixed order.
`ProbeSet.sum` iterates it inside the caller's `tf.function`: the model is
traced once whatever the number of batches, no probe data is embedded in the
traced function, and memory stays that of one batch. Under a
`tf.distribute` strategy each batch is split across the replicas
(`experimental_distribute_dataset`), each replica computes its share inside
`strategy.run`, and the shares are summed with an all-reduce, the
`TPUStrategy` pattern. A replica's share of batch b is weighted by its
examples over N, the probe set's size, so that the sum is the loss averaged
over all N examples, whatever the batch sizes and the split.
"""

import numpy as np
import tensorflow as tf

from analysis_tools._second_order import explained

__all__ = ["FullGradient", "ProbeSet", "check_data", "probe_dataset", "probe_share", "replica_part"]


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
    """(examples, batches) of a probe dataset, in one pass over it."""
    def add(state, element):
        leaf = tf.nest.flatten(element[1])[0]
        return state[0] + tf.shape(leaf, out_type=tf.int64)[0], state[1] + 1

    examples, batches = dataset.reduce((tf.constant(0, tf.int64), tf.constant(0, tf.int64)), add)
    return int(examples), int(batches)


def replica_part(x, y, num_replicas):
    """The calling replica's contiguous part of the batch (x, y): ⌈n / R⌉ examples, or fewer at the end."""
    n = ProbeSet.local_count(y)
    share = (n + num_replicas - 1) // num_replicas
    replica = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.int64)
    start = tf.minimum(replica * share, n)
    stop = tf.minimum(start + share, n)
    return tf.nest.map_structure(lambda a: a[start:stop], (x, y))


class ProbeSet:
    """A probe set, counted once, iterated on every pass, split across the strategy's replicas.

    Arrays are kept in (non-trainable) variables and sliced batch by batch in
    a `tf.while_loop`, which costs nothing beyond the arithmetic; a dataset is
    iterated in the graph (a small fixed cost per pass, and nothing needs to
    fit in memory). Under a strategy with R replicas each replica takes its
    contiguous part of every batch: the first ⌈n_b / R⌉ examples go to replica
    0, the next to replica 1, and so on.

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
            dataset = probe_dataset(data)
            self._spec = dataset.element_spec
            self._distributed = strategy.experimental_distribute_dataset(dataset)
            self.num_examples, self.num_batches = _count(dataset)
            self.batch_size = None
        else:
            self.num_examples, self.batch_size = _array_sizes(data, batch_size)
            self.num_batches = -(-self.num_examples // self.batch_size)
            with tf.init_scope():
                self._arrays = tf.nest.map_structure(
                    lambda a: tf.Variable(a, trainable=False, name="probe_data"), tuple(data)
                )
        if self.num_examples == 0:
            raise ValueError("The probe set is empty.")
        self._examples_per_replica = tf.Variable(
            tf.zeros([self.num_replicas], tf.int64), trainable=False, name="examples_per_replica"
        )

    def batch_spec(self):
        """(x, y) of one batch as `tf.TensorSpec` structures, the batch dimension None."""
        if self._arrays is None:
            return tf.nest.map_structure(
                lambda s: tf.TensorSpec((None,) + tuple(s.shape[1:]), s.dtype), self._spec)
        return tf.nest.map_structure(lambda a: tf.TensorSpec((None,) + tuple(a.shape[1:]), a.dtype), self._arrays)

    @staticmethod
    def local_count(y):
        """The examples in a (replica's part of a) batch."""
        return tf.shape(tf.nest.flatten(y)[0], out_type=tf.int64)[0]

    @staticmethod
    def on_share(y, compute, zeros):
        """(``compute(count)`` on this replica's part (…, y) of a batch, or `zeros` where the part is empty; count).

        A replica's share of the last batch may be empty (fewer examples than
        replicas): it adds nothing.
        """
        count = ProbeSet.local_count(y)
        return tf.cond(count > 0, lambda: compute(count), lambda: zeros), count

    def weight(self, count, dtype):
        """count / N: the weight of a replica's mean loss on `count` examples."""
        return tf.cast(count, dtype) / tf.cast(self.num_examples, dtype)

    def _replica_part(self, x, y):
        """This replica's contiguous part of the batch (x, y)."""
        return replica_part(x, y, self.num_replicas)

    def sum(self, replica_function, initial, *args):
        """Σ over the batches and the replicas of ``replica_function(*args, x, y, first)``.

        `replica_function` runs on every replica's part (x, y) of each batch,
        with ``first`` true on the first batch, and returns a tuple of shares
        and, last, its number of examples. The shares are all-reduced and added
        to `initial`; the examples each replica processed are kept in
        `examples_per_replica`. Call it inside a `tf.function`.
        """
        strategy = self.strategy

        def step(totals, counts, x, y, first):
            if self._arrays is None:
                run = replica_function
            else:
                def run(*arguments):
                    *leading, x_all, y_all, is_first = arguments
                    part_x, part_y = self._replica_part(x_all, y_all)
                    return replica_function(*leading, part_x, part_y, is_first)
            outputs = strategy.run(run, args=args + (x, y, first))
            shares, count = outputs[:-1], outputs[-1]
            totals = tuple(
                total + strategy.reduce(tf.distribute.ReduceOp.SUM, share, axis=None)
                for total, share in zip(totals, shares)
            )
            return totals, counts + tf.stack(strategy.experimental_local_results(count))

        totals = initial
        counts = tf.zeros([self.num_replicas], tf.int64)
        if self._arrays is None:
            first = tf.constant(True)
            for x, y in self._distributed:
                totals, counts = step(totals, counts, x, y, first)
                first = tf.constant(False)
        else:
            for b in tf.range(self.num_batches):
                start = b * self.batch_size
                x, y = tf.nest.map_structure(
                    lambda a: a[start:start + self.batch_size], self._arrays
                )
                totals, counts = step(totals, counts, x, y, tf.equal(b, 0))
        self._examples_per_replica.assign(counts)
        return totals

    @property
    def examples_per_replica(self):
        """The examples each replica processed in the last pass, one int per replica."""
        return [int(count) for count in self._examples_per_replica.numpy()]


def probe_share(model_loss, probe, trainable, non_trainable, x, y, count, first):
    """A replica's share of the probe loss on its part (x, y) of a batch.

    (count / N) · mean loss on (x, y), plus, with `include_regularization`,
    the regularization losses R / replicas on the first batch, so that the sum
    over batches and replicas is the loss averaged over the N probe examples
    plus R once.
    """
    regularization_weight = tf.cast(first, model_loss.dtype) / float(probe.num_replicas)
    return model_loss.share(trainable, non_trainable, x, y, probe.weight(count, model_loss.dtype),
                            regularization_weight)


class FullGradient:
    """∇L over a probe set at given weights, streamed and split across replicas: (flat float64 ∇L, L).

    Each replica's share of each batch is one function, XLA-compiled with
    `jit_compile`; the batches are iterated in one `tf.function`.
    """

    def __init__(self, model_loss, probe, jit_compile):
        self.model_loss = model_loss
        self.probe = probe
        self._replica = tf.function(self._replica_gradient, jit_compile=bool(jit_compile))
        self._function = tf.function(self._gradient, reduce_retracing=True)

    def _replica_gradient(self, trainable, non_trainable, x, y, first):
        def gradient(count):
            with tf.GradientTape() as tape:
                tape.watch(trainable)
                loss = probe_share(self.model_loss, self.probe, trainable, non_trainable, x, y, count, first)
            gradients = self.model_loss.gradients(tape, loss, trainable, range(len(trainable)))
            flat = tf.concat([tf.reshape(tf.cast(g, tf.float64), [-1]) for g in gradients], axis=0)
            return flat, tf.cast(loss, tf.float64)

        zeros = (tf.zeros([self.model_loss.dimension], tf.float64), tf.zeros([], tf.float64))
        (flat, loss), count = self.probe.on_share(y, gradient, zeros)
        return flat, loss, count

    def _gradient(self, trainable, non_trainable):
        initial = (tf.zeros([self.model_loss.dimension], tf.float64), tf.zeros([], tf.float64))
        return self.probe.sum(self._replica, initial, trainable, non_trainable)

    def __call__(self, trainable, non_trainable):
        # XLA reports an op it cannot compile (bicubic resizing has no XLA kernel) when the function first runs.
        with explained("the gradient over the probe set"):
            return self._function(trainable, non_trainable)
