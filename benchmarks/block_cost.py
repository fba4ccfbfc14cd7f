r"""What a per-block measurement costs on deep keras.applications networks: DenseNet121 and InceptionV3.

`SharpnessCallback(blocks=True)` splits a network by
`analysis_tools.curvature.model_blocks` (stages and modules, not layers) and measures
λ1 of each block's diagonal block of H. For each network (whole, every layer
trainable, random weights after one step of `tf_adaptive.Adam`, one probe
batch of 4 images, products XLA-compiled unless ``--nojit_compile``), in a
process of its own, the
script runs λ1 of every block by Lanczos to 1e-3, twice, with the block
products made two ways:

* ``shared`` (`HessianOperator.block`, what the callback uses): the
  network's one traced product on the vector padded with zeros outside the
  block, and the network's one Lanczos loop masked to the block;
* ``shared_own_loops``: the shared product, but a Lanczos loop traced for
  each block (what ``shared`` was before the loops were shared);
* ``own`` (`HessianOperator(variables=...)`): each block's product
  differentiates the block alone, traced for each block.

It reports the layers with weights (the rows a layer-by-layer split would
give), the blocks, each measurement's wall time (the first traces the
products and Lanczos loops), the products, the process's peak resident
memory, and each block's λ1 (the two ways must agree to the tolerance).

    python benchmarks/block_cost.py
    python benchmarks/block_cost.py --models=DenseNet121 --products=shared
"""

import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["DenseNet121", "InceptionV3"], "keras.applications constructors.")
flags.DEFINE_list(
    "products",
    ["shared", "own"],
    "How block products are made: `shared` (HessianOperator.block: the network's one product "
    "and Lanczos loop, restricted), `shared_own_loops` (the shared product, a loop per block) "
    "and/or `own` (HessianOperator(variables=...): each block's own product).",
)
flags.DEFINE_bool("jit_compile", True, "Whether products are XLA-compiled (the default of HessianOperator).")
flags.DEFINE_string("child", None, "Internal: NETWORK:PRODUCTS, measured in this process.")

SIZES = {"InceptionV3": 75}


def measure(name, products, jit_compile):
    import keras
    import numpy as np

    import analysis_tools
    import tf_adaptive

    keras.utils.set_random_seed(0)
    size = SIZES.get(name, 32)
    model = getattr(keras.applications, name)(
        weights=None, input_shape=(size, size, 3), classes=4, classifier_activation=None
    )
    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(4, size, size, 3)).astype("float32"), rng.integers(0, 4, 4)
    model.compile(optimizer=tf_adaptive.Adam(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    blocks = analysis_tools.curvature.model_blocks(model)
    network = analysis_tools.HessianOperator(model, (x, y), jit_compile=jit_compile)
    if products in ("shared", "shared_own_loops"):
        operators = {block: network.block(variables) for block, variables in blocks.items()}
    else:
        operators = {
            block: analysis_tools.HessianOperator(model, (x, y), variables=variables, jit_compile=jit_compile)
            for block, variables in blocks.items()
        }
    if products == "shared_own_loops":  # as before blocks shared their parent's loop: a Lanczos per block
        solvers = {
            block: analysis_tools.Lanczos(operator.dimension, max_iterations=40)
            for block, operator in operators.items()
        }
    else:
        solvers = {block: operator.solver() for block, operator in operators.items()}

    def measurement(call):
        start = time.perf_counter()
        results = {
            block: solvers[block](operators[block].matvec, tolerance=1e-3, criterion="eigenvalue", call=call)
            for block in operators
        }
        return time.perf_counter() - start, sum(int(r.iterations) for r in results.values()), results

    first, first_products, _ = measurement(0)
    second, second_products, results = measurement(1)
    return {
        "model": name,
        "products": products,
        "parameters": int(sum(np.prod(v.shape) for v in model.trainable_variables)),
        "layers_with_weights": sum(1 for layer in model.layers if layer.trainable_variables),
        "blocks": len(blocks),
        "block_names": list(blocks),
        "first_s": first,
        "second_s": second,
        "first_products": first_products,
        "second_products": second_products,
        "sharpness": {block: float(r.eigenvalues[0]) for block, r in results.items()},
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def main(argv):
    del argv
    if FLAGS.child:
        name, products = FLAGS.child.split(":")
        print(json.dumps(measure(name, products, FLAGS.jit_compile)))
        return
    print(
        "| network | block products | parameters | layers with weights | blocks | 1st measurement s | "
        "2nd s | products (1st, 2nd) | peak RSS GB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in FLAGS.models:
        for products in FLAGS.products:
            output = subprocess.run(
                [
                    sys.executable,
                    os.path.abspath(__file__),
                    f"--child={name}:{products}",
                    f"--jit_compile={FLAGS.jit_compile}",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            row = json.loads(output.strip().splitlines()[-1])
            print(
                f"| {name} | {products} | {row['parameters']:,} | {row['layers_with_weights']} | "
                f"{row['blocks']} | {row['first_s']:.1f} | {row['second_s']:.1f} | "
                f"{row['first_products']}, {row['second_products']} | {row['peak_rss_gb']:.2f} |",
                flush=True,
            )
            print("  λ1 per block: " + ", ".join(f"{b} {v:.4g}" for b, v in row["sharpness"].items()), flush=True)


if __name__ == "__main__":
    app.run(main)
