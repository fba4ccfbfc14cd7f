r"""Full-batch adaptive optimizers train at the adaptive edge of stability.

Reproduces, at small scale, Figs. 1, 3, 5 and 8 of Cohen et al., "Adaptive
Gradient Methods at the Edge of Stability" (arXiv:2207.14484, 2022). On a
quadratic, an optimizer with its preconditioner P frozen is stable only while
the preconditioned sharpness λ1(P⁻¹H) stays below a threshold set by η and
the momentum alone (§2, App. A): 38/η for Adam at β1 = 0.9 (EMA heavy ball),
13.57/η for Nadam (EMA Nesterov), 2/η for RMSProp and Adagrad (no momentum).
The paper finds that during full-batch training λ1(P_t⁻¹H_t) rises to that
threshold and then hovers at it:

* Fig. 1 (Adam without bias correction) and Fig. 5 (Adam with it, AdamW,
  Adafactor, AMSGrad, Padam, Nadam, RMSProp, Adagrad): λ1(P⁻¹H) against the
  dashed threshold line of each η;
* Fig. 3: "frozen Adam" (P taken from full-batch Adam at a midpoint and held
  fixed, training from scratch) rises to 38/η and equilibrates there (3b), and
  its raw sharpness λ1(H) "mostly ceases to increase" once there (3c);
* Fig. 8: under Adam, by contrast, λ1(H) keeps rising at the AEoS.

Setup (App. G.1, scaled down): the paper's fully-connected network, 5 hidden
tanh layers of 200 units, weights with variance 1/fan_in and zero biases,
trained full-batch on the squared loss (Keras's mean over the 10 one-hot
outputs), on a class-balanced 512-image subset of scikit-learn's bundled
digits (nothing is downloaded) instead of CIFAR-10. Every `--measure_every`
steps `analysis_tools.SharpnessCallback` computes λ1(P_t⁻¹H_t) and λ1(H_t) of
the whole training loss by Lanczos inside `model.fit`; P_t comes from
`analysis_tools.preconditioner_of` and each optimizer's own
threshold from `stability_threshold_of`. ε = 1e-7 as in App. G.2. β2 defaults
to 0.99, Fig. 8's value (Fig. 1c finds 0.9, 0.99 and 0.999 alike on CIFAR-10;
here, with 0.999, P lags the shrinking gradients for longer than a short run).

`--optimizer` (repeat it for several): `adam` (tf_adaptive.Adam, bias
corrected; Fig. 5a), `adam_no_bias_correction` (Fig. 1), `adamw` (Keras's
AdamW), `amsgrad`, `padam`, `nadam`, `rmsprop`, `adagrad`, `adafactor`
(Fig. 5), `frozen_adam` (Fig. 3), `heavy_ball` and `nesterov` (P = I, EMA
form), and, not in the paper, `laprop`, `radam`, `acclip` and `msvag`. Sign
descent is left out: its P = |g| is zero on the digits' constant pixels.

Frozen Adam follows §4: full-batch Adam without bias correction at
`--freeze_learning_rate` runs `--freeze_step` steps, its P = sqrt(ν) + ε goes
into `tf_adaptive.FrozenAdam.from_optimizer`, and the network is trained again
from the same initial weights. Where P comes from sets the scale of λ1(P⁻¹H),
so frozen Adam's η are given by `--frozen_initial_ratios`, λ1(P⁻¹H₀)/(38/η)
at the initial weights: 0.8, 1.0 and 1.25 (the paper does not say how it
chose its three).

What the defaults find (113 s wall time on 2 idle CPU cores; 48 s before the tracker's 3,600
Hessian-vector products, 2 at every step of the 6 runs, were added; 129 s before the Hessian products
were certified by their eigenvalue bound and traced once for all runs, and before the train step
left XLA: 6 runs of 300 steps, λ1(H) and λ1(P⁻¹H) measured 12 times in each, to a certified
relative accuracy of 1e-2, the verdict bands being ±30 %; the closing table prints it): Adam rises
from 0.26-0.55 of 38/η to it and sits there, a late-training median of λ1(P⁻¹H)/(38/η) of 1.01,
0.99 and 0.99 at η = 1e-3, 2e-3, 4e-3 (Fig. 5a agrees). Frozen Adam never rises above 38/η: it
settles at 0.83-0.96 of it (Fig. 3b only partly), and only the run started at it reaches 0.9; on
this small, easy problem the raw sharpness grows too little before the loss vanishes (Fig. 3c's
axis spans 10² to 10³ on CIFAR-10) to carry a fixed-P λ1(P⁻¹H) to the threshold, and a start above
it is thrown below it (catapult). Adam reaches its threshold anyway because P shrinks with the
gradients; its raw sharpness then falls or stays (×0.80-0.99 over the AEoS) instead of rising, so
Fig. 8 is not reproduced at this scale.

`--labels=random` is the setting in which Figs. 3 and 8 do reproduce: the labels are permuted
over the images with a fixed seed (from `--seed`; each class keeps its count, about 1 in 10 labels
stays right by chance), so the network must memorize them, trains for longer, and its raw
sharpness grows as it does (progressive sharpening). On true labels the network interpolates
fast and λ1(P⁻¹H) reaches 38/η because P shrinks, not because H grows; those runs stay as the
contrast. With 1,024 random-label digits, 900 steps at η = 2e-4 and frozen P taken from Adam
(η = 2e-4, no bias correction) at step 300 (94 s on 2 idle CPU cores, all 7 verdicts agree):
Adam rises from 0.06 of 38/η to it at step 225 and stays at 0.95-1.04 (late median 1.01), while
its raw λ1(H) keeps rising, from 11.9 at arrival to 22.5 (×1.19 by the later-half/earlier-half
median, Fig. 8). Frozen Adam started at 0.3 and 0.6 of 38/η rises to it, carried by its raw
λ1(H) (×4.4 and ×2.1 from the first measurement to arrival), and settles at late medians 0.99 and
1.00 (maxima 1.01, 1.00) with λ1(H) flat from there (×1.04, ×1.00), as in Fig. 3b-c.

Between the certified measurements, `analysis_tools.SharpnessTracker` follows λ1(P⁻¹H) at every
step (`--track_every`) with `--track_products` Hessian-vector products, a few Lanczos steps from
its previous estimate's vector; `trajectories.png` draws it as a line under the Lanczos points. It
is a Rayleigh quotient, so it can only fall below λ1, where the top eigenvector turns faster than
it follows (`benchmarks/tracker_validation.py` measures how often: within 10 % of Lanczos at
96-97 % of the steps after arrival, with 3 products every 5 steps).

Outputs in `--output_dir`: `trajectories.png` (per optimizer: train loss,
λ1(P⁻¹H) with dashed thresholds, the tracker's line and the Lanczos points, λ1(H)), `ratios.png` (λ1(P⁻¹H)/threshold
of every run; the claim is ≈ 1) and `results.json` (every measurement,
per-run summaries, the verdict rows).

    python examples/edge_of_stability.py                    # Adam and frozen Adam
    python examples/edge_of_stability.py --optimizer=nadam --optimizer=rmsprop --optimizer=adagrad
    python examples/edge_of_stability.py --optimizer=adam_no_bias_correction --learning_rates=5e-4 --steps=600
    python examples/edge_of_stability.py --labels=random --num_examples=1024 --learning_rates=2e-4 \
        --steps=900 --freeze_learning_rate=2e-4 --freeze_step=300 --frozen_initial_ratios=0.3,0.6  # Figs. 3, 8
    python examples/edge_of_stability.py --dataset=mnist --num_examples=2048 --steps=1000  # downloads it
"""

