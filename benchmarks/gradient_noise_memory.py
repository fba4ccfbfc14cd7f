r"""Time and peak memory of `analysis_tools.gradient_noise` on a ~10M-parameter model.

`gradient_noise` streams: it holds the reference gradient ∇f, one mini-batch
gradient and the running statistics, never the stack of all mini-batch
gradients. This script checks that on an MLP with about 10 M parameters
(`--width` wide hidden layers): it builds the model and the data, runs one
small `gradient_noise` call to warm up (tracing, allocator pools), reads the
process's peak resident set size, then runs the measured call and reads it
again. The printed growth is what the measured call added on top of the warm-up;
the last line is what stacking the mini-batch gradients in float32 would need.

    python benchmarks/gradient_noise_memory.py                # 9.8 M parameters, 100 batches
    python benchmarks/gradient_noise_memory.py --num_batches=400 --num_coordinates=2000

Linux or macOS only (it reads `resource.getrusage`).
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
from _timing import peak_rss_mb
from absl import app, flags

from analysis_tools import gradient_noise

FLAGS = flags.FLAGS
flags.DEFINE_integer("width", 3000, "Width of the two hidden layers.", lower_bound=1)
flags.DEFINE_integer("inputs", 256, "Input features.", lower_bound=1)
flags.DEFINE_integer("examples", 4096, "Data set size (the full gradient's pass).", lower_bound=1)
flags.DEFINE_integer("batch_size", 32, "Mini-batch size.", lower_bound=1)
flags.DEFINE_integer("num_batches", 100, "Mini-batches in the measured call.", lower_bound=1)
flags.DEFINE_integer("num_coordinates", 1000, "Noise coordinates kept.", lower_bound=0)
flags.DEFINE_integer("seed", 0, "Seed of the data and the weights.")


def main(argv):
    del argv
    keras.utils.set_random_seed(FLAGS.seed)
    rng = np.random.default_rng(FLAGS.seed)
    x = rng.normal(size=(FLAGS.examples, FLAGS.inputs)).astype("float32")
    y = rng.integers(0, 10, size=FLAGS.examples).astype("int32")
    model = keras.Sequential(
        [
            keras.Input((FLAGS.inputs,)),
            keras.layers.Dense(FLAGS.width, activation="relu"),
            keras.layers.Dense(FLAGS.width, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    parameters = model.count_params()
    print(
        f"MLP {FLAGS.inputs}-{FLAGS.width}-{FLAGS.width}-10: {parameters:,} parameters "
        f"({parameters * 4 / 2**20:.0f} MB in float32); {FLAGS.examples} examples"
    )

    gradient_noise(model, (x, y), batch_size=FLAGS.batch_size, num_batches=2, num_coordinates=FLAGS.num_coordinates)
    before = peak_rss_mb()
    start = time.perf_counter()
    noise = gradient_noise(
        model,
        (x, y),
        batch_size=FLAGS.batch_size,
        num_batches=FLAGS.num_batches,
        num_coordinates=FLAGS.num_coordinates,
        per_layer=True,
    )
    seconds = time.perf_counter() - start
    after = peak_rss_mb()
    stacked = FLAGS.num_batches * parameters * 4 / 2**20
    print(
        f"gradient_noise, {FLAGS.num_batches} batches of {FLAGS.batch_size} plus the full gradient: "
        f"{seconds:.1f} s; median noise norm {np.median(noise.norms):.4g}"
    )
    print(
        f"peak RSS {before:,.0f} MB after the warm-up call, {after:,.0f} MB after the measured call "
        f"(+{after - before:,.0f} MB)"
    )
    print(f"stacking the {FLAGS.num_batches} mini-batch gradients instead: {stacked:,.0f} MB")


if __name__ == "__main__":
    app.run(main)
