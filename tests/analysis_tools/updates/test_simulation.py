"""The update law Δθ/η: simulated through Keras optimizers, and measured inside `model.fit`.

Zhang and Ziyin, "On the Distributional Properties of Adaptive Gradients"
(UAI 2021): Theorem 1 (x²/m ~ Beta(1/2, (m−1)/2)), the EMA approximation
(Eq. 12) and the simulations of §6 (Figs. 5–7).
"""

import glob
import os

import keras
import numpy as np
import pytest

if keras.backend.backend() != "tensorflow":
    pytest.skip("The update tools run on the TensorFlow backend", allow_module_level=True)

import tensorflow as tf  # noqa: E402

import tf_adaptive  # noqa: E402
from analysis_tools.update_callback import UpdateDistributionCallback, reference_law_of  # noqa: E402
from analysis_tools.update_distribution import (  # noqa: E402
    AdaptiveUpdate,
    effective_sample_size,
    ks_statistic,
)
from analysis_tools.update_simulation import (  # noqa: E402
    adagrad_normalization,
    count_modes,
    find_modes,
    simulate_updates,
)

NUM_WEIGHTS = 20_000


def _adagrad(learning_rate=1.0):
    """The simple-average form of Theorem 1, up to the √t of Adagrad's sum."""
    return tf_adaptive.Adagrad(learning_rate=learning_rate, epsilon=0.0, initial_accumulator_value=0.0)


def _adam():
    return tf_adaptive.Adam(learning_rate=0.1, beta_1=0.0, beta_2=0.9, epsilon=0.0)


def _skewness(x):
    x = np.asarray(x, "float64")
    centred = x - x.mean()
    return float(np.mean(centred**3) / np.mean(centred**2) ** 1.5)


# --------------------------------------------------------------- model.fit
def _mean_output(y_true, y_pred):
    return keras.ops.mean(y_pred)


