"""Curvature through normalization layers, against a dense Hessian computed without `HessianOperator`.

Each network is 6 → Dense(12) → normalization → tanh → Dense(3), in float64,
with BatchNormalization (momentum 0.5), LayerNormalization,
GroupNormalization (3 groups of 4) or RMSNormalization. The readout is
frozen, so the Hessian is over the Dense and normalization weights (108
parameters; 96 with RMSNormalization, which has no offset) and
``per_layer=True`` measures those two blocks. The first block's curvature
goes through the second derivative of the normalization with respect to its
input. Each network takes 8 Adam steps on 32 examples of three Gaussian
clusters, so the normalization weights and BatchNorm's moving statistics are
no longer at their initial values. A `SharpnessCallback` per mode measures at
the last step, on the final weights.

The reference takes central differences of first-order gradients of the
cross-entropy written out directly (`tf.nn.sparse_softmax_cross_entropy_with_logits`
of the logits of `model.stateless_call` on the whole probe set), one column
per parameter: no second-order rule enters it. (A reference by nested
tapes would share TensorFlow's stop-gradient in `tf.nn.moments`, which makes
the autodiff Hessian through LayerNorm, BatchNorm in training mode and
GroupNorm wrong; `analysis_tools._second_order.ExactMoments` is what the
operator uses instead, and this test fails without it.) In ``mode="train"``, BatchNorm
normalizes with the statistics of its batch. The probe set is therefore one
batch, for the operator and for the reference alike. With two batches of 16
the block's λ1 moves by 0.7 %, and with the other mode's statistics by 23–29 %.
In ``mode="inference"`` BatchNorm uses its moving statistics.

Tolerances: 1e-7 relative for λ1 and the trace. The central differences
carry an error of order ε² (ε = 1e-5) plus rounding of order 1e-16/ε;
Lanczos runs to exactness with as many steps as the block has dimensions,
and Hutch++ with 3n products sketches the whole space. Without
`ExactMoments` the LayerNorm, GroupNorm and training-mode BatchNorm cases
miss by far more than that. The module is dominated by tracing and
compiling Hessian-vector products and Lanczos loops.
It is therefore marked slow.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from analysis_tools import SharpnessCallback, hessian_trace, sharpness

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64")
NORMALIZATIONS = {
    "batch_norm": lambda: keras.layers.BatchNormalization(momentum=0.5, dtype="float64", name="norm"),
    "layer_norm": lambda: keras.layers.LayerNormalization(dtype="float64", name="norm"),
    "group_norm": lambda: keras.layers.GroupNormalization(groups=3, dtype="float64", name="norm"),
    "rms_norm": lambda: keras.layers.RMSNormalization(dtype="float64", name="norm"),
}
# (normalization, mode): BatchNorm's Hessian depends on the mode; the others' does not.
CASES = [
    ("batch_norm", "train"),
    ("batch_norm", "inference"),
    ("layer_norm", "train"),
    ("group_norm", "train"),
    ("rms_norm", "train"),
]
STEPS = 8  # 2 epochs of 4 batches of 8

pytestmark = pytest.mark.slow


def _data():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 32).astype("int32")
    x = rng.standard_normal((3, 6))[labels] + rng.standard_normal((32, 6))
    return x, labels


def _dense_hessian(model, x, labels, training, epsilon=1e-5):
    """∂²L/∂θ² of the mean cross-entropy over (x, labels), θ the flat trainable variables.

    By central differences of first-order gradients, column by column:
    H e_j ≈ (g(θ + εe_j) − g(θ − εe_j)) / 2ε. Only first derivatives are taken,
    so a wrong second-order rule (as TensorFlow's stop-gradient in
    `tf.nn.moments` gives) cannot reach the reference.
    """
    values = [tf.convert_to_tensor(v.value) for v in model.trainable_variables]
    non_trainable = [tf.convert_to_tensor(v.value) for v in model.non_trainable_variables]
    shapes = [v.shape for v in values]
    sizes = [s.num_elements() for s in shapes]
    inputs = tf.constant(x)

    @tf.function
    def gradient(flat):
        with tf.GradientTape() as tape:
            tape.watch(flat)
            parts = [tf.reshape(p, s) for p, s in zip(tf.split(flat, sizes), shapes)]
            logits, _ = model.stateless_call(parts, non_trainable, inputs, training=training)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        return tape.gradient(loss, flat)

    flat = tf.concat([tf.reshape(v, [-1]) for v in values], axis=0)
    n = int(flat.shape[0])
    hessian = np.empty((n, n))
    for j in range(n):
        step = tf.one_hot(j, n, dtype=flat.dtype) * epsilon
        hessian[:, j] = (gradient(flat + step) - gradient(flat - step)).numpy() / (2.0 * epsilon)
    return 0.5 * (hessian + hessian.T)


def _block(model, name):
    """The positions of layer `name`'s weights in the flat vector of the model's trainable variables."""
    sizes = [int(np.prod(v.shape)) for v in model.trainable_variables]
    offsets = np.cumsum([0] + sizes)
    chosen = {id(v) for v in model.get_layer(name).trainable_variables}
    return np.concatenate(
        [np.arange(offsets[i], offsets[i + 1]) for i, v in enumerate(model.trainable_variables) if id(v) in chosen]
    )


def _train(kind):
    """A network trained for 8 steps with a per-layer `SharpnessCallback` per mode, measuring at the last step."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((6,), dtype="float64"),
            keras.layers.Dense(12, dtype="float64", name="dense"),
            NORMALIZATIONS[kind](),
            keras.layers.Activation("tanh", dtype="float64"),
            keras.layers.Dense(3, dtype="float64", trainable=False, name="logits"),
        ]
    )
    model.compile(keras.optimizers.Adam(3e-2), LOSS)
    x, labels = _data()
    modes = [mode for case, mode in CASES if case == kind]
    # Graph-mode products here; the block tests below run the default XLA ones.
    callbacks = {
        mode: SharpnessCallback(
            (x, labels),
            every_n_steps=STEPS,
            blocks=True,
            preconditioned=False,
            tolerance=1e-12,
            max_iterations=200,
            warm_start=False,
            mode=mode,
            jit_compile=False,
        )
        for mode in modes
    }
    model.fit(x, labels, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=list(callbacks.values()))
    hessians = {mode: _dense_hessian(model, x, labels, training=mode == "train") for mode in modes}
    return dict(model=model, data=(x, labels), callbacks=callbacks, hessians=hessians)


