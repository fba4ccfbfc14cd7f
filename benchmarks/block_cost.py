r"""What a per-block measurement costs on deep keras.applications networks: DenseNet121 and InceptionV3.

`SharpnessCallback(per_layer=True)` splits a network by
`analysis_tools.model_blocks` (stages and modules, not layers) and measures
λ1 of each block's diagonal block of H, every block operator sharing the
network's probe set and loss. For each network (whole, every layer
trainable, random weights, `tf_adaptive.Adam`, one probe batch of 4 images,
products in graph mode), in a process of its own, the script reports the
layers with weights (the rows a layer-by-layer split would give), the
blocks, one measurement's wall time (its first, which traces each block's
product and Lanczos loop, and a second on the traced functions), the
products it took, and the process's peak resident memory.

    python benchmarks/block_cost.py
    python benchmarks/block_cost.py --models=DenseNet121
"""

import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["DenseNet121", "InceptionV3"], "keras.applications constructors.")
flags.DEFINE_string("child", None, "Internal: measure this one network and print one result line.")

SIZES = {"InceptionV3": 75}


def measure(name):
    import keras
    import numpy as np

    import analysis_tools
    import tf_adaptive

    keras.utils.set_random_seed(0)
    size = SIZES.get(name, 32)
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3), classes=4,
                                              classifier_activation=None)
    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(4, size, size, 3)).astype("float32"), rng.integers(0, 4, 4)
    model.compile(optimizer=tf_adaptive.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    callback = analysis_tools.SharpnessCallback((x, y), per_layer=True, preconditioned=False, tol=1e-3,
                                                warm_start=False, jit_compile=False)
    callback.set_model(model)
    layers = sum(1 for layer in model.layers if layer.trainable_variables)
    start = time.perf_counter()
    record = callback.measure()
    first = time.perf_counter() - start
    start = time.perf_counter()
    second_record = callback.measure()
    second = time.perf_counter() - start
    return {
        "model": name,
        "parameters": int(sum(np.prod(v.shape) for v in model.trainable_variables)),
        "layers_with_weights": layers,
        "blocks": len(callback.layer_operators),
        "block_names": list(callback.layer_operators),
        "first_s": first,
        "second_s": second,
        "products": int(sum(record.iterations.values())),
        "second_products": int(sum(second_record.iterations.values())),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def main(argv):
    del argv
    if FLAGS.child:
        print(json.dumps(measure(FLAGS.child)))
        return
    print("| network | parameters | layers with weights | blocks | 1st measurement s | 2nd s | products "
          "(1st, 2nd) | peak RSS GB |")
    print("|---|---|---|---|---|---|---|---|")
    for name in FLAGS.models:
        output = subprocess.run([sys.executable, os.path.abspath(__file__), f"--child={name}"],
                                capture_output=True, text=True, check=True).stdout
        row = json.loads(output.strip().splitlines()[-1])
        print(f"| {name} | {row['parameters']:,} | {row['layers_with_weights']} | {row['blocks']} | "
              f"{row['first_s']:.1f} | {row['second_s']:.1f} | {row['products']}, {row['second_products']} | "
              f"{row['peak_rss_gb']:.2f} |", flush=True)
        print(f"  blocks: {', '.join(row['block_names'])}", flush=True)


if __name__ == "__main__":
    app.run(main)
