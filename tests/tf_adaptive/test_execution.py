"""The optimizers under every way TensorFlow runs them: tf.function, XLA, fit,
MirroredStrategy, mixed precision, sparse gradients, saving and checkpoints."""

import keras
import numpy as np
import pytest

from tests.tf_adaptive.cases import CASES, ONE_PER_CLASS, gradient_stream, initial_values

if keras.backend.backend() != "tensorflow":
    pytest.skip("TensorFlow-only execution tests", allow_module_level=True)

import tensorflow as tf

by_id = pytest.mark.parametrize("case", ONE_PER_CLASS, ids=lambda c: c.id)
# `fit` under MirroredStrategy costs 8-15 s an optimizer (the distributed train step is traced twice). Every
# optimizer runs under the strategy in `test_custom_loop_under_mirrored_strategy_matches_one_device`; `fit`'s
# own path (slots created in the strategy's scope by `fit`, the loss and gradients reduced by Keras) runs on
# one optimizer of each kind of state: a diagonal second moment, a rectification that depends on the step,
# factored moments, clipping by a norm of the whole gradient and by coordinate, variance adaptation, signs.
FIT_UNDER_STRATEGY = ("Adam", "RAdam", "Adafactor", "GClip", "ACClip", "MSVAG", "MSSD")
by_kind_of_state = pytest.mark.parametrize(
    "case", [c for c in ONE_PER_CLASS if c.id in FIT_UNDER_STRATEGY], ids=lambda c: c.id
)


def _apply_stream(case, run, steps=30):
    optimizer = case.make()
    variables = [keras.Variable(v) for v in initial_values()]
    optimizer.build(variables)
    step = run(lambda grads: optimizer.apply(grads, variables))
    for grads in gradient_stream(steps):
        step([tf.constant(g) for g in grads])
    return [v.numpy() for v in variables]


EXECUTION_MODES = {
    "tf.function": tf.function,
    "xla": lambda fn: tf.function(fn, jit_compile=True),
}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("mode", EXECUTION_MODES)
@pytest.mark.slow
def test_graph_and_xla_match_eager(case, mode):
    eager = _apply_stream(case, lambda fn: fn)
    compiled = _apply_stream(case, EXECUTION_MODES[mode])
    for a, b in zip(eager, compiled):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)


def _regression_data(n=32):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = (x @ rng.normal(size=(4, 3)) + 0.3 * rng.standard_t(3, size=(n, 3))).astype("float32")
    return x, y


def _linear_model():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.set_weights(initial_values())
    return model


def _fit(case, steps, jit_compile, strategy=None, **optimizer_overrides):
    x, y = _regression_data()
    with strategy.scope() if strategy else _no_scope():
        model = _linear_model()
        model.compile(optimizer=case.make(**optimizer_overrides), loss="mse", jit_compile=jit_compile)
    # `steps` full-batch steps in one epoch (an epoch per step costs more in Keras's epoch work than the step).
    model.fit(tf.data.Dataset.from_tensors((x, y)).repeat(), steps_per_epoch=steps, epochs=1, shuffle=False, verbose=0)
    return model


class _no_scope:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@by_id
def test_fit_with_jit_compile_matches_an_eager_loop(case):
    x, y = _regression_data()
    model = _linear_model()
    optimizer = case.make()
    for _ in range(15):
        with tf.GradientTape() as tape:
            loss = keras.losses.MeanSquaredError()(y, model(x))
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
    fitted = _fit(case, 15, jit_compile=True)
    for a, b in zip(model.get_weights(), fitted.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)


