r"""SGD momentum, GClip, Adam and ACClip on a small byte-level transformer language model, over 3 seeds.

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
(`_common.text_windows`; the same evenly spaced held-out windows in every
evaluation). A seed draws the initial weights and the batch order; at one seed
every run starts from the same weights and sees the same batches. The training
step is one XLA-compiled loop of `--eval_every` steps per optimizer, reused
across its learning rates and seeds.

Every optimizer follows the same schedule, BERT's linear warmup then linear
decay (Devlin et al. 2019): η_t = η · min(t / T_w, (T + 1 − t) / (T + 1 − T_w))
at step t = 1 … T, with T = `--steps` and T_w = `--warmup_steps`, and η taken
from a ×2-spaced grid per optimizer (flags below). The best η of an optimizer
is the one with the lowest validation loss after T steps, averaged over the
seeds; the verdicts compare the optimizers at their best η, seed by seed.

Optimizers (`tf_adaptive`; every momentum an EMA, β1 = 0.9, as in Algorithm 1):

* SGD momentum: `HeavyBall(momentum=0.9)`.
* GClip: `GClip(beta_1=0.9, threshold=--gclip_threshold)`. The paper gives no
  τ for BERT; τ = 0.1 is about the global momentum norm we measured under
  plain SGD momentum after the first 50 steps on this model, so the clipping is
  active (with τ = 1 it never clips here and GClip is SGD momentum).
* Adam: `Adam(β1 = 0.9, β2 = 0.999, ε = 1e-8, weight_decay = 0.01)`, the BERT
  baseline's settings (decoupled weight decay, Keras convention).
* ACClip: the paper's §5.1 settings, `ACClip(β1 = 0.9, β2 = 0.99, ε = 1e-5,
  α = 1, weight_decay = 1e-5)`. Its step is gradient-sized, not normalized
  like Adam's: at most η τ_t per coordinate, τ_t an EMA of |g|. At the paper's
  BERT rate η = 1e-4 it barely moves this transformer: its update norms are
  about 6,000 times smaller than Adam's (η = 1e-3) over the first 10 steps
  (the `tf_adaptive.ACClip` docstring), and after the 300 steps here its
  weights have moved ‖θ_T − θ_0‖ ≈ 0.04–0.05 against Adam's ≈ 23 at its best
  η, 440–650 times less (validation loss 5.47, barely below ln 256 = 5.55).
  The run at `--acclip_paper_rate` shows it and is kept out of the best-η
  choice. On small models start ACClip from η ≈ 0.3–1, or from Adam's η
  divided by the typical |g| of a coordinate; the grid here spans 0.25–2.

Verdicts rest on the seeds: a claim that one optimizer beats another gets
"agree" or "disagree" only when the gap between the means over seeds exceeds
the seed-to-seed spread (the larger of the two ranges, max − min over seeds);
otherwise "no verdict". The table before the verdicts prints every seed.

Figures written to `--output_dir`:

* `curves.png` (Fig. 3): training loss (mean over each evaluation interval)
  and validation loss against steps at each optimizer's best η, the mean over
  seeds with the seeds' range shaded.
* `lr_sweep.png`: final validation loss and byte accuracy against η, mean over
  seeds with the range as bars, every grid point (and ACClip at the paper's η).

`results.json` holds every run's curves, the best rates and the verdict rows.

    python examples/acclip_vs_adam.py          # 3 seeds, 45 runs: 274 s on 2 idle CPU cores
    python examples/acclip_vs_adam.py --seeds=0 --optimizers=Adam,ACClip    # one seed, two optimizers
    python examples/acclip_vs_adam.py --steps=1000 --warmup_steps=100 --num_blocks=1

Needs the TensorFlow backend (the training loop is a `tf.function`).
"""

import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _common
import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

import tf_adaptive

FLAGS = flags.FLAGS
OPTIMIZERS = ("SGD", "GClip", "Adam", "ACClip")