import collections
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
from analysis_tools import SharpnessCallback, SharpnessTracker, hessian_eigenvalues, preconditioner_of
from analysis_tools.preconditioners import stability_threshold_of

EPSILON = 1e-7  # the paper's ε for every method (App. G.2)

# name: (label, figure of the paper, default learning rates, constructor(η, β2)).
Choice = collections.namedtuple("Choice", "label figure learning_rates make")
OPTIMIZERS = {
    "adam": Choice(
        "Adam", "Fig. 5a", (1e-3, 2e-3, 4e-3), lambda lr, b2: tf_adaptive.Adam(lr, beta_2=b2, epsilon=EPSILON)
    ),
    "adam_no_bias_correction": Choice(
        "Adam, no bias correction",
        "Fig. 1",
        (1e-3, 2e-3, 4e-3),
        lambda lr, b2: tf_adaptive.Adam(lr, beta_2=b2, epsilon=EPSILON, bias_correction=False),
    ),
    "adamw": Choice(
        "AdamW (Keras)",
        "Fig. 5b",
        (1e-3, 2e-3, 4e-3),
        lambda lr, b2: keras.optimizers.AdamW(lr, beta_2=b2, epsilon=EPSILON),
    ),
    "amsgrad": Choice(
        "AMSGrad",
        "Fig. 5d",
        (1e-3, 2e-3, 4e-3),
        lambda lr, b2: tf_adaptive.Adam(lr, beta_2=b2, epsilon=EPSILON, bias_correction=False, amsgrad=True),
    ),
    "padam": Choice(
        "Padam (p = 1/4)", "Fig. 5e", (0.05, 0.1, 0.2), lambda lr, b2: tf_adaptive.Padam(lr, beta_2=b2, epsilon=EPSILON)
    ),
    "nadam": Choice(
        "Nadam",
        "Fig. 5f",
        (2.5e-4, 5e-4, 1e-3),
        lambda lr, b2: tf_adaptive.Nadam(lr, beta_2=b2, epsilon=EPSILON, bias_correction=False),
    ),
    "rmsprop": Choice(
        "RMSProp", "Fig. 5g", (5e-5, 1e-4, 2e-4), lambda lr, b2: tf_adaptive.RMSProp(lr, beta_2=b2, epsilon=EPSILON)
    ),
    "adagrad": Choice(
        "Adagrad", "Fig. 5h", (1e-3, 2.5e-3, 5e-3), lambda lr, b2: tf_adaptive.Adagrad(lr, epsilon=EPSILON)
    ),
    "adafactor": Choice(
        "Adafactor (β1 = 0.9)",
        "Fig. 5c",
        (1e-3, 2e-3, 4e-3),
        lambda lr, b2: tf_adaptive.Adafactor(lr, beta_1=0.9, epsilon=EPSILON),
    ),
    "frozen_adam": Choice("Frozen Adam", "Fig. 3b", None, None),
    "heavy_ball": Choice(
        "EMA heavy ball (P = I)", "§2, App. A", (7.0, 8.5, 10.0), lambda lr, b2: tf_adaptive.HeavyBall(lr)
    ),
    "nesterov": Choice("EMA Nesterov (P = I)", "§2, App. A", (2.0, 2.5, 3.0), lambda lr, b2: tf_adaptive.Nesterov(lr)),
    "laprop": Choice(
        "LaProp", None, (1e-3, 2e-3, 4e-3), lambda lr, b2: tf_adaptive.LaProp(lr, beta_2=b2, epsilon=EPSILON)
    ),
    "radam": Choice(
        "RAdam", None, (1e-3, 2e-3, 4e-3), lambda lr, b2: tf_adaptive.RAdam(lr, beta_2=b2, epsilon=EPSILON)
    ),
    "acclip": Choice("ACClip", None, (6.0, 8.0, 10.0), lambda lr, b2: tf_adaptive.ACClip(lr)),
    "msvag": Choice("M-SVAG", None, (0.5, 1.0, 2.0), lambda lr, b2: tf_adaptive.MSVAG(lr)),
}
# The paper's claim, as a band around 1 for the late-training median of λ1(P⁻¹H)/threshold.
BAND = (0.7, 1.3)
ARRIVAL = 0.9  # λ1(P⁻¹H)/threshold at which a run counts as having reached the threshold
CEILING = 1.15  # how far above the threshold a non-adaptive run may hover ("at, or just above", Fig. 5)