@pytest.fixture(scope="module")
def trained():
    """{normalization: what `_train` returns}, each network trained once, when a test first needs it."""
    networks = {}

    def get(kind):
        if kind not in networks:
            networks[kind] = _train(kind)
        return networks[kind]

    return get


@pytest.mark.parametrize("kind, mode", CASES)
@pytest.mark.slow
def test_normalization_block_sharpness_and_trace_are_those_of_the_dense_diagonal_block(trained, kind, mode):
    network = trained(kind)
    model, data, hessian = network["model"], network["data"], network["hessians"][mode]
    block = _block(model, "norm")
    exact = hessian[np.ix_(block, block)]
    top = sharpness(model, data, loss=LOSS, variables="norm", mode=mode, tolerance=1e-12, max_iterations=len(block))
    assert top == pytest.approx(np.linalg.eigvalsh(exact)[-1], rel=1e-7, abs=0)
    trace = hessian_trace(model, data, loss=LOSS, variables="norm", mode=mode, num_products=3 * len(block))
    assert trace.estimate == pytest.approx(np.trace(exact), rel=1e-7, abs=0)


@pytest.mark.parametrize("kind, mode", CASES)
def test_per_layer_callback_logs_the_dense_hessian_sharpness_of_every_block_at_the_final_weights(trained, kind, mode):
    network = trained(kind)
    model, hessian = network["model"], network["hessians"][mode]
    callback = network["callbacks"][mode]
    record = callback.records[-1]
    assert len(callback.records) == 1 and record.step == STEPS == int(model.optimizer.iterations)
    assert record.values["sharpness"] == pytest.approx(np.linalg.eigvalsh(hessian)[-1], rel=1e-7, abs=0)
    assert "sharpness/logits" not in record.values  # frozen: not a layer of `per_layer=True`
    for name in ("dense", "norm"):
        block = _block(model, name)
        exact = np.linalg.eigvalsh(hessian[np.ix_(block, block)])[-1]
        assert record.values[f"sharpness/{name}"] == pytest.approx(exact, rel=1e-7, abs=0), name


def test_batchnorm_moving_statistics_give_another_hessian_than_the_batch_statistics(trained):
    network = trained("batch_norm")
    layer = network["model"].get_layer("norm")
    # 8 updates at momentum 0.5: far from the initial 0 and 1.
    assert np.max(np.abs(layer.moving_mean.numpy())) > 0.1
    assert np.max(np.abs(layer.moving_variance.numpy() - 1.0)) > 0.1
    train, inference = network["hessians"]["train"], network["hessians"]["inference"]
    assert np.linalg.norm(train - inference) > 0.1 * np.linalg.norm(train)  # measured: 0.89
    block = _block(network["model"], "norm")
    tops = [np.linalg.eigvalsh(h[np.ix_(block, block)])[-1] for h in (train, inference)]
    # Measured 23 %: 10⁸ times the tolerance of the tests above, which a mixed-up mode therefore fails.
    assert abs(tops[0] - tops[1]) > 1e-2 * tops[0]
