"""`analysis_tools.updates.callback`: the update law Δθ/η measured inside `model.fit`.

Zhang and Ziyin, "On the Distributional Properties of Adaptive Gradients"
(UAI 2021): Theorem 1 and the EMA approximation (Eq. 12), against the
updates of a model trained by `model.fit`.
"""

import glob
import os

import keras
import numpy as np
import pytest

import tf_adaptive
from analysis_tools.updates.callback import UpdateDistributionCallback, reference_law_of
from analysis_tools.updates.goodness_of_fit import ks_statistic
from analysis_tools.updates.law import AdaptiveUpdate
from analysis_tools.updates.moments import effective_sample_size

NUM_WEIGHTS = 20_000


def _adagrad(learning_rate=1.0):
    """The simple-average form of Theorem 1, up to the √t of Adagrad's sum."""
    return tf_adaptive.Adagrad(learning_rate=learning_rate, epsilon=0.0, initial_accumulator_value=0.0)


def _adam():
    return tf_adaptive.Adam(learning_rate=0.1, beta_1=0.0, beta_2=0.9, epsilon=0.0)


# --------------------------------------------------------------- model.fit
def _mean_output(y_true, y_pred):
    return keras.ops.mean(y_pred)


def _linear_fit(optimizer, steps, callbacks, seed=0, **compile_kwargs):
    """A bias-free Dense(1) on z ~ N(0, I) with loss mean(y_pred), batch size 1: ∇w = z exactly."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(steps, NUM_WEIGHTS)).astype("float32")
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((NUM_WEIGHTS,)),
            keras.layers.Dense(1, use_bias=False, name="dense"),
        ]
    )
    model.compile(optimizer=optimizer, loss=_mean_output, **compile_kwargs)
    history = model.fit(
        z,
        np.zeros((steps, 1), "float32"),
        batch_size=1,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=callbacks,
    )
    return model, history, z


def test_adagrad_updates_in_fit_follow_theorem_1():
    callback = UpdateDistributionCallback(steps=10)
    _, history, _ = _linear_fit(_adagrad(learning_rate=0.05), 10, [callback])
    assert callback.steps == list(range(1, 11))
    values = callback.values["dense"]
    assert len(values) == 10 and values[0].shape == (NUM_WEIGHTS,)
    # Adagrad divides by sqrt(Σ g²), a sum: the paper's update is x = √t · Δθ/η.
    np.testing.assert_allclose(np.abs(values[0]), 1.0, rtol=1e-5)  # t = 1: x = ±1
    for t in range(2, 11):
        x = np.sqrt(t) * values[t - 1]
        statistic, pvalue = ks_statistic(x, AdaptiveUpdate(np.float64(t)))
        assert float(pvalue) > 0.01, (t, float(statistic))
        assert np.max(np.abs(x)) <= np.sqrt(t) * (1 + 1e-5)
        assert np.var(x) == pytest.approx(1.0, abs=0.04)
        # The callback applies the same √t and m = t on its own.
        record = callback.records[t - 1]
        assert record.reference_m == t and record.scale == pytest.approx(np.sqrt(t))
        assert record.ks["dense"] == pytest.approx(float(statistic), abs=1e-6)
        assert record.variance["dense"] == pytest.approx(np.var(values[t - 1].astype("float64")), rel=1e-4)
    assert "dense" not in callback.records[0].ks  # m = 1 has no reference law
    assert history.history["update_ks/dense"][-1] == callback.records[-1].ks["dense"]
    assert history.history["update_variance/dense"][-1] == callback.records[-1].variance["dense"]


@pytest.mark.slow
def test_adam_ema_update_deviates_from_the_simple_average_law():
    # β1 = 0, β2 = 0.9: the EMA stands for m ≈ 19 samples, but its unequal
    # weights put Var(x) near 0.92, not 1, and cut x² at t = 2 below 1 + β2 < 2.
    callback = UpdateDistributionCallback(steps=2, histogram_bins=32)
    _linear_fit(tf_adaptive.Adam(learning_rate=1e-3, beta_1=0.0, beta_2=0.9), 50, [callback])
    assert callback.steps == list(range(1, 51))
    x2 = callback.values["dense"][1]
    assert np.max(x2**2) <= 1.9 * (1 + 1e-4)  # AdaptiveUpdate(2) reaches x² = 2
    assert float(ks_statistic(x2, AdaptiveUpdate(np.float64(2.0))).pvalue) < 1e-3
    last = callback.records[-1]
    assert last.step == 50 and last.scale == 1.0
    # The Kish count of the EMA weights: ≈ 18.8 at t = 50, tending to 19.
    assert last.reference_m == pytest.approx(float(effective_sample_size(0.9, step=50)))
    assert 18.5 < last.reference_m < 19.0
    assert 0.87 < last.variance["dense"] < 0.96
    # After `steps` recorded steps only histograms are kept, on fixed edges.
    assert len(callback.values["dense"]) == 2 and len(callback.histograms["dense"]) == 48
    histogram = callback.histograms["dense"][-1]
    assert histogram.step == 50 and histogram.counts.shape == (32,)
    assert histogram.counts.sum() + histogram.underflow + histogram.overflow == NUM_WEIGHTS
    assert histogram.edges is callback.histograms["dense"][0].edges


def test_schedule_loss_scaling_and_subsampling_in_fit():
    # SGD: Δθ/η = −∇w = −z exactly, if η is the scheduled rate of that step.
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(learning_rate=schedule))
    callback = UpdateDistributionCallback(steps=4, max_coordinates=1000, every_n_steps=2)
    _, _, z = _linear_fit(optimizer, 8, [callback])
    assert callback.steps == [2, 4, 6, 8]
    assert all(record.reference_m is None and not record.ks for record in callback.records)
    subset = np.asarray(callback._indices["dense"])  # one fixed subset of the 20k weights
    assert subset.shape == (1000,) and len(np.unique(subset)) == 1000
    for values, batch in zip(callback.values["dense"], (1, 3, 5, 7)):
        # atol: the rounding of the float32 difference θ_t − θ_{t−1}, divided by a small η.
        np.testing.assert_allclose(values, -z[batch, subset], rtol=1e-4, atol=1e-4)
    assert [r.learning_rate for r in callback.records] == pytest.approx([0.1 * 0.5**k for k in (1, 3, 5, 7)])


def _small_problem(optimizer, callbacks, steps_per_execution=1):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(48, 6)).astype("float32")
    y = np.tanh(x @ rng.normal(size=(6, 1))).astype("float32")
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8, activation="tanh", name="hidden"),
            keras.layers.Dense(1, name="out"),
        ]
    )
    model.compile(optimizer=optimizer, loss="mse", steps_per_execution=steps_per_execution)
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=callbacks)
    return model, history


@pytest.mark.slow
def test_callback_logs_reach_history_and_leave_training_unchanged(tmp_path):
    callback = UpdateDistributionCallback(steps=5, log_dir=str(tmp_path), histogram_bins=8)
    with_callback, history = _small_problem(keras.optimizers.Adam(1e-2), [callback])
    without_callback, _ = _small_problem(keras.optimizers.Adam(1e-2), [])
    for a, b in zip(with_callback.variables, without_callback.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    for a, b in zip(with_callback.optimizer.variables, without_callback.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))

    assert callback.steps == list(range(1, 19))
    assert callback.values["hidden"][0].shape == (6 * 8 + 8,)  # kernel and bias, concatenated
    for layer in ("hidden", "out"):
        for key in ("update_variance", "abs_update_variance", "update_ks"):
            assert len(history.history[f"{key}/{layer}"]) == 3, (key, layer)
        assert history.history[f"update_ks/{layer}"][-1] == callback.records[-1].ks[layer]
    assert glob.glob(os.path.join(str(tmp_path), "*tfevents*"))


def test_callback_refuses_steps_per_execution():
    callback = UpdateDistributionCallback()
    with pytest.raises(ValueError, match="steps_per_execution"):
        _small_problem(keras.optimizers.Adam(1e-2), [callback], steps_per_execution=2)


@pytest.mark.parametrize(
    "layers, match",
    [
        (None, "The model has no layer with trainable weights to watch"),
        (["dense"], "Layer 'dense' has no trainable weights to watch"),
    ],
    ids=["every_layer", "named_layer"],
)
def test_callback_refuses_a_model_without_trainable_weights_at_train_begin(layers, match):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, name="dense")])
    model.trainable = False
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    with pytest.raises(ValueError, match=match):
        model.fit(
            np.ones((4, 4)), np.ones((4, 1)), epochs=1, verbose=0, callbacks=[UpdateDistributionCallback(layers=layers)]
        )


def test_reference_rule():
    assert reference_law_of(keras.optimizers.Adagrad(), 4) == (4.0, 2.0)
    assert reference_law_of(_adagrad(), 1) == (None, 1.0)
    m, scale = reference_law_of(keras.optimizers.RMSprop(rho=0.9), 1000)
    assert m == pytest.approx(19.0) and scale == 1.0
    assert reference_law_of(keras.optimizers.SGD(), 5) == (None, 1.0)
    assert reference_law_of(keras.optimizers.Lion(), 5) == (None, 1.0)
    assert reference_law_of(keras.optimizers.Adamax(), 5) == (None, 1.0)
    assert reference_law_of(tf_adaptive.Padam(), 5) == (None, 1.0)  # partial = 1/4: another law
    m, _ = reference_law_of(keras.optimizers.LossScaleOptimizer(tf_adaptive.Adam(beta_2=0.99)), 3)
    assert m == pytest.approx(float(effective_sample_size(0.99, step=3)))
