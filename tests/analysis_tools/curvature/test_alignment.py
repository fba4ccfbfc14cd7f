"""`alignment` and `principal_angles` against SciPy and against cases with known answers."""

import keras
import numpy as np
import pytest

import analysis_tools
from analysis_tools.curvature import alignment, principal_angles


def test_a_preconditioner_that_is_a_power_of_the_diagonal_is_perfectly_aligned():
    d = np.random.default_rng(0).lognormal(size=50)
    result = alignment([3.0 * np.sqrt(d[:20]), 3.0 * np.sqrt(d[20:])], d)
    assert result.cosine == pytest.approx(1.0) and result.rank_correlation == pytest.approx(1.0)
    assert result.ratio_spread == pytest.approx(0.0, abs=1e-12) and (result.coordinates, result.excluded) == (50, 0)
    assert alignment(d, d, power=1.0).ratio_spread == pytest.approx(0.0, abs=1e-12)


def test_statistics_match_scipy_and_non_positive_curvature_is_excluded():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    p, d = rng.lognormal(size=200), rng.normal(1.0, 1.0, size=200)
    d[:7] = np.round(d[:7], 1)  # ties
    result = alignment(p, d, power=0.5)
    used = d > 0
    assert result.coordinates == used.sum() and result.excluded == 200 - used.sum()
    expected_rho = stats.spearmanr(p[used], d[used]).statistic
    assert result.rank_correlation == pytest.approx(expected_rho, rel=1e-12)
    target = np.sqrt(d[used])
    assert result.cosine == pytest.approx(p[used] @ target / np.linalg.norm(p[used]) / np.linalg.norm(target))
    assert result.ratio_spread == pytest.approx(np.std(np.log10(p[used] / target), ddof=1))


def test_degenerate_input_gives_nan_or_an_error_not_a_number():
    assert np.isnan(alignment([1.0, 2.0], [-1.0, 0.0]).cosine)  # nothing with positive curvature
    assert np.isnan(alignment([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]).rank_correlation)  # constant P
    with pytest.raises(ValueError, match="3 coordinates and the diagonal 2"):
        alignment([1.0, 2.0, 3.0], [1.0, 2.0])


def test_an_infinite_preconditioner_entry_is_excluded_not_compared():
    """ACClip's P is +inf where its clipping threshold is 0: no curvature to compare there."""
    p, d = np.array([1.0, 2.0, np.inf, 4.0]), np.array([1.0, 4.0, 9.0, 16.0])
    result = alignment(p, d, power=0.5)
    assert (result.coordinates, result.excluded) == (3, 1)
    assert result.cosine == pytest.approx(1.0) and result.rank_correlation == pytest.approx(1.0)
    assert result.ratio_spread == pytest.approx(0.0, abs=1e-12)


def test_principal_angles_match_scipy():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(3, 20)), rng.normal(size=(4, 20))
    np.testing.assert_allclose(principal_angles(a, b), np.sort(linalg.subspace_angles(a.T, b.T)), atol=1e-12)
    shared = np.vstack([a[:1], rng.normal(size=(1, 20))])
    assert principal_angles(a, shared)[0] == pytest.approx(0.0, abs=1e-7)
    np.testing.assert_allclose(principal_angles(np.eye(4)[:2], np.eye(4)[2:]), [np.pi / 2] * 2)
    with pytest.raises(ValueError, match="linearly dependent"):
        principal_angles(np.vstack([a[0], 2 * a[0]]), b)
    with pytest.raises(ValueError, match="20 and 5 dimensions"):
        principal_angles(a, rng.normal(size=(2, 5)))


@pytest.mark.slow
def test_adams_p_against_the_curvature_diagonals_of_a_trained_network():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((6,), dtype="float64"),
            keras.layers.Dense(8, activation="tanh", dtype="float64"),
            keras.layers.Dense(3, dtype="float64"),
        ]
    )
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 6)), rng.integers(0, 3, 64)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64")
    model.compile(keras.optimizers.Adam(1e-2), loss)
    model.fit(x, y, epochs=20, batch_size=16, verbose=0)
    p = analysis_tools.preconditioner_of(model.optimizer, model.trainable_variables)
    results = {}
    for curvature in ("ggn", "empirical_fisher", "hessian"):
        d = analysis_tools.curvature.curvature_diagonal(
            model, (x, y), loss=loss, curvature=curvature, estimator="exact"
        )
        results[curvature] = alignment(p, d.estimate)
        assert -1.0 <= results[curvature].rank_correlation <= 1.0 and 0.0 < results[curvature].cosine <= 1.0
    assert results["ggn"].excluded == 0 or results["ggn"].coordinates > 0
    top_h = analysis_tools.hessian_eigenvalues(
        model, (x, y), loss=loss, k=3, return_vectors=True, tolerance=1e-8, max_iterations=80
    ).eigenvectors
    top_g = analysis_tools.hessian_eigenvalues(
        model, (x, y), loss=loss, k=3, return_vectors=True, tolerance=1e-8, max_iterations=80, curvature="ggn"
    ).eigenvectors
    angles = principal_angles(top_h, top_g)
    assert angles.shape == (3,) and np.all((0.0 <= angles) & (angles <= np.pi / 2 + 1e-12))
