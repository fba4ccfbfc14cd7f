"""What SharpnessCallback logs against the stability threshold: nothing for sign descent, the clipped
fraction for the clipping methods (Cohen et al. 2022, §2: thresholds of the frozen form)."""

import keras
import numpy as np
import pytest

import tf_adaptive
from analysis_tools import SharpnessCallback
from analysis_tools.preconditioners import clipped_fraction_of


def _problem(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    y = np.tanh(x @ rng.normal(size=(8, 2))).astype("float32")
    return x, y


def _fit(optimizer, callback, epochs=2):
    x, y = _problem()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(2)])
    model.compile(optimizer=optimizer, loss="mse")
    history = model.fit(x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0, callbacks=[callback])
    return model, history


@pytest.mark.parametrize("cls", [tf_adaptive.SSD, tf_adaptive.MSSD], ids=lambda c: c.__name__)
@pytest.mark.slow
def test_sign_descent_logs_no_threshold_and_no_ratio(cls):
    callback = SharpnessCallback(_problem(), every_n_steps=2, max_iterations=15)
    _, history = _fit(cls(learning_rate=1e-3), callback)
    assert callback.records
    for record in callback.records:
        assert "sharpness" in record.values and "preconditioned_sharpness" in record.values
        assert not {"stability_threshold", "sharpness_ratio", "clipped_fraction"} & set(record.values)
    assert "sharpness" in history.history
    assert "sharpness_ratio" not in history.history and "stability_threshold" not in history.history


@pytest.mark.parametrize("threshold, clipped", [(1e-4, True), (1e30, False)])
@pytest.mark.parametrize("cls", [tf_adaptive.CClip, tf_adaptive.GClip], ids=lambda c: c.__name__)
@pytest.mark.slow
def test_clipping_methods_log_the_clipped_fraction_beside_the_ratio(cls, threshold, clipped):
    callback = SharpnessCallback(_problem(), every_n_steps=2, max_iterations=20)
    model, history = _fit(cls(learning_rate=0.05, threshold=threshold), callback)
    record = callback.measure()
    fraction = clipped_fraction_of(model.optimizer, model.trainable_variables)
    assert record.values["clipped_fraction"] == fraction
    assert history.history["clipped_fraction"][-1] == callback.records[-2].values["clipped_fraction"]
    assert record.values["sharpness_ratio"] == pytest.approx(
        record.values["preconditioned_sharpness"] / record.values["stability_threshold"]
    )
    if clipped:
        assert fraction > 0.5
        assert record.values["preconditioned_sharpness"] < record.values["sharpness"]
    else:
        # Nothing clipped: P = 1, so the ratio is λ1(H) against the unclipped threshold.
        assert fraction == 0.0
        assert record.values["preconditioned_sharpness"] == pytest.approx(record.values["sharpness"], rel=1e-3)


@pytest.mark.slow
def test_acclip_logs_its_clipped_fraction_and_adam_none():
    callback = SharpnessCallback(_problem(), every_n_steps=2, max_iterations=15, raw=False)
    model, _ = _fit(tf_adaptive.ACClip(learning_rate=0.1), callback)
    # The last measurement ran at the end of the last epoch, after the last update.
    assert callback.records[-1].values["clipped_fraction"] == clipped_fraction_of(
        model.optimizer, model.trainable_variables
    )
    callback = SharpnessCallback(_problem(), every_n_steps=2, max_iterations=15, raw=False)
    _fit(tf_adaptive.Adam(learning_rate=1e-2), callback)
    assert "clipped_fraction" not in callback.records[-1].values
    assert "sharpness_ratio" in callback.records[-1].values
