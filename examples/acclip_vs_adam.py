r"""SGD momentum, GClip, Adam and ACClip on a small byte-level transformer language model.

A miniature of Zhang, Karimireddy, Veit, Kim, Reddi, Kumar and Sra, "Why are
Adaptive Methods Good for Attention Models?" (NeurIPS 2020; the ICLR 2020
submission's text is in the shared papers folder), Fig. 3 and Table 2. Their
claims for BERT pre-training: even after extensive tuning, (clipped) SGD with
momentum stays far behind the adaptive methods; clipping (GClip) converges
faster and lower than plain SGD momentum; ACClip reaches a lower validation
loss than Adam (Fig. 3) and a higher masked-LM accuracy (Table 2:
1.907 → 1.877 loss and 63.45 → 63.85 % accuracy for the 6-layer BERT-base).

Here: a causal transformer (token + learned position embeddings, `--num_blocks`
pre-LayerNorm blocks of `keras.layers.MultiHeadAttention(use_causal_mask=True)`
and a GELU MLP, width `--model_dim`) predicts the next byte of the embedded
Python documentation text (`_common.text_corpus`), windows of
`--sequence_length` bytes, the last 10 % of the text held out
(`_common.text_windows`). Every run starts from the same weights and sees the
same batches; the training step is one XLA-compiled loop of `--eval_every`
steps per optimizer, reused across its learning rates.

Optimizers (`tf_adaptive`; every momentum an EMA, β1 = 0.9, as in Algorithm 1):

* SGD momentum: `HeavyBall(momentum=0.9)`.
* GClip: `GClip(beta_1=0.9, threshold=--gclip_threshold)`. The paper gives no
  τ for BERT; τ = 0.1 is about the global momentum norm we measured under
  plain SGD momentum after the first 50 steps on this model, so the clipping is
  active (with τ = 1 it never clips here and GClip is SGD momentum).
* Adam: `Adam(β1 = 0.9, β2 = 0.999, ε = 1e-8, weight_decay = 0.01)`, the BERT
  baseline's settings (decoupled weight decay, Keras convention).
* ACClip: the paper's §5.1 settings, `ACClip(β1 = 0.9, β2 = 0.99, ε = 1e-5,
  α = 1, weight_decay = 1e-5)`. Its update is SGD-sized (at most η τ_t per
  coordinate, τ_t an EMA of |g|), so the paper's BERT rate η = 1e-4 barely
  moves this model in a few hundred steps; the grid keeps it for the record
  and adds SGD-sized rates.

Each optimizer gets a small learning-rate grid (flags below); the best rate is
the one with the lowest final validation loss. One seed only: differences of a
few hundredths in loss are within run-to-run noise at this scale.

Figures written to `--output_dir`:

* `curves.png` (Fig. 3): training loss (mean over each evaluation interval)
  and validation loss against steps, best rate per optimizer.
* `lr_sweep.png`: final validation loss and byte accuracy against the learning
  rate, every grid point.

`results.json` holds every run's curves, the best rates and the verdict rows.

    python examples/acclip_vs_adam.py          # ≈ 1 min on 2 idle CPU cores (measured 55 s; 147–246 s on busy, shared ones)
    python examples/acclip_vs_adam.py --steps=1000 --num_blocks=1

Needs the TensorFlow backend (the training loop is a `tf.function`).
"""

import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tf_adaptive  # noqa: E402
import _common  # noqa: E402  (examples/_common.py, next to this script)

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", os.path.join("examples_output", "acclip_vs_adam"),
                    "Where the figures and results.json go.")
_common.define_text_flags()
flags.DEFINE_integer("steps", 300, "Training steps per run (a multiple of --eval_every).", lower_bound=1)
flags.DEFINE_integer("eval_every", 50, "Steps between validation evaluations.", lower_bound=1)
flags.DEFINE_integer("batch_size", 32, "Windows per training batch.", lower_bound=1)
flags.DEFINE_integer("sequence_length", 64, "Bytes per window.", lower_bound=2)
flags.DEFINE_integer("model_dim", 64, "Width d_model of the transformer.", lower_bound=8)
flags.DEFINE_integer("num_heads", 4, "Attention heads (d_model / heads per head).", lower_bound=1)
flags.DEFINE_integer("num_blocks", 2, "Transformer blocks.", lower_bound=1)
flags.DEFINE_integer("validation_windows", 256, "Held-out windows in each evaluation.", lower_bound=1)
flags.DEFINE_list("optimizers", ["SGD", "GClip", "Adam", "ACClip"], "Which optimizers to run.")
flags.DEFINE_list("sgd_learning_rates", ["0.3", "1", "3"], "Grid of SGD momentum (EMA form).")
flags.DEFINE_list("gclip_learning_rates", ["1", "3", "10"], "Grid of GClip.")
flags.DEFINE_float("gclip_threshold", 0.1, "GClip's τ on the global momentum norm.", lower_bound=0.0)
flags.DEFINE_list("adam_learning_rates", ["1e-3", "3e-3", "1e-2"], "Grid of Adam.")
flags.DEFINE_list("acclip_learning_rates", ["1e-4", "0.3", "1", "3"],
                  "Grid of ACClip (1e-4 is the paper's BERT rate).")
