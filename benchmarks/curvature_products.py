r"""What one product costs for each curvature: Hessian, GGN, empirical Fisher and Fisher, side by side.

On models of `tests/analysis_tools/zoo.py` (float32, one batch of 4 examples),
each curvature's operator (`analysis_tools.curvature.curvature_operator`) is built over
the same probe set and one product v ↦ A v is timed: the median of
``--repeats`` calls after one untimed call, whose time (tracing and XLA
compilation) is reported separately. The Hessian's product is reverse over
reverse; the others are one forward-mode pass for J v and one reverse pass for
Jᵀu (the Fisher with one draw). Ratios are to the Hessian's product in the
same process.

    python benchmarks/curvature_products.py
    python benchmarks/curvature_products.py --models=gpt2,resnet50 --repeats=20
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["gpt2", "bert", "vit", "mobilenet_v3_small"], "Zoo models to measure.")
flags.DEFINE_integer("repeats", 10, "Timed products per curvature (the median is reported).")

CURVATURES = ("hessian", "ggn", "empirical_fisher", "fisher")


def measure(name, repeats):
    """{curvature: (first call s, median product s)} on one zoo model."""
    import warnings

    import numpy as np
    import tensorflow as tf
    from _timing import median_seconds  # benchmarks/_timing.py, next to this script

    import analysis_tools
    from tests.analysis_tools import zoo

    warnings.simplefilter("ignore")
    model, (x, y) = zoo.build(name, jit_compile=True)
    results = {}
    for curvature in CURVATURES:
        operator = analysis_tools.curvature.curvature_operator(model, (x, y), curvature=curvature)
        vector = tf.constant(np.random.default_rng(0).standard_normal(operator.dimension))
        start = time.perf_counter()
        operator.matvec(vector).numpy()
        first = time.perf_counter() - start
        results[curvature] = (first, median_seconds(lambda: operator.matvec(vector).numpy(), repeats))
    return results


def main(argv):
    del argv
    header = " | ".join(f"{c} s" for c in CURVATURES)
    ratios = " | ".join(f"{c} ÷ H" for c in CURVATURES[1:])
    print(f"| model | {header} | {ratios} | first call s ({', '.join(CURVATURES)}) |")
    print("|---" + "|---:" * (2 * len(CURVATURES) - 1) + "|---:|")
    for name in FLAGS.models:
        results = measure(name, FLAGS.repeats)
        hessian = results["hessian"][1]
        seconds = " | ".join(f"{results[c][1]:.4f}" for c in CURVATURES)
        shown = " | ".join(f"{results[c][1] / hessian:.2f}" for c in CURVATURES[1:])
        first = ", ".join(f"{results[c][0]:.1f}" for c in CURVATURES)
        print(f"| {name} | {seconds} | {shown} | {first} |", flush=True)


if __name__ == "__main__":
    app.run(main)
