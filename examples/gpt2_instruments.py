r"""Every instrument on a KerasHub GPT-2 in `model.fit`: per-block curvature, gradient noise, the update's law.

A small `keras_hub.models.GPT2CausalLM` (no preprocessor: token ids in, a
256-byte vocabulary, dropout 0) learns the embedded text, Python's own
documentation (`pydoc_data.topics`) read as bytes, with mini-batch
`tf_adaptive.Adam`. Three measurement callbacks and Keras's `TensorBoard` ride
along in the same `fit`:

* `analysis_tools.SharpnessCallback` with `blocks=True`: λ1(H) and
  λ1(P⁻¹H) of the whole network over a fixed probe set, and λ1(H_BB) and
  λ1(P_B⁻¹H_BB) of each diagonal block. A KerasHub backbone is opened into
  its layers, so the blocks are the token and position embeddings, each
  ``transformer_layer_i`` and the final ``layer_norm`` (the output layer is the
  token embedding, tied). Cohen et al., "Adaptive Gradient Methods at the Edge
  of Stability" (2022), find that full-batch Adam's λ1(P⁻¹H) rises to the
  threshold 38/η of its frozen-P dynamics (β1 = 0.9) and hovers there (Fig. 1),
  and that "similar effects occur during minibatch training, especially as
  the batch size grows" (abstract).
* `analysis_tools.GradientNoiseCallback` with `per_layer=True`: the simple
  noise scale B_simple = tr Σ / |G|² of McCandlish et al., "An Empirical Model
  of Large-Batch Training" (2018, eq. 2.8), of the whole network and of each
  trainable variable, at the initial weights and every `--noise_every` steps
  (by default only at the end: each measurement traces and compiles the
  gradient anew, several seconds on 2 cores).
* `analysis_tools.UpdateDistributionCallback`: each block's normalized update
  Δθ/η every `--update_every` steps and its Kolmogorov–Smirnov distance to
  `AdaptiveUpdate(m)`, Zhang and Ziyin's (UAI 2021) law of the update, m the
  effective sample count of Adam's β2 average. Their Theorem 1 assumes no
  momentum and i.i.d. Gaussian gradients; Adam here has β1 = 0.9, so the
  distance says how far a trained transformer's update is from that law, not
  whether the theorem holds.
* `analysis_tools.SharpnessTracker`: λ1(P⁻¹H) of the same probe set at every
  step (`--track_every`), `--track_products` Lanczos steps from the previous
  estimate's vector, drawn as a line under the certified points, and the
  secant curvature along the update, which costs nothing but with mini-batches
  mixes the curvature with the gradient noise of two batches.
* `keras.callbacks.TensorBoard`. The three instruments add their values to the
  epoch logs, so Keras's ``train`` run carries all of them; each also writes its
  own per-measurement scalars and histograms (the update histograms, the
  noise-norm histogram) to a run beside it. One directory holds every run:
  ``tensorboard --logdir <output_dir>/tensorboard`` shows ``train``,
  ``sharpness``, ``noise`` and ``updates``.

An epoch is `--measure_every` steps: the curvature is measured at the end of
each, the noise every `--noise_every` steps (a multiple of it, so that the two meet).
The closing table gives, at the last measurement, each block's λ1(H_BB) and λ1(P_B⁻¹H_BB) (and its ratio to
38/η), the median and largest B_simple of its variables and its update's KS
distance; then the network's λ1(H), λ1(P⁻¹H) against 38/η and B_simple. The
verdict rows compare with the papers only what this run measured: λ1(P⁻¹H)
at or below 38/η at every measurement; λ1(P⁻¹H) at the last measurement above
the first; every block's λ1 at most the network's (Cauchy interlacing: H_BB is
a principal submatrix of H, and P_B^{-1/2} H_BB P_B^{-1/2} one of
P^{-1/2} H P^{-1/2}, P being diagonal; allowed 2 × `--tolerance` for Lanczos); and
B_simple after training above B_simple at the initial weights (McCandlish et
al. find the noise scale grows as the loss falls). One seed: no spread to
gate on.

Outputs in `--output_dir`: `instruments.png` (λ1(P⁻¹H) of the network and of
each block against step with 38/η dashed; λ1(H) likewise; the B_simple of
every variable at the initial weights and at the end; each block's KS
distance against step), `results.json` (every measurement, the table, the
verdicts) and `tensorboard/` (replaced on every run).

Most of the default run's time is the first curvature measurement (about 50 s
on 2 cores): it traces and compiles the products of the network and of each
block and the 12 Lanczos loops; a later one takes about 3 s.

    python examples/gpt2_instruments.py     # 99–109 s wall on 2 idle CPU cores (three runs)
    python examples/gpt2_instruments.py --num_layers=4 --steps=1000 --measure_every=100 --trace
"""