@by_kind_of_state
@pytest.mark.slow
def test_mirrored_strategy_on_two_devices_matches_one_device(case):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    single = _fit(case, 10, jit_compile=False)
    mirrored = _fit(case, 10, jit_compile=False, strategy=strategy)
    for a, b in zip(single.get_weights(), mirrored.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


@by_id
def test_custom_loop_under_mirrored_strategy_matches_one_device(case):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    grads_stream = list(gradient_stream(10))
    with strategy.scope():
        variables = [keras.Variable(v) for v in initial_values()]
        optimizer = case.make()
        # Slots must exist before the first distributed step.
        optimizer.build(variables)

    @tf.function
    def step(grads):
        def replica_step(grads):
            # Each replica holds half of the summed gradient.
            optimizer.apply([g / 2.0 for g in grads], variables)

        strategy.run(replica_step, args=(grads,))

    for grads in grads_stream:
        step([tf.constant(g) for g in grads])
    expected = _apply_stream(case, lambda fn: fn, steps=10)
    for variable, value in zip(variables, expected):
        np.testing.assert_allclose(variable.numpy(), value, rtol=1e-5, atol=1e-6)


@by_id
def test_mixed_float16_trains_through_the_loss_scale_optimizer(case):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        x, y = _regression_data()
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        model.compile(optimizer=case.make(), loss="mse")
        history = model.fit(x, y, batch_size=8, epochs=5, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(model.optimizer.inner_optimizer, case.cls)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


@by_id
def test_sparse_embedding_gradients_match_the_dense_equivalent(case):
    rng = np.random.default_rng(5)
    table = rng.normal(size=(10, 4)).astype("float32")
    sparse_table, dense_table = keras.Variable(table), keras.Variable(table)
    sparse_optimizer, dense_optimizer = case.make_for_any_shapes(), case.make_for_any_shapes()
    embedding_layer = keras.layers.Embedding(10, 4)
    embedding_layer.build((None,))

    for _ in range(10):
        ids = tf.constant(rng.integers(0, 10, size=6))
        target = tf.constant(rng.normal(size=(6, 4)).astype("float32"))
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum((tf.gather(sparse_table.value, ids) - target) ** 2)
        grad = tape.gradient(loss, sparse_table.value)
        assert isinstance(grad, tf.IndexedSlices)
        sparse_optimizer.apply([grad], [sparse_table])
        dense_optimizer.apply([tf.convert_to_tensor(grad)], [dense_table])
    np.testing.assert_allclose(sparse_table.numpy(), dense_table.numpy(), rtol=1e-6, atol=1e-7)


@by_id
def test_embedding_model_trains_with_sparse_updates_under_fit(case):
    rng = np.random.default_rng(6)
    ids = rng.integers(0, 50, size=(64, 3))
    y = rng.normal(size=(64, 1)).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((3,), dtype="int32"),
            keras.layers.Embedding(50, 4),
            keras.layers.Flatten(),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer=case.make_for_any_shapes(), loss="mse", jit_compile=True)
    history = model.fit(ids, y, batch_size=16, epochs=3, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


@by_id
def test_keras_file_keeps_class_config_and_slots(case, tmp_path):
    model = _fit(case, 3, jit_compile=False)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.optimizer) is case.cls
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert len(loaded.optimizer.variables) == len(model.optimizer.variables)
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


@by_id
@pytest.mark.slow
def test_training_resumed_from_a_saved_model_continues_bit_exactly(case, tmp_path):
    x, y = _regression_data()
    uninterrupted = _fit(case, 8, jit_compile=False)
    first_half = _fit(case, 4, jit_compile=False)
    path = str(tmp_path / "half.keras")
    first_half.save(path)
    resumed = keras.models.load_model(path)
    resumed.fit(x, y, batch_size=len(x), epochs=4, shuffle=False, verbose=0)
    for a, b in zip(uninterrupted.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(b, a)


@by_id
@pytest.mark.slow
def test_tf_train_checkpoint_restores_the_optimizer_exactly(case, tmp_path):
    stream = list(gradient_stream(8))
    variables = [keras.Variable(v) for v in initial_values()]
    optimizer = case.make()
    optimizer.build(variables)
    for grads in stream[:4]:
        optimizer.apply(grads, variables)
    prefix = tf.train.Checkpoint(optimizer=optimizer, variables=variables).write(str(tmp_path / "ckpt"))
    for grads in stream[4:]:
        optimizer.apply(grads, variables)

    restored_variables = [keras.Variable(np.zeros_like(v)) for v in initial_values()]
    restored = case.make()
    restored.build(restored_variables)
    tf.train.Checkpoint(optimizer=restored, variables=restored_variables).read(prefix).assert_consumed()
    for grads in stream[4:]:
        restored.apply(grads, restored_variables)
    for a, b in zip(variables, restored_variables):
        np.testing.assert_array_equal(b.numpy(), a.numpy())


@by_id
def test_gradient_accumulation_applies_the_mean_gradient(case):
    grads_a, grads_b = list(gradient_stream(2))
    accumulating = case.make(gradient_accumulation_steps=2)
    plain = case.make()
    acc_vars = [keras.Variable(v) for v in initial_values()]
    plain_vars = [keras.Variable(v) for v in initial_values()]
    accumulating.apply(grads_a, acc_vars)
    accumulating.apply(grads_b, acc_vars)
    plain.apply([(a + b) / 2 for a, b in zip(grads_a, grads_b)], plain_vars)
    for a, b in zip(plain_vars, acc_vars):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-6, atol=1e-7)