FLAGS = flags.FLAGS


def define_flags():
    """The command-line flags; defined only when run as a script, so that tests can import the module."""
    flags.DEFINE_multi_enum(
        "optimizer",
        ["adam", "frozen_adam"],
        list(OPTIMIZERS),
        "Optimizers to run (repeat the flag for several), each at every learning rate.",
    )
    flags.DEFINE_list(
        "learning_rates",
        None,
        "Learning rates η, one run each, for every optimizer but frozen_adam (default: a grid per optimizer).",
    )
    flags.DEFINE_list(
        "frozen_initial_ratios",
        ["0.8", "1.0", "1.25"],
        "frozen_adam's η, one run each, as λ1(P⁻¹H₀)/(38/η) at the initial weights.",
    )
    flags.DEFINE_integer("steps", 300, "Full-batch optimizer steps per run.", lower_bound=1)
    flags.DEFINE_bool(
        "jit_compile",
        False,
        "XLA for the train step (on 300 small full-batch steps its compilation costs more than it saves).",
    )
    flags.DEFINE_integer("measure_every", 25, "Steps between sharpness measurements.", lower_bound=1)
    flags.DEFINE_integer("track_every", 1, "Steps between the SharpnessTracker's estimates of λ1(P⁻¹H).", lower_bound=1)
    flags.DEFINE_integer(
        "track_products", 2, "Hessian-vector products per tracker estimate (warm-started Lanczos).", lower_bound=1
    )
    flags.DEFINE_float(
        "tolerance",
        1e-2,
        "Relative accuracy to which each λ1 is certified (the verdict bands are ±30 %).",
        lower_bound=1e-12,
    )
    flags.DEFINE_float("beta_2", 0.99, "β2 of the second-moment EMA (Adam family, RMSProp, LaProp, RAdam).")
    flags.DEFINE_float("freeze_learning_rate", 1e-3, "η of the Adam run that frozen Adam takes P from.")
    flags.DEFINE_integer("freeze_step", 100, "Step of that run at which P is frozen.", lower_bound=1)
    _common.define_image_flags(num_examples=512)  # the full batch
    flags.DEFINE_integer("hidden_layers", 5, "Hidden tanh layers.", lower_bound=1)
    flags.DEFINE_integer("hidden_units", 200, "Units per hidden layer.", lower_bound=1)
    flags.DEFINE_enum(
        "labels",
        "true",
        ["true", "random"],
        "true: the images' own labels. random: the same labels randomly permuted over the "
        "images (seeded by --seed; class counts kept, labels independent of the images), "
        "which the network must memorize, so it trains for longer and sharpens as it does.",
    )
    flags.DEFINE_integer("seed", 0, "Seed of the subset, the random labels and the initial weights.")
    flags.DEFINE_string(
        "output_dir", os.path.join("examples_output", "edge_of_stability"), "Where the figures and results.json go."
    )