flags.DEFINE_integer("seed", 0, "Seed of the initial weights and the batch order.")
flags.register_validator("optimizers", lambda names: set(names) <= {"SGD", "GClip", "Adam", "ACClip"},
                         "--optimizers: a subset of SGD, GClip, Adam, ACClip.")
flags.register_multi_flags_validator(
    ["steps", "eval_every"], lambda f: f["steps"] % f["eval_every"] == 0,
    "--steps must be a multiple of --eval_every.")

COLORS = {"SGD": "tab:blue", "GClip": "tab:purple", "Adam": "tab:orange", "ACClip": "tab:green"}
UNIFORM_LOSS = math.log(256.0)  # cross-entropy of the uniform prediction over bytes


def make_optimizer(name):
    """(optimizer, learning-rate grid) with the hyperparameters in the module docstring."""
    if name == "SGD":
        return tf_adaptive.HeavyBall(momentum=0.9), FLAGS.sgd_learning_rates
    if name == "GClip":
        return tf_adaptive.GClip(beta_1=0.9, threshold=FLAGS.gclip_threshold), FLAGS.gclip_learning_rates
    if name == "Adam":
        return (tf_adaptive.Adam(beta_1=0.9, beta_2=0.999, epsilon=1e-8, weight_decay=0.01),
                FLAGS.adam_learning_rates)
    return (tf_adaptive.ACClip(beta_1=0.9, beta_2=0.99, epsilon=1e-5, alpha=1.0, weight_decay=1e-5),
            FLAGS.acclip_learning_rates)


class TokenAndPositionEmbedding(keras.layers.Layer):
    """Byte embedding plus a learned embedding of the position in the window."""

    def __init__(self, vocabulary, length, dim, **kwargs):
        super().__init__(**kwargs)
        self.tokens = keras.layers.Embedding(vocabulary, dim)
        self.positions = keras.layers.Embedding(length, dim)

    def call(self, inputs):
        positions = keras.ops.arange(keras.ops.shape(inputs)[-1])
        return self.tokens(inputs) + self.positions(positions)[None]