def define_flags():
    """The command-line flags; defined only when run as a script, so that tests can import the module."""
    flags.DEFINE_string(
        "output_dir", os.path.join("examples_output", "acclip_vs_adam"), "Where the figures and results.json go."
    )
    _common.define_text_flags()
    flags.DEFINE_integer("steps", 300, "Training steps per run (a multiple of --eval_every).", lower_bound=1)
    flags.DEFINE_integer(
        "warmup_steps",
        30,
        "Linear warmup steps T_w of the schedule (0: none); then linear decay to η / (T + 1 − T_w) at the last step.",
        lower_bound=0,
    )
    flags.DEFINE_integer("eval_every", 50, "Steps between validation evaluations.", lower_bound=1)
    flags.DEFINE_integer("batch_size", 32, "Windows per training batch.", lower_bound=1)
    flags.DEFINE_integer("sequence_length", 64, "Bytes per window.", lower_bound=2)
    flags.DEFINE_integer("model_dim", 64, "Width d_model of the transformer.", lower_bound=8)
    flags.DEFINE_integer("num_heads", 4, "Attention heads (d_model / heads per head).", lower_bound=1)
    flags.DEFINE_integer("num_blocks", 2, "Transformer blocks.", lower_bound=1)
    flags.DEFINE_integer("validation_windows", 256, "Held-out windows in each evaluation.", lower_bound=1)
    flags.DEFINE_list("optimizers", list(OPTIMIZERS), "Which optimizers to run.")
    flags.DEFINE_list("sgd_learning_rates", ["1", "2", "4"], "Peak-η grid of SGD momentum (EMA form).")
    flags.DEFINE_list("gclip_learning_rates", ["1", "2", "4"], "Peak-η grid of GClip.")
    flags.DEFINE_float("gclip_threshold", 0.1, "GClip's τ on the global momentum norm.", lower_bound=0.0)
    flags.DEFINE_list("adam_learning_rates", ["2e-3", "4e-3", "8e-3", "1.6e-2"], "Peak-η grid of Adam.")
    flags.DEFINE_list("acclip_learning_rates", ["0.25", "0.5", "1", "2"], "Peak-η grid of ACClip.")
    flags.DEFINE_float(
        "acclip_paper_rate",
        1e-4,
        "One more ACClip run per seed at the paper's BERT η, kept out of the best-η choice (0: skip it).",
        lower_bound=0.0,
    )
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of the initial weights and the batch order.")
    flags.register_validator(
        "optimizers", lambda names: set(names) <= set(OPTIMIZERS), "--optimizers: a subset of SGD, GClip, Adam, ACClip."
    )
    flags.register_multi_flags_validator(
        ["steps", "eval_every"],
        lambda f: f["steps"] % f["eval_every"] == 0,
        "--steps must be a multiple of --eval_every.",
    )
    flags.register_multi_flags_validator(
        ["steps", "warmup_steps"],
        lambda f: f["warmup_steps"] < f["steps"],
        "--warmup_steps must be smaller than --steps.",
    )


COLORS = {"SGD": "tab:blue", "GClip": "tab:purple", "Adam": "tab:orange", "ACClip": "tab:green"}
UNIFORM_LOSS = math.log(256.0)  # cross-entropy of the uniform prediction over bytes


class WarmupThenDecay(keras.optimizers.schedules.LearningRateSchedule):
    """η_t = η · min(t / T_w, (T + 1 − t) / (T + 1 − T_w)) at optimizer step t = 1, 2, …, T; 0 after T.

    BERT's schedule (Devlin et al. 2019): linear warmup from η / T_w over T_w
    steps to η, then linear decay to η / (T + 1 − T_w) at the last step T.
    T_w = 0 is decay only. The peak η is a variable, `peak`, so that one
    compiled training loop serves a whole learning-rate grid: assign it.
    """

    def __init__(self, peak_learning_rate, warmup_steps, total_steps):
        if not 0 <= int(warmup_steps) < int(total_steps):
            raise ValueError(
                f"WarmupThenDecay needs 0 <= warmup_steps < total_steps; got warmup_steps="
                f"{warmup_steps}, total_steps={total_steps}."
            )
        self.peak = keras.Variable(
            float(peak_learning_rate), dtype="float32", trainable=False, name="peak_learning_rate"
        )
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)

    def __call__(self, step):
        # Keras passes the number of completed steps; the update being made is t = step + 1.
        t = keras.ops.cast(step, "float32") + 1.0
        rise = t / float(self.warmup_steps) if self.warmup_steps else keras.ops.ones_like(t)
        fall = (self.total_steps + 1.0 - t) / float(self.total_steps + 1 - self.warmup_steps)
        return self.peak * keras.ops.maximum(keras.ops.minimum(rise, fall), 0.0)

    def get_config(self):
        return dict(
            peak_learning_rate=float(keras.ops.convert_to_numpy(self.peak)),
            warmup_steps=self.warmup_steps,
            total_steps=self.total_steps,
        )


