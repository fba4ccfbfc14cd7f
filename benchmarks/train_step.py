r"""One training step of a small transformer with Keras's Adam and with tf_adaptive's, on each Keras backend.

The model is `bandwidth.py`'s train-step case (causal transformer, width 128,
2 blocks, 4 heads, vocabulary 256; batch 16 × 64 tokens on a CPU), trained
through Keras's own `model.train_on_batch`, that is the backend's trainer:
`tf.function` with XLA on TensorFlow, `jax.jit` on JAX, eager PyTorch on
torch (Keras's default there). Both optimizers are timed round-robin in one
process, so their ratio is read within one run.

    python benchmarks/train_step.py                       # every backend, one subprocess each
    KERAS_BACKEND=torch python benchmarks/train_step.py --backends=current
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_list(
    "backends",
    ["tensorflow", "jax", "torch"],
    "Backends to time, each in a subprocess; `current` times this process's backend.",
)
flags.DEFINE_integer("width", 128, "Transformer width.")
flags.DEFINE_integer("blocks", 2, "Transformer blocks.")
flags.DEFINE_integer("heads", 4, "Attention heads.")
flags.DEFINE_integer("seq_len", 64, "Tokens per sequence.")
flags.DEFINE_integer("batch_size", 16, "Sequences per batch.")
flags.DEFINE_integer("steps", 10, "Steps per timing.")
flags.DEFINE_integer("repeats", 7, "Round-robin timings; the minimum is reported.")


def time_current_backend():
    """{optimizer: seconds per step} on this process's backend, and the parameter count."""
    import keras

    import tf_adaptive

    def build():
        tokens = keras.Input((FLAGS.seq_len,), dtype="int32")
        x = keras.layers.Embedding(256, FLAGS.width)(tokens)
        for _ in range(FLAGS.blocks):
            h = keras.layers.LayerNormalization()(x)
            h = keras.layers.MultiHeadAttention(FLAGS.heads, FLAGS.width // FLAGS.heads)(h, h, use_causal_mask=True)
            x = keras.layers.Add()([x, h])
            h = keras.layers.LayerNormalization()(x)
            h = keras.layers.Dense(4 * FLAGS.width, activation="gelu")(h)
            x = keras.layers.Add()([x, keras.layers.Dense(FLAGS.width)(h)])
        return keras.Model(tokens, keras.layers.Dense(256)(keras.layers.LayerNormalization()(x)))

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (FLAGS.batch_size, FLAGS.seq_len)).astype("int32")
    y = rng.integers(0, 256, (FLAGS.batch_size, FLAGS.seq_len)).astype("int32")
    models = {}
    for name, optimizer in (("keras Adam", keras.optimizers.Adam(1e-4)), ("tf_adaptive Adam", tf_adaptive.Adam(1e-4))):
        model = build()
        model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        for _ in range(3):  # tracing, compilation, warm-up
            model.train_on_batch(x, y)
        models[name] = model
    best = {name: float("inf") for name in models}
    for _ in range(FLAGS.repeats):
        for name, model in models.items():
            start = time.perf_counter()
            for _ in range(FLAGS.steps):
                loss = model.train_on_batch(x, y)
            float(np.asarray(loss))  # waits for the last step
            best[name] = min(best[name], (time.perf_counter() - start) / FLAGS.steps)
    return best, models["keras Adam"].count_params()


def main(argv):
    del argv
    if FLAGS.backends == ["current"]:
        import keras

        times, parameters = time_current_backend()
        print(json.dumps(dict(backend=keras.backend.backend(), times=times, parameters=parameters)))
        return
    rows = []
    for backend in FLAGS.backends:
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu")
        flags_here = [
            f"--{name}={FLAGS[name].value}"
            for name in ("width", "blocks", "heads", "seq_len", "batch_size", "steps", "repeats")
        ]
        result = subprocess.run(
            [sys.executable, __file__, "--backends=current", *flags_here],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
        print(f"  {backend}: done", file=sys.stderr, flush=True)
    print(
        f"Train step: causal transformer, width {FLAGS.width}, {FLAGS.blocks} blocks, {FLAGS.heads} heads, "
        f"{rows[0]['parameters']:,} parameters, batch {FLAGS.batch_size} × {FLAGS.seq_len} tokens, "
        f"`model.train_on_batch`; minimum of {FLAGS.repeats} round-robin timings of {FLAGS.steps} steps\n"
    )
    print("| backend | keras Adam, ms | tf_adaptive Adam, ms | ours ÷ Keras |")
    print("|---|---:|---:|---:|")
    for row in rows:
        keras_ms, ours_ms = 1e3 * row["times"]["keras Adam"], 1e3 * row["times"]["tf_adaptive Adam"]
        print(f"| {row['backend']} | {keras_ms:.1f} | {ours_ms:.1f} | {ours_ms / keras_ms:.2f} |")


if __name__ == "__main__":
    app.run(main)
