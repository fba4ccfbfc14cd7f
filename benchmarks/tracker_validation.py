r"""`SharpnessTracker`'s estimators against certified Lanczos λ1(P⁻¹H), at the adaptive edge of stability.

The setup of `examples/edge_of_stability.py` (Cohen et al. 2022, App. G.1,
scaled down): the 5 × 200 tanh network, full batch on 512 class-balanced
digits, the squared loss, `tf_adaptive.Adam` (β2 = 0.99, ε = 1e-7) at each
η of `--learning_rates`, for every seed of `--seeds` (the seed draws the
subset and the initial weights). Every `--every_n_steps` steps, at the same
weights:

* `SharpnessCallback` certifies λ1(P⁻¹H) (and λ1(H)) by Lanczos to
  `--tolerance`;
* `SharpnessTracker` runs every estimator: the secant curvature along the
  update (in the P metric and raw), the critical sharpness, warm-started power
  iteration (`--num_products` per measurement and problem), and the batch
  sharpness (the one batch is the full batch here).

"Arrival" is the first measured step at which λ1(P⁻¹H) reaches 0.9 of the
threshold 38/η (the example's `ARRIVAL`). For each estimator and each η the
script prints the ratio estimator ÷ Lanczos, pooled over the seeds: its
median and its 10th and 90th percentiles before and after arrival, and the
fraction of the steps after arrival where the ratio is within 10 % of 1.
Those λ1(H)-side estimators (the raw secant, the raw power iteration and
the raw batch sharpness) are compared with Lanczos λ1(H); the critical
sharpness with 2/η, the threshold it would meet if it equalled λ1 of a
plain gradient step (it is not λ1 of either matrix).

    python benchmarks/tracker_validation.py
    python benchmarks/tracker_validation.py --seeds=0 --learning_rates=2e-3 --steps=150   # quick

With ``--problem=transformer`` the run is mini-batch: the byte transformer of
`sharpness_overhead.py` (2.5 M parameters, batches of 64 × 32 bytes, Adam),
Lanczos, the power iteration and the critical sharpness on one probe batch,
the batch sharpness on the training batches in turn, the secant along the
mini-batch updates. λ1(P⁻¹H) stays far below 38/η there, so every
measurement is "before arrival": the table gives the relation as measured.

    python benchmarks/tracker_validation.py --problem=transformer --learning_rates=1e-3 --seeds=0 \
        --steps=200 --every_n_steps=25
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
import _common

import tf_adaptive
from analysis_tools import SharpnessCallback, SharpnessTracker

FLAGS = flags.FLAGS
flags.DEFINE_enum(
    "problem",
    "digits",
    ["digits", "transformer"],
    "digits: full batch at the adaptive edge of stability; transformer: mini-batch (pass "
    "--learning_rates=1e-3 --seeds=0 --steps=200 --every_n_steps=25).",
)
flags.DEFINE_list("learning_rates", ["1e-3", "2e-3", "4e-3"], "Adam's η.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of the subset and the initial weights.")
flags.DEFINE_integer("steps", 300, "Full-batch steps per run.")
flags.DEFINE_integer("every_n_steps", 5, "Steps between Lanczos measurements.")
flags.DEFINE_integer(
    "tracker_every_n_steps", 5, "Steps between the tracker's measurements (a divisor of every_n_steps)."
)
flags.DEFINE_integer("num_products", 3, "The tracker's power-iteration products per measurement and problem.")
flags.DEFINE_float("tolerance", 1e-3, "Lanczos's certified relative accuracy.")
flags.DEFINE_string("output", None, "Optional JSON file for every measurement.")

LOSS = keras.losses.MeanSquaredError()
ARRIVAL = 0.9  # as examples/edge_of_stability.py
THRESHOLD = 38.0  # Adam at β1 = 0.9: λ1(P⁻¹H) < 38/η
# (estimator's key, Lanczos's key or None for the threshold 2/η it is read against)
COMPARISONS = (
    ("power_preconditioned_sharpness", "preconditioned_sharpness"),
    ("preconditioned_update_curvature", "preconditioned_sharpness"),
    ("preconditioned_batch_sharpness", "preconditioned_sharpness"),
    ("power_sharpness", "sharpness"),
    ("update_curvature", "sharpness"),
    ("batch_sharpness", "sharpness"),
    ("critical_sharpness", None),
)


def _run(rate, seed):
    x, labels = _common.digits(512, seed)
    data = (x, np.eye(10, dtype="float32")[labels])
    model = _common.tanh_network(x.shape[1], 10, 5, 200, seed)
    model.compile(optimizer=tf_adaptive.Adam(rate, beta_2=0.99, epsilon=1e-7), loss=LOSS)
    lanczos = SharpnessCallback(data, every_n_steps=FLAGS.every_n_steps, loss=LOSS, tolerance=FLAGS.tolerance)
    tracker = SharpnessTracker(
        data,
        estimators=("update_curvature", "critical_sharpness", "power_iteration", "batch_sharpness"),
        every_n_steps=FLAGS.tracker_every_n_steps,
        num_products=FLAGS.num_products,
        loss=LOSS,
        seed=seed,
    )
    full_batch = tf.data.Dataset.from_tensors(data).repeat()
    model.fit(full_batch, steps_per_epoch=FLAGS.steps, epochs=1, verbose=0, callbacks=[lanczos, tracker])
    rows = []
    estimates = {record.step: record for record in tracker.records}
    for certified in lanczos.records:
        estimated = estimates[certified.step]
        rows.append(
            dict(
                step=certified.step,
                **{k: certified.values[k] for k in ("sharpness", "preconditioned_sharpness")},
                **estimated.values,
            )
        )
    return rows


def _run_transformer(rate, seed):
    """Mini-batch Adam on the byte transformer of `sharpness_overhead.py`; Lanczos and the probe estimators on one
    batch, the batch sharpness on the training batches in turn."""
    tokens = _common.text_corpus()
    (x, y), _ = _common.text_windows(tokens, 32, num_windows=64 * 40, seed=seed)
    probe = (x[:64], y[:64])
    keras.utils.set_random_seed(seed)
    model = _common.byte_transformer(32, 256, 3, 4, "gelu")
    model.compile(
        optimizer=tf_adaptive.Adam(rate),
        jit_compile=True,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    every = FLAGS.every_n_steps
    lanczos = SharpnessCallback(probe, every_n_steps=every, tolerance=FLAGS.tolerance, batch_size=64)
    trackers = [
        SharpnessTracker(
            probe,
            estimators=("update_curvature", "power_iteration"),
            batch_size=64,
            every_n_steps=FLAGS.tracker_every_n_steps,
            num_products=FLAGS.num_products,
            seed=seed,
        ),
        SharpnessTracker(probe, estimators="critical_sharpness", batch_size=64, every_n_steps=every),
        SharpnessTracker((x, y), estimators="batch_sharpness", batch_size=64, every_n_steps=every),
    ]
    dataset = (
        tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed).repeat().batch(64, drop_remainder=True)
    )
    model.fit(dataset, steps_per_epoch=FLAGS.steps, epochs=1, verbose=0, callbacks=[lanczos, *trackers])
    estimates = {}
    for tracker in trackers:
        for record in tracker.records:
            estimates.setdefault(record.step, {}).update(record.values)
    return [
        dict(
            step=r.step,
            sharpness=r.values["sharpness"],
            preconditioned_sharpness=r.values["preconditioned_sharpness"],
            **estimates[r.step],
        )
        for r in lanczos.records
    ]


def _summary(ratios):
    ratios = np.asarray([r for r in ratios if np.isfinite(r)])
    if not len(ratios):
        return None
    low, median, high = np.percentile(ratios, [10, 50, 90])
    return dict(
        median=median,
        p10=low,
        p90=high,
        within_10_percent=float(np.mean(np.abs(ratios - 1.0) <= 0.1)),
        count=len(ratios),
    )


def main(argv):
    del argv
    start = time.perf_counter()
    runs = {}
    for rate in (float(r) for r in FLAGS.learning_rates):
        for seed in (int(s) for s in FLAGS.seeds):
            began = time.perf_counter()
            runs[(rate, seed)] = (_run if FLAGS.problem == "digits" else _run_transformer)(rate, seed)
            arrived = [
                r["step"] for r in runs[(rate, seed)] if r["preconditioned_sharpness"] >= ARRIVAL * THRESHOLD / rate
            ]
            print(
                f"η={rate:g} seed {seed}: {len(runs[(rate, seed)])} measurements, arrival at step "
                f"{arrived[0] if arrived else 'never'} ({time.perf_counter() - began:.0f} s)",
                flush=True,
            )
    print(
        f"\nratio estimator ÷ reference: median [10th, 90th percentile] over {len(FLAGS.seeds)} seeds; "
        "'within' = fraction of the measurements after arrival within 10 % of 1"
    )
    header = f"{'estimator':>32} {'η':>7} {'before arrival':>26} {'after arrival':>26} {'within':>7} {'n':>4}"
    print(header)
    table = {}
    for key, reference in COMPARISONS:
        for rate in (float(r) for r in FLAGS.learning_rates):
            before, after = [], []
            for seed in (int(s) for s in FLAGS.seeds):
                arrived = False
                for row in runs[(rate, seed)]:
                    arrived = arrived or row["preconditioned_sharpness"] >= ARRIVAL * THRESHOLD / rate
                    truth = row[reference] if reference else 2.0 / rate
                    (after if arrived else before).append(row[key] / truth)
            first, second = _summary(before), _summary(after)
            table[f"{key} η={rate:g}"] = dict(before=first, after=second)

            def text(s):
                return "-" if s is None else f"{s['median']:.3f} [{s['p10']:.3f}, {s['p90']:.3f}]"

            within = "-" if second is None else f"{second['within_10_percent']:.2f}"
            count = 0 if second is None else second["count"]
            print(f"{key:>32} {rate:>7g} {text(first):>26} {text(second):>26} {within:>7} {count:>4}")
    if FLAGS.output:
        with open(FLAGS.output, "w") as handle:
            json.dump(
                dict(runs={f"{r:g}/{s}": rows for (r, s), rows in runs.items()}, table=table),
                handle,
                indent=1,
                default=float,
            )
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    app.run(main)