LOSS = keras.losses.MeanSquaredError()


def training_labels(labels, kind, seed):
    """The labels trained on: `labels` itself for "true", a seeded permutation of it for "random".

    A permutation keeps every class's count (the digits subset is class-balanced) and makes the
    label of an image independent of the image: about 1 in 10 still match by chance.
    """
    if kind == "true":
        return labels
    # Its own stream of the seed, apart from the one that drew the subset.
    return np.random.default_rng([seed, 1]).permutation(labels)


def build_model(num_features, num_classes):
    """App. G.1's fully-connected network: tanh, weights of variance 1/fan_in, zero biases."""
    return _common.tanh_network(num_features, num_classes, FLAGS.hidden_layers, FLAGS.hidden_units, FLAGS.seed)


def threshold_constant(optimizer):
    """c in the threshold c/η (38 for Adam at β1 = 0.9)."""
    return stability_threshold_of(optimizer) * float(keras.ops.convert_to_numpy(optimizer.learning_rate))


class Progress(keras.callbacks.Callback):
    """Prints one line per sharpness measurement (after SharpnessCallback has logged it)."""

    def __init__(self, name, learning_rate, every, steps):
        super().__init__()
        self.name, self.learning_rate, self.every, self.steps = name, learning_rate, every, steps

    def on_epoch_end(self, epoch, logs=None):
        step = epoch + 1
        if step % self.every == 0 and "sharpness_ratio" in logs:
            print(
                f"  {self.name:<23} η={self.learning_rate:<8.3g} step {step:>5}/{self.steps}  "
                f"loss {logs['loss']:.3e}  λ1(P⁻¹H) {logs['preconditioned_sharpness']:.4g} "
                f"= {logs['sharpness_ratio']:.3f} × threshold  λ1(H) {logs['sharpness']:.4g}",
                flush=True,
            )


