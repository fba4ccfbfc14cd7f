r"""The spectrum of P⁻¹H before and after Adam reaches the adaptive edge of stability, by SLQ.

Cohen et al., "Adaptive Gradient Methods at the Edge of Stability" (2022),
track the top eigenvalue of the preconditioned Hessian P_t⁻¹H_t: under
full-batch Adam it rises to the stability threshold 38/η of the frozen-P
dynamics and hovers there (Fig. 1, Fig. 5a). Here the whole spectrum of
P⁻¹H is estimated by stochastic Lanczos quadrature
(`analysis_tools.curvature.spectral_density`, Ghorbani et al. 2019; PyHessian's
density plot) at two points of the same run: early, before the top
eigenvalue has reached the threshold, and at the end, once Adam trains at the
edge. What it shows: at the edge, one outlier of P⁻¹H sits at 38/η, far above
a bulk that stays near zero, while early the whole spectrum lies below the
threshold.

Setup: the network and data of `edge_of_stability.py` (App. G.1 scaled down:
5 hidden tanh layers of 200 units, weights of variance 1/fan_in, zero biases,
the squared loss on one-hot targets, 512 class-balanced digits, full batch),
`tf_adaptive.Adam(η, β2 = 0.99, ε = 1e-7)` with bias correction, over
`--seeds` (the seed draws the subset and the initial weights).
`analysis_tools.SharpnessCallback` measures λ1(P⁻¹H) every
`--measure_every` steps for the trajectory; the densities use
`--density_vectors` Rademacher vectors of `--density_iterations` Lanczos
steps each, at step `--before_step` and at the last step.

Verdicts (rows over the seeds): before, λ1(P⁻¹H) lies below 0.9 × 38/η at
every seed; at the end it lies within ±30 % of 38/η at every seed (the band of
`edge_of_stability.py`); and at the end it is an outlier: above 3 times the
bulk edge, the 99th percentile of the SLQ spectral mass, at every seed.

Outputs in `--output_dir`: `density.png` (per seed, the smoothed density of
P⁻¹H before and after, on a log axis, the threshold dashed; and the
trajectory of λ1(P⁻¹H)/(38/η) with the two density steps marked) and
`results.json`.

    python examples/curvature_spectrum.py
    python examples/curvature_spectrum.py --learning_rate=1e-3 --steps=400 --seeds=0
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
from analysis_tools import SharpnessCallback, preconditioner_of
from analysis_tools.curvature import plot_spectral_density, spectral_density
from analysis_tools.preconditioners import stability_threshold_of

FLAGS = flags.FLAGS
LOSS = keras.losses.MeanSquaredError()
EPSILON = 1e-7
BAND = 0.3  # ±30 % around the threshold, as in edge_of_stability.py
BELOW = 0.9  # "before": the top eigenvalue below 0.9 of the threshold
OUTLIER = 3.0  # "an outlier": above 3 times the bulk edge
BULK_QUANTILE = 0.99  # the bulk edge: this quantile of the spectral mass


def define_flags():
    """The command-line flags; defined only when run as a script, so that tests can import the module."""
    flags.DEFINE_string(
        "output_dir", os.path.join("examples_output", "curvature_spectrum"), "Where the figure and results.json go."
    )
    _common.define_image_flags(num_examples=512)
    flags.DEFINE_float("learning_rate", 2e-3, "Adam's η (threshold 38/η).", lower_bound=0.0)
    flags.DEFINE_float("beta_2", 0.99, "Adam's β2.")
    flags.DEFINE_integer("steps", 300, "Full-batch Adam steps.", lower_bound=2)
    flags.DEFINE_integer("before_step", 10, "The step of the early density.", lower_bound=1)
    flags.DEFINE_integer("measure_every", 25, "Steps between λ1(P⁻¹H) measurements.", lower_bound=1)
    flags.DEFINE_integer("density_vectors", 4, "SLQ start vectors per density.", lower_bound=1)
    flags.DEFINE_integer("density_iterations", 60, "Lanczos steps per SLQ vector.", lower_bound=2)
    flags.DEFINE_integer("hidden_layers", 5, "Hidden tanh layers.", lower_bound=1)
    flags.DEFINE_integer("hidden_units", 200, "Units per hidden layer.", lower_bound=1)
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of the subset and the initial weights.")
    flags.register_multi_flags_validator(
        ["steps", "before_step"],
        lambda f: f["before_step"] < f["steps"],
        "--before_step must come before the last step (--steps).",
    )


def weighted_quantile(density, quantile):
    """The smallest node t with at least `quantile` of the SLQ spectral mass at or below it."""
    nodes = np.concatenate(density.nodes)
    weights = np.concatenate(density.weights) / density.num_vectors
    order = np.argsort(nodes)
    cumulative = np.cumsum(weights[order])
    return float(nodes[order][np.searchsorted(cumulative, quantile * cumulative[-1])])


def describe(density, threshold):
    """The numbers the verdicts read from one density."""
    low, high = density.support
    bulk = weighted_quantile(density, BULK_QUANTILE)
    mean, error = density.mean_eigenvalue
    return dict(
        top=high,
        bottom=low,
        top_ratio=high / threshold,
        bulk_edge=bulk,
        top_over_bulk=high / bulk if bulk > 0 else math.inf,
        mean_eigenvalue=mean,
        mean_eigenvalue_standard_error=error,
        products=density.num_products,
    )


def run_seed(seed):
    x, labels = _common.image_data(FLAGS.dataset, FLAGS.data_dir, FLAGS.num_examples, seed)
    y = keras.ops.convert_to_numpy(keras.ops.one_hot(labels, 10))
    model = _common.tanh_network(x.shape[1], 10, FLAGS.hidden_layers, FLAGS.hidden_units, seed)
    optimizer = tf_adaptive.Adam(FLAGS.learning_rate, beta_2=FLAGS.beta_2, epsilon=EPSILON)
    model.compile(optimizer=optimizer, loss=LOSS)
    threshold = stability_threshold_of(optimizer)
    sharpness = SharpnessCallback((x, y), every_n_steps=FLAGS.measure_every, raw=False, tolerance=1e-2)
    full_batch = tf.data.Dataset.from_tensors((x, y)).repeat()
    start = time.perf_counter()
    densities = {}

    def density_now(label):
        densities[label] = spectral_density(
            model,
            (x, y),
            preconditioner=preconditioner_of(optimizer, model.trainable_variables),
            num_vectors=FLAGS.density_vectors,
            num_iterations=FLAGS.density_iterations,
            seed=seed,
        )
        summary = describe(densities[label], threshold)
        print(
            f"  seed {seed}  step {int(optimizer.iterations):>4}  P⁻¹H spectrum: top {summary['top']:.4g} "
            f"= {summary['top_ratio']:.3f} × 38/η, bulk edge (99 % of the mass) {summary['bulk_edge']:.3g}, "
            f"mean eigenvalue {summary['mean_eigenvalue']:.3g} ± {summary['mean_eigenvalue_standard_error']:.1g}",
            flush=True,
        )
        return dict(step=int(optimizer.iterations), **summary)

    model.fit(full_batch, steps_per_epoch=1, epochs=FLAGS.before_step, verbose=0, callbacks=[sharpness])
    before = density_now("before")
    model.fit(
        full_batch,
        steps_per_epoch=1,
        initial_epoch=FLAGS.before_step,
        epochs=FLAGS.steps,
        verbose=0,
        callbacks=[sharpness],
    )
    after = density_now("after")
    trajectory = [dict(step=r.step, ratio=r.values["sharpness_ratio"]) for r in sharpness.records]
    return dict(
        seed=seed,
        threshold=threshold,
        before=before,
        after=after,
        trajectory=trajectory,
        parameters=model.count_params(),
        seconds=time.perf_counter() - start,
    ), densities


def verdicts(runs):
    seeds = [run["seed"] for run in runs]
    before = [run["before"]["top_ratio"] for run in runs]
    after = [run["after"]["top_ratio"] for run in runs]
    outlier = [run["after"]["top_over_bulk"] for run in runs]

    def values(numbers):
        return ", ".join(f"{v:.3g}" for v in numbers) + f" (seeds {seeds})"

    return [
        _common.verdict(
            f"Early (step {FLAGS.before_step}), the whole P⁻¹H spectrum lies below 38/η",
            f"top node / (38/η): {values(before)}; below {BELOW} at every seed",
            all(v < BELOW for v in before),
        ),
        _common.verdict(
            "At the AEoS, the top eigenvalue of P⁻¹H sits at 38/η (Cohen et al. 2022, Figs. 1, 5a)",
            f"top node / (38/η) at step {FLAGS.steps}: {values(after)}; within ±{BAND:.0%}",
            all(abs(v - 1.0) <= BAND for v in after),
        ),
        _common.verdict(
            "It is an outlier above the bulk of the spectrum",
            f"top node / 99 % bulk edge: {values(outlier)}; above {OUTLIER:g} at every seed",
            all(v > OUTLIER for v in outlier),
        ),
    ]


def figure(plt, runs, densities):
    columns = len(runs)
    fig, axes = plt.subplots(2, columns, figsize=(4.6 * columns, 7.2), squeeze=False)
    for column, (run, pair) in enumerate(zip(runs, densities)):
        top = axes[0, column]
        for label, color in (("before", "tab:blue"), ("after", "tab:red")):
            plot_spectral_density(
                pair[label],
                ax=top,
                threshold=run["threshold"] if label == "after" else None,
                color=color,
                label=f"step {run[label]['step']}",
            )
        top.set_title(f"seed {run['seed']}: P⁻¹H spectrum, threshold 38/η = {run['threshold']:.4g}", fontsize=9)
        top.legend(fontsize=7)
        bottom = axes[1, column]
        steps = [r["step"] for r in run["trajectory"]]
        bottom.plot(
            steps,
            [r["ratio"] for r in run["trajectory"]],
            marker=".",
            color="black",
            label="λ1(P⁻¹H) / (38/η), SharpnessCallback",
        )
        for label, color in (("before", "tab:blue"), ("after", "tab:red")):
            bottom.plot(
                [run[label]["step"]],
                [run[label]["top_ratio"]],
                "o",
                color=color,
                markersize=8,
                label=f"top SLQ node, step {run[label]['step']}",
            )
        bottom.axhline(1.0, color="gray", linestyle="--", linewidth=1)
        bottom.set(xlabel="step", ylabel="λ1(P⁻¹H) / (38/η)")
        bottom.legend(fontsize=7)
    fig.suptitle(
        f"Full-batch Adam (η = {FLAGS.learning_rate:g}) on {FLAGS.num_examples} digits: the P⁻¹H "
        "density by stochastic Lanczos quadrature before and at the adaptive edge of stability",
        fontsize=10,
    )
    return fig


def main(argv):
    del argv
    start = time.perf_counter()
    runs, densities = [], []
    for seed in (int(s) for s in FLAGS.seeds):
        run, pair = run_seed(seed)
        runs.append(run)
        densities.append(pair)
    print(
        f"\n{runs[0]['parameters']:,} parameters; each density {runs[0]['after']['products']} Hessian-vector products"
    )
    plt = _common.pyplot()
    _common.save_figure(figure(plt, runs, densities), FLAGS.output_dir, "density.png")
    rows = verdicts(runs)
    seconds = time.perf_counter() - start
    _common.write_json(
        FLAGS.output_dir,
        "results.json",
        dict(
            flags={
                name: FLAGS[name].value
                for name in (
                    "learning_rate",
                    "beta_2",
                    "steps",
                    "before_step",
                    "measure_every",
                    "density_vectors",
                    "density_iterations",
                    "hidden_layers",
                    "hidden_units",
                    "seeds",
                    "num_examples",
                )
            },
            runs=runs,
            densities=[
                {label: dict(nodes=d.nodes, weights=d.weights) for label, d in pair.items()} for pair in densities
            ],
            verdicts=rows,
            seconds=seconds,
        ),
    )
    _common.print_verdicts(rows)
    print(f"\ntotal {seconds:.0f} s")


if __name__ == "__main__":
    define_flags()
    app.run(main)