def make_optimizer(name, schedule):
    """(optimizer on `schedule`, peak-η grid) with the hyperparameters in the module docstring."""
    if name == "SGD":
        return tf_adaptive.HeavyBall(schedule, momentum=0.9), FLAGS.sgd_learning_rates
    if name == "GClip":
        return (tf_adaptive.GClip(schedule, beta_1=0.9, threshold=FLAGS.gclip_threshold), FLAGS.gclip_learning_rates)
    if name == "Adam":
        return (
            tf_adaptive.Adam(schedule, beta_1=0.9, beta_2=0.999, epsilon=1e-8, weight_decay=0.01),
            FLAGS.adam_learning_rates,
        )
    return (
        tf_adaptive.ACClip(schedule, beta_1=0.9, beta_2=0.99, epsilon=1e-5, alpha=1.0, weight_decay=1e-5),
        FLAGS.acclip_learning_rates,
    )


class TokenAndPositionEmbedding(keras.layers.Layer):
    """Byte embedding plus a learned embedding of the position in the window."""

    def __init__(self, vocabulary, length, dim, **kwargs):
        super().__init__(**kwargs)
        self.tokens = keras.layers.Embedding(vocabulary, dim)
        self.positions = keras.layers.Embedding(length, dim)

    def call(self, inputs):
        positions = keras.ops.arange(keras.ops.shape(inputs)[-1])
        return self.tokens(inputs) + self.positions(positions)[None]


def build_model(seed):
    """The transformer, its weights drawn after seeding Keras with `seed` (the same seed, the same weights)."""
    keras.utils.set_random_seed(seed)
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


def distance(weights, initial):
    """‖θ − θ_0‖ over every weight of the model."""
    return math.sqrt(sum(float(np.sum((np.asarray(w, np.float64) - w0) ** 2)) for w, w0 in zip(weights, initial)))