def train(name, optimizer, data, model, sharpness, tracker, initial_weights):
    """One full-batch run of `model` from `initial_weights`, measured every `measure_every` steps.

    Every run reuses the one model, the one `sharpness` callback and the one
    `tracker` (reset here), so the Hessian products are traced and compiled
    once for all runs. The tracker estimates λ1(P⁻¹H) every `track_every`
    steps from its previous estimate's vector (`SharpnessTracker`'s power
    iteration); Lanczos certifies it every `measure_every` steps.
    """
    x, y = data
    model.set_weights(initial_weights)
    model.compile(optimizer=optimizer, loss=LOSS, jit_compile=FLAGS.jit_compile)
    learning_rate = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    sharpness.reset()
    tracker.reset()
    progress = Progress(name, learning_rate, FLAGS.measure_every, FLAGS.steps)
    full_batch = tf.data.Dataset.from_tensors((x, y)).repeat()
    start = time.perf_counter()
    losses = []
    record_loss = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: losses.append(logs["loss"]))
    try:
        # One epoch per step, so that every step's loss is logged.
        model.fit(
            full_batch,
            steps_per_epoch=1,
            epochs=FLAGS.steps,
            verbose=0,
            shuffle=False,
            callbacks=[record_loss, keras.callbacks.TerminateOnNaN(), sharpness, tracker, progress],
        )
    except tf.errors.InvalidArgumentError:
        # A measurement fell due while the loss blew up: Lanczos fails on the
        # non-finite Hessian products of a diverged network.
        if not has_diverged(losses):
            raise
    diverged = has_diverged(losses)
    if diverged:
        print(f"  {name:<23} η={learning_rate:<8.3g} diverged at step {len(losses)}", flush=True)
    records = [
        dict(
            step=r.step,
            preconditioned_sharpness=r.values["preconditioned_sharpness"],
            sharpness=r.values["sharpness"],
            stability_threshold=r.values["stability_threshold"],
            ratio=r.values["sharpness_ratio"],
        )
        for r in sharpness.records
    ]
    tracked = [
        dict(step=r.step, preconditioned_sharpness=r.values.get("power_preconditioned_sharpness"))
        for r in tracker.records
        if "power_preconditioned_sharpness" in r.values
    ]
    return dict(
        optimizer=name,
        learning_rate=learning_rate,
        threshold_constant=threshold_constant(optimizer),
        losses=losses,
        records=records,
        tracked=tracked,
        diverged=diverged,
        seconds=time.perf_counter() - start,
        **summarize(records),
    )


def has_diverged(losses):
    """Whether the loss became non-finite or exceeded 1000 times its initial value."""
    return any(not math.isfinite(value) or value > 1e3 * losses[0] for value in losses)


def summarize(records):
    """Late-training median of λ1(P⁻¹H)/threshold, arrival at the threshold, raw sharpness after it."""
    if not records:
        return dict(
            initial_ratio=None,
            late_median_ratio=None,
            late_max_ratio=None,
            arrival_step=None,
            raw_sharpness_growth_after_arrival=None,
        )
    steps = np.array([r["step"] for r in records])
    ratios = np.array([r["ratio"] for r in records])
    raw = np.array([r["sharpness"] for r in records])
    late = steps > FLAGS.steps / 2
    arrived = np.flatnonzero(ratios >= ARRIVAL)
    summary = dict(
        initial_ratio=float(ratios[0]),
        late_median_ratio=float(np.median(ratios[late])) if late.any() else None,
        late_max_ratio=float(np.max(ratios[late])) if late.any() else None,
        arrival_step=int(steps[arrived[0]]) if arrived.size else None,
        raw_sharpness_growth_after_arrival=None,
    )
    if arrived.size and arrived[0] < len(records) - 1:
        # Median λ1(H) over the later half of the measurements from arrival on, over the earlier half.
        after = raw[arrived[0] :]
        half = len(after) // 2
        summary["raw_sharpness_growth_after_arrival"] = float(np.median(after[half:]) / np.median(after[:half]))
    return summary


