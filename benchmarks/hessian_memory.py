r"""Peak memory of one sharpness measurement on a 25 M-parameter model, against `Lanczos`'s formula.

`Lanczos` keeps its basis of m_max vectors of n entries, b = 8 or 4 bytes
each, and a few working vectors (see its docstring):

    float64 basis: (m_max + 8)·n·8 bytes,   float32 basis: (m_max + 14)·n·4 bytes.

This script checks that on an MLP `--inputs`→`--width`→`--width`→10 (25.5 M
parameters by default) with a probe batch of `--examples` Gaussian examples.
For each basis dtype, in a fresh process so that the peaks do not mix, it
builds the model and a `HessianOperator`, runs a warm-up measurement of 2
Lanczos steps (tracing, the XLA compilation of the Hessian-vector product,
the allocator's first pools), reads the process's peak resident set size,
then runs one measurement of exactly `--iterations` steps
(``min_iterations = max_iterations``, a negligible tolerance) and reads it
again. The growth is what the measurement added on top of the warm-up, to be
compared with the formula. `analysis_tools.hessian_eigenvalues` builds the
same operator and solver (with a float32 basis above 5 M parameters).

    python benchmarks/hessian_memory.py                    # 25.5 M parameters, 16 steps
    python benchmarks/hessian_memory.py --iterations=8 --basis_dtypes=float32

Linux or macOS only (it reads `resource.getrusage`).
"""

import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _timing import peak_rss_mb
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("width", 4800, "Width of the two hidden layers.", lower_bound=1)
flags.DEFINE_integer("inputs", 512, "Input features.", lower_bound=1)
flags.DEFINE_integer("examples", 32, "Examples in the probe batch.", lower_bound=1)
flags.DEFINE_integer("iterations", 16, "Lanczos steps (Hessian-vector products) measured.", lower_bound=3)
flags.DEFINE_list("basis_dtypes", ["float64", "float32"], "Basis dtypes, one process each.")
flags.DEFINE_string(
    "only", None, "Measure this basis dtype in this process and print JSON (what the parent process runs)."
)
flags.DEFINE_integer("seed", 0, "Seed of the data and the weights.")

MB = 2.0**20
WORKING_VECTORS = {"float64": 8, "float32": 14}  # the c of (m_max + c)·n·b, from Lanczos's docstring


def measure(basis_dtype):
    """One process's measurement: the growth of the peak RSS over a warm-up, in MB, and more."""
    import keras
    import numpy as np
    import tensorflow as tf

    from analysis_tools import HessianOperator, Lanczos

    keras.utils.set_random_seed(FLAGS.seed)
    rng = np.random.default_rng(FLAGS.seed)
    x = rng.normal(size=(FLAGS.examples, FLAGS.inputs)).astype("float32")
    y = rng.integers(0, 10, size=FLAGS.examples).astype("int32")
    model = keras.Sequential(
        [
            keras.Input((FLAGS.inputs,)),
            keras.layers.Dense(FLAGS.width, activation="tanh"),
            keras.layers.Dense(FLAGS.width, activation="tanh"),
            keras.layers.Dense(10),
        ]
    )
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    operator = HessianOperator(model, (x, y))
    n = operator.dimension
    dtype = tf.as_dtype(basis_dtype)

    start = time.perf_counter()
    Lanczos(n, max_iterations=2, min_iterations=2, basis_dtype=dtype)(operator.matvec)
    warm_up_seconds = time.perf_counter() - start
    before = peak_rss_mb()
    start = time.perf_counter()
    solver = Lanczos(
        n, max_iterations=FLAGS.iterations, min_iterations=FLAGS.iterations, tolerance=1e-12, basis_dtype=dtype
    )
    result = solver(operator.matvec)
    seconds = time.perf_counter() - start
    after = peak_rss_mb()
    return {
        "parameters": n,
        "basis_dtype": basis_dtype,
        "iterations": int(result.iterations),
        "sharpness": float(result.eigenvalues[0]),
        "seconds": seconds,
        "warm_up_seconds": warm_up_seconds,
        "before": before,
        "after": after,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


def main(argv):
    del argv
    if FLAGS.only:
        print(json.dumps(measure(FLAGS.only)))
        return
    rows = []
    for basis_dtype in FLAGS.basis_dtypes:
        if basis_dtype not in WORKING_VECTORS:
            raise ValueError(f"Unknown basis dtype {basis_dtype!r}; expected one of {list(WORKING_VECTORS)}.")
        command = [
            sys.executable,
            os.path.abspath(__file__),
            f"--only={basis_dtype}",
            f"--width={FLAGS.width}",
            f"--inputs={FLAGS.inputs}",
            f"--examples={FLAGS.examples}",
            f"--iterations={FLAGS.iterations}",
            f"--seed={FLAGS.seed}",
        ]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))

    first = rows[0]
    print(
        f"MLP {FLAGS.inputs}-{FLAGS.width}-{FLAGS.width}-10: {first['parameters']:,} parameters; "
        f"probe batch of {FLAGS.examples}; {FLAGS.iterations} Lanczos steps after a 2-step warm-up; "
        f"TensorFlow {first['tensorflow']}, Keras {first['keras']}"
    )
    print(
        "| basis | basis MB (m·n·b) | formula MB ((m + c)·n·b) | peak RSS after warm-up MB | "
        "after measurement MB | growth MB | growth ÷ formula | measurement s | λ1 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        n, m = row["parameters"], row["iterations"]
        b = 8 if row["basis_dtype"] == "float64" else 4
        basis = m * n * b / MB
        formula = (m + WORKING_VECTORS[row["basis_dtype"]]) * n * b / MB
        growth = row["after"] - row["before"]
        print(
            f"| {row['basis_dtype']} | {basis:,.0f} | {formula:,.0f} | {row['before']:,.0f} | "
            f"{row['after']:,.0f} | {growth:,.0f} | {growth / formula:.2f} | {row['seconds']:.1f} | "
            f"{row['sharpness']:.4g} |"
        )


if __name__ == "__main__":
    app.run(main)
