"""Gradient noise at fixed parameters against analytic linear-regression noise, and on real text."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from analysis_tools.noise.alpha_stable import SymmetricAlphaStable
from analysis_tools.noise.callback import standardized_coordinates
from analysis_tools.noise.sampling import empirical_variance_vs_sample_size, gradient_noise
from analysis_tools.noise.tail_estimators import tail_index

N, D, SIGMA = 2000, 5, 0.5


def _regression(seed=0):
    """y = x w + b + σ ε, and a linear model sitting at the true (w, b)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, D))
    w = rng.standard_normal((D, 1))
    b = 0.3
    y = x @ w + b + SIGMA * rng.standard_normal((N, 1))
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((D,), dtype="float64"), keras.layers.Dense(1, dtype="float64")])
    model.set_weights([w, np.array([b])])
    model.compile(optimizer=keras.optimizers.Adam(), loss="mse")
    return model, x, y, w, b


def _per_example_gradients(x, y, w, b):
    """∇ (x_iᵀw + b − y_i)² = 2 r_i (x_i, 1), the gradients of the per-example squared error."""
    residual = (x @ w + b - y)[:, 0]
    return np.concatenate([2 * residual[:, None] * x, 2 * residual[:, None]], axis=1)


@pytest.mark.slow
def test_linear_regression_noise_trace_matches_the_analytic_covariance():
    model, x, y, w, b = _regression()
    batch = 32
    noise = gradient_noise(model, (x, y), batch_size=batch, num_batches=3000)
    per_example = _per_example_gradients(x, y, w, b)
    sigma = np.cov(per_example.T, bias=True)
    # Sampling without replacement: E‖g_B − ∇f‖² = (N − B) / (B (N − 1)) tr Σ.
    finite_population = (N - batch) / (batch * (N - 1)) * np.trace(sigma)
    # The noise model itself: g_i = −2 σ ε_i (x_i, 1), so tr Σ ≈ 4 σ² (E‖x‖² + 1) = 4 σ² (D + 1).
    noise_model = 4 * SIGMA**2 * (D + 1) / batch
    assert noise.trace_estimate == pytest.approx(finite_population, rel=0.05)
    assert noise.trace_estimate == pytest.approx(noise_model, rel=0.05)
    np.testing.assert_allclose(noise.full_gradient_norm, np.linalg.norm(per_example.mean(axis=0)), rtol=1e-10)


@pytest.mark.slow
def test_a_wrong_batch_size_would_be_caught():
    model, x, y, w, b = _regression()
    noise = gradient_noise(model, (x, y), batch_size=8, num_batches=2000)
    sigma = np.cov(_per_example_gradients(x, y, w, b).T, bias=True)
    assert noise.trace_estimate == pytest.approx((N - 8) / (8 * (N - 1)) * np.trace(sigma), rel=0.05)
    assert noise.trace_estimate > 3 * np.trace(sigma) / 32