import math
import os
import shutil
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _common
import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

import tf_adaptive
from analysis_tools import GradientNoiseCallback, SharpnessCallback, SharpnessTracker, UpdateDistributionCallback
from analysis_tools.curvature.quantities import Trace
from analysis_tools.preconditioners import stability_threshold_of

FLAGS = flags.FLAGS
VOCABULARY = 256  # bytes


def define_flags():
    """The command-line flags; defined only when run as a script, so that tests can import the module."""
    flags.DEFINE_string(
        "output_dir",
        os.path.join("examples_output", "gpt2_instruments"),
        "Where the figure, results.json and tensorboard/ go.",
    )
    _common.define_text_flags()
    flags.DEFINE_integer("sequence_length", 32, "Bytes per window (GPT-2's max_sequence_length).", lower_bound=2)
    flags.DEFINE_integer("num_windows", 2048, "Training windows drawn from the corpus.", lower_bound=8)
    flags.DEFINE_integer("num_layers", 2, "GPT-2 transformer layers.", lower_bound=1)
    flags.DEFINE_integer("hidden_dim", 64, "GPT-2 width.", lower_bound=2)
    flags.DEFINE_integer("intermediate_dim", 256, "Width of the feed-forward layers.", lower_bound=1)
    flags.DEFINE_integer("num_heads", 4, "Attention heads (they divide --hidden_dim).", lower_bound=1)
    flags.DEFINE_float("learning_rate", 3e-3, "Adam's η (threshold 38/η).", lower_bound=0.0)
    flags.DEFINE_float("beta_2", 0.999, "Adam's β2.")
    flags.DEFINE_integer("batch_size", 32, "Mini-batch size of training and of the gradient noise.", lower_bound=1)
    flags.DEFINE_integer("steps", 300, "Adam steps (a multiple of --measure_every).", lower_bound=1)
    flags.DEFINE_integer("measure_every", 50, "Steps between curvature measurements (one epoch).", lower_bound=1)
    flags.DEFINE_integer(
        "noise_every",
        300,
        "Steps between noise measurements (a multiple of --measure_every; the first is at the initial weights).",
        lower_bound=1,
    )
    flags.DEFINE_integer("update_every", 10, "Steps between recorded updates.", lower_bound=1)
    flags.DEFINE_integer("track_every", 1, "Steps between the SharpnessTracker's estimates of λ1(P⁻¹H).", lower_bound=1)
    flags.DEFINE_integer(
        "track_products", 2, "Hessian-vector products per tracker estimate (warm-started Lanczos).", lower_bound=1
    )
    flags.DEFINE_integer("probe_windows", 64, "Training windows of the Hessian's probe set.", lower_bound=1)
    flags.DEFINE_float("tolerance", 1e-2, "Relative accuracy of each certified λ1 (Lanczos).", lower_bound=0.0)
    flags.DEFINE_list("blocks", [], "Blocks to measure (default: every one, blocks=True).")
    flags.DEFINE_boolean("trace", False, "Also log tr(H) and tr(P⁻¹H) (Hutch++, --trace_products products each).")
    flags.DEFINE_integer("trace_products", 12, "Hessian-vector products per trace (≥ 3).", lower_bound=3)
    flags.DEFINE_integer("num_batches", 16, "Mini-batches per noise measurement.", lower_bound=2)
    flags.DEFINE_boolean(
        "jit_compile", True, "XLA-compile the training step, the Hessian-vector products and the noise's gradients."
    )
    flags.DEFINE_integer("seed", 0, "Seed of the windows, the probe set, the weights and the mini-batches.")
    flags.register_multi_flags_validator(
        ["steps", "measure_every"],
        lambda f: f["steps"] % f["measure_every"] == 0,
        "--steps must be a multiple of --measure_every.",
    )
    flags.register_multi_flags_validator(
        ["noise_every", "measure_every"],
        lambda f: f["noise_every"] % f["measure_every"] == 0,
        "--noise_every must be a multiple of --measure_every.",
    )
    flags.register_multi_flags_validator(
        ["hidden_dim", "num_heads"],
        lambda f: f["hidden_dim"] % f["num_heads"] == 0,
        "--num_heads must divide --hidden_dim.",
    )


