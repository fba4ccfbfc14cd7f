r"""Is Adam's preconditioner a curvature? P against the diagonals of the empirical Fisher and the Fisher.

Adam divides by √v, v an average of squared mini-batch gradients. Kingma and
Ba (2015, §5) read v as an estimate of the diagonal of the Fisher, so that
P ≈ diag(F)^{1/2}; Kunstner, Hennig and Balles ("Limitations of the empirical
Fisher approximation for natural gradient descent", NeurIPS 2019, §3-4)
point out that squared gradients at the data's labels give the *empirical*
Fisher, which is not the Fisher. This example trains a small byte-level
transformer with `tf_adaptive.Adam` and, every `--measure_every` steps,
compares P (`preconditioner_of`) with diag(A)^{1/2} on a fixed probe set of
held-out windows, for A the empirical Fisher (its diagonal exact, from
per-example gradients) and the Fisher (labels drawn from the model,
`--fisher_samples` draws, each an unbiased estimate of its diagonal; for
softmax cross-entropy the Fisher is also the Gauss-Newton matrix):
`curvature_diagonal(..., estimator="per_example")` and `alignment`
(Spearman's rank correlation, cosine, and the spread of
log10(P / diag(A)^{1/2})).

The Hessian is left out: its diagonal has no per-example form, and
Hutchinson's estimate of it on a network of this size is mostly noise (with
64 products the median coordinate's standard error exceeded its value), which
would lower any correlation with it by noise alone.

Verdict, at the last step, over `--seeds`, on the paired difference
ρ(P, F_emp) − ρ(P, F) per seed, gated on its seed-to-seed spread
(`_common.gated_verdict`): P follows the empirical Fisher's diagonal more
closely than the Fisher's.

Outputs in `--output_dir`: `alignment.png` (rank correlation and log-ratio
spread against the step, per curvature, mean over seeds with the min-max
band) and `results.json`.

    python examples/preconditioner_alignment.py
    python examples/preconditioner_alignment.py --steps=600 --seeds=0,1,2,3
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
from analysis_tools import preconditioner_of
from analysis_tools.curvature import alignment, curvature_diagonal, curvature_operator

FLAGS = flags.FLAGS
CURVATURES = ("empirical_fisher", "fisher")
NAMES = {"empirical_fisher": "empirical Fisher", "fisher": "Fisher"}
STATISTICS = ("rank_correlation", "cosine", "ratio_spread")


def define_flags():
    """The command-line flags; defined only when run as a script, so that tests can import the module."""
    flags.DEFINE_string(
        "output_dir",
        os.path.join("examples_output", "preconditioner_alignment"),
        "Where the figure and results.json go.",
    )
    _common.define_text_flags()
    flags.DEFINE_integer("sequence_length", 32, "Bytes per window.", lower_bound=2)
    flags.DEFINE_integer("width", 32, "Transformer width.", lower_bound=2)
    flags.DEFINE_integer("num_blocks", 2, "Transformer blocks.", lower_bound=1)
    flags.DEFINE_integer("num_heads", 2, "Attention heads.", lower_bound=1)
    flags.DEFINE_integer("windows", 512, "Training windows.", lower_bound=1)
    flags.DEFINE_integer("batch_size", 32, "Training batch size.", lower_bound=1)
    flags.DEFINE_float("learning_rate", 1e-3, "Adam's η.", lower_bound=0.0)
    flags.DEFINE_integer("steps", 300, "Adam steps.", lower_bound=1)
    flags.DEFINE_integer("measure_every", 100, "Steps between measurements.", lower_bound=1)
    flags.DEFINE_integer("probe_windows", 64, "Windows of the probe set the curvatures are taken on.", lower_bound=1)
    flags.DEFINE_integer("fisher_samples", 8, "Label draws for the Fisher's diagonal.", lower_bound=2)
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of the initial weights, the batches and the probes.")


def run_seed(seed, x, y, probe):
    keras.utils.set_random_seed(seed)
    model = _common.byte_transformer(FLAGS.sequence_length, FLAGS.width, FLAGS.num_blocks, FLAGS.num_heads, "gelu")
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer = tf_adaptive.Adam(FLAGS.learning_rate)
    model.compile(optimizer=optimizer, loss=loss)
    batches = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed).repeat().batch(FLAGS.batch_size)
    operators = {
        "empirical_fisher": curvature_operator(model, probe, curvature="empirical_fisher", loss=loss),
        "fisher": curvature_operator(
            model, probe, curvature="fisher", loss=loss, samples=FLAGS.fisher_samples, label_seed=seed
        ),
    }
    records, done = [], 0
    while done < FLAGS.steps:
        steps = min(FLAGS.measure_every, FLAGS.steps - done)
        history = model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
        done += steps
        p = preconditioner_of(optimizer, model.trainable_variables)
        record = dict(step=done, loss=float(history.history["loss"][-1]))
        for curvature, operator in operators.items():
            diagonal = curvature_diagonal(operator, estimator="per_example")
            measured = alignment(p, diagonal.estimate)
            # The median coordinate's standard error relative to its value (0 for the exact empirical Fisher).
            record[curvature] = dict(
                measured._asdict(),
                diagonal_standard_error=float(
                    np.median(diagonal.standard_error / np.maximum(np.abs(diagonal.estimate), 1e-30))
                ),
            )
        print(
            f"  seed {seed}  step {done:>5}  loss {record['loss']:.3f}  rank correlation of P with diag^½: "
            + ", ".join(f"{NAMES[c]} {record[c]['rank_correlation']:.3f}" for c in CURVATURES),
            flush=True,
        )
        records.append(record)
    return dict(seed=seed, parameters=model.count_params(), records=records)


def verdicts(runs):
    final = {c: np.array([run["records"][-1][c]["rank_correlation"] for run in runs]) for c in CURVATURES}
    step = runs[0]["records"][-1]["step"]
    return [
        _common.gated_verdict(
            f"Adam's P follows the empirical Fisher more than the Fisher (Kunstner et al. 2019), step {step}",
            "ρ(P, F_emp) − ρ(P, F) per seed",
            final["empirical_fisher"] - final["fisher"],
            "0",
            [0.0],
            ">",
            digits=3,
        ),
    ]


def figure(plt, runs):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    steps = [r["step"] for r in runs[0]["records"]]
    for curvature in CURVATURES:
        for ax, statistic in zip(axes, ("rank_correlation", "ratio_spread")):
            values = np.array([[r[curvature][statistic] for r in run["records"]] for run in runs])
            (line,) = ax.plot(steps, values.mean(0), marker="o", label=NAMES[curvature])
            ax.fill_between(steps, values.min(0), values.max(0), color=line.get_color(), alpha=0.2)
    axes[0].set(xlabel="step", ylabel="Spearman ρ(P, diag(A))", title="rank correlation of P with diag(A)")
    axes[1].set(xlabel="step", ylabel="std of log10(P / diag(A)^½)", title="spread of P / diag(A)^½ (decades)")
    axes[0].legend(fontsize=8)
    fig.suptitle(
        f"tf_adaptive.Adam (η = {FLAGS.learning_rate:g}) on a {FLAGS.num_blocks}-block byte transformer: "
        f"P against curvature diagonals, mean over seeds {[run['seed'] for run in runs]} (band: min-max)",
        fontsize=9,
    )
    return fig


def main(argv):
    del argv
    start = time.perf_counter()
    tokens = _common.text_corpus(FLAGS.data_dir)
    (x, y), (x_probe, y_probe) = _common.text_windows(tokens, FLAGS.sequence_length, FLAGS.windows, seed=0)
    probe = (x_probe[: FLAGS.probe_windows], y_probe[: FLAGS.probe_windows])
    runs = [run_seed(int(seed), x, y, probe) for seed in FLAGS.seeds]
    print(
        f"\n{runs[0]['parameters']:,} parameters; probe set {len(probe[0])} held-out windows; "
        f"the Fisher's diagonal from {FLAGS.fisher_samples} label draws"
    )
    plt = _common.pyplot()
    _common.save_figure(figure(plt, runs), FLAGS.output_dir, "alignment.png")
    rows = verdicts(runs)
    seconds = time.perf_counter() - start
    _common.write_json(
        FLAGS.output_dir,
        "results.json",
        dict(
            flags={
                name: FLAGS[name].value
                for name in (
                    "sequence_length",
                    "width",
                    "num_blocks",
                    "num_heads",
                    "windows",
                    "batch_size",
                    "learning_rate",
                    "steps",
                    "measure_every",
                    "probe_windows",
                    "fisher_samples",
                    "seeds",
                )
            },
            runs=runs,
            verdicts=rows,
            seconds=seconds,
        ),
    )
    _common.print_verdicts(rows)
    print(f"\ntotal {seconds:.0f} s")


if __name__ == "__main__":
    define_flags()
    app.run(main)
