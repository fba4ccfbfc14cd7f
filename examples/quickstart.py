r"""Train a small classifier with tf_adaptive optimizers side by side with Keras's Adam.

The data is scikit-learn's bundled `load_digits` (1,797 8×8 handwritten
digits, shipped inside scikit-learn: nothing is downloaded). Every run starts
from the same initial weights and sees the batches in the same order, so the
table compares the optimizers and nothing else.

    python examples/quickstart.py                        # every optimizer
    python examples/quickstart.py --optimizer=ACClip --learning_rate=3e-4 --epochs=40
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _common
import keras
from absl import app, flags
from sklearn.model_selection import train_test_split

import tf_adaptive
from analysis_tools.preconditioners import stability_threshold_of

# Learning rates that train this model well in a few epochs. The optimizers'
# own defaults follow their papers, which trained much larger models. ACClip,
# GClip, CClip and (M-)SVAG take SGD-sized steps (at most η τ per coordinate
# for ACClip), hence their much larger rates than the Adam-like methods.
# FrozenAdam here has P = 1 (EMA heavy ball); freeze a trained Adam's P with
# `tf_adaptive.FrozenAdam.from_optimizer` to study the frozen dynamics.
SUGGESTED_LEARNING_RATES = {
    "ACClip": 0.3,
    "GClip": 0.1,
    "CClip": 0.1,
    "RAdam": 1e-2,
    "SSD": 1e-3,
    "MSSD": 1e-3,
    "SVAG": 0.3,
    "MSVAG": 0.3,
    "Adam": 3e-3,
    "Padam": 0.1,
    "Nadam": 3e-3,
    "RMSProp": 1e-3,
    "Adagrad": 0.05,
    "Adafactor": 1e-2,
    "LaProp": 3e-3,
    "HeavyBall": 0.1,
    "Nesterov": 0.1,
    "FrozenAdam": 0.1,
}

# The optimizers among tf_adaptive's public names (it also exports their protocol's description classes).
OPTIMIZERS = [
    name for name in tf_adaptive.__all__ if issubclass(getattr(tf_adaptive, name), keras.optimizers.Optimizer)
]

FLAGS = flags.FLAGS


def define_flags():
    """The command-line flags; defined only when run as a script, so that tests can import the module."""
    flags.DEFINE_enum("optimizer", "all", ["all", *OPTIMIZERS], "The tf_adaptive optimizer to run, or `all` of them.")
    flags.DEFINE_integer("epochs", 15, "Passes over the training set.", lower_bound=1)
    flags.DEFINE_float(
        "learning_rate", None, "Learning rate of the tf_adaptive optimizer (default: a suggested one per optimizer)."
    )
    flags.DEFINE_float("adam_learning_rate", 1e-3, "Learning rate of the keras.optimizers.Adam baseline.")
    flags.DEFINE_integer("batch_size", 64, "Mini-batch size.", lower_bound=1)
    flags.DEFINE_integer("hidden_units", 64, "Width of the two hidden layers.", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "Seed for the split, the initial weights and the batch order.")
    flags.DEFINE_boolean("jit_compile", True, "Compile the train step with XLA.")


def load_data(seed):
    """Standardized digits features (`_common.digits`), split 75/25 with every class in both halves."""
    x, y = _common.digits(seed=seed)
    return train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)


def train(optimizer, data, initial_weights):
    x_train, x_test, y_train, y_test = data
    model = _common.mlp(x_train.shape[1], FLAGS.hidden_units, FLAGS.seed)
    model.set_weights(initial_weights)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=FLAGS.jit_compile,
    )
    keras.utils.set_random_seed(FLAGS.seed)
    start = time.perf_counter()
    history = model.fit(x_train, y_train, batch_size=FLAGS.batch_size, epochs=FLAGS.epochs, verbose=0)
    seconds = time.perf_counter() - start
    test_loss, test_accuracy = model.evaluate(x_test, y_test, verbose=0)
    return dict(
        train_loss=history.history["loss"][-1], test_loss=test_loss, test_accuracy=test_accuracy, seconds=seconds
    )


def main(argv):
    del argv
    data = load_data(FLAGS.seed)
    initial_weights = _common.mlp(data[0].shape[1], FLAGS.hidden_units, FLAGS.seed).get_weights()
    names = OPTIMIZERS if FLAGS.optimizer == "all" else [FLAGS.optimizer]

    runs = [("keras Adam", FLAGS.adam_learning_rate, keras.optimizers.Adam(learning_rate=FLAGS.adam_learning_rate))]
    for name in names:
        learning_rate = FLAGS.learning_rate or SUGGESTED_LEARNING_RATES[name]
        runs.append((name, learning_rate, getattr(tf_adaptive, name)(learning_rate=learning_rate)))

    print(
        f"load_digits: {len(data[0])} train / {len(data[1])} test images, "
        f"MLP 64-{FLAGS.hidden_units}-{FLAGS.hidden_units}-10, {FLAGS.epochs} epochs, "
        f"batch {FLAGS.batch_size}, jit_compile={FLAGS.jit_compile}\n"
    )
    header = (
        f"{'optimizer':<12} {'lr':>8} {'train loss':>11} {'test loss':>10} "
        f"{'test acc':>9} {'stability threshold':>20} {'fit s':>7}"
    )
    print(header)
    print("-" * len(header))
    for name, learning_rate, optimizer in runs:
        result = train(optimizer, data, initial_weights)
        threshold = stability_threshold_of(optimizer)
        threshold_text = "none" if threshold is None else f"{threshold:.4g}"
        print(
            f"{name:<12} {learning_rate:>8.3g} {result['train_loss']:>11.4f} "
            f"{result['test_loss']:>10.4f} {result['test_accuracy']:>9.3f} "
            f"{threshold_text:>20} {result['seconds']:>7.2f}",
            flush=True,
        )
    print(
        "\nstability threshold: the largest stable λ1(P⁻¹H) at the final learning rate "
        "(Cohen et al. 2022, §2), read by analysis_tools.preconditioners.stability_threshold_of; none for "
        "sign descent, whose step has length η at any curvature."
    )


if __name__ == "__main__":
    define_flags()
    app.run(main)