def freeze_adam(data, initial_weights):
    """§4: full-batch Adam (no bias correction) for `freeze_step` steps, whose P = sqrt(ν) + ε is frozen.

    Returns (make, P): `make(η)` is a `tf_adaptive.FrozenAdam` with that P
    (`FrozenAdam.from_optimizer`), P is the list of its arrays.
    """
    x, y = data
    model = build_model(x.shape[1], y.shape[1])
    model.set_weights(initial_weights)
    source = tf_adaptive.Adam(FLAGS.freeze_learning_rate, beta_2=FLAGS.beta_2, epsilon=EPSILON, bias_correction=False)
    model.compile(optimizer=source, loss=LOSS, jit_compile=FLAGS.jit_compile)
    model.fit(
        tf.data.Dataset.from_tensors((x, y)).repeat(),
        steps_per_epoch=FLAGS.freeze_step,
        epochs=1,
        verbose=0,
        shuffle=False,
    )
    variables = model.trainable_variables
    preconditioner = [keras.ops.convert_to_numpy(p) for p in preconditioner_of(source, variables)]

    def make(learning_rate, beta_2=None):
        del beta_2  # P is frozen: no second-moment EMA
        return tf_adaptive.FrozenAdam.from_optimizer(source, variables, learning_rate=learning_rate)

    return make, preconditioner


def frozen_learning_rates(data, initial_weights, preconditioner):
    """λ1(P⁻¹H₀) at the initial weights, and the η that put it at `--frozen_initial_ratios` of 38/η."""
    x, y = data
    model = build_model(x.shape[1], y.shape[1])
    model.set_weights(initial_weights)
    initial = float(
        hessian_eigenvalues(model, (x, y), loss=LOSS, preconditioner=preconditioner, tolerance=1e-4).eigenvalues[0]
    )
    constant = threshold_constant(tf_adaptive.FrozenAdam(1.0))
    print(
        f"  frozen P (Adam, η = {FLAGS.freeze_learning_rate:g}, step {FLAGS.freeze_step}): "
        f"λ1(P⁻¹H₀) = {initial:.4g} at the initial weights",
        flush=True,
    )
    return initial, [float(ratio) * constant / initial for ratio in FLAGS.frozen_initial_ratios]


# ------------------------------------------------------------------- figures
def threshold_label(constant):
    return f"{constant:.4g}/η"


def figure_trajectories(plt, groups):
    """Per optimizer: train loss, λ1(P⁻¹H) against c/η (dashed), λ1(H) (Figs. 1, 3, 5, 8)."""
    figure, axes = plt.subplots(len(groups), 3, figsize=(11.5, 2.9 * len(groups)), squeeze=False)
    for row, (name, runs) in zip(axes, groups.items()):
        colors = plt.cm.viridis(np.linspace(0.0, 0.85, len(runs)))
        for run, color in zip(runs, colors):
            label = f"η = {run['learning_rate']:.3g}"
            row[0].plot(np.arange(1, len(run["losses"]) + 1), run["losses"], color=color, linewidth=1, label=label)
            steps = [r["step"] for r in run["records"]]
            row[1].plot(
                [r["step"] for r in run["tracked"]],
                [r["preconditioned_sharpness"] for r in run["tracked"]],
                "-",
                color=color,
                linewidth=0.8,
                alpha=0.8,
            )
            row[1].plot(
                steps,
                [r["preconditioned_sharpness"] for r in run["records"]],
                "o",
                color=color,
                markersize=3.5,
                markeredgecolor="black",
                markeredgewidth=0.4,
                label=label,
            )
            row[1].axhline(run["threshold_constant"] / run["learning_rate"], color=color, linestyle="--")
            row[2].plot(steps, [r["sharpness"] for r in run["records"]], "o-", color=color, markersize=3, label=label)
        constant = runs[0]["threshold_constant"]
        title = f"{OPTIMIZERS[name].label}"
        if OPTIMIZERS[name].figure:
            title += f" (paper: {OPTIMIZERS[name].figure})"
        row[0].set(title=f"{title}\ntrain loss", yscale="log", xlabel="step")
        row[1].set(
            title=f"λ1(P⁻¹H): tracker (line), Lanczos (points)\ndashed: threshold {threshold_label(constant)}",
            yscale="log",
            xlabel="step",
        )
        row[2].set(title="sharpness λ1(H)", xlabel="step")
        row[0].legend(fontsize=8, loc="lower left")
    figure.tight_layout()
    return figure


