"""The simple noise scale B_simple = tr Σ / |G|² (McCandlish et al. 2018, eq. 2.8) against analytic values."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_adaptive
from analysis_tools.noise.callback import GradientNoiseCallback
from analysis_tools.noise.sampling import gradient_noise

P, SIGMA = 10, 1.0


def _relative_standard_error(norms):
    """The relative standard error of mean ‖ξ_B‖² over independently drawn mini-batches."""
    squares = np.square(norms)
    return np.std(squares, ddof=1) / (np.mean(squares) * math.sqrt(len(squares)))


def _empirical_noise_scale(gradients):
    """tr Σ / ‖ḡ‖² of per-example gradients [N, d], Σ with the 1/N of the data set's own distribution."""
    mean = gradients.mean(axis=0)
    return np.mean(np.sum(np.square(gradients - mean), axis=1)) / (mean @ mean)


def _regression_off_the_optimum(num_examples, seed):
    """y = xᵀw* + ε at weights w* + d, ‖d‖ = 1, with the sample moments of x and ε made exact.

    x is drawn from N(0, I_p) and whitened so that XᵀX/N = I; ε is drawn from
    N(0, σ²), made orthogonal to the columns of X and rescaled to mean square
    σ². Then ḡ = 2d exactly, and the data's own B_simple differs from the
    population value ((p + 1)‖d‖² + pσ²)/‖d‖² = 21 only through the fourth
    moments (0.4 % standard deviation over seeds, at most 1.2 % in 300 seeds,
    for N = 20000), where unwhitened draws scatter by 1.4 % and reach 3.7 %.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((num_examples, P))
    x -= x.mean(axis=0)
    x = x @ np.linalg.inv(np.linalg.cholesky(x.T @ x / num_examples)).T
    noise = rng.standard_normal(num_examples)
    noise -= x @ np.linalg.lstsq(x, noise, rcond=None)[0]
    noise *= SIGMA * math.sqrt(num_examples / (noise @ noise))
    w_star = rng.standard_normal((P, 1))
    offset = rng.standard_normal((P, 1))
    offset /= np.linalg.norm(offset)
    y = x @ w_star + noise[:, None]
    model = keras.Sequential([keras.Input((P,)), keras.layers.Dense(1, use_bias=False)])
    model.set_weights([w_star + offset])
    return model, x.astype("float32"), y.astype("float32")


@pytest.mark.slow
def test_linear_regression_noise_scale_is_the_analytic_21():
    model, x, y = _regression_off_the_optimum(20000, seed=0)
    noise = gradient_noise(model, (x, y), loss="mse", batch_size=100, num_batches=3000, seed=0)
    # Measured over data seeds 0-9 (3000 batches of 100): within 1.4 % of 21 (20.77 to 21.28).
    assert noise.noise_scale == pytest.approx(21.0, rel=0.05)
    # Against the data's own value only the Monte-Carlo error of mean ‖ξ_B‖² remains: 4 standard errors
    # (measured 0.9 %, so a 3.6 % bound; the batches are independent draws).
    w = model.get_weights()[0].astype(np.float64)
    per_example = 2 * (x @ w - y) * x
    standard_error = _relative_standard_error(noise.norms)
    assert standard_error < 0.01
    assert noise.noise_scale == pytest.approx(_empirical_noise_scale(per_example), rel=4 * standard_error)
    np.testing.assert_allclose(noise.full_gradient_norm, np.linalg.norm(per_example.mean(axis=0)), rtol=1e-5)


@pytest.mark.slow
def test_per_layer_noise_scales_match_the_per_example_gradients_of_a_small_data_set():
    # N = 16 and |B| = 8: the finite-population factor (N − 1) / (N − |B|) is 1.9, and Σ with 1/(N − 1)
    # instead of 1/N would read 6 % higher, ≥ 7 standard errors for the kernel and the total.
    num_examples, inputs, outputs = 16, 4, 3
    rng = np.random.default_rng(1)
    x = rng.standard_normal((num_examples, inputs))
    y = rng.standard_normal((num_examples, outputs))
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [keras.Input((inputs,), dtype="float64"), keras.layers.Dense(outputs, dtype="float64", bias_initializer="ones")]
    )
    noise = gradient_noise(model, (x, y), loss="mse", batch_size=8, num_batches=3000, per_layer=True, seed=1)
    kernel, bias = model.get_weights()
    # ∇ mean_k (xᵀW + b − y)_k² = (2/3) (x rᵀ, r) with r = xᵀW + b − y.
    residual = 2.0 / outputs * (x @ kernel + bias - y)
    per_example = {
        model.layers[0].kernel.path: (x[:, :, None] * residual[:, None, :]).reshape(num_examples, -1),
        model.layers[0].bias.path: residual,
    }
    for path, gradients in per_example.items():
        tolerance = 4 * _relative_standard_error(noise.layer_norms[path])
        assert tolerance < 0.08, path
        assert noise.layer_noise_scales[path] == pytest.approx(_empirical_noise_scale(gradients), rel=tolerance)
        np.testing.assert_allclose(noise.layer_gradient_norms[path], np.linalg.norm(gradients.mean(axis=0)), rtol=1e-10)
    everything = np.concatenate(list(per_example.values()), axis=1)
    assert noise.noise_scale == pytest.approx(
        _empirical_noise_scale(everything), rel=4 * _relative_standard_error(noise.norms)
    )
    assert math.fsum(noise.layer_trace_covariances.values()) == pytest.approx(noise.trace_covariance, rel=1e-12)


def test_a_dataset_uses_the_infinite_population_limit_and_its_own_batch_size():
    model, x, y = _regression_off_the_optimum(400, seed=2)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(20)
    noise = gradient_noise(model, dataset, loss="mse", batch_size=50, num_batches=10)
    assert noise.batch_size == 20 and noise.num_examples is None
    assert noise.trace_covariance == pytest.approx(20 * noise.trace_estimate, rel=1e-12)
    assert noise.noise_scale == pytest.approx(noise.trace_covariance / noise.full_gradient_norm**2, rel=1e-12)


@pytest.mark.slow
def test_undefined_noise_scales_are_nan():
    model, x, y = _regression_off_the_optimum(40, seed=3)
    # |B| = N: every mini-batch is the data set, ξ_B = 0 and tr Σ cannot be seen.
    whole = gradient_noise(model, (x, y), loss="mse", batch_size=40, num_batches=3, per_layer=True)
    assert math.isnan(whole.trace_covariance) and math.isnan(whole.noise_scale)
    assert all(math.isnan(s) for s in whole.layer_noise_scales.values())
    # A dataset whose batches differ in size (12, 12 and 6 here) has no single |B|.
    ragged = gradient_noise(
        model, tf.data.Dataset.from_tensor_slices((x[:30], y[:30])).batch(12), loss="mse", batch_size=12, num_batches=3
    )
    assert ragged.batch_size is None and math.isnan(ragged.noise_scale)
    # All-zero data: every gradient is 0, so |G| = 0 (and tr Σ = 0).
    zero = gradient_noise(
        model, (np.zeros_like(x), np.zeros_like(y)), loss="mse", batch_size=10, num_batches=3, per_layer=True
    )
    assert zero.full_gradient_norm == 0.0 and math.isnan(zero.noise_scale)
    # Zero inputs and a bias: the kernel's gradient x r vanishes, the bias keeps a noisy one.
    keras.utils.set_random_seed(3)
    biased = keras.Sequential([keras.Input((P,)), keras.layers.Dense(1)])
    split = gradient_noise(biased, (np.zeros_like(x), y), loss="mse", batch_size=10, num_batches=20, per_layer=True)
    scales = split.layer_noise_scales
    assert math.isnan(scales[biased.layers[0].kernel.path])
    assert 0 < scales[biased.layers[0].bias.path] < math.inf and 0 < split.noise_scale < math.inf
    assert gradient_noise(model, (x, y), loss="mse", batch_size=10, num_batches=3).layer_noise_scales is None


def _tiny_problem():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((128, 4)).astype("float32")
    y = (x @ rng.standard_normal((4, 1)) + 0.1 * rng.standard_normal((128, 1))).astype("float32")
    keras.utils.set_random_seed(4)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)])
    model.compile(optimizer=tf_adaptive.Adam(1e-2), loss="mse")
    return model, x, y


@pytest.mark.slow
def test_callback_logs_the_noise_scale_and_per_layer_scales_when_asked():
    model, x, y = _tiny_problem()
    callback = GradientNoiseCallback((x, y), batch_size=16, num_batches=10, num_coordinates=0, per_layer=True)
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[callback])
    keys = ["noise_scale"] + [f"noise_scale/{v.path}" for v in model.trainable_variables]
    for key in keys:
        assert len(history.history[key]) == 2 and np.all(np.isfinite(history.history[key])), key
        assert history.history[key][-1] == callback.records[-1].values[key]
    model, x, y = _tiny_problem()
    plain = GradientNoiseCallback((x, y), batch_size=16, num_batches=10, num_coordinates=0)
    history = model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[plain])
    assert "noise_scale" in history.history
    assert not any(key.startswith("noise_scale/") for key in history.history)


def test_a_measurement_logs_what_gradient_noise_returns_at_those_weights():
    model, x, y = _tiny_problem()
    callback = GradientNoiseCallback((x, y), batch_size=16, num_batches=10, num_coordinates=0, per_layer=True, seed=5)
    callback.set_model(model)
    values = callback.measure(0).values
    direct = gradient_noise(model, (x, y), batch_size=16, num_batches=10, per_layer=True, seed=5)
    assert values["noise_scale"] == direct.noise_scale
    for path, scale in direct.layer_noise_scales.items():
        assert values[f"noise_scale/{path}"] == scale
