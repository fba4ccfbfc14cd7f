r"""`SharpnessCallback`'s overhead on a realistic training step, and its accuracy.

The model is a 3-block causal byte transformer (width 256, 4 heads, 2.5 M
parameters) on the Python documentation text every Python ships, batches of
64 windows of 32 bytes, `tf_adaptive.Adam` and an XLA-compiled train step
(`jit_compile=True`). The script

1. times the train step alone (`--timed_steps` steps after a warm-up);
2. trains `--steps` steps with a `SharpnessCallback` measuring every
   `--every_n_steps` steps on a probe of the first `--probe_batches` training
   batches, and times each measurement (the first includes tracing and XLA
   compilation);
3. times one Hessian-vector product on the probe with and without XLA;
4. after the last measurement, runs the cold reference on the same operator
   (Lanczos with 80 steps, tolerance 1e-10) and reports the relative error of
   the callback's λ1;
5. reports each measurement in training-step equivalents, the products it
   took, and the overhead at `--every_n_steps`: steady-state measurement time ÷
   (every_n_steps × step time).

    python benchmarks/sharpness_overhead.py                          # 1-batch probe, λ1(P⁻¹H) only
    python benchmarks/sharpness_overhead.py --probe_batches=4 --raw  # 4 batches, both λ1(H) and λ1(P⁻¹H)
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
import _common
from _timing import TimedSharpnessCallback

import tf_adaptive
from analysis_tools import HessianOperator, Lanczos

FLAGS = flags.FLAGS
flags.DEFINE_integer("width", 256, "Model width.")
flags.DEFINE_integer("blocks", 3, "Transformer blocks.")
flags.DEFINE_integer("sequence_length", 32, "Bytes per window.")
flags.DEFINE_integer("batch_size", 64, "Windows per batch.")
flags.DEFINE_integer("steps", 200, "Optimizer steps in all, the timed ones included (a multiple of every_n_steps).")
flags.DEFINE_integer("every_n_steps", 100, "The callback's every_n_steps.")
flags.DEFINE_integer("timed_steps", 30, "Steps timed without the callback.")
flags.DEFINE_integer("probe_batches", 1, "Training batches in the probe set.")
flags.DEFINE_bool("raw", False, "Also measure λ1(H).")
flags.DEFINE_bool("jit_compile", True, "XLA for the products.")
flags.DEFINE_enum(
    "differentiation",
    "reverse_over_reverse",
    ["reverse_over_reverse", "forward_over_reverse"],
    "How the Hessian-vector product is differentiated.",
)
flags.DEFINE_integer("warm_min_iterations", None, "The callback's warm_min_iterations (default: its own).")
flags.DEFINE_float("learning_rate", 1e-3, "Adam's learning rate.")
flags.DEFINE_integer("seed", 0, "Seed of the weights and the windows.")


def _data():
    tokens = _common.text_corpus()
    train, _ = _common.text_windows(tokens, FLAGS.sequence_length, num_windows=FLAGS.batch_size * 40, seed=FLAGS.seed)
    return train


def _model():
    keras.utils.set_random_seed(FLAGS.seed)
    model = _common.byte_transformer(FLAGS.sequence_length, FLAGS.width, FLAGS.blocks, 4, "gelu")
    model.compile(
        optimizer=tf_adaptive.Adam(FLAGS.learning_rate),
        jit_compile=True,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def main(argv):
    del argv
    x, y = _data()
    model = _model()
    print(
        f"model: {model.count_params():,} parameters, batch {FLAGS.batch_size} × {FLAGS.sequence_length} bytes, "
        f"probe {FLAGS.probe_batches} batch(es), raw={FLAGS.raw}, jit_compile={FLAGS.jit_compile}",
        flush=True,
    )
    batch = FLAGS.batch_size
    model.fit(x[: batch * 5], y[: batch * 5], batch_size=batch, epochs=1, verbose=0, shuffle=False)  # warm-up
    start = time.perf_counter()
    model.fit(
        x[: batch * FLAGS.timed_steps],
        y[: batch * FLAGS.timed_steps],
        batch_size=batch,
        epochs=1,
        verbose=0,
        shuffle=False,
    )
    step_seconds = (time.perf_counter() - start) / FLAGS.timed_steps
    print(f"train step: {step_seconds * 1e3:.0f} ms", flush=True)

    probe = (x[: batch * FLAGS.probe_batches], y[: batch * FLAGS.probe_batches])
    product_ms = {}
    for jit_compile in (True, False):
        operator = HessianOperator(
            model, probe, batch_size=batch, jit_compile=jit_compile, differentiation=FLAGS.differentiation
        )
        vector = tf.constant(np.random.default_rng(0).normal(size=operator.dimension))
        operator.matvec(vector).numpy()
        start = time.perf_counter()
        for _ in range(3):
            operator.matvec(vector).numpy()
        product_ms[jit_compile] = (time.perf_counter() - start) / 3 * 1e3
    print(
        f"Hessian-vector product on the probe: XLA {product_ms[True]:.0f} ms, graph {product_ms[False]:.0f} ms "
        f"(graph ÷ XLA = {product_ms[False] / product_ms[True]:.2f}); "
        f"{product_ms[FLAGS.jit_compile] / 1e3 / step_seconds:.2f} train steps",
        flush=True,
    )
    options = dict(
        every_n_steps=FLAGS.every_n_steps,
        raw=FLAGS.raw,
        batch_size=batch,
        jit_compile=FLAGS.jit_compile,
        differentiation=FLAGS.differentiation,
    )
    if FLAGS.warm_min_iterations is not None:
        options["warm_min_iterations"] = FLAGS.warm_min_iterations
    callback = TimedSharpnessCallback(probe, **options)
    # Exactly `steps` steps, so that the last measurement is at the final weights.
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch, drop_remainder=True).repeat()
    done = int(model.optimizer.iterations)  # the warm-up and timed steps
    model.fit(dataset, epochs=1, steps_per_epoch=FLAGS.steps - done, verbose=0, callbacks=[callback])

    print(f"{'step':>6} {'seconds':>8} {'step equivalents':>16} {'products':>9} {'λ1(P⁻¹H)':>12}")
    for record, seconds in zip(callback.records, callback.seconds):
        products = sum(record.iterations.values())
        print(
            f"{record.step:>6} {seconds:>8.2f} {seconds / step_seconds:>16.1f} {products:>9} "
            f"{record.values['preconditioned_sharpness']:>12.5g}"
        )
    steady = callback.seconds[1:] or callback.seconds
    overhead = np.mean(steady) / (FLAGS.every_n_steps * step_seconds)
    print(
        f"first measurement (tracing and compilation included): {callback.seconds[0]:.1f} s "
        f"= {callback.seconds[0] / step_seconds:.1f} steps"
    )
    print(f"steady-state overhead at every_n_steps={FLAGS.every_n_steps}: {100 * overhead:.1f} %")

    operator = callback._operator
    assert callback.records[-1].step == FLAGS.steps, "the last measurement must be at the final weights"
    reference = Lanczos(operator.dimension, max_iterations=80, tolerance=1e-10, min_iterations=80)(
        operator.preconditioned_matvec
    )
    exact = float(reference.eigenvalues[0])
    measured = callback.records[-1].values["preconditioned_sharpness"]
    print(
        f"cold 80-step reference λ1(P⁻¹H) = {exact:.6g}; the callback's {measured:.6g}: "
        f"relative error {abs(measured - exact) / abs(exact):.1e}"
    )


if __name__ == "__main__":
    app.run(main)