def _linear_fit(optimizer, steps, callbacks, seed=0, **compile_kwargs):
    """A bias-free Dense(1) on z ~ N(0, I) with loss mean(y_pred), batch size 1: ∇w = z exactly."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(steps, NUM_WEIGHTS)).astype("float32")
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((NUM_WEIGHTS,)),
        keras.layers.Dense(1, use_bias=False, name="dense"),
    ])
    model.compile(optimizer=optimizer, loss=_mean_output, **compile_kwargs)
    history = model.fit(
        z, np.zeros((steps, 1), "float32"),
        batch_size=1, epochs=1, shuffle=False, verbose=0, callbacks=callbacks,
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
    model = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(8, activation="tanh", name="hidden"),
        keras.layers.Dense(1, name="out"),
    ])
    model.compile(optimizer=optimizer, loss="mse", steps_per_execution=steps_per_execution)
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=callbacks)
    return model, history


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


# ---------------------------------------------------------------- simulation
def test_adagrad_form_is_bimodal_at_small_m_and_unimodal_later():
    x = simulate_updates(_adagrad, "normal", 50, 100_000, seed=1) * adagrad_normalization(50)
    modes = find_modes(x[1])  # m = 2: the arcsine law, poles at ±√2
    assert len(modes) == 2
    np.testing.assert_allclose(np.abs(modes), np.sqrt(2.0), atol=0.06)
    # m = 3 is the flat (uniform) law between the two regimes: no count asserted.
    for t in (5, 10, 50):
        modes = find_modes(x[t - 1])
        assert len(modes) == 1 and abs(modes[0]) < 0.3, (t, modes)
    for t in (2, 10, 50):
        assert float(ks_statistic(x[t - 1], AdaptiveUpdate(np.float64(t))).pvalue) > 0.001


def test_growing_gradients_keep_the_modes_longer_than_shrinking_ones():
    # Fig. 5: N(0, t²) stays bimodal for several steps, N(0, 1/t²) loses the modes at once.
    growing = simulate_updates(_adagrad, "normal_growing", 10, 100_000, seed=2) * adagrad_normalization(10)
    shrinking = simulate_updates(_adagrad, "normal_shrinking", 10, 100_000, seed=2)
    shrinking = shrinking * adagrad_normalization(10)
    assert [count_modes(growing[t - 1]) for t in (2, 3, 4, 5)] == [2, 2, 2, 2]
    assert [count_modes(shrinking[t - 1]) for t in (3, 4, 5)] == [1, 1, 1]
    assert count_modes(growing[9]) == 1


def test_negative_mean_gradient_gives_a_positive_left_skewed_update():
    # Fig. 6: g ~ N(−1, 1). The update −g/√(mean g²) opposes the gradient, so it
    # sits at positive values (mean → 1/√2), piled against the bound +√m with a
    # tail to the left: negative sample skewness ("left-skewed"), fading with m.
    x = simulate_updates(_adagrad, "shifted", 50, 100_000, seed=3) * adagrad_normalization(50)
    skews = [_skewness(x[t - 1]) for t in (2, 5, 10, 50)]
    assert all(s < 0 for s in skews[:3]) and abs(skews[3]) < 0.15
    assert skews[0] < skews[1] < skews[2] < skews[3] + 0.05
    for t in (2, 10, 50):
        assert x[t - 1].mean() == pytest.approx(1 / np.sqrt(2), abs=0.05)
        assert count_modes(x[t - 1]) == 1 and find_modes(x[t - 1])[0] > 0
    drifting = simulate_updates(_adagrad, "drifting", 10, 100_000, seed=3) * adagrad_normalization(10)
    # N(−t, 1): thinner and less skewed than N(−1, 1) as the mean grows.
    assert np.std(drifting[9]) < 0.5 * np.std(x[9]) and abs(_skewness(drifting[9])) < abs(skews[2])


def test_cauchy_gradients_give_a_trimodal_update():
    # Fig. 7: one dominant |g_i| puts x near ±√t (if it is g_t) or near 0 (if it is not).
    x = simulate_updates(_adagrad, "cauchy", 5, 100_000, seed=4) * adagrad_normalization(5)
    for t in (2, 3, 5):
        modes = find_modes(x[t - 1])
        assert len(modes) == 3, (t, modes)
        np.testing.assert_allclose(modes, [-np.sqrt(t), 0.0, np.sqrt(t)], atol=0.15)


def test_keras_builtin_and_callable_law_and_determinism():
    def keras_adam():
        return keras.optimizers.Adam(0.1, beta_1=0.0, beta_2=0.9, epsilon=1e-12)

    a = simulate_updates(_adam(), "normal", 50, 4000, seed=5)
    b = simulate_updates(keras_adam, "normal", 50, 4000, seed=5)
    assert a.shape == b.shape == (50, 4000) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    np.testing.assert_array_equal(a, simulate_updates(_adam(), "normal", 50, 4000, seed=5))
    assert not np.array_equal(a, simulate_updates(_adam(), "normal", 50, 4000, seed=6))

    # A callable law gets (t, shape, seed); the update is scale-free, so 3·N(0, 1) = N(0, 1).
    def scaled(step, shape, seed):
        return 3.0 * tf.random.stateless_normal(shape, seed)

    np.testing.assert_allclose(simulate_updates(_adagrad, scaled, 6, 500, seed=7),
                               simulate_updates(_adagrad, "normal", 6, 500, seed=7), rtol=1e-5)
    np.testing.assert_allclose(simulate_updates(_adagrad, "normal", 6, 500, seed=7, scale=3.0),
                               simulate_updates(_adagrad, "normal", 6, 500, seed=7), rtol=1e-5)

    # The sign is that of the applied update: a constant gradient t moves θ down.
    def constant_t(step, shape, seed):
        return tf.fill(shape, tf.cast(step, tf.float32))

    steps = simulate_updates(_adagrad, constant_t, 4, 3)
    t = np.arange(1, 5, dtype="float64")
    np.testing.assert_allclose(steps[:, 0], -t / np.sqrt(np.cumsum(t**2)), rtol=1e-6)
    schedule = keras.optimizers.schedules.ExponentialDecay(0.5, decay_steps=1, decay_rate=0.5)
    sgd = simulate_updates(keras.optimizers.SGD(schedule), lambda step, shape, seed: tf.ones(shape), 4, 3)
    np.testing.assert_allclose(sgd, -1.0, rtol=1e-6)


def test_simulation_refuses_bad_input():
    optimizer = _adagrad()
    simulate_updates(optimizer, "normal", 2, 3)
    with pytest.raises(ValueError, match="already built"):
        simulate_updates(optimizer, "normal", 2, 3)
    with pytest.raises(ValueError, match="Unknown gradient law"):
        simulate_updates(_adagrad, "laplace", 2, 3)
    with pytest.raises(ValueError, match="scale"):
        simulate_updates(_adagrad, "cauchy", 2, 3, scale=2.0)
