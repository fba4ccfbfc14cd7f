"""GradientNoiseCallback inside model.fit: logs, records, TensorBoard, and training left untouched."""

import os

import keras
import numpy as np
import pytest

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


def test_callback_logs_records_and_leaves_training_bit_identical(tmp_path):
    callback = GradientNoiseCallback((_setup()[1], _setup()[2]), every_n_epochs=2, batch_size=32,
                                     num_batches=40, num_coordinates=200, log_dir=str(tmp_path))
    model, history = _fit([callback])
    reference, reference_history = _fit([])
    for a, b in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert history.history["loss"] == reference_history.history["loss"]
    assert [r.epoch for r in callback.records] == [0, 2, 4]
    assert [r.step for r in callback.records] == [0, 32, 64]
    for key in ("noise_norm_mean", "noise_norm_median", "noise_norm_max_over_median",
                "noise_full_gradient_norm", "noise_tail_index"):
        assert len(history.history[key]) == 4 and np.all(np.isfinite(history.history[key])), key
    # Epoch 1 (no measurement) carries the initial values; epoch 2 the new ones.
    assert history.history["noise_norm_mean"][0] == callback.records[0].values["noise_norm_mean"]
    assert history.history["noise_norm_mean"][1] == callback.records[1].values["noise_norm_mean"]
    record = callback.records[-1]
    assert record.counts.sum() == 40 and len(record.edges) == 31
    assert 0 < record.tail_index.alpha <= 2.0
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(tmp_path))


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
    with pytest.raises(ValueError, match="tail_index_method"):
        GradientNoiseCallback(data, tail_index_method="pickands")


def test_a_model_without_trainable_variables_is_refused_at_train_begin():
    model, x, y = _setup()
    model.trainable = False
    callback = GradientNoiseCallback((x, y), batch_size=32, num_batches=4, at_start=False)
    with pytest.raises(ValueError, match="no trainable variables"):
        model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[callback])
    assert int(model.optimizer.iterations) == 0


@pytest.mark.parametrize("data", [
    lambda x, y: (x[:, :4], y),
    lambda x, y: (x, np.concatenate([y, y], axis=1)),
], ids=["inputs", "targets_to_broadcast"])
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
