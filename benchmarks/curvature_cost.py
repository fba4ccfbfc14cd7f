r"""What each curvature quantity costs on the sharpness benchmark's 2.5 M-parameter transformer.

The model, data and optimizer are those of `sharpness_overhead.py` (3-block
causal byte transformer, width 256, 4 heads; batches of 64 × 32 bytes;
`tf_adaptive.Adam`, XLA train step), trained for `--train_steps` steps so
that Adam's preconditioner is a trained one. On a probe of the first
`--probe_batches` training batches the script times, each after one untimed
call (tracing and XLA compilation, reported separately):

* one Hessian-vector product of the whole network and of each block in
  `--layers` (`HessianOperator(variables=...)`);
* λ1(H) and λ1(P⁻¹H) by Lanczos (tolerance 1e-3, as `SharpnessCallback`'s cold start);
* tr(H) and tr(P⁻¹H) by Hutch++ and by Hutchinson with `--trace_products` products;
* the SLQ density of P⁻¹H with `--density_vectors` × `--density_iterations` products;
* λ1 of each block in `--layers`.

Every row gives the products, the seconds, and the seconds in train steps.

    python benchmarks/curvature_cost.py
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

import tf_adaptive
from analysis_tools import HessianOperator, Lanczos, preconditioner_of
from analysis_tools.curvature import hutch_plus_plus, hutchinson, slq

FLAGS = flags.FLAGS
flags.DEFINE_integer("width", 256, "Model width.")
flags.DEFINE_integer("blocks", 3, "Transformer blocks.")
flags.DEFINE_integer("sequence_length", 32, "Bytes per window.")
flags.DEFINE_integer("batch_size", 64, "Windows per batch.")
flags.DEFINE_integer("train_steps", 100, "Adam steps before the measurements.")
flags.DEFINE_integer("timed_steps", 20, "Train steps timed for the step-time unit.")
flags.DEFINE_integer("probe_batches", 1, "Training batches in the probe set.")
flags.DEFINE_integer("trace_products", 30, "Hessian-vector products per trace estimate.")
flags.DEFINE_integer("density_vectors", 1, "SLQ start vectors.")
flags.DEFINE_integer("density_iterations", 30, "Lanczos steps per SLQ vector.")
flags.DEFINE_list(
    "layers",
    ["multi_head_attention", "dense_4", "dense_6"],
    "Blocks for the per-layer rows (top-level layer names of the model).",
)
flags.DEFINE_integer("seed", 0, "Seed of the weights and the windows.")


def _model():
    keras.utils.set_random_seed(FLAGS.seed)
    model = _common.byte_transformer(FLAGS.sequence_length, FLAGS.width, FLAGS.blocks, 4, "gelu")
    model.compile(
        optimizer=tf_adaptive.Adam(1e-3),
        jit_compile=True,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def _timed(function):
    """(result, seconds) of `function()`, its tensors fetched."""
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def main(argv):
    del argv
    tokens = _common.text_corpus()
    (x, y), _ = _common.text_windows(tokens, FLAGS.sequence_length, num_windows=FLAGS.batch_size * 40, seed=FLAGS.seed)
    model = _model()
    batch = FLAGS.batch_size
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch, drop_remainder=True).repeat()
    model.fit(dataset, epochs=1, steps_per_epoch=FLAGS.train_steps, verbose=0)
    start = time.perf_counter()
    model.fit(dataset, epochs=1, steps_per_epoch=FLAGS.timed_steps, verbose=0)
    step = (time.perf_counter() - start) / FLAGS.timed_steps
    print(
        f"model: {model.count_params():,} parameters; train step {step * 1e3:.0f} ms; probe "
        f"{FLAGS.probe_batches} batch(es) of {batch} × {FLAGS.sequence_length} bytes",
        flush=True,
    )
    for name in FLAGS.layers:
        model.get_layer(name)  # fails early on a wrong name
    probe = (x[: batch * FLAGS.probe_batches], y[: batch * FLAGS.probe_batches])
    preconditioner = preconditioner_of(model.optimizer, model.trainable_variables)
    rows = []

    def row(what, products, seconds, value):
        rows.append((what, products, seconds, value))
        print(f"  {what:<44} {products:>8} {seconds:>9.2f} {seconds / step:>9.1f}   {value}", flush=True)

    print(f"  {'quantity':<44} {'products':>8} {'seconds':>9} {'in steps':>9}   value")
    operators = {None: HessianOperator(model, probe, batch_size=batch)}
    for name in FLAGS.layers:
        operators[name] = HessianOperator(model, probe, batch_size=batch, variables=name)
    for name, operator in operators.items():
        label = "whole network" if name is None else f"block {name}"
        vector = tf.constant(np.random.default_rng(0).normal(size=operator.dimension))
        _, compile_seconds = _timed(lambda: operator.matvec(vector).numpy())
        _, seconds = _timed(lambda: [operator.matvec(vector).numpy() for _ in range(3)])
        row(
            f"one product, {label} ({operator.dimension:,} parameters)",
            1,
            seconds / 3,
            f"first call {compile_seconds:.1f} s (tracing, XLA)",
        )
    full = operators[None]
    full.set_preconditioner(preconditioner)

    for what, matvec in (("λ1(H)", full.matvec), ("λ1(P⁻¹H)", full.preconditioned_matvec)):
        solver = Lanczos(full.dimension, max_iterations=40, tolerance=1e-3)
        solver(matvec)  # traces the loop
        result, seconds = _timed(lambda: solver(matvec))
        row(
            f"{what}, Lanczos tolerance 1e-3 (cold)",
            int(result.iterations),
            seconds,
            f"{float(result.eigenvalues[0]):.5g}",
        )
    for what, matvec in (("tr(H)", full.matvec), ("tr(P⁻¹H)", full.preconditioned_matvec)):
        for name, estimator in (("Hutch++", hutch_plus_plus), ("Hutchinson", hutchinson)):
            result, seconds = _timed(lambda: estimator(matvec, full.dimension, FLAGS.trace_products, FLAGS.seed))
            row(f"{what}, {name}", result.num_products, seconds, f"{result.estimate:.5g} ± {result.standard_error:.2g}")
    density, seconds = _timed(
        lambda: slq(
            full.preconditioned_matvec, full.dimension, FLAGS.density_vectors, FLAGS.density_iterations, FLAGS.seed
        )
    )
    low, high = density.support
    row(
        f"density of P⁻¹H, SLQ {FLAGS.density_vectors} × {FLAGS.density_iterations}",
        density.num_products,
        seconds,
        f"nodes in [{low:.4g}, {high:.4g}]",
    )
    for name in FLAGS.layers:
        operator = operators[name]
        solver = Lanczos(operator.dimension, max_iterations=40, tolerance=1e-3)
        solver(operator.matvec)  # traces the loop
        result, seconds = _timed(lambda: solver(operator.matvec))
        row(f"λ1(H) of block {name}", int(result.iterations), seconds, f"{float(result.eigenvalues[0]):.5g}")


if __name__ == "__main__":
    app.run(main)
