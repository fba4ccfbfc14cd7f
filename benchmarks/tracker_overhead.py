r"""`SharpnessTracker`'s overhead on the 2.5 M-parameter byte transformer, each estimator side by side.

The model and data are those of `sharpness_overhead.py`: a 3-block causal
byte transformer (width 256, 4 heads), batches of 64 windows of 32 bytes of
the Python documentation, `tf_adaptive.Adam(1e-3)`, an XLA-compiled train
step. The script

1. builds one model per arm from the same seed: ``plain`` (no callback) and
   one per tracker configuration, each warmed up (traced and compiled) by a
   first segment that is not timed;
2. trains every arm `--segment` steps at a time, the arms in turn, for
   `--rounds` rounds, so that a drift of the machine's speed reaches every
   arm alike;
3. prints each arm's median and fastest segment time and their ratios to
   ``plain``'s: the fit time with the tracker against without, in one run.
   A segment is timed from the start of its first step to the end of its
   last, inside `fit`: on this machine some `fit` calls of every arm,
   ``plain`` included, spend a fixed 1.7 s or 5.1 s more in their set-up or
   tear-down, at random, which is no part of a step.

Arms: ``update_curvature`` (the default tracker, read at every step);
``critical_sharpness``, ``power_iteration`` (its defaults: 3 products per
problem, λ1(P⁻¹H) and λ1(H)) and ``batch_sharpness`` (a one-batch probe,
every `--every_n_steps` steps). For these the script also prints the cost of
one measurement in train steps and the period at which it costs 5 % of the
training time.

    python benchmarks/tracker_overhead.py
    python benchmarks/tracker_overhead.py --arms=plain,update_curvature --rounds=9
"""

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
from _timing import TimedSharpnessTracker

import tf_adaptive

FLAGS = flags.FLAGS
flags.DEFINE_list(
    "arms", ["plain", "update_curvature", "critical_sharpness", "power_iteration", "batch_sharpness"], "Arms to time."
)
flags.DEFINE_integer("segment", 20, "Steps per timed segment.")
flags.DEFINE_integer("rounds", 9, "Timed segments per arm.")
flags.DEFINE_integer("every_n_steps", 20, "Period of the probe-set estimators.")
flags.DEFINE_integer("seed", 0, "Seed of the weights and the windows.")

SEQUENCE, BATCH = 32, 64


class _Clock(keras.callbacks.Callback):
    """The wall time from the start of a fit's first step to the end of its last (its set-up and tear-down left out)."""

    def on_train_begin(self, logs=None):
        self.start = None

    def on_train_batch_begin(self, batch, logs=None):
        if self.start is None:
            self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.seconds = time.perf_counter() - self.start


def _model():
    keras.utils.set_random_seed(FLAGS.seed)
    model = _common.byte_transformer(SEQUENCE, 256, 3, 4, "gelu")
    model.compile(
        optimizer=tf_adaptive.Adam(1e-3),
        jit_compile=True,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def _tracker(arm, probe):
    if arm == "plain":
        return None
    if arm == "update_curvature":
        return TimedSharpnessTracker()
    return TimedSharpnessTracker(probe, estimators=arm, every_n_steps=FLAGS.every_n_steps, batch_size=BATCH)


def main(argv):
    del argv
    tokens = _common.text_corpus()
    (x, y), _ = _common.text_windows(tokens, SEQUENCE, num_windows=BATCH * 40, seed=FLAGS.seed)
    probe = (x[:BATCH], y[:BATCH])
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH, drop_remainder=True).repeat()
    arms = {}
    clock = _Clock()
    for arm in FLAGS.arms:
        model, tracker = _model(), _tracker(arm, probe)
        callbacks = [clock] + ([tracker] if tracker else [])
        start = time.perf_counter()
        model.fit(dataset, epochs=1, steps_per_epoch=FLAGS.segment, verbose=0, callbacks=callbacks)
        print(f"{arm}: first segment (tracing, compilation) {time.perf_counter() - start:.1f} s", flush=True)
        arms[arm] = (model, tracker, callbacks, [])
    for _ in range(FLAGS.rounds):
        for arm, (model, tracker, callbacks, times) in arms.items():
            if tracker is not None:
                tracker.seconds.clear()
            model.fit(dataset, epochs=1, steps_per_epoch=FLAGS.segment, verbose=0, callbacks=callbacks)
            times.append(clock.seconds)
    plain = np.median(arms["plain"][3]) if "plain" in arms else None
    fastest = min(arms["plain"][3]) if "plain" in arms else None
    step = plain / FLAGS.segment if plain else None
    print(
        f"\n{'arm':>20} {'median s':>9} {'min s':>7} {'vs plain':>9} {'min vs min':>10} {'measurement':>12} "
        f"{'in steps':>9} {'period for 5 %':>15}"
    )
    for arm, (model, tracker, _, times) in arms.items():
        median = np.median(times)
        ratio = f"{median / plain:.3f}" if plain else "-"
        ratio_min = f"{min(times) / fastest:.3f}" if plain else "-"
        seconds = np.median(tracker.seconds) if tracker is not None and tracker.seconds else None
        measurement = f"{1e3 * seconds:.1f} ms" if seconds is not None else "-"
        in_steps = f"{seconds / step:.2f}" if seconds is not None and step else "-"
        period = f"{seconds / step / 0.05:.0f}" if seconds is not None and step and arm != "update_curvature" else "-"
        print(
            f"{arm:>20} {median:>9.2f} {min(times):>7.2f} {ratio:>9} {ratio_min:>10} {measurement:>12} "
            f"{in_steps:>9} {period:>15}"
        )
    for arm, (_, _, _, times) in arms.items():
        print(f"{arm}: segments {', '.join(f'{t:.2f}' for t in times)} s")
    if step:
        print(f"\ntrain step (plain): {1e3 * step:.0f} ms; segments of {FLAGS.segment} steps, {FLAGS.rounds} rounds")


if __name__ == "__main__":
    app.run(main)
