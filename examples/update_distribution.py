r"""The law of an adaptive update, from synthetic gradients and from a network in `model.fit`.

Reproduces the headline figures of Zhang and Ziyin, "On the Distributional
Properties of Adaptive Gradients" (UAI 2021). The update is
Δθ := (θ_t − θ_{t−1}) / η. For i.i.d. N(0, σ²) gradients, no momentum and a
preconditioner that averages the m = t squared gradients, their Theorem 1
(Eq. 30) gives its law, `AdaptiveUpdate(m)`: Δθ²/m ~ Beta(1/2, (m−1)/2) with
a random sign, on [−√m, √m]: the arcsine law at m = 2, uniform at m = 3,
unimodal after, normal as m → ∞ (Eq. 31); Var Δθ = 1 (Corollary 1) and
Var|Δθ| = 1 − 4mΓ(m/2)² / ((m−1)²πΓ((m−1)/2)²), increasing in m (Corollary 2).

The optimizer is `tf_adaptive.Adagrad` with ε = 0 and a zero initial
accumulator: it divides by sqrt(Σ_{i≤t} g_i²), so √t · Δθ is the paper's
simple-average update exactly (`update_simulation.adagrad_normalization`).
Every coordinate of a variable is one sample of the law.

Figures written to `--output_dir`:

* `theory.png` (Fig. 1): the density of `AdaptiveUpdate(m)` for a few m and its
  Gaussian limit.
* `normal.png` (Theorem 1): histograms of Δθ at m = 1…10 for N(0, 1)
  gradients (`simulate_updates`) against `AdaptiveUpdate(m)`.
* `gradient_laws.png` (Figs. 5, 6, 7): the same for the laws of §6:
  N(0, t²) and N(0, 1/t²) (Fig. 5), N(−1, 1) and N(−t, 1) (Fig. 6), standard
  Cauchy (Fig. 7), with `AdaptiveUpdate(m)` dashed for comparison.
* `network.png` (Fig. 2): histograms of Δθ of each layer of a tanh MLP
  trained on the bundled digits (constant pixels dropped: their Δθ is 0/0),
  measured in `model.fit` by `UpdateDistributionCallback`, against
  `AdaptiveUpdate(m)`, for each of `--learning_rates`. With η = 0.001 the
  network stays near its initialization for the first steps and its updates
  follow the theory; with η = 0.01 the loss falls fast, the gradient scale
  shrinks, and Δθ gets narrower than predicted (Var < 1), as for the
  N(0, 1/t²) gradients of Fig. 5; the paper's small MNIST network likewise
  deviates after m ≈ 10 (Fig. 3).
* `variance.png` (Fig. 3): Var Δθ and Var|Δθ| against m, synthetic and
  network, with Corollaries 1 and 2.

`results.json` holds the numbers (KS distances, mode counts, skewness,
kurtosis, variances per step) and the verdict rows.

    python examples/update_distribution.py                 # 17 s wall on 2 idle CPU cores (36 s on busy, shared ones)
    python examples/update_distribution.py --steps=300 --num_parameters=300000
    python examples/update_distribution.py --dataset=mnist --num_examples=10000  # downloads MNIST once
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _common
import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

import tf_adaptive
from analysis_tools import AdaptiveUpdate, UpdateDistributionCallback
from analysis_tools.updates import (
    abs_update_variance,
    adagrad_normalization,
    find_modes,
    gaussian_limit,
    ks_statistic,
    simulate_updates,
)

FLAGS = flags.FLAGS


def define_flags():
    """The command-line flags; defined only when run as a script, so that tests can import the module."""
    flags.DEFINE_string(
        "output_dir", os.path.join("examples_output", "update_distribution"), "Where the figures and results.json go."
    )
    flags.DEFINE_integer(
        "steps",
        100,
        "Optimizer steps of the Var-vs-m curves (synthetic and network); the histograms show m = 1 … min(10, steps).",
        lower_bound=5,
    )
    flags.DEFINE_integer(
        "num_parameters",
        100_000,
        "Independent coordinates (samples per step) of the synthetic simulations.",
        lower_bound=1000,
    )
    flags.DEFINE_list(
        "learning_rates",
        ["0.001", "0.01"],
        "Adagrad's η for the network, one training run each; the histograms show the first.",
    )
    flags.DEFINE_integer("batch_size", 32, "Mini-batch size of the network.", lower_bound=1)
    flags.DEFINE_integer("hidden_units", 64, "Width of the network's two hidden tanh layers.", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "Seed of the gradient draws, the initial weights and the batch order.")
    _common.define_image_flags()


MAX_HISTOGRAM_M = 10
# §6's gradient laws (names of `update_simulation.GRADIENT_LAWS`), with the paper's figure.
LAWS = (
    ("normal", "N(0, 1)", "Thm. 1"),
    ("normal_growing", "N(0, t²)", "Fig. 5 left"),
    ("normal_shrinking", "N(0, 1/t²)", "Fig. 5 right"),
    ("shifted", "N(−1, 1)", "Fig. 6 left"),
    ("drifting", "N(−t, 1)", "Fig. 6 right"),
    ("cauchy", "Cauchy", "Fig. 7"),
)


def adagrad(learning_rate=1.0):
    """Adagrad in the exact simple-average form of Theorem 1 (up to the √t of its sum)."""
    return tf_adaptive.Adagrad(learning_rate=learning_rate, epsilon=0.0, initial_accumulator_value=0.0)


def skewness(x):
    centred = np.asarray(x, "float64") - np.mean(x)
    return float(np.mean(centred**3) / np.mean(centred**2) ** 1.5)


def kurtosis(x):
    """E x⁴ / (E x²)² about the mean: 3m/(m + 2) under AdaptiveUpdate(m), 1.8 (uniform) at m = 3."""
    centred = np.asarray(x, "float64") - np.mean(x)
    return float(np.mean(centred**4) / np.mean(centred**2) ** 2)


def ks(x, m):
    statistic, pvalue = ks_statistic(x, AdaptiveUpdate(np.float64(m)))
    return float(statistic), float(pvalue)


# ----------------------------------------------------------------- synthetic
def simulate_laws(num_histograms):
    """x = √t · Δθ/η for every law: {law: [steps, num_parameters]} (N(0,1) runs all `steps`)."""
    updates = {}
    for index, (law, label, figure) in enumerate(LAWS):
        steps = FLAGS.steps if law == "normal" else num_histograms
        start = time.perf_counter()
        x = simulate_updates(adagrad, law, steps, FLAGS.num_parameters, seed=FLAGS.seed + index)
        updates[law] = (x * adagrad_normalization(steps)).astype("float64")
        print(
            f"  simulated {label:<11} ({figure}): {steps} steps × {FLAGS.num_parameters} "
            f"coordinates in {time.perf_counter() - start:.1f} s",
            flush=True,
        )
    return updates


def summarize_laws(updates, num_histograms):
    """Modes, skewness, spread and KS distance to AdaptiveUpdate(m) of each law at m = 1 … 10."""
    summary = {}
    for law, label, figure in LAWS:
        rows = []
        for m in range(1, num_histograms + 1):
            x = updates[law][m - 1]
            row = dict(
                m=m,
                modes=find_modes(x).tolist(),
                skewness=skewness(x),
                mean=float(np.mean(x)),
                std=float(np.std(x)),
                max_abs_over_root_m=float(np.max(np.abs(x)) / np.sqrt(m)),
            )
            if m > 1:
                row["ks_statistic"], row["ks_pvalue"] = ks(x, m)
            rows.append(row)
        summary[law] = dict(label=label, figure=figure, steps=rows)
    return summary


def moment_curves(x):
    """Var Δθ and Var|Δθ| per step of a [steps, n] array, against Corollaries 1 and 2."""
    m = np.arange(1, len(x) + 1)
    return dict(
        m=m.tolist(),
        variance=np.var(x, axis=1).tolist(),
        abs_variance=np.var(np.abs(x), axis=1).tolist(),
        corollary_2=abs_update_variance(m.astype("float64")).numpy().tolist(),
    )


# -------------------------------------------------------------------- network
def train_network(learning_rate, num_histograms):
    """Trains the digits MLP for `steps` Adagrad steps; returns the callback and the final loss."""
    x, y = _common.image_data(FLAGS.dataset, FLAGS.data_dir, FLAGS.num_examples, FLAGS.seed)
    x = x[:, x.std(axis=0) > 0]  # constant pixels have zero gradients: Δθ = 0/0, not a sample
    model = _common.mlp(x.shape[1], FLAGS.hidden_units, FLAGS.seed, activation="tanh")
    model.compile(optimizer=adagrad(learning_rate), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    # The dataset shuffles itself (fit's `shuffle` is for arrays).
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=FLAGS.seed).repeat().batch(FLAGS.batch_size)
    callback = UpdateDistributionCallback(steps=num_histograms, seed=FLAGS.seed)
    print(
        f"\n{FLAGS.dataset} MLP {x.shape[1]}-{FLAGS.hidden_units}-{FLAGS.hidden_units}-10 (tanh), "
        f"Adagrad η = {learning_rate:g} (ε = 0), batch {FLAGS.batch_size}, {FLAGS.steps} steps",
        flush=True,
    )
    history = model.fit(data, epochs=1, steps_per_epoch=FLAGS.steps, shuffle=False, verbose=2, callbacks=[callback])
    return callback, float(history.history["loss"][-1])


def summarize_network(callback):
    """Per layer: KS, Var and Var|·| of x = √t Δθ/η per step, and its kurtosis at the histogram steps."""
    layers = {}
    for name in callback.values:
        records = callback.records
        layers[name] = dict(
            num_coordinates=int(callback.values[name][0].size),
            m=[r.step for r in records],
            # The callback's variances are of Δθ/η; the paper's x is scale·Δθ/η (scale = √t).
            variance=[r.variance[name] * r.scale**2 for r in records],
            abs_variance=[r.abs_variance[name] * r.scale**2 for r in records],
            ks_statistic=[r.ks.get(name) for r in records],
            ks_pvalue=[r.ks_pvalue.get(name) for r in records],
            kurtosis=[kurtosis(np.sqrt(r.step) * v) for r, v in zip(records, callback.values[name])],
        )
    return layers


# -------------------------------------------------------------------- figures
def draw_histogram(axis, x, m, reference_style="-", bins=50):
    """Histogram of x with AdaptiveUpdate(m)'s density (m > 1) over [−√m, √m]."""
    edge = 1.03 * np.sqrt(m)
    counts, _, _ = axis.hist(x, bins=bins, range=(-edge, edge), density=True, color="#7fb0d8", linewidth=0)
    top = counts.max()
    if m > 1:
        grid = np.linspace(-np.sqrt(m), np.sqrt(m), 401)[1:-1]
        density = AdaptiveUpdate(np.float64(m)).prob(grid).numpy()
        axis.plot(grid, density, reference_style, color="black", linewidth=1.2)
        top = max(top, density[len(grid) // 2])
    axis.set_ylim(0, 1.25 * top)
    axis.set_xlim(-edge, edge)
    axis.tick_params(labelsize=7)
    axis.set_yticks([])


def figure_theory(plt):
    figure, axis = plt.subplots(figsize=(6, 3.6))
    grid = np.linspace(-3.5, 3.5, 1401)
    for m, color in ((2, "tab:red"), (3, "tab:orange"), (5, "tab:green"), (10, "tab:blue")):
        inside = np.abs(grid) < np.sqrt(m)
        density = np.where(inside, AdaptiveUpdate(np.float64(m)).prob(grid).numpy(), np.nan)
        axis.plot(grid, density, color=color, label=f"m = {m}")
    axis.plot(grid, gaussian_limit(tf.float64).prob(grid).numpy(), "k--", label="m → ∞ (Eq. 31)")
    axis.set_ylim(0, 0.75)
    axis.set_xlabel("Δθ")
    axis.set_ylabel("density")
    axis.set_title("AdaptiveUpdate(m), Theorem 1 (Zhang & Ziyin Fig. 1)")
    axis.legend(fontsize=8)
    return figure


def figure_normal(plt, x, num_histograms, summary):
    columns = min(5, num_histograms)
    rows = -(-num_histograms // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.0 * rows), squeeze=False)
    for m in range(1, num_histograms + 1):
        axis = axes.flat[m - 1]
        draw_histogram(axis, x[m - 1], m)
        row = summary["normal"]["steps"][m - 1]
        note = "±1 only" if m == 1 else f"KS {row['ks_statistic']:.3f}"
        axis.set_title(f"m = {m}  ({note})", fontsize=8)
    for axis in axes.flat[num_histograms:]:
        axis.set_visible(False)
    figure.suptitle(
        f"Δθ for N(0,1) gradients (histogram, {FLAGS.num_parameters} coordinates) vs AdaptiveUpdate(m) (line)",
        fontsize=10,
    )
    figure.tight_layout()
    return figure


def figure_grid(plt, rows, num_histograms, title):
    """rows: [(label, [x at m = 1 … num_histograms])], one row of histograms each."""
    figure, axes = plt.subplots(
        len(rows), num_histograms, squeeze=False, figsize=(1.25 * num_histograms, 1.0 * len(rows))
    )
    for r, (label, xs) in enumerate(rows):
        for m in range(1, num_histograms + 1):
            axis = axes[r, m - 1]
            draw_histogram(axis, xs[m - 1], m, reference_style="--", bins=32)
            if r == 0:
                axis.set_title(f"m = {m}", fontsize=9)
        axes[r, 0].set_ylabel(label, fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def figure_variance(plt, synthetic, runs):
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    m = np.asarray(synthetic["m"])
    left.axhline(1.0, color="black", linewidth=1.5, label="Corollary 1: 1")
    right.plot(m, synthetic["corollary_2"], color="black", linewidth=1.5, label="Corollary 2")
    right.axhline(1.0 - 2.0 / np.pi, color="gray", linestyle=":", label="m → ∞: 1 − 2/π")
    left.plot(m, synthetic["variance"], "o", color="tab:blue", markersize=3, label="N(0,1) gradients")
    right.plot(m, synthetic["abs_variance"], "o", color="tab:blue", markersize=3, label="N(0,1) gradients")
    for run, style in zip(runs, ("-", "--", ":", "-.")):
        for (name, layer), color in zip(run["layers"].items(), ("tab:orange", "tab:green", "tab:red")):
            label = f"MLP {name}, η = {run['learning_rate']:g}"
            left.plot(layer["m"], layer["variance"], style, color=color, linewidth=1, label=label)
            right.plot(layer["m"], layer["abs_variance"], style, color=color, linewidth=1, label=label)
    left.set_title("Var Δθ (Zhang & Ziyin Fig. 3 left)")
    right.set_title("Var |Δθ| (Fig. 3 middle)")
    for axis in (left, right):
        axis.set_xlabel("m (optimizer step t)")
        axis.set_xscale("log")
        axis.set_ylim(bottom=0)
    left.legend(handles=left.lines[:2], fontsize=7, loc="lower left")
    right.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    return figure


# ------------------------------------------------------------------- verdicts
def verdicts(summary, synthetic_curves, runs, num_histograms):
    normal = summary["normal"]["steps"]
    n = FLAGS.num_parameters
    rows = []

    tested = normal[1:]
    worst = max(tested, key=lambda row: row["ks_statistic"])
    rows.append(
        _common.verdict(
            f"Thm. 1: N(0,1) gradients give AdaptiveUpdate(m), m = 2…{num_histograms}",
            f"max KS D {worst['ks_statistic']:.4f} (m = {worst['m']}), min p {min(r['ks_pvalue'] for r in tested):.2g}",
            min(r["ks_pvalue"] for r in tested) > 0.01 / len(tested),
        )
    )  # Bonferroni at 1 %

    bound = max(row["max_abs_over_root_m"] for row in normal)
    rows.append(_common.verdict("Thm. 1: support is [−√m, √m]", f"max |Δθ|/√m = {bound:.6f}", bound <= 1.0 + 1e-5))

    counts = [len(row["modes"]) for row in normal]
    unimodal_from = [row["m"] for row in normal if row["m"] >= 4]
    two_poles = len(normal[1]["modes"]) == 2 and np.allclose(np.abs(normal[1]["modes"]), np.sqrt(2), atol=0.1)
    rows.append(
        _common.verdict(
            "Fig. 1: bimodal (arcsine, poles ±√2) at m = 2, unimodal for m ≥ 4",
            f"modes at m = 2: {np.round(normal[1]['modes'], 2).tolist()}; counts m=1…{num_histograms}: {counts}",
            two_poles and all(counts[m - 1] == 1 for m in unimodal_from),
        )
    )

    variance = np.asarray(synthetic_curves["variance"])
    tolerance = 5.0 * np.sqrt(2.0 / n)  # 5 standard errors of a variance (Var x² ≤ 2 here)
    rows.append(
        _common.verdict(
            f"Cor. 1: Var Δθ = 1 for every m (m = 1…{FLAGS.steps})",
            f"max |Var − 1| = {np.max(np.abs(variance - 1.0)):.4f} (tolerance {tolerance:.4f})",
            np.max(np.abs(variance - 1.0)) <= tolerance,
        )
    )

    abs_variance = np.asarray(synthetic_curves["abs_variance"])
    corollary_2 = np.asarray(synthetic_curves["corollary_2"])
    deviation = np.max(np.abs(abs_variance - corollary_2))
    m5 = min(5, len(abs_variance))
    rows.append(
        _common.verdict(
            f"Cor. 2: Var|Δθ| = {corollary_2[m5 - 1]:.4f} at m = {m5}, increasing in m",
            f"{abs_variance[m5 - 1]:.4f} at m = {m5}; max |Δ| over m = {deviation:.4f}",
            deviation <= tolerance and np.all(np.diff(corollary_2) > 0),
        )
    )

    def last_bimodal(law):
        bimodal = [row["m"] for row in summary[law]["steps"] if len(row["modes"]) >= 2]
        return max(bimodal, default=0)

    growing, shrinking = last_bimodal("normal_growing"), last_bimodal("normal_shrinking")
    rows.append(
        _common.verdict(
            "Fig. 5: N(0,t²) stays bimodal longer than N(0,1/t²)",
            f"last bimodal m: {growing} vs {shrinking}",
            growing > shrinking,
        )
    )

    shifted, drifting = summary["shifted"]["steps"], summary["drifting"]["steps"]
    first, last = shifted[1], shifted[-1]
    rows.append(
        _common.verdict(
            "Fig. 6: N(−1,1) skewed, less so as m grows",
            f"skewness {first['skewness']:.2f} (m = 2) → {last['skewness']:.2f} (m = {last['m']})",
            first["skewness"] < 0 and abs(last["skewness"]) < abs(first["skewness"]),
        )
    )
    rows.append(
        _common.verdict(
            "Fig. 6: N(−t,1) thinner and less skewed than N(−1,1)",
            f"m = {last['m']}: std {drifting[-1]['std']:.3f} vs {last['std']:.3f}, "
            f"|skew| {abs(drifting[-1]['skewness']):.2f} vs {abs(last['skewness']):.2f}",
            drifting[-1]["std"] < last["std"] and abs(drifting[-1]["skewness"]) < abs(last["skewness"]),
        )
    )

    cauchy = {row["m"]: len(row["modes"]) for row in summary["cauchy"]["steps"]}
    shown = [m for m in (2, 3, 5) if m in cauchy]
    rows.append(
        _common.verdict(
            "Fig. 7: Cauchy gradients give a tri-modal update",
            "modes at m = " + ", ".join(f"{m}: {cauchy[m]}" for m in shown),
            all(cauchy[m] == 3 for m in shown),
        )
    )

    for run in runs:
        rows.extend(network_verdicts(run, num_histograms))
    return rows


def network_verdicts(run, num_histograms):
    """Figs. 2 and 3 on one training run of the digits MLP."""
    layers, rate = run["layers"], f"η = {run['learning_rate']:g}"
    distances = [d for layer in layers.values() for d in layer["ks_statistic"][1:num_histograms]]
    rows = [
        _common.verdict(
            f"Fig. 2: real layers follow AdaptiveUpdate(m), m = 2…{num_histograms} ({rate})",
            f"KS D over {', '.join(layers)}: median {np.median(distances):.3f}, max {np.max(distances):.3f} "
            "(agree if median ≤ 0.05)",
            np.median(distances) <= 0.05,
        )
    ]

    # A layer has 650 to 4,160 coordinates, too few to count modes reliably; the kurtosis
    # 3m/(m + 2) of AdaptiveUpdate(m) crosses the uniform law's 1.8 where the modes merge (m = 3).
    at_two = [layer["kurtosis"][1] for layer in layers.values()]
    later = [k for layer in layers.values() for k in layer["kurtosis"][3:num_histograms]]
    rows.append(
        _common.verdict(
            f"Fig. 2: real layers bimodal at m = 2, unimodal from m = 4 ({rate})",
            f"kurtosis at m = 2: {', '.join(f'{k:.2f}' for k in at_two)} (theory 1.5); "
            f"m = 4…{num_histograms}: {min(later):.2f}–{max(later):.2f} (theory 2.0–2.5); agree if < 1.8 then > 1.8",
            max(at_two) < 1.8 and min(later) > 1.8,
        )
    )

    early = [v for layer in layers.values() for v in layer["variance"][1:num_histograms]]
    late = [v for layer in layers.values() for v in layer["variance"][num_histograms:]]
    measured = f"mean Var Δθ, m = 2…{num_histograms}: {np.mean(early):.2f}"
    if late:
        measured += f"; m > {num_histograms}: {np.mean(late):.2f}"
    measured += f"; max {np.max(early + late):.2f} (agree if early within 0.2 of 1, max ≤ 1.5)"
    rows.append(
        _common.verdict(
            f"Fig. 3: real-layer Var Δθ ≈ 1 for m ≤ 10 and never anomalously large ({rate})",
            measured,
            abs(np.mean(early) - 1.0) <= 0.2 and np.max(early + late) <= 1.5,
        )
    )
    return rows


def main(argv):
    del argv
    start = time.perf_counter()
    plt = _common.pyplot()
    num_histograms = min(MAX_HISTOGRAM_M, FLAGS.steps)

    print("Synthetic gradients through tf_adaptive.Adagrad (ε = 0), x = √t Δθ/η:")
    updates = simulate_laws(num_histograms)
    summary = summarize_laws(updates, num_histograms)
    synthetic_curves = moment_curves(updates["normal"])

    runs, callbacks = [], []
    for learning_rate in (float(rate) for rate in FLAGS.learning_rates):
        callback, final_loss = train_network(learning_rate, num_histograms)
        callbacks.append(callback)
        runs.append(dict(learning_rate=learning_rate, final_loss=final_loss, layers=summarize_network(callback)))

    _common.save_figure(figure_theory(plt), FLAGS.output_dir, "theory.png")
    _common.save_figure(figure_normal(plt, updates["normal"], num_histograms, summary), FLAGS.output_dir, "normal.png")
    law_rows = [(f"{label}\n{figure}", updates[law]) for law, label, figure in LAWS[1:]]
    _common.save_figure(
        figure_grid(
            plt,
            law_rows,
            num_histograms,
            "Δθ under the gradient laws of §6 (histogram) vs AdaptiveUpdate(m) for N(0,σ²) (dashed)",
        ),
        FLAGS.output_dir,
        "gradient_laws.png",
    )
    network_rows = [
        (f"{name}\nη = {run['learning_rate']:g}", [np.sqrt(m) * v for m, v in enumerate(values, start=1)])
        for run, callback in zip(runs, callbacks)
        for name, values in callback.values.items()
    ]
    _common.save_figure(
        figure_grid(
            plt,
            network_rows,
            num_histograms,
            f"Δθ of each layer of the digits MLP in model.fit (histogram; Adagrad, batch "
            f"{FLAGS.batch_size}) vs AdaptiveUpdate(m) (dashed)",
        ),
        FLAGS.output_dir,
        "network.png",
    )
    _common.save_figure(figure_variance(plt, synthetic_curves, runs), FLAGS.output_dir, "variance.png")

    rows = verdicts(summary, synthetic_curves, runs, num_histograms)
    seconds = time.perf_counter() - start
    _common.write_json(
        FLAGS.output_dir,
        "results.json",
        dict(
            flags=dict(
                steps=FLAGS.steps,
                num_parameters=FLAGS.num_parameters,
                learning_rates=[run["learning_rate"] for run in runs],
                batch_size=FLAGS.batch_size,
                hidden_units=FLAGS.hidden_units,
                seed=FLAGS.seed,
            ),
            synthetic=dict(laws=summary, normal_moments=synthetic_curves),
            network=runs,
            verdicts=rows,
            seconds=seconds,
        ),
    )
    _common.print_verdicts(rows)
    print(f"\n{seconds:.0f} s")


if __name__ == "__main__":
    define_flags()
    app.run(main)