@pytest.mark.slow
def test_measurement_leaves_model_and_optimizer_untouched():
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((D,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(2).standard_normal((256, D)).astype("float32")
    y = x[:, :1] ** 2
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    before = [v.numpy().copy() for v in model.variables]
    optimizer_before = [v.numpy().copy() for v in model.optimizer.variables]
    noise = gradient_noise(model, (x, y), batch_size=32, num_batches=20, per_layer=True)
    for a, v in zip(before, model.variables):
        np.testing.assert_array_equal(a, v.numpy())
    for a, v in zip(optimizer_before, model.optimizer.variables):
        np.testing.assert_array_equal(a, v.numpy())
    assert np.all(np.isfinite(noise.norms)) and noise.norms.shape == (20,)


def test_per_layer_norms_coordinates_and_batch_noise_agree():
    model, x, y, w, b = _regression(seed=3)
    noise = gradient_noise(
        model, (x, y), batch_size=16, num_batches=50, num_coordinates=4, per_layer=True, keep_batch_noise=True, seed=7
    )
    layers = np.stack(list(noise.layer_norms.values()), axis=1)
    np.testing.assert_allclose(np.sqrt(np.sum(layers**2, axis=1)), noise.norms, rtol=1e-12)
    assert list(noise.layer_norms) == [v.path for v in model.trainable_variables]
    assert noise.coordinates.shape == (50, 4) and noise.batch_noise.shape == (D + 1,)
    np.testing.assert_array_equal(noise.coordinates[0], noise.batch_noise[noise.coordinate_indices])
    assert np.linalg.norm(noise.batch_noise) == pytest.approx(noise.norms[0], rel=1e-12)
    again = gradient_noise(model, (x, y), batch_size=16, num_batches=50, num_coordinates=4, seed=7)
    np.testing.assert_array_equal(again.norms, noise.norms)


@pytest.mark.slow
def test_explicit_reference_and_datasets():
    model, x, y, w, b = _regression(seed=4)
    exact = _per_example_gradients(x, y, w, b).mean(axis=0)
    reference = [exact[:D].reshape(D, 1), exact[D:]]
    by_full = gradient_noise(model, (x, y), batch_size=20, num_batches=10, seed=1)
    by_reference = gradient_noise(model, (x, y), batch_size=20, num_batches=10, seed=1, reference=reference)
    np.testing.assert_allclose(by_reference.norms, by_full.norms, rtol=1e-9)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(20)
    from_dataset = gradient_noise(model, dataset, num_batches=5, batch_size=20)
    assert from_dataset.norms.shape == (5,) and from_dataset.num_examples is None
    assert from_dataset.full_gradient_norm == pytest.approx(by_full.full_gradient_norm, rel=1e-9)
    with pytest.raises(ValueError, match="shapes"):
        gradient_noise(model, (x, y), reference=[exact])
    with pytest.raises(ValueError, match="exceeds"):
        gradient_noise(model, (x[:10], y[:10]), batch_size=11)


def test_a_model_without_trainable_variables_is_refused():
    model, x, y, _, _ = _regression()
    model.trainable = False
    with pytest.raises(ValueError, match="no trainable variables"):
        gradient_noise(model, (x, y), num_batches=2)


@pytest.mark.parametrize("as_dataset", [False, True], ids=["arrays", "dataset"])
def test_data_that_does_not_fit_the_model_is_refused_before_any_gradient(as_dataset):
    model, x, y, _, _ = _regression()

    def data(inputs, targets):
        return tf.data.Dataset.from_tensor_slices((inputs, targets)).batch(20) if as_dataset else (inputs, targets)

    with pytest.raises(ValueError, match="cannot run on the first batch of `data`"):
        gradient_noise(model, data(x[:, :3], y), batch_size=20, num_batches=2)
    # (n, 2) targets against (n, 1) outputs: mean_squared_error would broadcast them to (n, 2).
    with pytest.raises(ValueError, match=r"targets of `data` have shape \(None, 2\)"):
        gradient_noise(model, data(x, np.concatenate([y, y], axis=1)), batch_size=20, num_batches=2)
    # (n,) targets are aligned with (n, 1) outputs, as Keras's losses do.
    gradient_noise(model, data(x, y[:, 0]), batch_size=20, num_batches=2)


def test_a_dataset_with_fewer_batches_than_asked_warns_how_many_were_used():
    model, x, y, _, _ = _regression()
    dataset = tf.data.Dataset.from_tensor_slices((x[:100], y[:100])).batch(20)
    with pytest.warns(UserWarning, match="`data` holds 5 batches, fewer than the 8 asked for"):
        noise = gradient_noise(model, dataset, num_batches=8)
    assert noise.norms.shape == (5,)


def test_empirical_variance_converges_for_gaussian_and_grows_for_stable_noise():
    rng = np.random.default_rng(0)
    gaussian = empirical_variance_vs_sample_size(rng.standard_normal(100_000), num_repeats=5)
    assert abs(gaussian.slope) < 0.05
    assert gaussian.variance[-1] == pytest.approx(1.0, rel=0.02)
    heavy = SymmetricAlphaStable(1.5).sample(100_000, seed=(4, 4)).numpy()
    growing = empirical_variance_vs_sample_size(heavy, num_repeats=20)
    # The sample variance of n SαS(α) draws grows like n^(2/α − 1) = n^(1/3).
    assert 0.15 < growing.slope < 0.6
    assert growing.variance[-1] > 5 * growing.variance[0]


def test_empirical_variance_equals_numpy_variance_of_prefixes():
    x = np.random.default_rng(5).standard_normal((500, 3)) * [1.0, 2.0, 3.0]
    result = empirical_variance_vs_sample_size(x, sample_sizes=[2, 17, 500])
    expected = [np.sum(np.var(x[:n], axis=0, ddof=1)) for n in (2, 17, 500)]
    np.testing.assert_allclose(result.variance, expected, rtol=1e-10)
    with pytest.raises(ValueError, match="sample_sizes"):
        empirical_variance_vs_sample_size(x, sample_sizes=[1, 10])


def _text_windows(length=32, count=1500):
    from pydoc_data.topics import topics

    data = np.frombuffer("\n\n".join(topics[k] for k in sorted(topics)).encode("utf-8"), dtype=np.uint8)
    starts = np.random.default_rng(0).choice(len(data) - length - 1, count, replace=False)
    windows = data[starts[:, None] + np.arange(length + 1)].astype("int32")
    return windows[:, :-1], windows[:, 1:]


def _language_model(attention):
    keras.utils.set_random_seed(0)
    tokens = keras.Input((32,), dtype="int32")
    h = keras.layers.Embedding(256, 32)(tokens)
    if attention:
        h = keras.layers.LayerNormalization()(h + keras.layers.MultiHeadAttention(2, 16)(h, h, use_causal_mask=True))
    h = keras.layers.LayerNormalization()(h + keras.layers.Dense(32)(keras.layers.Dense(64, activation="relu")(h)))
    model = keras.Model(tokens, keras.layers.Dense(256)(h))
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


@pytest.mark.slow
def test_attention_and_mlp_noise_tail_indices_on_embedded_text():
    x, y = _text_windows()
    indices = {}
    for name, attention in (("attention", True), ("mlp", False)):
        noise = gradient_noise(_language_model(attention), (x, y), batch_size=16, num_batches=100, num_coordinates=1000)
        estimate = tail_index(standardized_coordinates(noise.coordinates))
        indices[name] = estimate.alpha
        print(
            f"{name}: tail index {estimate.alpha:.3f} (raw {estimate.unclipped:.3f}), "
            f"noise norm median {np.median(noise.norms):.3f}, max/median "
            f"{np.max(noise.norms) / np.median(noise.norms):.2f}"
        )
        assert np.isfinite(estimate.alpha) and 0 < estimate.alpha <= 2.0
    assert set(indices) == {"attention", "mlp"}
