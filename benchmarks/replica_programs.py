r"""The replica programs against an earlier version of the code: products and gradients, side by side.

The same measurements run on this checkout and on a baseline revision of it
(extracted with ``git archive``), each in a fresh interpreter, alternately
``--rounds`` times; the table gives the medians and the ratio this / baseline.
The model is an MLP of about 85 k parameters (64 → 256 → 256 → 10, tanh); the
probe set 4,000 examples in batches of 512 (a partial last batch of 416), on
one device and under a MirroredStrategy over two logical CPUs.

    python benchmarks/replica_programs.py --baseline=<revision>

For each: ``first`` is the time from building the operator to the end of its
first Hessian-vector product (tracing and compilation included); ``product``
and ``gradient`` the medians of 5 further Hessian-vector products and full
gradients.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _baseline import compare, median
from absl import app


def _measure(setting):
    import time

    import numpy as np
    import tensorflow as tf

    if setting == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from _timing import median_seconds

    import analysis_tools

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 64)).astype("float32")
    y = rng.integers(0, 10, size=4000)
    strategy = (
        tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())
        if setting == "mirrored"
        else tf.distribute.get_strategy()
    )
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [
                keras.Input((64,)),
                keras.layers.Dense(256, activation="tanh"),
                keras.layers.Dense(256, activation="tanh"),
                keras.layers.Dense(10),
            ]
        )
        model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    start = time.perf_counter()
    operator = analysis_tools.HessianOperator(model, (x, y), batch_size=512, strategy=strategy)
    vector = tf.random.stateless_normal([operator.dimension], [0, 1], dtype=tf.float64)
    operator.matvec(vector).numpy()
    first = time.perf_counter() - start
    operator.gradient()[0].numpy()
    return {
        "first": first,
        "product": median_seconds(lambda: operator.matvec(vector).numpy(), 5),
        "gradient": median_seconds(lambda: operator.gradient()[0].numpy(), 5),
    }


def main(argv):
    del argv
    results = compare(__file__, _measure, ("single", "mirrored"))
    if results is None:
        return
    rows = [
        (setting, key, median(r[key] for r in runs["baseline"]), median(r[key] for r in runs["this"]))
        for setting, runs in results.items()
        for key in ("first", "product", "gradient")
    ]
    print(f"{'setting':<10}{'measure':<10}{'baseline s':>12}{'this s':>10}{'this / baseline':>17}")
    for setting, key, old, new in rows:
        print(f"{setting:<10}{key:<10}{old:>12.4f}{new:>10.4f}{new / old:>17.2f}")


if __name__ == "__main__":
    app.run(main)