def build_model():
    keras.utils.set_random_seed(FLAGS.seed)
    dim = FLAGS.model_dim
    inputs = keras.Input((FLAGS.sequence_length,), dtype="int32")
    h = TokenAndPositionEmbedding(256, FLAGS.sequence_length, dim)(inputs)
    for _ in range(FLAGS.num_blocks):
        a = keras.layers.LayerNormalization()(h)
        a = keras.layers.MultiHeadAttention(FLAGS.num_heads, dim // FLAGS.num_heads)(a, a, use_causal_mask=True)
        h = h + a
        f = keras.layers.LayerNormalization()(h)
        f = keras.layers.Dense(4 * dim, activation="gelu")(f)
        h = h + keras.layers.Dense(dim)(f)
    logits = keras.layers.Dense(256)(keras.layers.LayerNormalization()(h))
    return keras.Model(inputs, logits)


def train_all(model, x_train, y_train, x_val, y_val):
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    initial_weights = model.get_weights()
    chunks = FLAGS.steps // FLAGS.eval_every
    batches = np.random.default_rng(FLAGS.seed).integers(
        0, len(x_train), (chunks, FLAGS.eval_every, FLAGS.batch_size))

    @tf.function(jit_compile=True)
    def evaluate():
        logits = model(x_val)
        return loss_fn(y_val, logits), _common.accuracy(y_val, logits)

    runs = {}
    for name in FLAGS.optimizers:
        optimizer, rates = make_optimizer(name)
        train_chunk = _common.xla_training_loop(model, optimizer, loss_fn)
        for rate in (float(r) for r in rates):
            model.set_weights(initial_weights)
            _common.reset_optimizer(optimizer, rate)
            start = time.perf_counter()
            train_loss = []
            loss, accuracy = (float(v) for v in evaluate())
            val_loss, val_accuracy = [loss], [accuracy]
            for chunk in range(chunks):
                index = batches[chunk]
                train_loss.extend(train_chunk(x_train[index], y_train[index]).numpy().tolist())
                loss, accuracy = (float(v) for v in evaluate())
                val_loss.append(loss)
                val_accuracy.append(accuracy)
                print(f"  {name:<6} η={rate:<7g} step {(chunk + 1) * FLAGS.eval_every:>5}/{FLAGS.steps}  "
                      f"train {np.mean(train_loss[-FLAGS.eval_every:]):.3f}  val {loss:.3f}  "
                      f"byte accuracy {accuracy:.3f}", flush=True)
            seconds = time.perf_counter() - start
            final = val_loss[-1] if math.isfinite(val_loss[-1]) else math.inf
            runs.setdefault(name, {})[rate] = dict(
                train_loss=train_loss, val_loss=val_loss, val_accuracy=val_accuracy,
                final_val_loss=final, final_val_accuracy=val_accuracy[-1], seconds=seconds)
            print(f"  {name:<6} η={rate:<7g} done in {seconds:.1f} s")
    return runs


def summarize(runs):
    summary = {}
    for name, by_rate in runs.items():
        best = min(by_rate, key=lambda rate: by_rate[rate]["final_val_loss"])
        summary[name] = dict(best_learning_rate=best, val_loss=by_rate[best]["final_val_loss"],
                             val_accuracy=by_rate[best]["final_val_accuracy"])
    return summary


# --------------------------------------------------------------------- figures
def figure_curves(plt, runs, summary):
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    eval_steps = np.arange(0, FLAGS.steps + 1, FLAGS.eval_every)
    # Each frame's top is its highest point after step 0, so that the differences show; the
    # validation loss at step 0 (≈ ln 256) is above the frame.
    tops = {left: [], right: []}
    for name, entry in summary.items():
        run = runs[name][entry["best_learning_rate"]]
        label = f"{name} η={entry['best_learning_rate']:g}"
        chunk_means = np.asarray(run["train_loss"]).reshape(-1, FLAGS.eval_every).mean(axis=1)
        left.plot(eval_steps[1:], chunk_means, marker=".", color=COLORS[name], label=label)
        right.plot(eval_steps, run["val_loss"], marker="o", color=COLORS[name], label=label)
        tops[left].append(chunk_means[0])
        tops[right].append(run["val_loss"][1])
    for axis, what in ((left, "training loss (mean over each interval)"), (right, "validation loss")):
        top = min(max(tops[axis]), UNIFORM_LOSS) + 0.1
        axis.set(xlabel="step", ylabel=f"{what}, nats/byte", ylim=(None, top))
        axis.legend(fontsize=8)
    figure.suptitle("Byte-level transformer LM, best learning rate each (Zhang et al. 2020, Fig. 3 in miniature); "
                    f"step 0 (≈ ln 256 = {UNIFORM_LOSS:.2f}) is above the frame", fontsize=10)
    return figure


def figure_sweep(plt, runs):
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, by_rate in runs.items():
        rates = sorted(by_rate)
        left.plot(rates, [min(by_rate[r]["final_val_loss"], 2 * UNIFORM_LOSS) for r in rates],
                  marker="o", color=COLORS[name], label=name)
        right.plot(rates, [by_rate[r]["final_val_accuracy"] for r in rates], marker="o", color=COLORS[name],
                   label=name)
    left.axhline(UNIFORM_LOSS, color="gray", linestyle=":", linewidth=1)
    left.annotate("ln 256", (0.02, UNIFORM_LOSS), xycoords=("axes fraction", "data"), va="bottom", fontsize=8)
    left.set(xscale="log", xlabel="learning rate η", ylabel="final validation loss (capped at 2 ln 256)")
    right.set(xscale="log", xlabel="learning rate η", ylabel="final validation byte accuracy")
    left.legend(fontsize=8)
    figure.suptitle(f"Learning-rate grids after {FLAGS.steps} steps", fontsize=10)
    return figure


# -------------------------------------------------------------------- verdicts
def verdicts(summary):
    loss = {name: entry["val_loss"] for name, entry in summary.items()}
    accuracy = {name: entry["val_accuracy"] for name, entry in summary.items()}
    rows = []
    adaptive = [n for n in ("Adam", "ACClip") if n in loss]
    plain = [n for n in ("SGD", "GClip") if n in loss]
    if adaptive and plain:
        rows.append(_common.verdict(
            "Fig. 3: a large gap remains between (clipped) SGD momentum and the adaptive methods",
            ", ".join(f"{n} {loss[n]:.3f}" for n in adaptive + plain) + " (val loss)",
            max(loss[n] for n in adaptive) < min(loss[n] for n in plain)))
    if {"SGD", "GClip"} <= set(loss):
        rows.append(_common.verdict(
            "Fig. 3: clipping (GClip) reaches a lower validation loss than SGD momentum",
            f"GClip {loss['GClip']:.3f} vs SGD {loss['SGD']:.3f}", loss["GClip"] < loss["SGD"]))
    if {"Adam", "ACClip"} <= set(loss):
        rows.append(_common.verdict(
            "Fig. 3 / Table 2: ACClip reaches a lower validation loss than Adam (1.877 vs 1.907)",
            f"ACClip {loss['ACClip']:.3f} vs Adam {loss['Adam']:.3f}", loss["ACClip"] < loss["Adam"]))
        rows.append(_common.verdict(
            "Table 2: ACClip reaches a higher accuracy than Adam (63.85 vs 63.45 %)",
            f"byte accuracy ACClip {100 * accuracy['ACClip']:.2f} % vs Adam {100 * accuracy['Adam']:.2f} %",
            accuracy["ACClip"] > accuracy["Adam"]))
    rows.append(_common.verdict(
        f"(sanity) every optimizer learns: validation loss below ln 256 = {UNIFORM_LOSS:.2f}",
        ", ".join(f"{n} {v:.3f}" for n, v in loss.items()), all(v < UNIFORM_LOSS for v in loss.values())))
    return rows


def main(argv):
    del argv
    start = time.perf_counter()
    tokens = _common.text_corpus(FLAGS.data_dir)
    (x_train, y_train), (x_val, y_val) = _common.text_windows(tokens, FLAGS.sequence_length)
    # Evenly spaced held-out windows, the same in every evaluation.
    keep = np.linspace(0, len(x_val) - 1, min(FLAGS.validation_windows, len(x_val))).astype(int)
    x_val, y_val = x_val[keep], y_val[keep]
    model = build_model()
    print(f"corpus {len(tokens):,} bytes: {len(x_train)} training windows, {len(x_val)} validation windows "
          f"of {FLAGS.sequence_length} bytes; transformer {FLAGS.num_blocks} block(s), d_model {FLAGS.model_dim}, "
          f"{model.count_params():,} parameters; {FLAGS.steps} steps of batch {FLAGS.batch_size}")

    runs = train_all(model, x_train, y_train, x_val, y_val)
    summary = summarize(runs)
    print(f"\n{'optimizer':<10} {'best η':>8} {'val loss':>9} {'byte acc':>9}")
    for name, entry in summary.items():
        print(f"{name:<10} {entry['best_learning_rate']:>8g} {entry['val_loss']:>9.3f} {entry['val_accuracy']:>9.3f}")

    plt = _common.pyplot()
    plt.rcParams["text.antialiased"] = False  # antialiased text is most of a PNG's bytes here
    _common.save_figure(figure_curves(plt, runs, summary), FLAGS.output_dir, "curves.png")
    _common.save_figure(figure_sweep(plt, runs), FLAGS.output_dir, "lr_sweep.png")
    rows = verdicts(summary)
    seconds = time.perf_counter() - start
    _common.write_json(FLAGS.output_dir, "results.json", dict(
        flags={name: FLAGS[name].value for name in (
            "steps", "eval_every", "batch_size", "sequence_length", "model_dim", "num_heads", "num_blocks",
            "validation_windows", "optimizers", "sgd_learning_rates", "gclip_learning_rates", "gclip_threshold",
            "adam_learning_rates", "acclip_learning_rates", "seed")},
        parameters=model.count_params(), uniform_loss=UNIFORM_LOSS, summary=summary,
        runs={name: {f"{rate:g}": run for rate, run in by_rate.items()} for name, by_rate in runs.items()},
        verdicts=rows, seconds=seconds))
    _common.print_verdicts(rows)
    print(f"\ntotal {seconds:.0f} s")


if __name__ == "__main__":
    app.run(main)
