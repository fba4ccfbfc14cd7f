r"""What a Hessian-vector product costs on each model of the zoo, against a training step.

The models are those of `tests/analysis_tools/zoo.py`: KerasHub GPT-2, BERT,
Llama, Gemma and ViT at a small configuration (2 layers, width 16), and the
keras.applications ResNet50, MobileNetV3Small, EfficientNetV2B0 and
ConvNeXtTiny whole (every layer trainable) at 32 × 32 inputs, all on one
batch of 4 examples, with `tf_adaptive.Adam`. Each model runs in a process of
its own, so that its peak resident memory is its own. For each the script
measures, after one untimed call (tracing and XLA compilation, reported
separately):

* a training step (`model.fit`'s XLA-compiled step, `jit_compile=True`, called
  as `fit` calls it on a dataset iterator, without `fit`'s per-epoch set-up);
* one Hessian-vector product of the whole network (`HessianOperator`,
  XLA-compiled, reverse over reverse), and its ratio to the step;
* λ1(P⁻¹H) by Lanczos to 1e-3 (`hessian_eigenvalues` on the same operator,
  with the optimizer's P): the products it took and its seconds, the first
  call (which traces the operator's Lanczos loop, `HessianOperator.solver`)
  and a second one from another random start (which reuses it);
* the process's peak resident memory.

    python benchmarks/zoo_cost.py                      # every model
    python benchmarks/zoo_cost.py --models=gpt2,bert   # some
"""

import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

FLAGS = flags.FLAGS
flags.DEFINE_list("models", None, "Zoo models to measure (default: all).")
flags.DEFINE_integer("repeats", 10, "Timed calls of the step and of the product (the median is reported).")
flags.DEFINE_string("child", None, "Internal: measure this one model and print one result line.")


def measure(name, repeats):
    """One model's numbers, as a dict (run in a process of its own)."""
    import numpy as np
    import tensorflow as tf
    from _timing import median_seconds  # benchmarks/_timing.py, next to this script

    import analysis_tools
    from tests.analysis_tools import zoo

    model, (x, y) = zoo.build(name, jit_compile=True)
    start = time.perf_counter()
    model.fit(x, y, batch_size=zoo.BATCH, epochs=1, verbose=0)
    step_compile = time.perf_counter() - start
    # The compiled step itself, as `fit` calls it, without fit's per-epoch set-up.
    iterator = iter(tf.data.Dataset.from_tensors((x, y)).repeat())
    step = median_seconds(lambda: tf.nest.map_structure(lambda t: t.numpy(), model.train_function(iterator)), repeats)

    operator = analysis_tools.HessianOperator(model, (x, y))
    vector = tf.constant(np.random.default_rng(0).standard_normal(operator.dimension))
    start = time.perf_counter()
    operator.matvec(vector).numpy()
    product_compile = time.perf_counter() - start
    product = median_seconds(lambda: operator.matvec(vector).numpy(), repeats)

    preconditioner = analysis_tools.preconditioner_of(model.optimizer, model.trainable_variables)
    start = time.perf_counter()
    result = analysis_tools.hessian_eigenvalues(operator, preconditioner=preconditioner)
    lanczos = time.perf_counter() - start
    # Again from another random start: the operator's solver, its loop traced, is reused.
    start = time.perf_counter()
    again = analysis_tools.hessian_eigenvalues(operator, preconditioner=preconditioner, seed=1)
    lanczos_again = time.perf_counter() - start
    return {
        "model": name,
        "parameters": zoo.parameter_count(model),
        "step_s": step,
        "step_compile_s": step_compile,
        "product_s": product,
        "product_compile_s": product_compile,
        "ratio": product / step,
        "lambda_products": int(result.iterations),
        "lambda_s": lanczos,
        "lambda_again_products": int(again.iterations),
        "lambda_again_s": lanczos_again,
        "lambda": float(result.eigenvalues[0]),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
    }


def main(argv):
    del argv
    if FLAGS.child:
        print("RESULT", json.dumps(measure(FLAGS.child, FLAGS.repeats)), flush=True)
        return
    from tests.analysis_tools import zoo

    names = FLAGS.models or list(zoo.MODELS)
    print(
        f"{'model':20s} {'params':>10s} {'step s':>8s} {'HVP s':>8s} {'HVP/step':>9s} "
        f"{'λ1(P⁻¹H)':>10s} {'products':>9s} {'λ1 s':>7s} {'again':>12s} {'compile s (step, HVP)':>22s} "
        f"{'peak RSS GB':>12s}"
    )
    for name in names:
        completed = subprocess.run(
            [sys.executable, os.path.abspath(__file__), f"--child={name}", f"--repeats={FLAGS.repeats}"],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
        if completed.returncode != 0 or not lines:
            print(f"{name:20s} failed:\n{completed.stderr[-2000:]}")
            continue
        r = json.loads(lines[-1][len("RESULT ") :])
        print(
            f"{r['model']:20s} {r['parameters']:>10,d} {r['step_s']:8.3f} {r['product_s']:8.3f} "
            f"{r['ratio']:9.2f} {r['lambda']:10.4g} {r['lambda_products']:9d} {r['lambda_s']:7.1f} "
            f"{r['lambda_again_s']:5.1f} ({r['lambda_again_products']:3d}) "
            f"{r['step_compile_s']:10.1f}, {r['product_compile_s']:9.1f} {r['peak_rss_gb']:12.2f}",
            flush=True,
        )


if __name__ == "__main__":
    app.run(main)