def train_all(model, x_train, y_train, x_val, y_val, seeds):
    """Every optimizer at every grid η and seed: {name: {η: [run of each seed]}}, and ACClip at the paper's η."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    initial = {seed: build_model(seed).get_weights() for seed in seeds}
    chunks = FLAGS.steps // FLAGS.eval_every
    batches = {
        seed: np.random.default_rng(seed).integers(0, len(x_train), (chunks, FLAGS.eval_every, FLAGS.batch_size))
        for seed in seeds
    }

    @tf.function(jit_compile=True)
    def evaluate():
        logits = model(x_val)
        return loss_fn(y_val, logits), _common.accuracy(y_val, logits)

    def one_run(label, train_chunk, seed):
        model.set_weights(initial[seed])
        start = time.perf_counter()
        train_loss = []
        loss, accuracy = (float(v) for v in evaluate())
        val_loss, val_accuracy = [loss], [accuracy]
        for chunk in range(chunks):
            index = batches[seed][chunk]
            train_loss.extend(train_chunk(x_train[index], y_train[index]).numpy().tolist())
            loss, accuracy = (float(v) for v in evaluate())
            val_loss.append(loss)
            val_accuracy.append(accuracy)
        seconds = time.perf_counter() - start
        final = val_loss[-1] if math.isfinite(val_loss[-1]) else math.inf
        moved = distance(model.get_weights(), initial[seed])
        print(
            f"  {label}  seed {seed}  train {np.mean(train_loss[-FLAGS.eval_every :]):.3f}  val {final:.3f}  "
            f"byte accuracy {val_accuracy[-1]:.3f}  ‖θ − θ0‖ {moved:.3g}  ({seconds:.1f} s)",
            flush=True,
        )
        return dict(
            seed=seed,
            train_loss=train_loss,
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            final_val_loss=final,
            final_val_accuracy=val_accuracy[-1],
            distance=moved,
            seconds=seconds,
        )

    runs, paper_runs = {}, []
    for name in FLAGS.optimizers:
        schedule = WarmupThenDecay(1.0, FLAGS.warmup_steps, FLAGS.steps)
        optimizer, rates = make_optimizer(name, schedule)
        train_chunk = _common.xla_training_loop(model, optimizer, loss_fn)
        extra = [FLAGS.acclip_paper_rate] if name == "ACClip" and FLAGS.acclip_paper_rate > 0 else []
        for rate in [float(r) for r in rates] + extra:
            for seed in seeds:
                _common.reset_optimizer(optimizer)
                schedule.peak.assign(rate)
                run = one_run(f"{name:<6} η={rate:<7g}", train_chunk, seed)
                if rate in extra:
                    paper_runs.append(run)
                else:
                    runs.setdefault(name, {}).setdefault(rate, []).append(run)
    return runs, paper_runs


def summarize(runs):
    """Per optimizer: the best η (lowest mean final validation loss over seeds) and each seed's result there.

    A diverged run scores +inf, so a rate that diverges at any seed is never
    the best unless every rate does. `at_grid_edge` says whether the best η
    is the smallest or largest of the grid (then the grid may not bracket it).
    """
    summary = {}
    for name, by_rate in runs.items():
        mean = {rate: float(np.mean([run["final_val_loss"] for run in seeds])) for rate, seeds in by_rate.items()}
        best = min(mean, key=mean.get)
        summary[name] = dict(
            best_learning_rate=best,
            mean_val_loss=mean[best],
            val_loss=[run["final_val_loss"] for run in by_rate[best]],
            val_accuracy=[run["final_val_accuracy"] for run in by_rate[best]],
            distance=[run["distance"] for run in by_rate[best]],
            at_grid_edge=len(by_rate) > 1 and best in (min(by_rate), max(by_rate)),
        )
    return summary


# --------------------------------------------------------------------- figures
def band(axis, x, per_seed, color, label, marker):
    """The mean over seeds as a line, the seeds' range shaded."""
    values = np.asarray(per_seed, dtype=np.float64)
    axis.plot(x, values.mean(axis=0), marker=marker, color=color, label=label)
    if len(values) > 1:
        axis.fill_between(x, values.min(axis=0), values.max(axis=0), color=color, alpha=0.2, linewidth=0)


def figure_curves(plt, runs, summary, seeds):
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    eval_steps = np.arange(0, FLAGS.steps + 1, FLAGS.eval_every)
    # Each frame's top is its highest mean after step 0, so that the differences show; the
    # validation loss at step 0 (≈ ln 256) is above the frame.
    tops = {left: [], right: []}
    for name, entry in summary.items():
        best = runs[name][entry["best_learning_rate"]]
        label = f"{name} η={entry['best_learning_rate']:g}"
        chunk_means = [np.asarray(run["train_loss"]).reshape(-1, FLAGS.eval_every).mean(axis=1) for run in best]
        validation = [run["val_loss"] for run in best]
        band(left, eval_steps[1:], chunk_means, COLORS[name], label, ".")
        band(right, eval_steps, validation, COLORS[name], label, "o")
        tops[left].append(np.max(np.asarray(chunk_means)[:, 0]))
        tops[right].append(np.max(np.asarray(validation)[:, 1]))
    for axis, what in ((left, "training loss (mean over each interval)"), (right, "validation loss")):
        top = min(max(tops[axis]), UNIFORM_LOSS) + 0.1
        axis.set(xlabel="step", ylabel=f"{what}, nats/byte", ylim=(None, top))
        axis.legend(fontsize=8)
    figure.suptitle(
        "Byte-level transformer LM, best peak η each, warmup then linear decay; mean over seeds "
        f"{seeds}, range shaded (Zhang et al. 2020, Fig. 3 in miniature)",
        fontsize=10,
    )
    return figure


