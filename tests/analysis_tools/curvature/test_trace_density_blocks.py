"""Hessian trace (Hutchinson, Hutch++), SLQ spectral density and per-layer blocks, against the explicit Hessian.

The network has 467 parameters (8 → 16 → 16 → 3, tanh, float64), trained
with Adam to a low loss on three Gaussian clusters, so that its Hessian has
the outlier-plus-bulk spectrum of a trained classifier. The explicit Hessian
comes from products with the unit vectors.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import analysis_tools
from analysis_tools import HessianOperator, SharpnessCallback, hessian_eigenvalues, hessian_trace, preconditioner_of
from analysis_tools.curvature import hutch_plus_plus, hutchinson, plot_spectral_density, slq, spectral_density
from analysis_tools.curvature.quantities import Density, Trace

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64")  # a float64 Hessian


def _explicit(operator):
    n = operator.dimension
    columns = np.stack([operator.matvec(tf.one_hot(i, n, dtype=tf.float64)).numpy() for i in range(n)], axis=1)
    return 0.5 * (columns + columns.T)


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8,), dtype="float64"),
            keras.layers.Dense(16, activation="tanh", dtype="float64", name="first"),
            keras.layers.Dense(16, activation="tanh", dtype="float64", name="second"),
            keras.layers.Dense(3, dtype="float64", name="logits"),
        ]
    )
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 128).astype("int32")
    x = rng.standard_normal((3, 8))[labels] * 1.5 + rng.standard_normal((128, 8))
    model.compile(keras.optimizers.Adam(1e-2), LOSS)
    # 50 full-batch steps in one epoch.
    model.fit(
        tf.data.Dataset.from_tensors((x, labels)).repeat(), steps_per_epoch=50, epochs=1, shuffle=False, verbose=0
    )
    data = (x, labels)
    hessian = _explicit(HessianOperator(model, data, loss=LOSS))
    p = np.concatenate([np.ravel(t) for t in preconditioner_of(model.optimizer, model.trainable_variables)])
    scale = 1.0 / np.sqrt(p)
    return dict(
        model=model,
        data=data,
        hessian=hessian,
        preconditioner=p,
        preconditioned=scale[:, None] * hessian * scale[None, :],
    )


@pytest.mark.slow
def test_the_network_is_small_and_its_hessian_has_outliers(trained):
    eigenvalues = np.linalg.eigvalsh(trained["hessian"])
    assert trained["hessian"].shape == (467, 467)
    # The top eigenvalue stands out of the bulk: the case Hutch++ is built for.
    assert eigenvalues[-1] > 4 * eigenvalues[-3]


@pytest.mark.parametrize("estimator", ["hutch++", "hutchinson"])
@pytest.mark.parametrize("preconditioned", [False, True])
@pytest.mark.slow
def test_hessian_trace_lies_within_three_standard_errors_of_the_exact_trace(trained, estimator, preconditioned):
    exact = np.trace(trained["preconditioned"] if preconditioned else trained["hessian"])
    p = trained["preconditioner"] if preconditioned else None
    kwargs = {}
    if preconditioned:
        kwargs["preconditioner"] = preconditioner_of(trained["model"].optimizer, trained["model"].trainable_variables)
    result = hessian_trace(
        trained["model"], trained["data"], loss=LOSS, num_products=60, estimator=estimator, seed=1, **kwargs
    )
    assert result.num_products == 60 and result.estimator == estimator
    assert 0 < result.standard_error < 0.2 * abs(exact)
    assert abs(result.estimate - exact) <= 3 * result.standard_error, (result.estimate, exact)
    if preconditioned:  # tr(P⁻¹H) = Σ H_ii / P_i
        np.testing.assert_allclose(exact, np.sum(np.diag(trained["hessian"]) / p), rtol=1e-10)


@pytest.mark.slow
def test_hutch_plus_plus_has_a_smaller_error_than_hutchinson_at_the_same_number_of_products(trained):
    operator = HessianOperator(trained["model"], trained["data"], loss=LOSS)
    exact = np.trace(trained["hessian"])
    errors = {"hutchinson": [], "hutch++": []}
    for seed in range(12):
        errors["hutchinson"].append(hutchinson(operator.matvec, operator.dimension, 30, seed).estimate - exact)
        errors["hutch++"].append(hutch_plus_plus(operator.matvec, operator.dimension, 30, seed).estimate - exact)
    rms = {name: float(np.sqrt(np.mean(np.square(e)))) for name, e in errors.items()}
    # Measured: 0.36 (Hutchinson) and 0.11 (Hutch++) on a trace of 4.2, over 20 seeds.
    assert rms["hutch++"] < 0.6 * rms["hutchinson"], rms


@pytest.mark.parametrize("preconditioned", [False, True])
@pytest.mark.slow
def test_trace_standard_errors_are_the_rademacher_variance_and_cover(trained, preconditioned):
    # A term zᵀAz has variance 2(‖A‖_F² − Σ A_ii²); the estimators read it off the products' vectors.
    matrix = trained["preconditioned"] if preconditioned else trained["hessian"]
    tensor, exact = tf.constant(matrix), np.trace(matrix)
    variance = 2.0 * (np.sum(matrix**2) - np.sum(np.diag(matrix) ** 2))
    z, ratios = [], []
    for seed in range(60):
        result = hutchinson(lambda v: tf.linalg.matvec(tensor, v), 467, num_products=30, seed=seed)
        ratios.append(result.standard_error / np.sqrt(variance / 30))
        z.append((result.estimate - exact) / result.standard_error)
    # Each of 60 standard errors within 40 % of the true one, with a spread under 0.2 about it; the terms'
    # own sample spread, which a few large terms dominate, spread 0.3 (0.41-2.05 of it at 20 terms).
    assert 0.6 < min(ratios) and max(ratios) < 1.5 and np.std(ratios) < 0.2, (min(ratios), max(ratios))
    # At 60 seeds, 5 % ± 2.8 %; the full table over 1,000 seeds is in benchmarks/RESULTS.md.
    assert np.mean(np.abs(z) > 2) <= 0.12 and np.all(np.abs(z) < 4)
    # Hutch++: the residual's variance, from the projected products.
    plus = [
        hutch_plus_plus(lambda v: tf.linalg.matvec(tensor, v), 467, num_products=30, seed=seed) for seed in range(60)
    ]
    z = [(r.estimate - exact) / r.standard_error for r in plus]
    assert np.mean(np.abs(z) > 2) <= 0.12 and np.all(np.abs(z) < 4)


def test_trace_estimators_are_exact_where_the_math_says_so():
    rng = np.random.default_rng(0)
    diagonal = tf.constant(rng.standard_normal(20))
    # Rademacher z: zᵀ D z = tr D for a diagonal D, whatever z.
    result = hutchinson(lambda v: diagonal * v, 20, num_products=3)
    assert result.estimate == pytest.approx(float(tf.reduce_sum(diagonal)), rel=1e-12)
    assert result.standard_error == pytest.approx(0.0, abs=1e-12)
    # Hutch++ with a sketch as wide as the space: tr(QᵀAQ) is the whole trace, the residual 0.
    a = rng.standard_normal((12, 12))
    a = tf.constant(a + a.T)
    result = hutch_plus_plus(lambda v: tf.linalg.matvec(a, v), 12, num_products=39)
    assert result.estimate == pytest.approx(float(tf.linalg.trace(a)), abs=1e-9)
    assert result.sketch_trace == pytest.approx(float(tf.linalg.trace(a)), abs=1e-9)
    # One Hutchinson term has no standard error: NaN, not 0.
    assert np.isnan(hutchinson(lambda v: tf.linalg.matvec(a, v), 12, num_products=1).standard_error)


def test_trace_arguments_are_checked(trained):
    with pytest.raises(ValueError, match="`estimator` must be one of"):
        hessian_trace(trained["model"], trained["data"], loss=LOSS, estimator="exact")
    with pytest.raises(ValueError, match="`num_products` must be an integer >= 3"):
        hessian_trace(trained["model"], trained["data"], loss=LOSS, num_products=2)
    with pytest.raises(ValueError, match="`num_products` must be an integer >= 1"):
        hutchinson(lambda v: v, 4, num_products=0)


@pytest.mark.parametrize("preconditioned", [False, True])
@pytest.mark.slow
def test_slq_moments_match_the_exact_spectrum(trained, preconditioned):
    matrix = trained["preconditioned"] if preconditioned else trained["hessian"]
    eigenvalues = np.linalg.eigvalsh(matrix)
    kwargs = {}
    if preconditioned:
        kwargs["preconditioner"] = preconditioner_of(trained["model"].optimizer, trained["model"].trainable_variables)
    density = spectral_density(
        trained["model"], trained["data"], loss=LOSS, num_vectors=16, num_iterations=30, seed=2, **kwargs
    )
    assert density.num_vectors == 16 and density.num_products == 480 and density.dimension == 467
    for t, w in zip(density.nodes, density.weights):
        assert len(t) == 30 and np.sum(w) == pytest.approx(1.0, abs=1e-12)
    for power in (1, 2):
        estimate, error = density.moment(power)
        exact = np.mean(eigenvalues**power)
        assert 0 < error and abs(estimate - exact) <= 3 * error, (power, estimate, exact, error)
    assert density.mean_eigenvalue == density.moment(1)
    # Gauss quadrature is exact for p = 1: n × the first moment is Hutchinson's estimate on the same vectors.
    operator = HessianOperator(trained["model"], trained["data"], loss=LOSS)
    if preconditioned:
        operator.set_preconditioner(kwargs["preconditioner"])
    matvec = operator.preconditioned_matvec if preconditioned else operator.matvec
    same_vectors = hutchinson(matvec, 467, num_products=16, seed=2)
    assert 467 * density.moment(1)[0] == pytest.approx(same_vectors.estimate, rel=1e-9)
    # The extreme nodes converge to the extreme eigenvalues (Lanczos), the top one first.
    low, high = density.support
    assert high == pytest.approx(eigenvalues[-1], rel=1e-6)
    assert low == pytest.approx(eigenvalues[0], rel=1e-2)


def test_slq_to_the_full_dimension_recovers_every_eigenvalue_and_its_weight():
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.standard_normal((10, 10)))
    eigenvalues = np.array([-2.0, -0.5, 0.1, 0.3, 0.7, 1.0, 1.5, 2.0, 4.0, 9.0])
    a = tf.constant(q @ np.diag(eigenvalues) @ q.T)
    density = slq(lambda v: tf.linalg.matvec(a, v), 10, num_vectors=1, num_iterations=10, seed=5)
    np.testing.assert_allclose(density.nodes[0], eigenvalues, atol=1e-9)
    # The weights are the squared components of the normalized start vector along the eigenvectors.
    start = np.random.default_rng(5).choice(np.array([-1.0, 1.0]), size=10) / np.sqrt(10.0)
    np.testing.assert_allclose(density.weights[0], (q.T @ start) ** 2, atol=1e-9)


def test_smoothed_density_integrates_to_one_and_peaks_at_a_point_mass():
    from analysis_tools.curvature import SpectralDensity

    density = SpectralDensity(
        [np.array([0.0, 1.0]), np.array([0.0, 1.0])],
        [np.array([0.75, 0.25]), np.array([0.25, 0.75])],
        dimension=2,
        num_products=4,
    )
    grid = np.linspace(-2, 3, 20001)
    values = density.density(grid, sigma=0.05)
    assert np.trapezoid(values, grid) == pytest.approx(1.0, abs=1e-6)
    # Half the mass at 0 and half at 1: equal peaks of 0.5 / (σ √(2π)).
    assert values[np.argmin(abs(grid))] == pytest.approx(0.5 / (0.05 * np.sqrt(2 * np.pi)), rel=1e-6)
    with pytest.raises(ValueError, match="`sigma` must be positive"):
        density.density(grid, sigma=0.0)


def test_a_diverged_network_gives_nan_traces_and_densities_not_numbers(trained):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((8,), dtype="float64"), keras.layers.Dense(3, dtype="float64")])
    model.set_weights([np.full((8, 3), np.nan), np.zeros(3)])
    assert np.isnan(hessian_trace(model, trained["data"], loss=LOSS, num_products=6).estimate)
    density = spectral_density(model, trained["data"], loss=LOSS, num_vectors=2, num_iterations=5)
    assert np.isnan(density.moment(1)[0])
    assert np.all(np.isnan(density.density(np.linspace(-1, 1, 5))))
    with pytest.raises(ValueError, match="non-finite nodes"):
        plot_spectral_density(density)


@pytest.mark.parametrize("selection", ["second", ["second"], "layer", "variables"])
@pytest.mark.slow
def test_per_layer_sharpness_is_the_top_eigenvalue_of_the_dense_diagonal_block(trained, selection):
    model = trained["model"]
    layer = model.get_layer("second")
    if selection == "layer":
        selection = layer
    elif selection == "variables":
        selection = list(layer.trainable_variables)
    start = 8 * 16 + 16
    block = slice(start, start + 16 * 16 + 16)
    exact = np.linalg.eigvalsh(trained["hessian"][block, block])[-1]
    result = hessian_eigenvalues(
        model, trained["data"], loss=LOSS, variables=selection, tolerance=1e-12, max_iterations=272
    )
    assert float(result.eigenvalues[0]) == pytest.approx(exact, rel=1e-6, abs=0)
    # The block's operator differentiates the block alone, and its products are the block of H.
    operator = HessianOperator(model, trained["data"], loss=LOSS, variables=selection)
    assert operator.dimension == 272 and [v.path for v in operator.variables] == [
        v.path for v in layer.trainable_variables
    ]
    v = np.random.default_rng(0).standard_normal(272)
    np.testing.assert_allclose(
        operator.matvec(tf.constant(v)).numpy(), trained["hessian"][block, block] @ v, rtol=1e-9, atol=1e-12
    )
    gradient, _ = operator.gradient()
    full, _ = HessianOperator(model, trained["data"], loss=LOSS).gradient()
    np.testing.assert_array_equal(gradient.numpy(), full.numpy()[block])


@pytest.mark.slow
def test_per_layer_preconditioned_sharpness_restricts_p_to_the_block(trained):
    model = trained["model"]
    start = 8 * 16 + 16
    block = slice(start, start + 16 * 16 + 16)
    p = trained["preconditioner"][block]
    exact = np.linalg.eigvalsh(trained["hessian"][block, block] / np.sqrt(np.outer(p, p)))[-1]
    full_p = preconditioner_of(model.optimizer, model.trainable_variables)
    result = hessian_eigenvalues(
        model,
        trained["data"],
        loss=LOSS,
        preconditioner=full_p,
        variables="second",
        tolerance=1e-12,
        max_iterations=272,
    )
    assert float(result.eigenvalues[0]) == pytest.approx(exact, rel=1e-6)
    block_p = full_p[2:4]  # the same P given for the block's variables alone
    again = hessian_eigenvalues(
        model,
        trained["data"],
        loss=LOSS,
        preconditioner=block_p,
        variables="second",
        tolerance=1e-12,
        max_iterations=272,
    )
    assert float(again.eigenvalues[0]) == pytest.approx(exact, rel=1e-6)
    trace = hessian_trace(model, trained["data"], loss=LOSS, preconditioner=full_p, variables="second", num_products=60)
    assert abs(trace.estimate - np.sum(np.diag(trained["hessian"])[block] / p)) <= 3 * trace.standard_error


def test_bad_blocks_are_refused_with_the_reason(trained):
    model, data = trained["model"], trained["data"]
    with pytest.raises(ValueError, match="no layer named 'third'.*'first', 'second', 'logits'"):
        HessianOperator(model, data, loss=LOSS, variables="third")
    with pytest.raises(ValueError, match="`variables` is empty"):
        HessianOperator(model, data, loss=LOSS, variables=[])
    stranger = keras.Variable(np.zeros(3))
    with pytest.raises(ValueError, match="not among the model's trainable variables"):
        HessianOperator(model, data, loss=LOSS, variables=[stranger])
    frozen = keras.Sequential(
        [
            keras.Input((8,), dtype="float64"),
            keras.layers.Dropout(0.1, name="drop"),
            keras.layers.Dense(3, dtype="float64", name="out"),
        ]
    )
    with pytest.raises(ValueError, match="layer 'drop' has no trainable variables"):
        HessianOperator(frozen, data, loss=LOSS, variables="drop")
    with pytest.raises(ValueError, match="`blocks` must be True .*, a non-empty list"):
        SharpnessCallback(data, blocks="second")
    with pytest.raises(ValueError, match="use `blocks`"):
        SharpnessCallback(data, variables="second")


def test_plot_marks_the_threshold_on_a_log_density_axis(trained):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    density = spectral_density(trained["model"], trained["data"], loss=LOSS, num_vectors=1, num_iterations=20)
    figure, ax = plt.subplots()
    plot_spectral_density(density, ax=ax, threshold=3.8, label="H")
    assert ax.get_yscale() == "log"
    lines = ax.get_lines()
    assert len(lines) == 2 and list(lines[1].get_xdata()) == [3.8, 3.8]
    assert lines[0].get_xdata().max() > 3.8  # the grid spans the threshold
    plt.close(figure)


@pytest.mark.slow
def test_sharpness_callback_logs_per_layer_sharpness_trace_and_density(trained, tmp_path):
    model = keras.models.clone_model(trained["model"])
    model.set_weights(trained["model"].get_weights())
    model.compile(keras.optimizers.Adam(1e-3), LOSS)
    x, y = trained["data"]
    callback = SharpnessCallback(
        (x, y),
        every_n_steps=2,
        blocks=["second", "logits"],
        quantities=[Trace(num_products=30), Density(num_vectors=2, num_iterations=20)],
        tolerance=1e-8,
        max_iterations=60,
        warm_start=False,
        log_dir=str(tmp_path),
    )
    history = model.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[callback])
    record = callback.records[-1]
    for key in (
        "sharpness/second",
        "sharpness/logits",
        "preconditioned_sharpness/second",
        "preconditioned_sharpness/logits",
        "hessian_trace",
        "preconditioned_hessian_trace",
        "hessian_trace_standard_error",
    ):
        assert key in history.history, key
    # Each logged value is what the stand-alone functions give at the same weights.
    start = 8 * 16 + 16
    block = slice(start, start + 16 * 16 + 16)
    hessian = _explicit(HessianOperator(model, (x, y), loss=LOSS))
    assert record.values["sharpness/second"] == pytest.approx(np.linalg.eigvalsh(hessian[block, block])[-1], rel=1e-6)
    trace = record.traces["raw"]
    assert trace.num_products == 30
    assert abs(trace.estimate - np.trace(hessian)) <= 4 * trace.standard_error
    density = record.densities["preconditioned"]
    assert density.num_vectors == 2 and density.num_products == 40
    assert set(record.eigenvalues) >= {"raw", "preconditioned", "raw/second", "preconditioned/logits"}
    assert tf.io.gfile.listdir(str(tmp_path))  # TensorBoard events, the density histogram among them
    assert analysis_tools.curvature.quantities.density_sample(density).size == pytest.approx(10_000, abs=40)
