"""GradientNoiseCallback inside model.fit: logs, records, TensorBoard, and training left untouched."""

import glob
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_adaptive
from analysis_tools.noise.callback import GradientNoiseCallback, standardized_coordinates
from analysis_tools.noise.sampling import gradient_noise


def _setup():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((512, 8)).astype("float32")
    y = (np.sin(x[:, :1]) + 0.1 * rng.standard_normal((512, 1))).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(1)])
    model.compile(optimizer=tf_adaptive.Adam(1e-2), loss="mse")
    return model, x, y


def _fit(callbacks):
    model, x, y = _setup()
    history = model.fit(x, y, epochs=4, batch_size=32, shuffle=False, verbose=0, callbacks=callbacks)
    return model, history


@pytest.mark.slow
def test_callback_logs_records_and_leaves_training_bit_identical(tmp_path):
    callback = GradientNoiseCallback(
        (_setup()[1], _setup()[2]),
        every_n_epochs=2,
        batch_size=32,
        num_batches=40,
        num_coordinates=200,
        log_dir=str(tmp_path),
    )
    model, history = _fit([callback])
    reference, reference_history = _fit([])
    for a, b in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert history.history["loss"] == reference_history.history["loss"]
    assert [r.epoch for r in callback.records] == [0, 2, 4]
    assert [r.step for r in callback.records] == [0, 32, 64]
    for key in (
        "noise_norm_mean",
        "noise_norm_median",
        "noise_norm_max_over_median",
        "noise_full_gradient_norm",
        "noise_tail_index",
    ):
        assert len(history.history[key]) == 4 and np.all(np.isfinite(history.history[key])), key
    # Epoch 1 (no measurement) carries the initial values; epoch 2 the new ones.
    assert history.history["noise_norm_mean"][0] == callback.records[0].values["noise_norm_mean"]
    assert history.history["noise_norm_mean"][1] == callback.records[1].values["noise_norm_mean"]
    record = callback.records[-1]
    assert record.counts.sum() == 40 and len(record.edges) == 31
    assert 0 < record.tail_index.alpha <= 2.0
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(tmp_path))


@pytest.mark.slow
def test_a_measurement_is_what_gradient_noise_returns_at_those_weights():
    model, x, y = _setup()
    callback = GradientNoiseCallback((x, y), batch_size=16, num_batches=30, num_coordinates=50, seed=3)
    callback.set_model(model)
    record = callback.measure(0)
    direct = gradient_noise(model, (x, y), batch_size=16, num_batches=30, num_coordinates=50, seed=3)
    np.testing.assert_array_equal(record.norms, direct.norms)
    assert record.values["noise_norm_median"] == pytest.approx(np.median(direct.norms))


def test_standardized_coordinates_divide_each_column_by_its_median_magnitude():
    coordinates = np.array([[1.0, 10.0, 0.0], [-3.0, -30.0, 0.0], [2.0, 20.0, 0.0]])
    pooled = standardized_coordinates(coordinates)
    np.testing.assert_allclose(pooled, [0.5, 0.5, -1.5, -1.5, 1.0, 1.0])


def test_bad_arguments_are_refused():
    data = (np.zeros((4, 1)), np.zeros((4, 1)))
    with pytest.raises(ValueError, match="every_n_epochs"):
        GradientNoiseCallback(data, every_n_epochs=0)
    with pytest.raises(ValueError, match="num_batches"):
        GradientNoiseCallback(data, num_batches=1)
    with pytest.raises(ValueError, match="tail_index_estimator"):
        GradientNoiseCallback(data, tail_index_estimator="pickands")
    with pytest.raises(ValueError, match="one of `every_n_epochs` and `every_n_steps`"):
        GradientNoiseCallback(data, every_n_epochs=1, every_n_steps=10)
    with pytest.raises(ValueError, match="every_n_steps"):
        GradientNoiseCallback(data, every_n_steps=0)


def test_a_model_without_trainable_variables_is_refused_at_train_begin():
    model, x, y = _setup()
    model.trainable = False
    callback = GradientNoiseCallback((x, y), batch_size=32, num_batches=4, at_start=False)
    with pytest.raises(ValueError, match="no trainable variables"):
        model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[callback])
    assert int(model.optimizer.iterations) == 0


