"""diag(A) of the Hessian, the GGN and the Fishers against the dense matrices' diagonals.

Reference: the diagonal of the dense operator built from products with the
unit vectors, whose correctness `test_gauss_newton.py` and `test_hessian.py`
establish against Jacobian and finite-difference references. Hutchinson's
diagonal must lie within its reported standard errors (coverage over the
coordinates), and its standard errors must match the analytic ones,
√(Σ_{k≠j} A_jk² / s).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import analysis_tools
from analysis_tools.curvature import curvature_diagonal, hutchinson_diagonal


def _cnn():
    keras.utils.set_random_seed(2)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2), dtype="float64"),
            keras.layers.Conv2D(3, 3, activation="softplus", dtype="float64"),
            keras.layers.Flatten(dtype="float64"),
            keras.layers.Dense(4, dtype="float64"),
        ]
    )
    rng = np.random.default_rng(1)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64")
    return model, (rng.normal(size=(6, 6, 6, 2)), rng.integers(0, 4, 6)), loss


@pytest.mark.parametrize("curvature", ["hessian", "ggn", "empirical_fisher"])
@pytest.mark.slow
def test_hutchinson_diagonal_is_within_its_standard_errors_and_those_are_right(curvature):
    model, data, loss = _cnn()
    operator = analysis_tools.curvature.curvature_operator(model, data, curvature=curvature, loss=loss)
    dense = np.stack([operator.matvec(e).numpy() for e in np.eye(operator.dimension)], axis=1)
    exact = curvature_diagonal(operator, estimator="exact")
    np.testing.assert_allclose(exact.estimate, np.diag(dense), rtol=1e-12, atol=1e-15)
    assert exact.num_products == operator.dimension and np.all(exact.standard_error == 0)

    estimate = curvature_diagonal(operator, num_products=200, seed=3)
    analytic = np.sqrt((np.sum(dense**2, axis=1) - np.diag(dense) ** 2) / 200)
    moving = analytic > 1e-9 * np.abs(dense).max()  # rows with no off-diagonal mass are exact
    np.testing.assert_allclose(estimate.standard_error[moving], analytic[moving], rtol=0.35)
    z = (estimate.estimate - np.diag(dense))[moving] / estimate.standard_error[moving]
    assert np.mean(np.abs(z) > 2) < 0.09 and np.mean(np.abs(z) > 3) < 0.02, (np.mean(np.abs(z) > 2), np.abs(z).max())


@pytest.mark.slow
def test_the_preconditioned_diagonal_is_the_diagonal_over_p_and_arguments_are_checked():
    model, data, loss = _cnn()
    operator = analysis_tools.GGNOperator(model, data, loss=loss)
    p = [np.full(v.shape, 2.0) for v in model.trainable_variables]
    plain = curvature_diagonal(operator, estimator="exact").estimate
    np.testing.assert_allclose(
        curvature_diagonal(operator, preconditioner=p, estimator="exact").estimate, plain / 2.0, rtol=1e-12
    )
    direct = curvature_diagonal(model, data, loss=loss, curvature="ggn", estimator="exact").estimate
    np.testing.assert_allclose(direct, plain, rtol=1e-12)
    one = hutchinson_diagonal(lambda v: 3.0 * v, 4, num_products=1)
    np.testing.assert_allclose(one.estimate, 3.0)
    assert np.all(np.isnan(one.standard_error))  # one term: no spread to estimate
    with pytest.raises(ValueError, match="`estimator` must be one of"):
        curvature_diagonal(operator, estimator="hutch++")
    with pytest.raises(ValueError, match="`num_products` must be an integer >= 1"):
        curvature_diagonal(operator, num_products=0)
    with pytest.raises(ValueError, match="`dimension` must be"):
        hutchinson_diagonal(tf.identity, 0)


@pytest.mark.slow
def test_per_example_diagonals_of_the_fishers_are_exact_for_a_classifier():
    model, data, loss = _cnn()
    empirical = analysis_tools.curvature.EmpiricalFisherOperator(
        model, data, loss=loss, batch_size=4, include_regularization=False
    )
    dense = np.stack([empirical.matvec(e).numpy() for e in np.eye(empirical.dimension)], axis=1)
    estimate = curvature_diagonal(empirical, estimator="per_example")
    np.testing.assert_allclose(estimate.estimate, np.diag(dense), rtol=1e-10, atol=1e-14)
    assert np.all(estimate.standard_error == 0) and estimate.estimator == "per_example"
    # The Fisher: one term per example, so each draw's per-example diagonal is the operator's own.
    fisher = analysis_tools.curvature.FisherOperator(model, data, loss=loss, batch_size=4, samples=3, label_seed=5)
    dense = np.stack([fisher.matvec(e).numpy() for e in np.eye(fisher.dimension)], axis=1)
    estimate = curvature_diagonal(fisher, estimator="per_example")
    np.testing.assert_allclose(estimate.estimate, np.diag(dense), rtol=1e-10, atol=1e-14)
    assert np.all(np.isfinite(estimate.standard_error)) and np.median(estimate.standard_error) > 0
    p = [np.full(v.shape, 4.0) for v in model.trainable_variables]
    np.testing.assert_allclose(
        curvature_diagonal(fisher, preconditioner=p, estimator="per_example").estimate,
        np.diag(dense) / 4.0,
        rtol=1e-10,
        atol=1e-14,
    )


@pytest.mark.slow
def test_per_example_fisher_diagonal_of_a_sequence_model_is_unbiased_for_the_ggn():
    # Several loss terms per example (positions): a draw's per-example squares carry cross terms of mean 0.
    keras.utils.set_random_seed(4)
    tokens = keras.Input((5,), dtype="int32")
    hidden = keras.layers.Embedding(7, 4, dtype="float64")(tokens)
    hidden = keras.layers.Dense(6, activation="tanh", dtype="float64")(hidden)
    model = keras.Model(tokens, keras.layers.Dense(7, dtype="float64")(hidden))
    rng = np.random.default_rng(3)
    data = (rng.integers(0, 7, (8, 5)).astype("int32"), rng.integers(0, 7, (8, 5)))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64")
    ggn = curvature_diagonal(model, data, loss=loss, curvature="ggn", estimator="exact").estimate
    fisher = curvature_diagonal(model, data, loss=loss, curvature="fisher", estimator="per_example", samples=24)
    moving = fisher.standard_error > 0
    z = (fisher.estimate - ggn)[moving] / fisher.standard_error[moving]
    assert np.mean(np.abs(z) > 2) < 0.1 and np.abs(z).max() < 4.5, (np.mean(np.abs(z) > 2), np.abs(z).max())


def test_per_example_needs_a_fisher_and_no_penalty():
    model, data, loss = _cnn()
    with pytest.raises(ValueError, match="per_example.*not GGNOperator"):
        curvature_diagonal(model, data, loss=loss, curvature="ggn", estimator="per_example")
    penalized = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, kernel_regularizer="l2")])
    x, y = np.ones((4, 3), "float32"), np.zeros((4, 2), "float32")
    with pytest.raises(ValueError, match="include_regularization=False"):
        curvature_diagonal(penalized, (x, y), loss="mse", curvature="empirical_fisher", estimator="per_example")