def figure_sweep(plt, runs, paper_runs):
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, key, cap in ((left, "final_val_loss", 2 * UNIFORM_LOSS), (right, "final_val_accuracy", math.inf)):
        for name, by_rate in runs.items():
            rates = sorted(by_rate)
            values = np.minimum([[run[key] for run in by_rate[r]] for r in rates], cap)
            mean = values.mean(axis=1)
            axis.errorbar(
                rates,
                mean,
                yerr=[mean - values.min(axis=1), values.max(axis=1) - mean],
                marker="o",
                capsize=3,
                color=COLORS[name],
                label=name,
            )
        if paper_runs:
            values = np.minimum([run[key] for run in paper_runs], cap)
            axis.errorbar(
                [FLAGS.acclip_paper_rate],
                [values.mean()],
                yerr=[[values.mean() - values.min()], [values.max() - values.mean()]],
                marker="o",
                mfc="none",
                capsize=3,
                color=COLORS["ACClip"],
                linestyle="none",
                label="ACClip at the paper's η",
            )
    left.axhline(UNIFORM_LOSS, color="gray", linestyle=":", linewidth=1)
    left.annotate("ln 256", (0.02, UNIFORM_LOSS), xycoords=("axes fraction", "data"), va="bottom", fontsize=8)
    left.set(xscale="log", xlabel="peak learning rate η", ylabel="final validation loss (capped at 2 ln 256)")
    right.set(xscale="log", xlabel="peak learning rate η", ylabel="final validation byte accuracy")
    left.legend(fontsize=8)
    figure.suptitle(f"Peak-η grids after {FLAGS.steps} steps: mean over seeds, bars the range", fontsize=10)
    return figure


# -------------------------------------------------------------------- verdicts
def verdicts(summary):
    """The claims of Fig. 3 and Table 2 at each optimizer's best η, gated on the seed-to-seed spread."""
    loss = {name: entry["val_loss"] for name, entry in summary.items()}
    accuracy = {name: 100.0 * np.asarray(entry["val_accuracy"]) for name, entry in summary.items()}
    mean = {name: float(np.mean(values)) for name, values in loss.items()}
    rows = []
    adaptive = [n for n in ("Adam", "ACClip") if n in loss]
    plain = [n for n in ("SGD", "GClip") if n in loss]
    if adaptive and plain:
        worse = max(adaptive, key=mean.get)
        better = min(plain, key=mean.get)
        rows.append(
            _common.gated_verdict(
                "Fig. 3: a large gap remains between (clipped) SGD momentum and the adaptive methods",
                f"val loss, worse adaptive ({worse})",
                loss[worse],
                f"better non-adaptive ({better})",
                loss[better],
                "<",
                digits=3,
            )
        )
    if {"SGD", "GClip"} <= set(loss):
        rows.append(
            _common.gated_verdict(
                "Fig. 3: clipping (GClip) reaches a lower validation loss than SGD momentum",
                "val loss GClip",
                loss["GClip"],
                "SGD",
                loss["SGD"],
                "<",
                digits=3,
            )
        )
    if {"Adam", "ACClip"} <= set(loss):
        rows.append(
            _common.gated_verdict(
                "Fig. 3 / Table 2: ACClip reaches a lower validation loss than Adam (1.877 vs 1.907)",
                "val loss ACClip",
                loss["ACClip"],
                "Adam",
                loss["Adam"],
                "<",
                digits=3,
            )
        )
        rows.append(
            _common.gated_verdict(
                "Table 2: ACClip reaches a higher accuracy than Adam (63.85 vs 63.45 %)",
                "byte accuracy % ACClip",
                accuracy["ACClip"],
                "Adam",
                accuracy["Adam"],
                ">",
                digits=2,
            )
        )
    rows.append(
        _common.verdict(
            f"(sanity) every optimizer learns: validation loss below ln 256 = {UNIFORM_LOSS:.2f} at every seed",
            ", ".join(f"{n} ≤ {max(v):.3f}" for n, v in loss.items()),
            all(max(v) < UNIFORM_LOSS for v in loss.values()),
        )
    )
    return rows


