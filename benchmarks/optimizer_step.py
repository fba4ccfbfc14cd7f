r"""Step time of every tf_adaptive optimizer against Keras's built-ins, in one run.

Two measurements, both XLA-compiled on the TensorFlow backend:

* **update**: `optimizer.apply(grads, variables)` alone, inside
  `tf.function(jit_compile=True)`, with fixed gradients for the variables of an
  MLP. This is the cost the optimizer adds, with nothing to hide it.
* **train step**: `model.train_on_batch` of the same MLP compiled with
  `jit_compile=True`: forward, backward and update, what a user of `fit` sees.

The optimizers are timed round-robin (every repeat times each of them once, in
a shuffled order), so drift in the machine's speed hits them all alike, and the
table gives the minimum over repeats (or the median, `--statistic=median`) and
its ratio to `keras.optimizers.Adam`.

    python benchmarks/optimizer_step.py
    python benchmarks/optimizer_step.py --width=2048 --repeats=30
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

import tf_adaptive

FLAGS = flags.FLAGS
flags.DEFINE_integer("width", 1024, "Width of the MLP's hidden layers.")
flags.DEFINE_integer("depth", 4, "Number of Dense layers.")
flags.DEFINE_integer("batch_size", 256, "Batch size of the train step.")
flags.DEFINE_integer("steps", 20, "Steps per timing.")
flags.DEFINE_integer("repeats", 15, "Timings per optimizer (round-robin); the median is reported.")
flags.DEFINE_integer("seed", 0, "Seed for data, weights and the round-robin order.")
flags.DEFINE_enum(
    "statistic",
    "min",
    ["min", "median"],
    "How the repeats are summarized: the minimum is the least disturbed by other load.",
)
flags.DEFINE_list("optimizers", [], "Only these rows (names as printed); Keras's Adam is always timed.")

BASELINE = "keras Adam"


def optimizers():
    """Name → factory. Keras's built-ins first, then ours with their defaults."""
    factories = {
        BASELINE: lambda: keras.optimizers.Adam(1e-3),
        "keras SGD(momentum)": lambda: keras.optimizers.SGD(1e-2, momentum=0.9),
        "keras Lion": lambda: keras.optimizers.Lion(1e-4),
        # Keras's nearest relative of GClip: it clips the raw gradient's global norm.
        "keras SGD(global_clip)": lambda: keras.optimizers.SGD(1e-2, momentum=0.9, global_clipnorm=1.0),
        # The factored second moment is not element-wise: compare Adafactor with Keras's own.
        "keras Adafactor": lambda: keras.optimizers.Adafactor(1e-3),
    }
    for name in tf_adaptive.__all__:
        factories[name] = getattr(tf_adaptive, name)
    return factories


def build_model():
    keras.utils.set_random_seed(FLAGS.seed)
    layers = [keras.Input((FLAGS.width,))]
    layers += [keras.layers.Dense(FLAGS.width, activation="relu") for _ in range(FLAGS.depth - 1)]
    layers += [keras.layers.Dense(10)]
    return keras.Sequential(layers)


class UpdateTimer:
    """`apply` alone, on fixed gradients, compiled with XLA."""

    def __init__(self, make_optimizer):
        model = build_model()
        self.variables = model.trainable_variables
        rng = np.random.default_rng(FLAGS.seed)
        self.grads = [tf.constant(rng.normal(size=v.shape).astype("float32")) for v in self.variables]
        optimizer = make_optimizer()
        optimizer.build(self.variables)
        self.step = tf.function(lambda grads: optimizer.apply(grads, self.variables), jit_compile=True)

    def run(self, steps):
        for _ in range(steps):
            self.step(self.grads)
        self.variables[0].numpy()  # wait for the device


class TrainStepTimer:
    """`train_on_batch` of the whole model, compiled with XLA."""

    def __init__(self, make_optimizer):
        self.model = build_model()
        self.model.compile(
            optimizer=make_optimizer(),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=True,
        )
        rng = np.random.default_rng(FLAGS.seed)
        self.x = tf.constant(rng.normal(size=(FLAGS.batch_size, FLAGS.width)).astype("float32"))
        self.y = tf.constant(rng.integers(0, 10, size=FLAGS.batch_size).astype("int32"))

    def run(self, steps):
        for _ in range(steps):
            self.model.train_on_batch(self.x, self.y)
        self.model.trainable_variables[0].numpy()


def time_round_robin(timers, rng):
    for timer in timers.values():  # compile and warm up
        timer.run(3)
    samples = {name: [] for name in timers}
    for _ in range(FLAGS.repeats):
        for name in rng.permutation(list(timers)):
            start = time.perf_counter()
            timers[name].run(FLAGS.steps)
            samples[name].append((time.perf_counter() - start) / FLAGS.steps)
    summarize = np.min if FLAGS.statistic == "min" else np.median
    return {name: float(summarize(s)) for name, s in samples.items()}


def main(argv):
    del argv
    # One train function per model is traced on purpose; keep the retracing notice out of the table.
    tf.get_logger().setLevel("ERROR")
    rng = np.random.default_rng(FLAGS.seed)
    factories = optimizers()
    if FLAGS.optimizers:
        unknown = set(FLAGS.optimizers) - set(factories)
        if unknown:
            raise app.UsageError(f"unknown --optimizers {sorted(unknown)}; choose from {list(factories)}")
        factories = {n: f for n, f in factories.items() if n == BASELINE or n in FLAGS.optimizers}
    parameters = sum(int(np.prod(v.shape)) for v in build_model().trainable_variables)
    print(
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, CPU, jit_compile=True; "
        f"MLP {FLAGS.depth}×{FLAGS.width} ({parameters:,} parameters), batch {FLAGS.batch_size}; "
        f"{FLAGS.statistic} of {FLAGS.repeats} round-robin timings of {FLAGS.steps} steps\n"
    )
    update = time_round_robin({n: UpdateTimer(f) for n, f in factories.items()}, rng)
    train = time_round_robin({n: TrainStepTimer(f) for n, f in factories.items()}, rng)
    header = f"{'optimizer':<23} {'update ms':>10} {'× Adam':>7} {'train step ms':>14} {'× Adam':>7}"
    print(header)
    print("-" * len(header))
    for name in factories:
        print(
            f"{name:<23} {1e3 * update[name]:>10.3f} {update[name] / update[BASELINE]:>7.2f} "
            f"{1e3 * train[name]:>14.3f} {train[name] / train[BASELINE]:>7.2f}"
        )


if __name__ == "__main__":
    app.run(main)