def figure_ratios(plt, groups):
    """λ1(P⁻¹H)/threshold for every run: the AEoS claim is that it settles at 1."""
    figure, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 3.2), squeeze=False)
    for ax, (name, runs) in zip(axes[0], groups.items()):
        colors = plt.cm.viridis(np.linspace(0.0, 0.85, len(runs)))
        for run, color in zip(runs, colors):
            ax.plot(
                [r["step"] for r in run["records"]],
                [r["ratio"] for r in run["records"]],
                "o-",
                color=color,
                markersize=3,
                label=f"η = {run['learning_rate']:.3g}",
            )
        ax.axhline(1.0, color="black", linestyle="--", linewidth=1)
        ax.axhspan(*BAND, color="gray", alpha=0.12)
        ax.axvline(FLAGS.steps / 2, color="gray", linestyle=":", linewidth=1)
        ax.set(
            title=f"{OPTIMIZERS[name].label}: λ1(P⁻¹H) / ({threshold_label(runs[0]['threshold_constant'])})",
            xlabel="step (late half right of the dotted line)",
            ylim=(0, 1.6),
        )
        ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


# ------------------------------------------------------------------ verdicts
def _ratios_text(runs):
    return ", ".join(
        "diverged"
        if run["diverged"]
        else "not measured"
        if run["late_median_ratio"] is None
        else f"{run['late_median_ratio']:.2f}"
        for run in runs
    )


def _in_band(run):
    return (
        not run["diverged"] and run["late_median_ratio"] is not None and BAND[0] <= run["late_median_ratio"] <= BAND[1]
    )


def verdicts(groups):
    rows = []
    for name, runs in groups.items():
        choice = OPTIMIZERS[name]
        threshold = threshold_label(runs[0]["threshold_constant"])
        rates = ", ".join(f"{run['learning_rate']:.3g}" for run in runs)
        source = f"{choice.figure}: " if choice.figure else "AEoS prediction (not in the paper): "
        rows.append(
            _common.verdict(
                f"{source}full-batch {choice.label}'s λ1(P⁻¹H) equilibrates at {threshold}",
                f"late-half median λ1(P⁻¹H)/({threshold}) = {_ratios_text(runs)} at η = {rates} "
                f"(agree if all in [{BAND[0]}, {BAND[1]}])",
                all(_in_band(run) for run in runs),
            )
        )
        initial = [run["initial_ratio"] for run in runs if run["initial_ratio"] is not None]
        arrivals = ", ".join("never" if run["arrival_step"] is None else str(run["arrival_step"]) for run in runs)
        all_arrive = all(run["arrival_step"] is not None for run in runs)
        if name == "frozen_adam":
            rows.append(
                _common.verdict(
                    f"{source}it rises until it reaches 38/η",
                    f"from initial ratios {', '.join(FLAGS.frozen_initial_ratios)}: reaches {ARRIVAL} at step "
                    f"{arrivals} (agree if all arrive)",
                    all_arrive,
                )
            )
            late_max = [
                run["late_max_ratio"] for run in runs if not run["diverged"] and run["late_max_ratio"] is not None
            ]
            rows.append(
                _common.verdict(
                    "§6: frozen Adam is repelled from λ1(P⁻¹H) > 38/η, started below, at or above it",
                    f"late-half max λ1(P⁻¹H)/(38/η) = {', '.join(f'{r:.2f}' for r in late_max)} "
                    f"(agree if all ≤ {CEILING})",
                    len(late_max) == len(runs) and max(late_max) <= CEILING,
                )
            )
        else:
            rows.append(
                _common.verdict(
                    f"{source}it rises to the threshold from below",
                    f"first measured ratio {', '.join(f'{r:.2f}' for r in initial)}; reaches {ARRIVAL} "
                    f"at step {arrivals} (agree if first < {ARRIVAL}, all arrive)",
                    bool(initial) and max(initial) < ARRIVAL and all_arrive,
                )
            )
        growth = [
            run["raw_sharpness_growth_after_arrival"]
            for run in runs
            if run["raw_sharpness_growth_after_arrival"] is not None
        ]
        growth_text = (
            ", ".join(f"×{g:.2f}" for g in growth) + f" ({len(growth)} of {len(runs)} runs arrived)"
            if growth
            else "no run reached the threshold"
        )
        if name == "frozen_adam":
            rows.append(
                _common.verdict(
                    "Fig. 3c: frozen Adam's raw λ1(H) mostly stops rising once at the EoS",
                    f"λ1(H) after arrival, later half / earlier half: {growth_text} (agree if all ≤ ×1.2)",
                    bool(growth) and max(growth) <= 1.2,
                )
            )
        elif name in ("adam", "adam_no_bias_correction"):
            rows.append(
                _common.verdict(
                    f"Fig. 8: {choice.label}'s raw λ1(H) keeps rising at the AEoS",
                    f"λ1(H) after arrival, later half / earlier half: {growth_text} (agree if all > ×1.1)",
                    bool(growth) and min(growth) > 1.1,
                )
            )
    return rows