def print_table(runs, summary, paper_runs, seeds):
    header = f"  {'':<24}" + "".join(f"{'seed ' + str(s):>9}" for s in seeds)
    print(f"\nFinal validation loss (nats/byte) after {FLAGS.steps} steps; * the best η (lowest mean)")
    print(header)
    for name, by_rate in runs.items():
        for rate in sorted(by_rate):
            values = np.asarray([run["final_val_loss"] for run in by_rate[rate]])
            star = "*" if rate == summary[name]["best_learning_rate"] else " "
            print(
                f"  {star}{name + ', η = ' + format(rate, 'g'):<23}"
                + "".join(f"{v:>9.3f}" for v in values)
                + f"   mean {values.mean():.3f}  spread {np.ptp(values):.3f}"
            )
    edges = [name for name, entry in summary.items() if entry["at_grid_edge"]]
    if edges:
        print(f"  best η at the edge of its grid: {', '.join(edges)} (the grid may not bracket the best η)")
    if paper_runs and "Adam" in summary:
        ratio = np.asarray(summary["Adam"]["distance"]) / np.asarray([run["distance"] for run in paper_runs])
        losses = ", ".join(f"{run['final_val_loss']:.3f}" for run in paper_runs)
        moved = ", ".join(f"{run['distance']:.3g}" for run in paper_runs)
        adam = ", ".join(f"{d:.3g}" for d in summary["Adam"]["distance"])
        print(
            f"\nACClip at the paper's η = {FLAGS.acclip_paper_rate:g}: val loss {losses}; it moved the weights "
            f"‖θ_T − θ_0‖ = {moved}, Adam at its best η {adam}: "
            f"{ratio.min():.0f}–{ratio.max():.0f} times farther"
        )


def main(argv):
    del argv
    start = time.perf_counter()
    seeds = [int(s) for s in FLAGS.seeds]
    tokens = _common.text_corpus(FLAGS.data_dir)
    (x_train, y_train), (x_val, y_val) = _common.text_windows(tokens, FLAGS.sequence_length)
    # Evenly spaced held-out windows, the same in every evaluation.
    keep = np.linspace(0, len(x_val) - 1, min(FLAGS.validation_windows, len(x_val))).astype(int)
    x_val, y_val = x_val[keep], y_val[keep]
    model = build_model(seeds[0])
    print(
        f"corpus {len(tokens):,} bytes: {len(x_train)} training windows, {len(x_val)} validation windows "
        f"of {FLAGS.sequence_length} bytes; transformer {FLAGS.num_blocks} block(s), d_model {FLAGS.model_dim}, "
        f"{model.count_params():,} parameters; {FLAGS.steps} steps of batch {FLAGS.batch_size}, warmup "
        f"{FLAGS.warmup_steps} then linear decay; seeds {seeds}"
    )

    runs, paper_runs = train_all(model, x_train, y_train, x_val, y_val, seeds)
    summary = summarize(runs)
    print_table(runs, summary, paper_runs, seeds)

    plt = _common.pyplot()
    plt.rcParams["text.antialiased"] = False  # antialiased text is most of a PNG's bytes here
    _common.save_figure(figure_curves(plt, runs, summary, seeds), FLAGS.output_dir, "curves.png")
    _common.save_figure(figure_sweep(plt, runs, paper_runs), FLAGS.output_dir, "lr_sweep.png")
    rows = verdicts(summary)
    seconds = time.perf_counter() - start
    _common.write_json(
        FLAGS.output_dir,
        "results.json",
        dict(
            flags={
                name: FLAGS[name].value
                for name in (
                    "steps",
                    "warmup_steps",
                    "eval_every",
                    "batch_size",
                    "sequence_length",
                    "model_dim",
                    "num_heads",
                    "num_blocks",
                    "validation_windows",
                    "optimizers",
                    "sgd_learning_rates",
                    "gclip_learning_rates",
                    "gclip_threshold",
                    "adam_learning_rates",
                    "acclip_learning_rates",
                    "acclip_paper_rate",
                    "seeds",
                )
            },
            parameters=model.count_params(),
            uniform_loss=UNIFORM_LOSS,
            seeds=seeds,
            summary=summary,
            runs={name: {f"{rate:g}": by_seed for rate, by_seed in by_rate.items()} for name, by_rate in runs.items()},
            paper_rate_runs=paper_runs,
            verdicts=rows,
            seconds=seconds,
        ),
    )
    _common.print_verdicts(
        rows,
        title=f"Paper claim vs this run (seeds {seeds}; a verdict only when the gap "
        "between the means over seeds exceeds the larger range over seeds)",
    )
    print(f"\ntotal {seconds:.0f} s")


if __name__ == "__main__":
    define_flags()
    app.run(main)