@pytest.mark.parametrize(
    "data",
    [
        lambda x, y: (x[:, :4], y),
        lambda x, y: (x, np.concatenate([y, y], axis=1)),
    ],
    ids=["inputs", "targets_to_broadcast"],
)
def test_data_that_does_not_fit_the_model_is_refused_at_train_begin(data):
    # Without `at_start`, nothing else would look at the data before the first epoch ends.
    model, x, y = _setup()
    callback = GradientNoiseCallback(data(x, y), batch_size=32, num_batches=4, at_start=False)
    with pytest.raises(ValueError, match="the callback's `data`"):
        model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[callback])
    assert int(model.optimizer.iterations) == 0


def test_degenerate_noise_coordinates_warn_and_log_no_tail_index():
    # At zero weights only the output bias has a gradient, 2 mean(−y) over the batch; with targets in
    # {−1, 0, 1} and batches of all examples but one it takes 3 values: 20 pooled samples, 3 distinct.
    model, x, y = _setup()
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    discrete = np.sign(np.round(y))
    callback = GradientNoiseCallback((x[:64], discrete[:64]), batch_size=63, num_batches=20, seed=0)
    with pytest.warns(UserWarning, match="No noise tail index at epoch 0"):
        callback.set_model(model)
        callback.on_train_begin()
    assert "noise_tail_index" not in callback.records[0].values


def _summary_steps(log_dir, tag):
    steps = []
    for path in glob.glob(os.path.join(log_dir, "events.out.tfevents.*")):
        steps += [
            event.step
            for event in tf.compat.v1.train.summary_iterator(path)
            for value in event.summary.value
            if value.tag == tag
        ]
    return sorted(steps)


@pytest.mark.slow
def test_every_n_steps_measures_on_the_optimizer_step_clock_and_tensorboard_uses_it(tmp_path):
    # 512 examples in batches of 32: 16 steps an epoch. Every 10 steps: at the start of steps 11, 21 and
    # 31 (the weights after 10, 20, 30 updates); the end of epoch 2 (32 updates) is not a multiple.
    model, x, y = _setup()
    callback = GradientNoiseCallback(
        (x, y), every_n_steps=10, batch_size=32, num_batches=8, num_coordinates=0, log_dir=str(tmp_path)
    )
    history = model.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0, callbacks=[callback])
    assert [r.step for r in callback.records] == [0, 10, 20, 30]
    assert [r.epoch for r in callback.records] == [0, 0, 1, 1]
    assert history.history["noise_scale"] == [
        callback.records[1].values["noise_scale"],
        callback.records[3].values["noise_scale"],
    ]
    assert _summary_steps(str(tmp_path), "noise_scale") == [0, 10, 20, 30]
    # Epoch-scheduled: TensorBoard is indexed by the optimizer step too (epochs 0, 1, 2 = steps 0, 16, 32).
    epochs = GradientNoiseCallback(
        (x, y), every_n_epochs=1, batch_size=32, num_batches=8, num_coordinates=0, log_dir=str(tmp_path / "epochs")
    )
    _fit([epochs])
    assert _summary_steps(str(tmp_path / "epochs"), "noise_scale") == [0, 16, 32, 48, 64]


@pytest.mark.slow
def test_the_gradient_functions_are_traced_once_across_measurements_and_fits():
    model, x, y = _setup()
    callback = GradientNoiseCallback((x, y), every_n_epochs=1, batch_size=32, num_batches=8, num_coordinates=4)
    model.fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[callback])
    sampler = callback._sampler
    model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[callback])
    assert callback._sampler is sampler and len(callback.records) == 5
    assert sampler.noise.experimental_get_tracing_count() == 1
    ((_, full_gradient),) = sampler._full_gradients.values()
    assert full_gradient._function.experimental_get_tracing_count() == 1
    # A change of trainable variables between fits builds a new sampler, over the variables now trained.
    model.layers[0].trainable = False
    model.compile(optimizer=tf_adaptive.Adam(1e-2), loss="mse")
    model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[callback])
    assert callback._sampler is not sampler
    assert [id(v) for v in callback._sampler.variables] == [id(v) for v in model.trainable_variables]
    assert set(callback.records[-1].values) == set(callback.records[0].values)
