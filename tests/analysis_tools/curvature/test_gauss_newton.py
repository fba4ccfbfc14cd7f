"""The GGN, empirical-Fisher and Fisher operators against dense references built independently in float64.

References, none of which uses the operators' product:

* GGN: Jᵀ (∇²_f L) J, with J = ∂f/∂θ from `tf.GradientTape.jacobian` of the
  outputs of all probe examples and ∇²_f L the Hessian of the mean loss in
  those outputs (a Jacobian of its gradient).
* Empirical Fisher: (1/N) Σ_n g_n g_nᵀ from per-example gradients, one tape
  per example.
* Fisher: equal to the GGN for softmax and sigmoid cross-entropy from logits
  and for squared error (Martens 2020, §9.2); the Monte-Carlo average over
  seeds lies within 3 standard errors of it.

Test nets: an MLP with MSE (and an L2 penalty, whose Hessian 2λI is added),
a CNN with softmax cross-entropy, and a two-block transformer with softmax
cross-entropy on every position.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import analysis_tools
from analysis_tools.curvature.gauss_newton import (
    EmpiricalFisherOperator,
    FisherOperator,
    GGNOperator,
    curvature_operator,
)

DTYPE = "float64"


def _mlp(loss="mse", outputs=3):
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((4,), dtype=DTYPE),
            keras.layers.Dense(5, activation="tanh", kernel_regularizer=keras.regularizers.L2(0.1), dtype=DTYPE),
            keras.layers.Dense(outputs, dtype=DTYPE),
        ]
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4))
    y = rng.normal(size=(8, outputs)) if loss == "mse" else rng.integers(0, 2, (8, outputs)).astype("float64")
    return model, (x, y), loss


def _cnn():
    keras.utils.set_random_seed(2)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2), dtype=DTYPE),
            keras.layers.Conv2D(3, 3, activation="softplus", dtype=DTYPE),
            keras.layers.Flatten(dtype=DTYPE),
            keras.layers.Dense(4, dtype=DTYPE),
        ]
    )
    rng = np.random.default_rng(1)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype=DTYPE)
    return model, (rng.normal(size=(6, 6, 6, 2)), rng.integers(0, 4, 6)), loss


class _Block(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.attention = keras.layers.MultiHeadAttention(2, 3, dtype=self.dtype_policy)
        self.norm = keras.layers.LayerNormalization(dtype=self.dtype_policy)
        self.dense = keras.layers.Dense(6, activation="gelu", dtype=self.dtype_policy)

    def call(self, x):
        x = self.norm(x + self.attention(x, x, use_causal_mask=True))
        return x + self.dense(x)


def _transformer():
    keras.utils.set_random_seed(3)
    tokens = keras.Input((5,), dtype="int32")
    hidden = keras.layers.Embedding(7, 6, dtype=DTYPE)(tokens)
    hidden = _Block(dtype=DTYPE)(_Block(dtype=DTYPE)(hidden))
    model = keras.Model(tokens, keras.layers.Dense(7, dtype=DTYPE)(hidden))
    rng = np.random.default_rng(2)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype=DTYPE)
    return model, (rng.integers(0, 7, (4, 5)).astype("int32"), rng.integers(0, 7, (4, 5))), loss


NETS = {"mlp_mse": _mlp, "cnn_softmax": _cnn, "transformer_softmax": _transformer}


def _dense(operator):
    return np.stack([operator.matvec(e).numpy() for e in np.eye(operator.dimension)], axis=1)


def _flat_model(model):
    """(θ₀ flat, f(θ) → outputs on x for a flat θ): the model as a function of one flat vector."""
    variables = model.trainable_variables
    shapes = [tuple(v.shape) for v in variables]
    sizes = [int(np.prod(s)) for s in shapes]
    start = tf.concat([tf.reshape(v, [-1]) for v in variables], 0)

    def call(flat, x):
        values = [tf.reshape(p, s) for p, s in zip(tf.split(flat, sizes), shapes)]
        outputs, _, losses = model.stateless_call(
            values, [v.value for v in model.non_trainable_variables], x, return_losses=True, training=True
        )
        return outputs, (tf.add_n(losses) if losses else tf.zeros([], flat.dtype))

    return start, call


def _loss_fn(loss):
    return keras.losses.get(loss) if isinstance(loss, str) else loss


def _ggn_reference(model, x, y, loss):
    start, call = _flat_model(model)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(start)
        outputs, regularization = call(start, x)
    jacobian = tf.reshape(tape.jacobian(outputs, start), [-1, start.shape[0]]).numpy()
    with tf.GradientTape() as outer:
        f = tf.constant(outputs.numpy())
        outer.watch(f)
        with tf.GradientTape() as inner:
            inner.watch(f)
            value = tf.reduce_mean(_loss_fn(loss)(y, f))
        gradient = tf.reshape(inner.gradient(value, f), [-1])
    loss_hessian = outer.jacobian(gradient, f).numpy().reshape(gradient.shape[0], -1)
    with tf.GradientTape() as outer:
        outer.watch(start)
        with tf.GradientTape() as inner:
            inner.watch(start)
            _, regularization = call(start, x)
        r_gradient = inner.gradient(regularization, start, unconnected_gradients="zero")
    r_hessian = outer.jacobian(r_gradient, start, unconnected_gradients="zero").numpy()
    return jacobian.T @ loss_hessian @ jacobian + r_hessian, r_hessian


def _empirical_fisher_reference(model, x, y, loss):
    start, call = _flat_model(model)
    gradients = []
    for n in range(len(x)):
        with tf.GradientTape() as tape:
            tape.watch(start)
            outputs, _ = call(start, x[n : n + 1])
            value = tf.reduce_mean(_loss_fn(loss)(y[n : n + 1], outputs))
        gradients.append(tape.gradient(value, start).numpy())
    gradients = np.stack(gradients)
    return gradients.T @ gradients / len(x)


def _relative(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.mark.parametrize("net", NETS)
@pytest.mark.slow
def test_ggn_equals_the_dense_jacobian_reference(net):
    model, (x, y), loss = NETS[net]()
    operator = GGNOperator(model, (x, y), loss=loss, batch_size=3)  # several batches, a ragged last one
    dense = _dense(operator)
    reference, r_hessian = _ggn_reference(model, x, y, loss)
    assert _relative(dense, reference) < 1e-8
    np.testing.assert_allclose(dense, dense.T, atol=1e-12 * np.abs(dense).max())
    assert np.linalg.eigvalsh(dense).min() > -1e-10 * np.abs(dense).max()  # convex losses: PSD
    if net == "mlp_mse":
        assert np.abs(r_hessian).max() == pytest.approx(0.2)  # the L2 penalty's 2λ entered


@pytest.mark.parametrize("net", NETS)
@pytest.mark.slow
def test_empirical_fisher_equals_per_example_gradients(net):
    model, (x, y), loss = NETS[net]()
    operator = EmpiricalFisherOperator(model, (x, y), loss=loss, batch_size=3, include_regularization=False)
    dense = _dense(operator)
    assert _relative(dense, _empirical_fisher_reference(model, x, y, loss)) < 1e-8
    # It is not the GGN (Kunstner et al. 2019): at random weights they differ by far more than rounding.
    ggn = _dense(GGNOperator(model, (x, y), loss=loss, include_regularization=False))
    assert _relative(dense, ggn) > 1e-2


@pytest.mark.parametrize("net,loss", [("transformer_softmax", None), ("mlp_mse", "mse"), ("mlp_bce", "bce")])
@pytest.mark.slow
def test_fisher_draws_average_to_the_ggn_within_three_standard_errors(net, loss):
    if net == "mlp_bce":
        model, (x, y), _ = _mlp(loss="bce")
        loss = keras.losses.BinaryCrossentropy(from_logits=True, dtype=DTYPE)
    else:
        model, (x, y), loss = NETS[net]()
    v = np.random.default_rng(5).normal(size=sum(int(np.prod(w.shape)) for w in model.trainable_variables))
    ggn = GGNOperator(model, (x, y), loss=loss, batch_size=4).matvec(v).numpy()
    draws = np.stack(
        [
            FisherOperator(model, (x, y), loss=loss, batch_size=4, samples=4, label_seed=seed, jit_compile=False)
            .matvec(v)
            .numpy()
            for seed in range(8)
        ]
    )
    # Scalar read-outs wᵀ F̂ v (w = v and two random directions), each a mean over 8 independent draws
    # with its standard error; and the whole vector: E‖mean − G v‖² is the sum of the coordinates' variances.
    directions = np.stack([v] + [np.random.default_rng(6 + i).normal(size=v.size) for i in range(2)])
    readouts = draws @ directions.T
    z = (readouts.mean(0) - directions @ ggn) / (readouts.std(0, ddof=1) / np.sqrt(len(draws)))
    assert np.abs(z).max() < 3.0, z
    spread = np.sqrt(np.sum(draws.var(0, ddof=1)) / len(draws))
    assert np.linalg.norm(draws.mean(0) - ggn) < 3.0 * spread
    assert spread > 1e-6 * np.linalg.norm(ggn)  # a draw is random, not the GGN itself


@pytest.mark.slow
def test_fisher_is_a_fixed_operator_for_a_seed_and_symmetric_psd():
    model, data, loss = _cnn()
    operator = FisherOperator(model, data, loss=loss, samples=2, label_seed=7)
    dense = _dense(operator)
    np.testing.assert_array_equal(dense, _dense(operator))
    np.testing.assert_allclose(dense, dense.T, atol=1e-12 * np.abs(dense).max())
    assert np.linalg.eigvalsh(dense).min() > -1e-10 * np.abs(dense).max()
    assert not np.allclose(dense, _dense(FisherOperator(model, data, loss=loss, samples=2, label_seed=8)))


@pytest.mark.parametrize("curvature", ["ggn", "empirical_fisher", "fisher"])
def test_preconditioned_composition_has_the_eigenvalues_of_the_dense_p_inverse_a(curvature):
    model, data, loss = _cnn()
    operator = curvature_operator(model, data, curvature=curvature, loss=loss)
    p = [np.random.default_rng(i).uniform(0.5, 2.0, v.shape) for i, v in enumerate(model.trainable_variables)]
    operator.set_preconditioner(p)
    composed = np.stack([operator.preconditioned_matvec(e).numpy() for e in np.eye(operator.dimension)], axis=1)
    p_flat = np.concatenate([a.ravel() for a in p])
    expected = np.sort(np.linalg.eigvals(_dense(operator) / p_flat[:, None]).real)
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(composed)), expected, atol=1e-9 * expected.max())


@pytest.mark.slow
def test_a_block_of_the_ggn_is_the_dense_block():
    model, (x, y), loss = _transformer()
    operator = GGNOperator(model, (x, y), loss=loss)
    layer = model.layers[2]  # the first transformer block
    block = operator.block(layer.name)
    positions = np.concatenate(
        [
            np.arange(o, o + s)
            for o, s, v in zip(np.cumsum([0] + operator.sizes)[:-1], operator.sizes, operator.variables)
            if any(v is w for w in layer.trainable_variables)
        ]
    )
    reference, _ = _ggn_reference(model, x, y, loss)
    assert _relative(_dense(block), reference[np.ix_(positions, positions)]) < 1e-8
    own = GGNOperator(model, (x, y), loss=loss, variables=layer.name)
    assert _relative(_dense(own), reference[np.ix_(positions, positions)]) < 1e-8


def test_lanczos_takes_the_ggn_and_its_top_eigenvalue_is_the_dense_one():
    model, data, loss = _cnn()
    operator = GGNOperator(model, data, loss=loss)
    reference, _ = _ggn_reference(model, *data, loss)
    top = analysis_tools.sharpness(operator, tolerance=1e-10)
    assert top == pytest.approx(np.linalg.eigvalsh(reference).max(), rel=1e-8)


def test_fisher_refuses_a_loss_that_is_not_a_likelihood_and_bad_samples():
    model, data, _ = _mlp()
    with pytest.raises(ValueError, match="predictive distribution.*mean_absolute_error"):
        FisherOperator(model, data, loss="mean_absolute_error")
    smoothed = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    with pytest.raises(ValueError, match="label smoothing"):
        FisherOperator(model, (data[0], np.eye(3)[[0, 1, 2, 0, 1, 2, 0, 1]]), loss=smoothed)
    with pytest.raises(ValueError, match="`samples` must be an integer >= 1"):
        FisherOperator(model, data, loss="mse", samples=0)
    with pytest.raises(ValueError, match="`curvature` must be one of"):
        curvature_operator(model, data, curvature="hessain")


@pytest.mark.slow
def test_every_curvature_function_takes_curvature():
    model, data, loss = _cnn()
    reference, _ = _ggn_reference(model, *data, loss)
    top = analysis_tools.sharpness(model, data, loss=loss, curvature="ggn", tolerance=1e-10, max_iterations=80)
    assert top == pytest.approx(np.linalg.eigvalsh(reference).max(), rel=1e-8)
    trace = analysis_tools.hessian_trace(model, data, loss=loss, curvature="ggn", num_products=reference.shape[0] + 2)
    assert trace.estimate == pytest.approx(np.trace(reference), rel=1e-8)  # Hutch++ with n+ products: exact
    operator = GGNOperator(model, data, loss=loss)
    assert analysis_tools.sharpness(operator, curvature="ggn", tolerance=1e-10, max_iterations=80) == pytest.approx(top)
    with pytest.raises(ValueError, match="fixes its probe set, loss and options.*curvature"):
        analysis_tools.sharpness(operator, curvature="hessian")


@pytest.mark.parametrize("curvature", ["ggn", "empirical_fisher", "fisher"])
@pytest.mark.slow
def test_under_a_mirrored_strategy_each_replica_takes_its_share_and_the_operator_is_the_one_device_one(curvature):
    model, (x, y), loss = _mlp()  # with its L2 penalty, which one replica's share carries once
    v = np.random.default_rng(3).normal(size=sum(int(np.prod(w.shape)) for w in model.trainable_variables))
    single = curvature_operator(model, (x, y), curvature=curvature, loss=loss, batch_size=3)
    strategy = tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice()
    )
    if curvature == "fisher":
        # The draws follow each replica's part of a batch, so only E F̂ = G is shared: vᵀF̂v over 5 seeds.
        readouts = [
            v
            @ curvature_operator(
                model,
                (x, y),
                curvature=curvature,
                loss=loss,
                batch_size=3,
                strategy=strategy,
                samples=8,
                label_seed=seed,
                jit_compile=False,
            )
            .matvec(v)
            .numpy()
            for seed in range(5)
        ]
        expected = v @ GGNOperator(model, (x, y), loss=loss).matvec(v).numpy()
        assert abs(np.mean(readouts) - expected) < 3 * np.std(readouts, ddof=1) / np.sqrt(len(readouts))
        return
    distributed = curvature_operator(model, (x, y), curvature=curvature, loss=loss, batch_size=3, strategy=strategy)
    np.testing.assert_allclose(distributed.matvec(v).numpy(), single.matvec(v).numpy(), rtol=1e-10, atol=1e-12)
    assert distributed.examples_per_replica == [6, 2]  # batches of 3, 3, 2 padded to 4: 2 + 2 + 2 and 1 + 1 + 0


@pytest.mark.parametrize("curvature", ["ggn", "empirical_fisher", "fisher"])
@pytest.mark.slow
def test_a_bfloat16_model_gives_finite_products_near_float32(curvature):
    def build(policy):
        keras.config.set_dtype_policy(policy)
        try:
            keras.utils.set_random_seed(2)
            model = keras.Sequential(
                [
                    keras.Input((6, 6, 2)),
                    keras.layers.Conv2D(3, 3, activation="relu"),
                    keras.layers.Flatten(),
                    keras.layers.Dense(4, dtype="float32"),
                ]
            )
        finally:
            keras.config.set_dtype_policy("float32")
        return model

    rng = np.random.default_rng(1)
    data = (rng.normal(size=(6, 6, 6, 2)).astype("float32"), rng.integers(0, 4, 6))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    products = {}
    for policy in ("mixed_bfloat16", "float32"):
        operator = curvature_operator(build(policy), data, curvature=curvature, loss=loss)
        products[policy] = operator.matvec(np.ones(operator.dimension, "float32")).numpy()
    assert np.all(np.isfinite(products["mixed_bfloat16"]))
    assert np.linalg.norm(products["mixed_bfloat16"] - products["float32"]) < 0.1 * np.linalg.norm(products["float32"])
