r"""Heavy-tailed gradient noise in attention models, in miniature (Zhang et al. 2020, Figs. 2, 4 and 5).

"Why are adaptive methods good for attention models?" (Zhang, Karimireddy,
Veit, Kim, Reddi, Kumar and Sra, 2020) measures the noise of the mini-batch
gradient, g_B − ∇f at fixed weights, and finds it heavy-tailed for BERT and
well concentrated for ResNet50 (Fig. 2). Its §5.2 separates architecture from
data (Fig. 4): the "ResNet" is the same transformer with the self-attention
removed, and a Gaussian-input control replaces the token embeddings with
normalized Gaussian vectors. Fig. 5 follows the noise histogram over training,
and Fig. 2c/f the empirical variance against the sample size.

This script does the same at small scale on the embedded byte-level text
(Python's own documentation, `pydoc_data.topics`): a causal transformer
language model with attention, and the same model without it (an MLP per
position), each on the text and on Gaussian inputs. At initialization it
draws `--num_batches` mini-batches and records the noise norms, a fixed
random subset of noise coordinates, their tail index (Simsekli et al.'s
estimator on coordinates standardized per coordinate and pooled, as
`GradientNoiseCallback` does), and a likelihood verdict (χ norm vs
multivariate-t norm). It then trains both text models with Adam, measuring the
noise after every epoch.

Outputs in `--output_dir`: `noise_histograms.png` (Figs. 2a/d and 4, with
the synthetic references of Figs. 2b/e), `empirical_variance.png` (Fig. 2c/f),
`noise_over_training.png` (Fig. 5) and `gradient_noise.json`.

    python examples/gradient_noise.py           # about 2 minutes on 2 CPU cores (measured 127 s; 9 min on busy, shared cores)
    python examples/gradient_noise.py --num_windows=400 --num_batches=30 --epochs=1  # seconds

Read the verdict table with the scale in mind: two-block models with 64-wide
layers, bytes instead of word pieces, a few epochs. The paper's BERT has 110 M
parameters.
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import _common  # noqa: E402
from analysis_tools import (  # noqa: E402
    GradientNoiseCallback,
    SymmetricAlphaStable,
    empirical_variance_vs_sample_size,
    fit_noise_distribution,
    gradient_noise,
    standardized_coordinates,
    tail_index,
)

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", os.path.join("examples_output", "gradient_noise"), "Where figures and JSON go.")
_common.define_text_flags()
flags.DEFINE_integer("sequence_length", 64, "Bytes per training window.", lower_bound=2)
flags.DEFINE_integer("num_windows", 4000, "Training windows drawn from the corpus.", lower_bound=64)
flags.DEFINE_integer("model_dim", 64, "Width of the transformer blocks.", lower_bound=8)
flags.DEFINE_integer("num_blocks", 2, "Transformer blocks.", lower_bound=1)
flags.DEFINE_integer("num_heads", 4, "Attention heads.", lower_bound=1)
flags.DEFINE_integer("batch_size", 32, "Mini-batch size of the noise and of training.", lower_bound=1)
flags.DEFINE_integer("num_batches", 200, "Mini-batches per noise measurement.", lower_bound=10)
flags.DEFINE_integer("num_coordinates", 2000, "Noise coordinates kept per measurement.", lower_bound=10)
flags.DEFINE_integer("epochs", 4, "Training epochs for the noise-over-training figure (0 to skip).", lower_bound=0)
flags.DEFINE_float("learning_rate", 1e-3, "Adam's learning rate for the training runs.")
flags.DEFINE_integer("seed", 0, "Seed for data, weights and mini-batches.")

ARCHITECTURES = ("attention", "mlp")


def build_model(attention, gaussian_inputs, seed):
    """A causal byte-level transformer LM; `attention=False` removes the self-attention (the paper's "ResNet").

    With `gaussian_inputs` the token embedding is replaced by the inputs
    themselves: normalized Gaussian vectors of width `model_dim`.
    """
    keras.utils.set_random_seed(seed)
    model = _common.byte_transformer(FLAGS.sequence_length, FLAGS.model_dim, FLAGS.num_blocks, FLAGS.num_heads,
                                     "gelu", attention=attention, vector_inputs=gaussian_inputs)
    model.compile(optimizer=keras.optimizers.Adam(FLAGS.learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=True)
    return model


def gaussian_inputs(count, seed):
    """Normalized Gaussian input vectors: each position a unit-norm vector scaled by √width."""
    z = np.random.default_rng(seed).standard_normal((count, FLAGS.sequence_length, FLAGS.model_dim))
    return (z / np.linalg.norm(z, axis=-1, keepdims=True) * np.sqrt(FLAGS.model_dim)).astype("float32")


def norm_fit_text(summary):
    if summary["norm_fit_best"] is None:
        return "too few for a likelihood fit"
    return f"{summary['norm_fit_best']} fits best (ΔAIC {summary['norm_fit_delta_aic']:+.1f})"


def summarize(noise):
    """Scalars of one noise sample: shape of the norms, tail index, likelihood verdict."""
    pooled = standardized_coordinates(noise.coordinates)
    estimate = tail_index(pooled, method="simsekli")
    summary = {
        "norm_median": float(np.median(noise.norms)),
        "norm_max_over_median": float(np.max(noise.norms) / np.median(noise.norms)),
        "norm_kurtosis": float(np.mean((noise.norms - noise.norms.mean()) ** 4) / np.var(noise.norms) ** 2),
        "tail_index": estimate.alpha,
        "tail_index_unclipped": estimate.unclipped,
        "tail_index_hill": tail_index(pooled, method="hill").alpha,
        "variance_growth_slope": empirical_variance_vs_sample_size(pooled, num_repeats=5).slope,
        "norm_fit_best": None,
        "norm_fit_delta_aic": float("nan"),
    }
    if len(noise.norms) >= 100:  # the likelihood fits need 100 norms
        norm_fit = fit_noise_distribution(noise.norms, kind="norms")
        summary.update(norm_fit_best=norm_fit.best, norm_fit_delta_aic=norm_fit.delta_aic,
                       norm_fit_verdict=norm_fit.verdict)
    return summary


def main(argv):
    del argv
    start = time.time()
    plt = _common.pyplot()
    tokens = _common.text_corpus(FLAGS.data_dir)
    (x_text, y_text), _ = _common.text_windows(tokens, FLAGS.sequence_length, FLAGS.num_windows, seed=FLAGS.seed)
    x_gauss = gaussian_inputs(len(x_text), FLAGS.seed)
    print(f"{len(tokens):,} bytes of text; {len(x_text)} windows of {FLAGS.sequence_length}; "
          f"{FLAGS.num_batches} mini-batches of {FLAGS.batch_size} per measurement")

    results, noises = {"at_initialization": {}}, {}
    for architecture in ARCHITECTURES:
        for data_name, x in (("text", x_text), ("gaussian", x_gauss)):
            name = f"{architecture}+{data_name}"
            model = build_model(architecture == "attention", data_name == "gaussian", FLAGS.seed)
            noise = gradient_noise(model, (x, y_text), batch_size=FLAGS.batch_size, num_batches=FLAGS.num_batches,
                                   num_coordinates=FLAGS.num_coordinates, seed=FLAGS.seed)
            noises[name] = noise
            results["at_initialization"][name] = dict(summarize(noise), parameters=model.count_params())
            summary = results["at_initialization"][name]
            print(f"  {name:<19} {model.count_params():>8,} parameters: tail index {summary['tail_index']:.3f}, "
                  f"max/median norm {summary['norm_max_over_median']:.2f}, norms: {norm_fit_text(summary)}")

    histories = {}
    for architecture in ARCHITECTURES if FLAGS.epochs else ():
        model = build_model(architecture == "attention", False, FLAGS.seed)
        callback = GradientNoiseCallback((x_text, y_text), batch_size=FLAGS.batch_size,
                                         num_batches=FLAGS.num_batches, num_coordinates=FLAGS.num_coordinates,
                                         seed=FLAGS.seed)
        print(f"training {architecture} with Adam for {FLAGS.epochs} epochs, measuring the noise after each")
        model.fit(x_text, y_text, batch_size=FLAGS.batch_size, epochs=FLAGS.epochs, callbacks=[callback],
                  verbose=2)
        histories[architecture] = callback.records
    results["over_training"] = {
        architecture: [{"epoch": r.epoch, "step": r.step, **r.values} for r in records]
        for architecture, records in histories.items()}

    plot_histograms(plt, noises)
    plot_variance(plt, noises)
    if histories:
        plot_training(plt, histories)
    rows = verdicts(results)
    results["verdicts"] = rows
    results["seconds"] = time.time() - start
    results["flags"] = {name: FLAGS[name].value for name in (
        "sequence_length", "num_windows", "model_dim", "num_blocks", "num_heads", "batch_size", "num_batches",
        "num_coordinates", "epochs", "learning_rate", "seed")}
    _common.write_json(FLAGS.output_dir, "gradient_noise.json", results)
    _common.print_verdicts(rows)
    print(f"\ntotal {time.time() - start:.0f} s")


def plot_histograms(plt, noises):
    figure, axes = plt.subplots(2, 3, figsize=(13, 7))
    for row, architecture in enumerate(ARCHITECTURES):
        for column, data_name in enumerate(("text", "gaussian")):
            norms = noises[f"{architecture}+{data_name}"].norms
            axis = axes[row, column]
            axis.hist(norms, bins=40, density=True, color="C0" if data_name == "text" else "C2")
            axis.set_title(f"{architecture} + {data_name} (Fig. 4)")
            axis.set_xlabel("noise norm ‖g_B − ∇f‖")
    rng = np.random.default_rng(FLAGS.seed)
    gaussian = np.linalg.norm(rng.standard_normal((FLAGS.num_batches, 1000)), axis=1)
    axes[0, 2].hist(gaussian, bins=40, density=True, color="C7")
    axes[0, 2].set_title("norm of a Gaussian vector (Fig. 2b)")
    stable = SymmetricAlphaStable(1.5).sample((FLAGS.num_batches, 1000), seed=(FLAGS.seed, 1)).numpy()
    axes[1, 2].hist(np.linalg.norm(stable, axis=1), bins=40, density=True, color="C3")
    axes[1, 2].set_title("norm of an α-stable vector, α = 1.5 (Fig. 2e)")
    figure.suptitle("Gradient-noise norms at initialization, with synthetic references")
    figure.tight_layout()
    _common.save_figure(figure, FLAGS.output_dir, "noise_histograms.png")


def plot_variance(plt, noises):
    figure, axis = plt.subplots(figsize=(6, 4))
    for index, (name, noise) in enumerate(noises.items()):
        curve = empirical_variance_vs_sample_size(standardized_coordinates(noise.coordinates), num_repeats=5)
        axis.loglog(curve.sample_sizes, curve.variance, color=f"C{index}", label=f"{name} (slope {curve.slope:+.2f})")
    axis.set_xlabel("sample size n (standardized noise coordinates)")
    axis.set_ylabel("empirical variance")
    axis.set_title("Empirical variance vs sample size (Fig. 2c/f)")
    axis.legend(fontsize=8)
    _common.save_figure(figure, FLAGS.output_dir, "empirical_variance.png")


def plot_training(plt, histories):
    epochs = max(len(records) for records in histories.values())
    figure, axes = plt.subplots(len(histories), epochs, figsize=(2.6 * epochs, 2.6 * len(histories)), squeeze=False)
    for row, (architecture, records) in enumerate(histories.items()):
        for column, record in enumerate(records):
            axis = axes[row, column]
            axis.hist(record.norms, bins=30, density=True, color=f"C{row}")
            axis.set_title(f"{architecture}, epoch {record.epoch}", fontsize=9)
            axis.set_xlabel("noise norm", fontsize=8)
    figure.suptitle("The noise-norm histogram over training (Fig. 5)")
    figure.tight_layout()
    _common.save_figure(figure, FLAGS.output_dir, "noise_over_training.png")


def verdicts(results):
    start = results["at_initialization"]
    attention, mlp = start["attention+text"], start["mlp+text"]
    attention_gauss, mlp_gauss = start["attention+gaussian"], start["mlp+gaussian"]
    rows = [
        _common.verdict(
            "Attention noise is heavier-tailed than without attention, same text (Figs. 2, 4a/c)",
            f"tail index {attention['tail_index']:.2f} vs {mlp['tail_index']:.2f}; "
            f"max/median norm {attention['norm_max_over_median']:.2f} vs {mlp['norm_max_over_median']:.2f}",
            attention["tail_index"] < mlp["tail_index"]),
        _common.verdict(
            "Attention noise stays heavy-tailed with Gaussian inputs (Fig. 4b)",
            f"tail index {attention_gauss['tail_index']:.2f}; norms: {norm_fit_text(attention_gauss)}",
            attention_gauss["tail_index"] < 1.9),
        _common.verdict(
            "Without attention, Gaussian inputs give Gaussian-like noise (Fig. 4d)",
            f"tail index {mlp_gauss['tail_index']:.2f}; norms: {norm_fit_text(mlp_gauss)}",
            mlp_gauss["tail_index"] >= 1.9),
        _common.verdict(
            "Heavy-tailed noise: the empirical variance keeps growing with n (Fig. 2c/f)",
            f"growth slope {attention['variance_growth_slope']:+.2f} (attention) vs "
            f"{mlp_gauss['variance_growth_slope']:+.2f} (no attention, Gaussian input)",
            attention["variance_growth_slope"] > mlp_gauss["variance_growth_slope"]),
    ]
    training = results.get("over_training", {})
    if training.get("attention") and len(training["attention"]) > 1:
        first, last = training["attention"][0], training["attention"][-1]
        key = "noise_norm_max_over_median"
        rows.append(_common.verdict(
            "Attention noise concentrates during training (Fig. 5a)",
            f"max/median norm {first[key]:.2f} at epoch 0 → {last[key]:.2f} at epoch {last['epoch']}; "
            f"tail index {first['noise_tail_index']:.2f} → {last['noise_tail_index']:.2f}",
            last[key] < first[key]))
    return rows


if __name__ == "__main__":
    app.run(main)
