r"""How the first Hessian-vector product scales with the number of probe batches.

A probe set of N examples in B batches: the time from building
`analysis_tools.HessianOperator` to the end of its first product (tracing and
compilation included), and the process's peak resident set size, each
configuration in a fresh interpreter. The model is an MLP of about 85 k
parameters (64 → 256 → 256 → 10, tanh) and the data 64 float32 features.

    python benchmarks/probe_scaling.py
    python benchmarks/probe_scaling.py --code=/path/to/an/older/checkout   # the same table, other code

With streaming, the model is traced once whatever B; the products' arithmetic
still grows with N.

Linux or macOS only (it reads `resource.getrusage`).
"""

import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_list(
    "configurations", ["4096:1", "4096:16", "4096:64", "16384:256"], "examples:batches pairs, one row each."
)
flags.DEFINE_string("code", None, "A checkout whose analysis_tools to measure (default: this one).")
flags.DEFINE_string("child", None, "Internal: measure one examples:batches pair and print JSON.")


def _measure(examples, batches):
    import keras
    import numpy as np
    import tensorflow as tf
    from _timing import peak_rss_mb

    from analysis_tools import HessianOperator

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(256, activation="tanh"),
            keras.layers.Dense(256, activation="tanh"),
            keras.layers.Dense(10),
        ]
    )
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(examples, 64)).astype("float32")
    y = rng.integers(0, 10, size=examples)
    vector = tf.constant(rng.normal(size=model.count_params()))
    before = peak_rss_mb()
    start = time.perf_counter()
    operator = HessianOperator(model, (x, y), batch_size=examples // batches)
    operator.matvec(vector).numpy()
    first = time.perf_counter() - start
    start = time.perf_counter()
    operator.matvec(vector).numpy()
    second = time.perf_counter() - start
    return dict(
        examples=examples,
        batches=batches,
        parameters=model.count_params(),
        first_product_s=first,
        next_product_s=second,
        peak_rss_mb=peak_rss_mb(),
        rss_before_mb=before,
        data_mb=(x.nbytes + y.nbytes) / 2**20,
    )


def main(argv):
    del argv
    if FLAGS.child:
        examples, batches = (int(v) for v in FLAGS.child.split(":"))
        print(json.dumps(_measure(examples, batches)))
        return
    env = dict(os.environ)
    if FLAGS.code:
        env["PYTHONPATH"] = os.pathsep.join([FLAGS.code, env.get("PYTHONPATH", "")])
    print(
        f"{'examples':>8} {'batches':>7} {'first product s':>15} {'next product s':>14} "
        f"{'peak RSS MB':>11} {'data MB':>7}"
    )
    for configuration in FLAGS.configurations:
        output = subprocess.run(
            [sys.executable, os.path.abspath(__file__), f"--child={configuration}"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        row = json.loads(output.strip().splitlines()[-1])
        print(
            f"{row['examples']:>8} {row['batches']:>7} {row['first_product_s']:>15.2f} "
            f"{row['next_product_s']:>14.3f} {row['peak_rss_mb']:>11.0f} {row['data_mb']:>7.1f}",
            flush=True,
        )


if __name__ == "__main__":
    app.run(main)