def token_inputs(token_ids):
    """GPT2CausalLM's inputs without a preprocessor: the token ids and an all-true padding mask."""
    return {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids, dtype=bool)}


def build_model(seed):
    """A GPT-2 over bytes (KerasHub backbone and causal LM head, dropout 0), compiled with `tf_adaptive.Adam`."""
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCABULARY,
        num_layers=FLAGS.num_layers,
        num_heads=FLAGS.num_heads,
        hidden_dim=FLAGS.hidden_dim,
        intermediate_dim=FLAGS.intermediate_dim,
        max_sequence_length=FLAGS.sequence_length,
        dropout=0.0,
    )
    model = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    model.compile(
        optimizer=tf_adaptive.Adam(FLAGS.learning_rate, beta_2=FLAGS.beta_2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=FLAGS.jit_compile,
    )
    return model


def block_variables(model, blocks):
    """{block: the paths of its trainable variables}, blocks being layers of the GPT-2 backbone."""
    return {name: [v.path for v in model.backbone.get_layer(name).trainable_weights] for name in blocks}


def summary_table(sharpness, noise, updates, variables, threshold):
    """One row per block and one for the network, at each instrument's last measurement."""
    values = sharpness.records[-1].values
    scales = noise.records[-1].values
    ks = updates.records[-1].ks if updates.records else {}
    rows = []
    for name, paths in variables.items():
        per_variable = {path: scales[f"noise_scale/{path}"] for path in paths}
        largest = max(per_variable, key=per_variable.get)
        rows.append(
            dict(
                block=name,
                sharpness=values[f"sharpness/{name}"],
                preconditioned_sharpness=values[f"preconditioned_sharpness/{name}"],
                ratio=values[f"preconditioned_sharpness/{name}"] / threshold,
                noise_scale_median=float(np.median(list(per_variable.values()))),
                noise_scale_max=per_variable[largest],
                noise_scale_max_variable=largest,
                update_ks=ks.get(name, math.nan),
            )
        )
    rows.append(
        dict(
            block="network",
            sharpness=values["sharpness"],
            preconditioned_sharpness=values["preconditioned_sharpness"],
            ratio=values["preconditioned_sharpness"] / threshold,
            noise_scale=scales["noise_scale"],
        )
    )
    return rows


def print_table(rows, sharpness_step, noise_step, update_step, threshold):
    print(
        f"\nAt the last measurement (curvature step {sharpness_step}, noise step {noise_step}, "
        f"update step {update_step}); 38/η = {threshold:.5g}"
    )
    header = (
        f"{'block':<20} {'λ1(H_BB)':>10} {'λ1(P⁻¹H_BB)':>12} {'/ (38/η)':>9} "
        f"{'B_simple median':>16} {'B_simple max':>13} {'update KS':>10}"
    )
    print(header)
    print("-" * len(header))
    for row in rows[:-1]:
        print(
            f"{row['block']:<20} {row['sharpness']:>10.4g} {row['preconditioned_sharpness']:>12.5g} "
            f"{row['ratio']:>9.3f} {row['noise_scale_median']:>16.4g} {row['noise_scale_max']:>13.4g} "
            f"{row['update_ks']:>10.3f}"
        )
    network = rows[-1]
    print(
        f"{'network':<20} {network['sharpness']:>10.4g} {network['preconditioned_sharpness']:>12.5g} "
        f"{network['ratio']:>9.3f} {'B_simple ' + format(network['noise_scale'], '.4g'):>16}"
    )
    for row in rows[:-1]:
        print(f"  largest B_simple in {row['block']}: {row['noise_scale_max_variable']}")


def verdicts(trajectory, noise_trajectory, blocks):
    """The paper rows, read off this run's measurements only."""
    ratios = [r["preconditioned_sharpness"] / r["stability_threshold"] for r in trajectory]
    slack = 1.0 + 2.0 * FLAGS.tolerance
    excess = {
        kind: max(r[f"{kind}/{name}"] / r[kind] for r in trajectory for name in blocks)
        for kind in ("sharpness", "preconditioned_sharpness")
    }
    first, last = noise_trajectory[0], noise_trajectory[-1]
    steps = f"steps {trajectory[0]['step']}–{trajectory[-1]['step']}"
    return [
        _common.verdict(
            "Mini-batch Adam: λ1(P⁻¹H) stays at or below 38/η, where full-batch Adam settles "
            "(Cohen et al. 2022, Fig. 1 and abstract)",
            f"λ1(P⁻¹H) / (38/η) at {steps}: " + ", ".join(f"{v:.3f}" for v in ratios) + "; at most 1",
            max(ratios) <= 1.0,
        ),
        _common.verdict(
            "λ1(P⁻¹H) rises during training (Cohen et al. 2022, Fig. 1)",
            f"{ratios[0]:.3f} × 38/η at step {trajectory[0]['step']}, {ratios[-1]:.3f} at step "
            f"{trajectory[-1]['step']}",
            ratios[-1] > ratios[0],
        ),
        _common.verdict(
            "A diagonal block's λ1 is at most the network's (Cauchy interlacing)",
            f"largest block / network over {len(blocks)} blocks and {len(trajectory)} measurements: "
            f"λ1(H_BB)/λ1(H) {excess['sharpness']:.3f}, λ1(P_B⁻¹H_BB)/λ1(P⁻¹H) "
            f"{excess['preconditioned_sharpness']:.3f}; at most {slack:g}",
            max(excess.values()) <= slack,
        ),
        _common.verdict(
            "B_simple grows as training lowers the loss (McCandlish et al. 2018)",
            f"B_simple {first['noise_scale']:.4g} at step {first['step']}, {last['noise_scale']:.4g} at step "
            f"{last['step']}",
            last["noise_scale"] > first["noise_scale"],
        ),
    ]


def figure(plt, trajectory, tracked, noise_trajectory, update_trajectory, blocks, threshold):
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    steps = [r["step"] for r in trajectory]
    colors = {name: plt.cm.tab10(i % 10) for i, name in enumerate(blocks)}
    for ax, kind, label in ((axes[0, 0], "preconditioned_sharpness", "λ1(P⁻¹H)"), (axes[0, 1], "sharpness", "λ1(H)")):
        if kind == "preconditioned_sharpness":
            ax.plot(
                [r["step"] for r in tracked],
                [r["power_preconditioned_sharpness"] for r in tracked],
                "-",
                color="tab:orange",
                linewidth=0.8,
                label="tracker: power iteration",
            )
        ax.plot(
            steps, [r[kind] for r in trajectory], "o", color="black", markersize=5, label=f"network {label} (Lanczos)"
        )
        for name in blocks:
            ax.plot(steps, [r[f"{kind}/{name}"] for r in trajectory], ".-", color=colors[name], label=f"{name} (block)")
        if kind == "preconditioned_sharpness":
            ax.axhline(threshold, color="gray", linestyle="--", linewidth=1, label=f"38/η = {threshold:.4g}")
        ax.set(yscale="log", xlabel="step", ylabel=label, title=f"{label}: the network and each diagonal block")
        if kind == "preconditioned_sharpness":
            ax.set_ylim(top=10.0 * max(threshold, *(r[kind] for r in trajectory)))  # room for the legend
        ax.legend(fontsize=7, ncol=2, loc="upper left" if kind == "preconditioned_sharpness" else "lower right")
    ax = axes[1, 0]
    paths = list(noise_trajectory[-1]["layer_noise_scales"])
    rows = np.arange(len(paths))
    for offset, record, color in ((-0.2, noise_trajectory[0], "tab:gray"), (0.2, noise_trajectory[-1], "tab:red")):
        ax.barh(
            rows + offset,
            [record["layer_noise_scales"][path] for path in paths],
            height=0.4,
            color=color,
            label=f"step {record['step']}: network B_simple {record['noise_scale']:.3g}",
        )
    ax.set_yticks(rows, paths, fontsize=5)
    ax.invert_yaxis()
    ax.set(
        xscale="log",
        xlabel="B_simple = tr Σ / |G|² of the variable",
        title=f"B_simple per variable ({FLAGS.num_batches} batches of {FLAGS.batch_size})",
    )
    ax.legend(fontsize=7)
    ax = axes[1, 1]
    for name in blocks:
        ax.plot(
            [r["step"] for r in update_trajectory],
            [r["ks"][name] for r in update_trajectory],
            ".-",
            color=colors[name],
            label=name,
        )
    ax.set(
        xlabel="step",
        ylabel="KS distance",
        ylim=(0.0, None),
        title="KS distance of Δθ/η to AdaptiveUpdate(m), per block",
    )
    ax.legend(fontsize=7)
    fig.suptitle(
        f"KerasHub GPT-2 ({FLAGS.num_layers} layers, width {FLAGS.hidden_dim}) on bytes of text, "
        f"Adam η = {FLAGS.learning_rate:g}, batch {FLAGS.batch_size}: the three instruments in fit",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def main(argv):
    del argv
    start = time.perf_counter()
    tokens = _common.text_corpus(FLAGS.data_dir)
    (x, y), (x_val, y_val) = _common.text_windows(tokens, FLAGS.sequence_length, FLAGS.num_windows, FLAGS.seed)
    probe = np.random.default_rng(FLAGS.seed).choice(len(x), min(FLAGS.probe_windows, len(x)), replace=False)
    model = build_model(FLAGS.seed)
    model(token_inputs(x[:1]))
    threshold = stability_threshold_of(model.optimizer)
    blocks = list(FLAGS.blocks) if FLAGS.blocks else True
    print(
        f"{len(tokens):,} bytes of text; {len(x)} training windows of {FLAGS.sequence_length}; "
        f"GPT-2 of {model.count_params():,} parameters; Adam η = {FLAGS.learning_rate:g}, "
        f"batch {FLAGS.batch_size}, 38/η = {threshold:.5g}",
        flush=True,
    )

    log_dir = os.path.join(FLAGS.output_dir, "tensorboard")
    shutil.rmtree(log_dir, ignore_errors=True)  # one run per directory: no stale event files beside this run's
    sharpness = SharpnessCallback(
        (token_inputs(x[probe]), y[probe]),
        every_n_steps=FLAGS.measure_every,
        blocks=blocks,
        quantities=[Trace(num_products=FLAGS.trace_products)] if FLAGS.trace else [],
        tolerance=FLAGS.tolerance,
        jit_compile=FLAGS.jit_compile,
        log_dir=os.path.join(log_dir, "sharpness"),
    )
    noise = GradientNoiseCallback(
        (token_inputs(x), y),
        every_n_steps=FLAGS.noise_every,
        batch_size=FLAGS.batch_size,
        num_batches=FLAGS.num_batches,
        num_coordinates=0,
        per_layer=True,
        seed=FLAGS.seed,
        jit_compile=FLAGS.jit_compile,
        log_dir=os.path.join(log_dir, "noise"),
    )
    updates = UpdateDistributionCallback(
        layers=None if blocks is True else blocks,
        steps=0,
        every_n_steps=FLAGS.update_every,
        seed=FLAGS.seed,
        log_dir=os.path.join(log_dir, "updates"),
    )

    # λ1(P⁻¹H) of the same probe set between the certified points (warm-started power iteration), and the
    # secant along the update (free, inside the train step; with mini-batches it mixes curvature and noise).
    tracker = SharpnessTracker(
        (token_inputs(x[probe]), y[probe]),
        estimators=("update_curvature", "power_iteration"),
        every_n_steps=FLAGS.track_every,
        num_products=FLAGS.track_products,
        raw=False,
        jit_compile=FLAGS.jit_compile,
        seed=FLAGS.seed,
    )

    def report(epoch, logs):
        step = (epoch + 1) * FLAGS.measure_every
        trace = (
            f"  tr(P⁻¹H) {logs['preconditioned_hessian_trace']:.4g}" if "preconditioned_hessian_trace" in logs else ""
        )
        measured = noise.records[-1]
        scale = f"  B_simple {measured.values['noise_scale']:.4g}" if measured.step == step else ""
        print(
            f"  step {step:>5}  loss {logs['loss']:.3f}  λ1(H) {logs['sharpness']:.4g}  "
            f"λ1(P⁻¹H) {logs['preconditioned_sharpness']:.5g} = {logs['sharpness_ratio']:.3f} × 38/η"
            f"{trace}{scale}  ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )

    dataset = (
        tf.data.Dataset.from_tensor_slices((token_inputs(x), y))
        .shuffle(len(x), seed=FLAGS.seed)
        .repeat()
        .batch(FLAGS.batch_size, drop_remainder=True)
    )
    history = model.fit(
        dataset,
        steps_per_epoch=FLAGS.measure_every,
        epochs=FLAGS.steps // FLAGS.measure_every,
        verbose=0,
        callbacks=[
            sharpness,
            tracker,
            noise,
            updates,
            keras.callbacks.TensorBoard(log_dir),
            keras.callbacks.LambdaCallback(on_epoch_end=report),
        ],
    )
    validation_loss = float(model.evaluate(token_inputs(x_val), y_val, batch_size=FLAGS.batch_size, verbose=0)[0])

    names = [key.split("/", 1)[1] for key in sharpness.records[-1].values if key.startswith("sharpness/")]
    variables = block_variables(model, names)
    trajectory = [dict(step=r.step, **r.values) for r in sharpness.records]
    tracked = [dict(step=r.step, **r.values) for r in tracker.records]
    noise_trajectory = [
        dict(
            step=r.step,
            noise_scale=r.values["noise_scale"],
            layer_noise_scales={k.split("/", 1)[1]: v for k, v in r.values.items() if k.startswith("noise_scale/")},
        )
        for r in noise.records
    ]
    update_trajectory = [
        dict(step=r.step, reference_m=r.reference_m, ks=r.ks, variance=r.variance) for r in updates.records if r.ks
    ]
    rows = summary_table(sharpness, noise, updates, variables, threshold)
    print(f"\ntraining loss {history.history['loss'][-1]:.3f}, validation loss {validation_loss:.3f} (nats per byte)")
    print_table(
        rows,
        sharpness.records[-1].step,
        noise.records[-1].step,
        updates.records[-1].step if updates.records else None,
        threshold,
    )

    plt = _common.pyplot()
    _common.save_figure(
        figure(plt, trajectory, tracked, noise_trajectory, update_trajectory, names, threshold),
        FLAGS.output_dir,
        "instruments.png",
    )
    rows_verdicts = verdicts(trajectory, noise_trajectory, names)
    seconds = time.perf_counter() - start
    _common.write_json(
        FLAGS.output_dir,
        "results.json",
        dict(
            flags={
                name: FLAGS[name].value
                for name in (
                    "sequence_length",
                    "num_windows",
                    "num_layers",
                    "hidden_dim",
                    "intermediate_dim",
                    "num_heads",
                    "learning_rate",
                    "beta_2",
                    "batch_size",
                    "steps",
                    "measure_every",
                    "noise_every",
                    "update_every",
                    "track_every",
                    "track_products",
                    "probe_windows",
                    "tolerance",
                    "blocks",
                    "trace",
                    "trace_products",
                    "num_batches",
                    "jit_compile",
                    "seed",
                )
            },
            parameters=model.count_params(),
            stability_threshold=threshold,
            blocks=names,
            training_loss=history.history["loss"],
            validation_loss=validation_loss,
            sharpness=trajectory,
            tracked=tracked,
            noise=noise_trajectory,
            updates=update_trajectory,
            table=rows,
            verdicts=rows_verdicts,
            tensorboard=log_dir,
            seconds=seconds,
        ),
    )
    _common.print_verdicts(rows_verdicts)
    print(f"\ntotal {seconds:.0f} s")


if __name__ == "__main__":
    define_flags()
    app.run(main)