def main(argv):
    del argv
    start = time.perf_counter()
    x, true_labels = _common.image_data(FLAGS.dataset, FLAGS.data_dir, FLAGS.num_examples, FLAGS.seed)
    labels = training_labels(true_labels, FLAGS.labels, FLAGS.seed)
    label_agreement = float(np.mean(labels == true_labels))
    num_classes = int(labels.max()) + 1
    data = (x, np.eye(num_classes, dtype="float32")[labels])
    model = build_model(x.shape[1], num_classes)
    initial_weights = model.get_weights()
    sharpness = SharpnessCallback(data, every_n_steps=FLAGS.measure_every, loss=LOSS, tolerance=FLAGS.tolerance)
    tracker = SharpnessTracker(
        data,
        estimators="power_iteration",
        every_n_steps=FLAGS.track_every,
        num_products=FLAGS.track_products,
        raw=False,
        loss=LOSS,
    )
    print(
        f"{FLAGS.dataset}: {len(x)} examples, {x.shape[1]} features, {FLAGS.labels} labels "
        f"({label_agreement:.0%} equal to the true ones); MLP with {FLAGS.hidden_layers} "
        f"hidden tanh layers of {FLAGS.hidden_units}; full batch, squared loss, {FLAGS.steps} steps, "
        f"λ1 every {FLAGS.measure_every} steps\n",
        flush=True,
    )

    groups, extra = {}, {}
    for name in dict.fromkeys(FLAGS.optimizer):
        choice = OPTIMIZERS[name]
        if name == "frozen_adam":
            make, preconditioner = freeze_adam(data, initial_weights)
            initial, rates = frozen_learning_rates(data, initial_weights, preconditioner)
            extra["frozen_adam"] = dict(
                initial_preconditioned_sharpness=initial,
                initial_ratios=[float(r) for r in FLAGS.frozen_initial_ratios],
                freeze_learning_rate=FLAGS.freeze_learning_rate,
                freeze_step=FLAGS.freeze_step,
            )
        else:
            rates = [float(rate) for rate in FLAGS.learning_rates or choice.learning_rates]
            make = choice.make
        groups[name] = [
            train(name, make(rate, FLAGS.beta_2), data, model, sharpness, tracker, initial_weights) for rate in rates
        ]

    plt = _common.pyplot()
    _common.save_figure(figure_trajectories(plt, groups), FLAGS.output_dir, "trajectories.png")
    _common.save_figure(figure_ratios(plt, groups), FLAGS.output_dir, "ratios.png")
    rows = verdicts(groups)
    seconds = time.perf_counter() - start
    _common.write_json(
        FLAGS.output_dir,
        "results.json",
        dict(
            flags=dict(
                optimizer=list(groups),
                steps=FLAGS.steps,
                measure_every=FLAGS.measure_every,
                track_every=FLAGS.track_every,
                track_products=FLAGS.track_products,
                beta_2=FLAGS.beta_2,
                num_examples=len(x),
                dataset=FLAGS.dataset,
                labels=FLAGS.labels,
                label_agreement=label_agreement,
                freeze_learning_rate=FLAGS.freeze_learning_rate,
                freeze_step=FLAGS.freeze_step,
                hidden_layers=FLAGS.hidden_layers,
                hidden_units=FLAGS.hidden_units,
                seed=FLAGS.seed,
            ),
            runs=groups,
            frozen_adam=extra.get("frozen_adam"),
            band=list(BAND),
            arrival_ratio=ARRIVAL,
            verdicts=rows,
            seconds=seconds,
        ),
    )
    _common.print_verdicts(rows)
    print(f"\n{seconds:.0f} s")


if __name__ == "__main__":
    define_flags()
    app.run(main)
