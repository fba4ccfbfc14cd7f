r"""Coverage of the trace estimators' standard errors: z = (estimate − tr) / standard error over many seeds.

The network is the test suite's trained classifier (467 parameters, 8 → 16 →
16 → 3, tanh, float64, Adam on three Gaussian clusters), whose Hessian has a
trained network's outliers. Its H and P^{-1/2} H P^{-1/2} (Adam's P after
training, whose trace is tr(P⁻¹H)) are built exactly from products with the
unit vectors; the estimators then run on products with those matrices, which
equal the operator's to rounding, so that hundreds of seeds take seconds. A
standard error is right when z is about N(0, 1) (for few Hutchinson terms,
Student's t): |z| > 2 in about 5 % of seeds, |z| > 3 in about 0.3 %.

    python benchmarks/trace_coverage.py --seeds=200
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

FLAGS = flags.FLAGS
flags.DEFINE_integer("seeds", 200, "Seeds per estimator and operator.")
flags.DEFINE_list("products", ["30", "99"], "Products per estimate.")


def _matrices():
    import keras
    import numpy as np

    import analysis_tools

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8,), dtype="float64")]
        + [
            keras.layers.Dense(units, activation=activation, dtype="float64")
            for units, activation in ((16, "tanh"), (16, "tanh"), (3, None))
        ]
    )
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 128).astype("int32")
    x = rng.standard_normal((3, 8))[labels] * 1.5 + rng.standard_normal((128, 8))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64")
    model.compile(keras.optimizers.Adam(1e-2), loss)
    model.fit(x, labels, epochs=50, batch_size=128, verbose=0)
    operator = analysis_tools.HessianOperator(model, (x, labels), loss=loss)
    columns = np.stack([operator.matvec(e).numpy() for e in np.eye(operator.dimension)], axis=1)
    hessian = 0.5 * (columns + columns.T)
    p = np.concatenate(
        [np.ravel(t) for t in analysis_tools.preconditioner_of(model.optimizer, model.trainable_variables)]
    )
    scale = 1.0 / np.sqrt(p)
    return {"H": hessian, "P⁻¹H": scale[:, None] * hessian * scale[None, :]}


def main(argv):
    del argv
    import numpy as np
    import tensorflow as tf

    from analysis_tools.curvature import hutch_plus_plus, hutchinson

    print("| operator | estimator | products | seeds | sd of z | |z| > 2 | |z| > 3 | RMS error / tr |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, matrix in _matrices().items():
        exact = np.trace(matrix)
        tensor = tf.constant(matrix)

        def matvec(v):
            return tf.linalg.matvec(tensor, v)

        for estimator, function in (("hutchinson", hutchinson), ("hutch++", hutch_plus_plus)):
            for products in map(int, FLAGS.products):
                results = [function(matvec, matrix.shape[0], products, seed=seed) for seed in range(FLAGS.seeds)]
                errors = np.array([r.estimate - exact for r in results])
                z = errors / np.array([r.standard_error for r in results])
                print(
                    f"| {name} | {estimator} | {products} | {FLAGS.seeds} | {z.std():.2f} | "
                    f"{np.mean(np.abs(z) > 2):.1%} | {np.mean(np.abs(z) > 3):.1%} | "
                    f"{np.sqrt(np.mean(errors**2)) / abs(exact):.3f} |",
                    flush=True,
                )


if __name__ == "__main__":
    app.run(main)
