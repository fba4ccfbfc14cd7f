r"""RAdam vs Adam with and without warmup: the variance of the adaptive learning rate, and an η sweep.

Reproduces, at laptop scale, the figures of Liu, Jiang, He, Chen, Liu, Gao and
Han, "On the Variance of the Adaptive Learning Rate and Beyond" (ICLR 2020),
as numbered in the authors' slides. Adam's adaptive learning rate is
ψ_t = sqrt((1 − β2^t) / ((1 − β2) Σ_{i≤t} β2^{t−i} g_i²)) (slides Eq. 1); for
g_i ~ N(0, σ²) it is modelled by ψ² ~ Scale-inv-χ²(ρ_t, 1/σ²), with ρ_t the
length of the simple moving average matched to the EMA (Algorithm 2). RAdam
multiplies ψ_t by the rectification r_t = sqrt(V(ρ_∞)/V(ρ_t)), V being the
first-order approximation of Var ψ.

* `variance.png` (Fig. 8): Var ψ, exact (Eq. 4, `adaptive_lr_variance`) and
  first order (ρ/(2(ρ−2)(ρ−4)), `adaptive_lr_variance_first_order`), their
  difference, and a Monte Carlo of ψ = sqrt(ρ/χ²_ρ), against ρ; with the
  monotone decrease of Theorem 1.
* `simulation.png` (Fig. 9): Var ψ_t and Var r_t ψ_t against the step t,
  simulated with N(0, 1) gradients on many independent coordinates, for the
  paper's β2 = 0.999 and for the sweep's β2; dashed: the exact Var ψ at ρ_t,
  i.e. the SMA model.
* `sweep.png` (Fig. 6, and Table 3's warmup comparison): a byte-level
  language model trained with Adam, Adam with linear warmup and RAdam over a
  range of learning rates η; validation bits per byte against the step, and
  the final value against η.

The language model is a small post-LayerNorm transformer (Vaswani et al.
2017, the architecture whose need for warmup motivated the paper) on the
English documentation that ships with Python (`_common.text_corpus`). β2
defaults to 0.98, Vaswani et al.'s and fairseq's transformer setting, and the
warmup length to 2/(1 − β2) steps (the untuned rule of Ma and Yarats 2019;
ρ_∞ = 2/(1 − β2) − 1 is also RAdam's horizon), so that both schedules finish
well within a few hundred steps. One seed per run: differences below about
0.05 bits per byte are within run-to-run noise.

    python examples/radam_warmup.py                      # 87 s wall on 2 idle CPU cores (3 min 12 s on busy, shared ones)
    python examples/radam_warmup.py --steps=1000 --learning_rates=3e-4,1e-3,3e-3,1e-2,3e-2,1e-1
    python examples/radam_warmup.py --data_dir=DIR  # DIR/corpus.txt instead of the embedded text
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
from analysis_tools import (  # noqa: E402
    adaptive_lr_variance,
    adaptive_lr_variance_first_order,
    rectification,
    sma_length,
    sma_length_limit,
)
import _common  # noqa: E402  (examples/_common.py, next to this script)

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", os.path.join("examples_output", "radam_warmup"),
                    "Where the figures and results.json go.")
flags.DEFINE_integer("steps", 300, "Training steps of each language-model run.", lower_bound=1)
flags.DEFINE_list("learning_rates", ["1e-3", "3e-3", "1e-2", "3e-2"], "The swept peak learning rates η.")
flags.DEFINE_float("beta_2", 0.98, "β2 of every optimizer in the sweep (β1 = 0.9).")
flags.DEFINE_integer("warmup_steps", None, "Linear warmup length of Adam with warmup (default 2/(1 − β2)).")
flags.DEFINE_integer("eval_every", 25, "Steps between validation measurements (--steps is rounded "
                     "down to a multiple of it).", lower_bound=1)
flags.DEFINE_integer("batch_size", 32, "Sequences per batch.", lower_bound=1)
flags.DEFINE_integer("sequence_length", 32, "Bytes per training sequence.", lower_bound=2)
flags.DEFINE_integer("model_dim", 64, "Width of the transformer.", lower_bound=4)
flags.DEFINE_integer("num_layers", 2, "Transformer blocks.", lower_bound=1)
flags.DEFINE_integer("validation_windows", 256, "Held-out sequences for the validation loss.", lower_bound=1)
flags.DEFINE_integer("simulation_coordinates", 100_000,
                     "Independent coordinates of the Fig. 9 simulation and samples per ρ of the Monte Carlo.",
                     lower_bound=1000)
flags.DEFINE_integer("simulation_steps", 1000, "Steps of the Fig. 9 simulation.", lower_bound=10)
flags.DEFINE_integer("seed", 0, "Seed of the simulations, the initial weights and the batch order.")
_common.define_text_flags()

PAPER_BETA_2 = 0.999  # the β2 of Liu et al.'s Fig. 9 and of Adam's default
MONTE_CARLO_RHO = (6.0, 10.0, 20.0, 50.0, 200.0, 1000.0)
CHANCE_BITS = 8.0  # log2 256: a uniform guess over bytes; diverged runs are scored so
OPTIMIZERS = ("Adam", "Adam + warmup", "RAdam")


class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """η_t = η · min(1, t / T_w) at optimizer step t = 1, 2, … (the slides' α_t = t α_0 for t < T_w)."""

    def __init__(self, peak_learning_rate, warmup_steps):
        self.peak_learning_rate = float(peak_learning_rate)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        # Keras passes the number of completed steps; the update being made is step + 1.
        fraction = (keras.ops.cast(step, "float32") + 1.0) / float(self.warmup_steps)
        return self.peak_learning_rate * keras.ops.minimum(1.0, fraction)

    def get_config(self):
        return dict(peak_learning_rate=self.peak_learning_rate, warmup_steps=self.warmup_steps)


# ------------------------------------------------------------ Fig. 8: Var ψ(ρ)
def variance_curves(rng):
    """Exact and first-order Var ψ (σ = 1) on a ρ grid, and a Monte Carlo of the exact one."""
    rho = np.geomspace(4.05, 2000.0, 400)
    exact = adaptive_lr_variance(rho).numpy()
    first_order = adaptive_lr_variance_first_order(rho).numpy()
    monte_carlo = []
    for value in MONTE_CARLO_RHO:
        psi = np.sqrt(value / rng.chisquare(value, size=10 * FLAGS.simulation_coordinates))
        monte_carlo.append(dict(rho=value, variance=float(np.var(psi)),
                                exact=float(adaptive_lr_variance(value)),
                                first_order=float(adaptive_lr_variance_first_order(value))))
    return dict(rho=rho.tolist(), exact=exact.tolist(), first_order=first_order.tolist(),
                monte_carlo=monte_carlo)


# ------------------------------------------------ Fig. 9: simulated Var ψ_t
def simulate_adaptive_learning_rate(beta_2, rng):
    """Var ψ_t and Var r_t ψ_t for N(0, 1) gradients, t = 1 … simulation_steps (Algorithm 2's v_t)."""
    n, steps = FLAGS.simulation_coordinates, FLAGS.simulation_steps
    velocity = np.zeros(n)
    variance = np.empty(steps)
    for t in range(1, steps + 1):
        gradient = rng.standard_normal(n)
        velocity = beta_2 * velocity + (1.0 - beta_2) * gradient**2
        variance[t - 1] = np.var(np.sqrt((1.0 - beta_2**t) / velocity))
    t = np.arange(1, steps + 1, dtype="float32")
    rho = np.asarray(sma_length(t, beta_2), dtype="float64")
    rho_inf = float(sma_length_limit(beta_2))
    r = rectification(rho, rho_inf).numpy()
    return dict(beta_2=beta_2, t=t.astype(int).tolist(), rho=rho.tolist(), variance=variance.tolist(),
                rectified_variance=(r**2 * variance).tolist(), sma_model=adaptive_lr_variance(rho).numpy().tolist(),
                limit=float(adaptive_lr_variance(rho_inf)), rho_inf=rho_inf,
                # tf_adaptive.RAdam's default threshold: the first step that takes r_t ψ_t.
                first_rectified_step=int(np.argmax(rho > 5.0)) + 1)


# --------------------------------------------------- Fig. 6: the η sweep
def language_model(seed):
    """A post-LayerNorm causal transformer over bytes (Vaswani et al. 2017, Fig. 1, decoder only)."""
    keras.utils.set_random_seed(seed)
    return _common.byte_transformer(FLAGS.sequence_length, FLAGS.model_dim, FLAGS.num_layers, 4, "relu")


def make_optimizer(name, learning_rate, warmup_steps):
    if name == "Adam":
        return tf_adaptive.Adam(learning_rate, beta_2=FLAGS.beta_2)
    if name == "Adam + warmup":
        return tf_adaptive.Adam(LinearWarmup(learning_rate, warmup_steps), beta_2=FLAGS.beta_2)
    return tf_adaptive.RAdam(learning_rate, beta_2=FLAGS.beta_2)


def bits(nats):
    """Nats per byte to bits per byte; a non-finite loss (divergence) scores chance."""
    return nats / math.log(2.0) if math.isfinite(nats) else CHANCE_BITS


def sweep(warmup_steps):
    """Trains the language model with every optimizer and η; returns the learning curves."""
    corpus = _common.text_corpus(FLAGS.data_dir)
    (x_train, y_train), (x_val, y_val) = _common.text_windows(
        corpus, FLAGS.sequence_length, seed=FLAGS.seed,
        num_windows=max(FLAGS.steps * FLAGS.batch_size, 4 * FLAGS.validation_windows))
    held_out = np.random.default_rng(FLAGS.seed).permutation(len(x_val))[:FLAGS.validation_windows]
    x_val, y_val = x_val[held_out], y_val[held_out]
    counts = np.bincount(corpus, minlength=256)
    p = counts[counts > 0] / counts.sum()
    unigram_bits = float(-(p * np.log2(p)).sum())
    # The dataset shuffles itself (fit's `shuffle` is for arrays).
    train = (tf.data.Dataset.from_tensor_slices((x_train, y_train))
             .shuffle(len(x_train), seed=FLAGS.seed).repeat().batch(FLAGS.batch_size))
    initial_weights = language_model(FLAGS.seed).get_weights()
    periods = max(1, FLAGS.steps // FLAGS.eval_every)
    steps_per_period = FLAGS.steps // periods
    print(f"\nbyte-level post-LN transformer: {FLAGS.num_layers} blocks, width {FLAGS.model_dim}, "
          f"{len(initial_weights)} weight tensors; {FLAGS.steps} steps of {FLAGS.batch_size}×"
          f"{FLAGS.sequence_length} bytes; β2 = {FLAGS.beta_2}, warmup {warmup_steps} steps; "
          f"unigram entropy {unigram_bits:.2f} bits/byte", flush=True)
    runs = {name: [] for name in OPTIMIZERS}
    for learning_rate in (float(rate) for rate in FLAGS.learning_rates):
        for name in OPTIMIZERS:
            start = time.perf_counter()
            model = language_model(FLAGS.seed)
            model.set_weights(initial_weights)
            model.compile(optimizer=make_optimizer(name, learning_rate, warmup_steps),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            history = model.fit(train, epochs=periods, steps_per_epoch=steps_per_period, shuffle=False,
                                validation_data=(x_val, y_val), validation_batch_size=128, verbose=0)
            validation = [bits(v) for v in history.history["val_loss"]]
            runs[name].append(dict(
                learning_rate=learning_rate,
                step=[steps_per_period * (k + 1) for k in range(periods)],
                train_bits=[bits(v) for v in history.history["loss"]],
                validation_bits=validation,
                final_bits=validation[-1],
                diverged=not all(math.isfinite(v) for v in history.history["loss"])))
            print(f"  {name:<14} η = {learning_rate:<7g} validation {validation[-1]:.3f} bits/byte "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    return dict(runs=runs, unigram_bits=unigram_bits, warmup_steps=warmup_steps, steps=periods * steps_per_period,
                num_parameters=int(sum(np.prod(w.shape) for w in initial_weights)))


# -------------------------------------------------------------------- figures
def figure_variance(plt, curves):
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    rho = np.asarray(curves["rho"])
    exact, first_order = np.asarray(curves["exact"]), np.asarray(curves["first_order"])
    left.loglog(rho, exact, color="tab:blue", label="exact (Eq. 4)")
    left.loglog(rho, first_order, "--", color="tab:orange", label="first order ρ/(2(ρ−2)(ρ−4))")
    left.loglog(rho, np.abs(first_order - exact), color="tab:gray", label="|difference|")
    mc = curves["monte_carlo"]
    left.loglog([row["rho"] for row in mc], [row["variance"] for row in mc], "o", color="black",
                markersize=4, label="Monte Carlo of sqrt(ρ/χ²_ρ)")
    left.set_xlabel("ρ")
    left.set_ylabel("Var ψ (σ = 1)")
    left.set_title("Var of the adaptive learning rate (Liu et al. Fig. 8)")
    left.legend(fontsize=7)
    right.loglog(rho, first_order / exact - 1.0, color="tab:orange")  # positive: it overestimates
    right.axhline(0.05, color="gray", linestyle=":", linewidth=1, label="5 %")
    right.set_xlabel("ρ")
    right.set_ylabel("first order / exact − 1")
    right.set_title("Relative error of the first-order approximation")
    right.legend(fontsize=7)
    figure.tight_layout()
    return figure


def figure_simulation(plt, simulations):
    figure, axes = plt.subplots(1, len(simulations), figsize=(5 * len(simulations), 3.8), squeeze=False)
    for axis, sim in zip(axes[0], simulations):
        t = np.asarray(sim["t"])
        shown = t >= 5  # as in the paper: ψ_t has infinite variance for ρ_t ≤ 2 (t ≤ 2 or so)
        axis.semilogy(t[shown], np.asarray(sim["variance"])[shown], color="tab:blue", label="Var ψ_t (simulated)")
        axis.semilogy(t[shown], np.asarray(sim["sma_model"])[shown], "--", color="tab:blue", linewidth=1,
                      label="exact Var ψ at ρ_t (SMA model)")
        rectified = t >= sim["first_rectified_step"]
        axis.semilogy(t[rectified], np.asarray(sim["rectified_variance"])[rectified], color="tab:red",
                      label="Var r_t ψ_t (simulated)")
        axis.axhline(sim["limit"], color="black", linestyle=":", label="Var ψ at ρ_∞")
        axis.set_xscale("log")
        axis.set_xlabel("step t")
        axis.set_title(f"β2 = {sim['beta_2']} (Liu et al. Fig. 9)")
        axis.legend(fontsize=7)
    figure.tight_layout()
    return figure


def figure_sweep(plt, result):
    runs = result["runs"]
    figure, axes = plt.subplots(1, len(OPTIMIZERS) + 1, figsize=(4.0 * (len(OPTIMIZERS) + 1), 3.6))
    colors = plt.cm.viridis(np.linspace(0.0, 0.9, len(FLAGS.learning_rates)))
    top = min(CHANCE_BITS, 1.3 * result["unigram_bits"])
    for axis, name in zip(axes, OPTIMIZERS):
        for run, color in zip(runs[name], colors):
            axis.plot(run["step"], run["validation_bits"], color=color, label=f"η = {run['learning_rate']:g}")
        axis.axhline(result["unigram_bits"], color="gray", linestyle=":", linewidth=1, label="unigram entropy")
        axis.set_title(name)
        axis.set_xlabel("step")
        axis.set_ylim(top=top)
        axis.legend(fontsize=7)
    axes[0].set_ylabel("validation bits per byte")
    summary = axes[-1]
    for name, marker in zip(OPTIMIZERS, ("o", "s", "^")):
        summary.semilogx([run["learning_rate"] for run in runs[name]], [run["final_bits"] for run in runs[name]],
                         marker=marker, label=name)
    summary.axhline(result["unigram_bits"], color="gray", linestyle=":", linewidth=1)
    summary.set_xlabel("peak learning rate η")
    summary.set_title(f"after {result['steps']} steps (Fig. 6)")
    summary.legend(fontsize=7)
    figure.tight_layout()
    return figure


# ------------------------------------------------------------------- verdicts
def relative_gap(rho):
    """First-order over exact Var ψ, minus 1, at ρ."""
    return float(adaptive_lr_variance_first_order(rho)) / float(adaptive_lr_variance(rho)) - 1.0


def verdicts(curves, simulations, result):
    """The closing table: the paper's claims against this run's numbers."""
    rows = []
    mc = curves["monte_carlo"]
    worst = max(abs(row["variance"] / row["exact"] - 1.0) for row in mc)
    rhos = ", ".join(f"{row['rho']:g}" for row in mc)
    rows.append(_common.verdict(
        "Eq. 4: the exact Var ψ of Scale-inv-χ²(ρ)",
        f"Monte Carlo at ρ = {rhos}: max rel. error {worst:.3f} (agree if ≤ 0.03)",
        worst <= 0.03))

    exact = np.asarray(curves["exact"])
    rows.append(_common.verdict(
        "Thm. 1: Var ψ decreases monotonically in ρ",
        f"{exact[0]:.3g} at ρ = {curves['rho'][0]:.3g} → {exact[-1]:.3g} at ρ = {curves['rho'][-1]:g}, "
        f"monotone: {bool(np.all(np.diff(exact) < 0))}",
        np.all(np.diff(exact) < 0)))

    gaps = {rho: relative_gap(rho) for rho in (5.0, 10.0, 50.0, 1000.0)}
    rows.append(_common.verdict(
        "Fig. 8: first-order approximation ≈ exact Var ψ",
        "first order/exact − 1: " + ", ".join(f"{gap:+.1%} (ρ = {rho:g})" for rho, gap in gaps.items())
        + " (agree if |gap| ≤ 5 % for ρ ≥ 50)",
        abs(gaps[50.0]) <= 0.05 and abs(gaps[1000.0]) <= 0.05))

    for sim in simulations:
        t0 = sim["first_rectified_step"]
        variance = np.asarray(sim["variance"])[t0 - 1:]
        rectified = np.asarray(sim["rectified_variance"])[t0 - 1:]
        model = np.asarray(sim["sma_model"])[t0 - 1:]
        rows.append(_common.verdict(
            f"Fig. 9 (β2 = {sim['beta_2']}): Var ψ_t large early, falls with t",
            f"Var ψ_t/Var ψ_∞ = {variance[0] / sim['limit']:.0f} at t = {t0} → "
            f"{variance[-1] / sim['limit']:.2f} at t = {sim['t'][-1]}; SMA model within "
            f"{np.max(np.abs(variance / model - 1.0)):.0%}",
            variance[0] > 10.0 * variance[-1]))
        ratio = rectified / sim["limit"]
        settled = np.flatnonzero(np.abs(ratio - 1.0) > 0.25)
        settled_text = (f"within 25 % from t = {t0 + settled[-1] + 1}" if settled.size < ratio.size
                        else "never within 25 %")
        rows.append(_common.verdict(
            f"Fig. 9 (β2 = {sim['beta_2']}): Var r_tψ_t = Var ψ_∞ at every rectified step",
            f"Var r_tψ_t/Var ψ_∞ in [{ratio.min():.2f}, {ratio.max():.2f}] for t ≥ {t0}, {settled_text} "
            f"(unrectified: up to {(variance / sim['limit']).max():.0f}); agree if all within 25 %",
            settled.size == 0))

    runs = result["runs"]
    final = {name: np.asarray([run["final_bits"] for run in runs[name]]) for name in OPTIMIZERS}
    rates = [run["learning_rate"] for run in runs["Adam"]]
    largest = f"η = {rates[-1]:g}"
    rows.append(_common.verdict(
        f"Fig. 6: Adam without warmup degrades at large η ({largest})",
        f"bits/byte at {largest}: Adam {final['Adam'][-1]:.2f}, RAdam {final['RAdam'][-1]:.2f}, "
        f"Adam + warmup {final['Adam + warmup'][-1]:.2f}; agree if Adam ≥ 0.1 above RAdam",
        final["Adam"][-1] >= final["RAdam"][-1] + 0.1))
    spread = {name: float(values.max() - values.min()) for name, values in final.items()}
    spread_text = ", ".join(f"{name} {value:.2f}" for name, value in spread.items())
    rows.append(_common.verdict(
        "Fig. 6: RAdam is less sensitive to η than Adam",
        f"range of final bits/byte over η: {spread_text}",
        spread["RAdam"] < spread["Adam"]))
    rows.append(_common.verdict(
        "Fig. 6: RAdam performs consistently across η",
        f"RAdam range over η = {rates[0]:g}…{rates[-1]:g}: {spread['RAdam']:.2f} bits/byte (agree if ≤ 0.2)",
        spread["RAdam"] <= 0.2))
    best = {name: float(values.min()) for name, values in final.items()}
    rows.append(_common.verdict(
        "Table 3: RAdam matches Adam with warmup at their best η",
        f"best bits/byte: RAdam {best['RAdam']:.3f}, Adam + warmup {best['Adam + warmup']:.3f}, "
        f"Adam {best['Adam']:.3f} (agree if RAdam within 0.05 of warmup)",
        abs(best["RAdam"] - best["Adam + warmup"]) <= 0.05))
    rows.append(_common.verdict(
        "Slides: Adam with warmup is more sensitive to η than RAdam",
        f"range over η: Adam + warmup {spread['Adam + warmup']:.2f} vs RAdam {spread['RAdam']:.2f}",
        spread["Adam + warmup"] > spread["RAdam"]))
    return rows


def main(argv):
    del argv
    start = time.perf_counter()
    plt = _common.pyplot()
    rng = np.random.default_rng(FLAGS.seed)
    warmup_steps = FLAGS.warmup_steps or int(round(2.0 / (1.0 - FLAGS.beta_2)))

    print("Var ψ: exact (Eq. 4) vs first order, and a Monte Carlo", flush=True)
    curves = variance_curves(rng)
    simulations = []
    for beta_2 in sorted({PAPER_BETA_2, FLAGS.beta_2}, reverse=True):
        print(f"simulating ψ_t for β2 = {beta_2}: {FLAGS.simulation_steps} steps × "
              f"{FLAGS.simulation_coordinates} coordinates", flush=True)
        simulations.append(simulate_adaptive_learning_rate(beta_2, rng))
    result = sweep(warmup_steps)

    _common.save_figure(figure_variance(plt, curves), FLAGS.output_dir, "variance.png")
    _common.save_figure(figure_simulation(plt, simulations), FLAGS.output_dir, "simulation.png")
    _common.save_figure(figure_sweep(plt, result), FLAGS.output_dir, "sweep.png")

    rows = verdicts(curves, simulations, result)
    seconds = time.perf_counter() - start
    _common.write_json(FLAGS.output_dir, "results.json", dict(
        flags=dict(steps=FLAGS.steps, learning_rates=[float(r) for r in FLAGS.learning_rates],
                   beta_2=FLAGS.beta_2, warmup_steps=warmup_steps, batch_size=FLAGS.batch_size,
                   sequence_length=FLAGS.sequence_length, model_dim=FLAGS.model_dim,
                   num_layers=FLAGS.num_layers, simulation_coordinates=FLAGS.simulation_coordinates,
                   simulation_steps=FLAGS.simulation_steps, seed=FLAGS.seed),
        variance=curves, simulation=simulations, sweep=result, verdicts=rows, seconds=seconds))
    _common.print_verdicts(rows)
    print(f"\n{seconds:.0f} s")


if __name__ == "__main__":
    app.run(main)
