r"""A per-block measurement on the zoo GPT-2: passes over the probe set, time and memory, block by block vs lockstep.

λ1 of the diagonal block of H of every block of `analysis_tools.curvature.model_blocks`
(GPT-2 of `tests/analysis_tools/zoo.py`, float32, XLA-compiled products) to
a relative residual of 1e-3, over a probe set of 4 batches of 4 sequences
streamed from a generator that counts how often it is iterated. Two ways,
each in a process of its own:

* ``separate``: each block's Lanczos on its own (``operator.block(name)``,
  `hessian_eigenvalues`): every step of every block is a pass over the probe
  set;
* ``lockstep``: `blockwise_eigenvalues` on the `BlockDiagonalOperator`: one
  pass per step computes every block's product.

It prints, for each way and for the first 1, half and all of the blocks:
the passes over the probe set, the block products (a full-network
product restricted to the block for ``separate``, the block's own for
``lockstep``), the wall time of a second
measurement (the first traces and compiles), the process's peak resident
memory, and the largest disagreement of λ1 between the two ways relative to
λ1.

    python benchmarks/block_passes.py
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
flags.DEFINE_string("model", "gpt2", "A model of tests/analysis_tools/zoo.py.")
flags.DEFINE_string("child", None, "Internal: WAY:BLOCKS, measured in this process.")

BATCHES = 4
TOLERANCE = 1e-3


def measure(model_name, way, count):
    import numpy as np
    import tensorflow as tf

    import analysis_tools
    from analysis_tools.curvature.block_diagonal import BlockDiagonalOperator, blockwise_eigenvalues
    from tests.analysis_tools import zoo

    model, _ = zoo.build(model_name)
    rng = np.random.default_rng(1)
    tokens = [rng.integers(1, zoo.VOCABULARY, (zoo.BATCH, zoo.SEQUENCE)).astype("int32") for _ in range(BATCHES)]
    passes = [0]

    def source():
        passes[0] += 1
        for t in tokens:
            yield {"token_ids": t, "padding_mask": np.ones_like(t, bool)}, np.roll(t, -1, axis=1)

    spec = (
        {
            "token_ids": tf.TensorSpec([None, zoo.SEQUENCE], tf.int32),
            "padding_mask": tf.TensorSpec([None, zoo.SEQUENCE], tf.bool),
        },
        tf.TensorSpec([None, zoo.SEQUENCE], tf.int64),
    )
    data = tf.data.Dataset.from_generator(source, output_signature=spec)
    operator = analysis_tools.HessianOperator(model, data)
    blocks = dict(list(analysis_tools.curvature.model_blocks(model).items())[:count])

    def run():
        if way == "lockstep":
            results = blockwise_eigenvalues(BlockDiagonalOperator(operator, blocks), tolerance=TOLERANCE)
        else:
            results = {
                name: analysis_tools.hessian_eigenvalues(operator.block(selection), tolerance=TOLERANCE)
                for name, selection in blocks.items()
            }
        return {name: (float(r.eigenvalues[0]), int(r.iterations)) for name, r in results.items()}

    run()
    before = passes[0]
    start = time.perf_counter()
    values = run()
    seconds = time.perf_counter() - start
    products = sum(i for _, i in values.values())  # block products (a stopped block's are skipped)
    return dict(
        way=way,
        blocks=len(blocks),
        passes=passes[0] - before,
        products=products,
        seconds=seconds,
        peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        sharpness={name: v for name, (v, _) in values.items()},
    )


def main(argv):
    del argv
    if FLAGS.child:
        way, count = FLAGS.child.split(":")
        print("RESULT " + json.dumps(measure(FLAGS.model, way, int(count))))
        return
    sys.path.insert(0, ROOT)
    from tests.analysis_tools import zoo

    model, _ = zoo.build(FLAGS.model)
    import analysis_tools

    total = len(analysis_tools.curvature.model_blocks(model))
    rows = []
    for count in sorted({1, max(1, total // 2), total}):
        for way in ("separate", "lockstep"):
            output = subprocess.run(
                [sys.executable, os.path.abspath(__file__), f"--model={FLAGS.model}", f"--child={way}:{count}"],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            ).stdout
            rows.append(json.loads(next(line for line in output.splitlines() if line.startswith("RESULT "))[7:]))
    print(
        f"{FLAGS.model}: λ1 of each block's diagonal block of H to {TOLERANCE:g}, {BATCHES} probe batches; "
        f"{total} blocks"
    )
    print(f"{'blocks':>6} {'way':>9} {'passes':>7} {'products':>9} {'seconds':>8} {'peak MB':>8} {'max |Δλ1|/λ1':>13}")
    for row in rows:
        other = next(r for r in rows if r["blocks"] == row["blocks"] and r is not row)
        gap = max(
            abs(row["sharpness"][n] - other["sharpness"][n]) / abs(other["sharpness"][n]) for n in row["sharpness"]
        )
        print(
            f"{row['blocks']:>6} {row['way']:>9} {row['passes']:>7} {row['products']:>9} {row['seconds']:>8.2f} "
            f"{row['peak_mb']:>8.0f} {gap:>13.1e}"
        )


if __name__ == "__main__":
    app.run(main)
