"""`analysis_tools.updates.simulation`: the update law Δθ/η simulated through Keras optimizers.

Zhang and Ziyin, "On the Distributional Properties of Adaptive Gradients"
(UAI 2021): Theorem 1 (x²/m ~ Beta(1/2, (m−1)/2)) and the simulations of §6
(Figs. 5–7).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_adaptive
from analysis_tools.updates.goodness_of_fit import ks_statistic
from analysis_tools.updates.law import AdaptiveUpdate
from analysis_tools.updates.simulation import (
    adagrad_normalization,
    count_modes,
    find_modes,
    simulate_updates,
)


def _adagrad(learning_rate=1.0):
    """The simple-average form of Theorem 1, up to the √t of Adagrad's sum."""
    return tf_adaptive.Adagrad(learning_rate=learning_rate, epsilon=0.0, initial_accumulator_value=0.0)


def _adam():
    return tf_adaptive.Adam(learning_rate=0.1, beta_1=0.0, beta_2=0.9, epsilon=0.0)


def _skewness(x):
    x = np.asarray(x, "float64")
    centred = x - x.mean()
    return float(np.mean(centred**3) / np.mean(centred**2) ** 1.5)


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

    np.testing.assert_allclose(
        simulate_updates(_adagrad, scaled, 6, 500, seed=7),
        simulate_updates(_adagrad, "normal", 6, 500, seed=7),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        simulate_updates(_adagrad, "normal", 6, 500, seed=7, scale=3.0),
        simulate_updates(_adagrad, "normal", 6, 500, seed=7),
        rtol=1e-5,
    )

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
