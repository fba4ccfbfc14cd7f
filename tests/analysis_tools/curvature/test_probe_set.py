"""The probe set at scale: streamed in the graph, split across replicas, XLA-compiled per batch.

Oracles: the same operator on one device, without XLA, and on the arrays the
dataset was made from; exact Lanczos (as many steps as the dimension) on a
small network so that eigenvalues compare to rounding.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import analysis_tools
import tf_adaptive
from analysis_tools import HessianOperator, SharpnessCallback


def _data(n=45, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype("float32")
    y = rng.integers(0, 3, size=n)
    return x, y


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(6, activation="tanh", kernel_regularizer=keras.regularizers.L2(1e-3)),
            keras.layers.Dense(3),
        ]
    )
    model.compile(optimizer=tf_adaptive.Adam(0.01), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _strategy():
    # Reduction through one device, not CPU collectives: collective instance keys restart at every
    # new strategy, and a key reused in the same process with another tensor shape (here the
    # operator's vector, elsewhere in the suite a model's gradient) aborts every later collective.
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())


def _vector(operator, seed=1):
    return tf.constant(np.random.default_rng(seed).normal(size=operator.dimension))


def test_one_traced_model_whatever_the_number_of_batches():
    x, y = _data(64)
    model = _model()
    sizes = {}
    for batch_size in (64, 4):
        operator = HessianOperator(model, (x, y), batch_size=batch_size)
        trainable, non_trainable = operator._current_values()
        graph = operator._hvp.get_concrete_function(trainable, non_trainable, _vector(operator)).graph
        sizes[batch_size] = len(graph.as_graph_def().node)
        assert operator.num_batches == 64 // batch_size
    assert sizes[4] == sizes[64]


@pytest.mark.slow
def test_streamed_dataset_and_arrays_give_the_same_operator_for_any_batching():
    x, y = _data()
    model = _model()
    reference = HessianOperator(model, (x, y), jit_compile=False)
    v = _vector(reference)
    expected = reference.matvec(v).numpy()
    for batch_size in (1, 7, 45):
        arrays = HessianOperator(model, (x, y), batch_size=batch_size)
        np.testing.assert_allclose(arrays.matvec(v).numpy(), expected, rtol=1e-5, atol=1e-7)

    def generate():  # as a dataset too large for memory would arrive: one batch at a time
        for start in range(0, len(x), 10):
            yield x[start : start + 10], y[start : start + 10]

    dataset = tf.data.Dataset.from_generator(
        generate, output_signature=(tf.TensorSpec([None, 5], tf.float32), tf.TensorSpec([None], tf.int64))
    )
    streamed = HessianOperator(model, dataset)
    assert (streamed.num_examples, streamed.num_batches) == (45, 5)
    np.testing.assert_allclose(streamed.matvec(v).numpy(), expected, rtol=1e-5, atol=1e-7)
    gradient, loss = streamed.gradient()
    reference_gradient, reference_loss = reference.gradient()
    np.testing.assert_allclose(gradient.numpy(), reference_gradient.numpy(), rtol=1e-5, atol=1e-8)
    assert float(loss) == pytest.approx(float(reference_loss), rel=1e-6)


@pytest.mark.slow
def test_xla_and_graph_products_give_the_same_sharpness():
    x, y = _data()
    model = _model()
    values = {}
    for jit_compile in (False, True):
        values[jit_compile] = analysis_tools.hessian_eigenvalues(
            model, (x, y), batch_size=16, k=2, max_iterations=200, tolerance=1e-12, jit_compile=jit_compile
        ).eigenvalues.numpy()
    np.testing.assert_allclose(values[True], values[False], rtol=1e-5)


@pytest.mark.parametrize("source", ["arrays", "dataset"])
@pytest.mark.slow
def test_each_replica_processes_its_share_and_the_operator_is_the_single_device_one(source):
    x, y = _data()
    model = _model()
    single = HessianOperator(model, (x, y), batch_size=16)
    v = _vector(single)
    expected = single.matvec(v).numpy()
    strategy = _strategy()
    data = (x, y) if source == "arrays" else tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    distributed = HessianOperator(model, data, batch_size=16, strategy=strategy)
    # Float32 products summed in another order: equal to rounding.
    np.testing.assert_allclose(distributed.matvec(v).numpy(), expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
    # Batches of 16, 16 and 13 examples, each padded to 16: static shares of 8, so 8 + 8 + 8 and 8 + 8 + 5.
    assert distributed.examples_per_replica == [24, 21]
    assert single.examples_per_replica == [45]


@pytest.mark.slow
def test_sharpness_callback_under_mirrored_strategy_matches_one_device():
    x, y = _data(64)
    exact = dict(max_iterations=200, tolerance=1e-12, batch_size=16)
    strategy = _strategy()
    with strategy.scope():
        model = _model()
    callback = SharpnessCallback((x, y), every_n_steps=4, **exact)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[callback])
    record = callback.records[-1]
    assert callback._operator.examples_per_replica == [32, 32]

    single = _model()
    single.set_weights(model.get_weights())
    preconditioner = analysis_tools.preconditioner_of(model.optimizer, model.trainable_variables)
    raw = analysis_tools.hessian_eigenvalues(single, (x, y), **exact).eigenvalues[0]
    preconditioned = analysis_tools.hessian_eigenvalues(
        single, (x, y), preconditioner=preconditioner, **exact
    ).eigenvalues[0]
    assert record.values["sharpness"] == pytest.approx(float(raw), rel=1e-6)
    assert record.values["preconditioned_sharpness"] == pytest.approx(float(preconditioned), rel=1e-6)


@pytest.mark.slow
def test_gradient_noise_reference_is_the_same_under_a_strategy():
    x, y = _data(64)
    strategy = _strategy()
    with strategy.scope():
        distributed = _model()
    single = _model()
    single.set_weights(distributed.get_weights())
    results = [
        analysis_tools.gradient_noise(model, (x, y), batch_size=16, num_batches=3, seed=2)
        for model in (distributed, single)
    ]
    assert results[0].full_gradient_norm == pytest.approx(results[1].full_gradient_norm, rel=1e-6)
    np.testing.assert_allclose(results[0].norms, results[1].norms, rtol=1e-5)


@pytest.mark.slow
def test_trace_density_and_a_layer_block_under_mirrored_strategy_match_one_device():
    x, y = _data()
    model = _model()
    strategy = _strategy()
    one, split = dict(batch_size=16), dict(batch_size=16, strategy=strategy)
    # The same Rademacher vectors (same seed) on one device and split over two replicas.
    for estimator in ("hutch++", "hutchinson"):
        expected = analysis_tools.hessian_trace(model, (x, y), num_products=9, estimator=estimator, seed=3, **one)
        got = analysis_tools.hessian_trace(model, (x, y), num_products=9, estimator=estimator, seed=3, **split)
        assert got.estimate == pytest.approx(expected.estimate, rel=1e-5)
    expected = analysis_tools.curvature.spectral_density(model, (x, y), num_vectors=2, num_iterations=8, seed=4, **one)
    got = analysis_tools.curvature.spectral_density(model, (x, y), num_vectors=2, num_iterations=8, seed=4, **split)
    for a, b in zip(got.nodes, expected.nodes):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(b).max())
    layer = model.layers[-1].name
    block = HessianOperator(model, (x, y), variables=layer, **split)
    v = _vector(block)
    expected = HessianOperator(model, (x, y), variables=layer, **one).matvec(v).numpy()
    np.testing.assert_allclose(block.matvec(v).numpy(), expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
    assert block.examples_per_replica == [24, 21]  # static shares of 8 (see above)
