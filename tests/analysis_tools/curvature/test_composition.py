"""Composed operators (P^{-1/2} A P^{-1/2}, blocks, sums, scalings) against dense matrices built from the products.

The dense references are the operands' own dense matrices (one product per
unit vector), combined in NumPy; the GGN test file checks those against
Jacobian references. Each composition must equal the NumPy composition, leave
its operands unchanged, and run through every estimator.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import analysis_tools
from analysis_tools.curvature.composition import LinearCombination, PreconditionedOperator
from analysis_tools.curvature.gauss_newton import GGNOperator


def _net():
    keras.utils.set_random_seed(4)
    model = keras.Sequential(
        [
            keras.Input((3,), dtype="float64"),
            keras.layers.Dense(4, activation="tanh", dtype="float64", name="hidden"),
            keras.layers.Dense(3, dtype="float64", name="head"),
        ]
    )
    rng = np.random.default_rng(0)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64")
    return model, (rng.normal(size=(10, 3)), rng.integers(0, 3, 10)), loss


def _dense(operator):
    return np.stack([operator.matvec(e).numpy() for e in np.eye(operator.dimension)], axis=1)


def _preconditioner(model, seed=0):
    return [np.random.default_rng(seed + i).uniform(0.2, 3.0, v.shape) for i, v in enumerate(model.trainable_variables)]


def _flat(tensors):
    return np.concatenate([np.ravel(t) for t in tensors])


@pytest.fixture(scope="module")
def operators():
    model, data, loss = _net()
    hessian = analysis_tools.HessianOperator(model, data, loss=loss)
    return model, hessian, GGNOperator(model, data, loss=loss)


@pytest.mark.slow
def test_a_preconditioned_operator_is_s_a_s_and_has_the_eigenvalues_of_p_inverse_a(operators):
    model, hessian, ggn = operators
    p = _preconditioner(model)
    s = 1.0 / np.sqrt(_flat(p))
    for base in (hessian, ggn):
        composed = base.preconditioned(p)
        assert isinstance(composed, PreconditionedOperator) and composed.curvature == base.curvature
        np.testing.assert_allclose(_dense(composed), s[:, None] * _dense(base) * s[None, :], rtol=1e-12, atol=1e-14)
        expected = np.sort(np.linalg.eigvals(_dense(base) / _flat(p)[:, None]).real)[::-1]
        result = analysis_tools.hessian_eigenvalues(composed, k=2, tolerance=1e-12, max_iterations=composed.dimension)
        np.testing.assert_allclose(result.eigenvalues.numpy(), expected[:2], rtol=1e-9)


def test_composition_leaves_its_operands_as_they_were(operators):
    model, hessian, _ = operators
    first, second = hessian.preconditioned(_preconditioner(model, 0)), hessian.preconditioned(_preconditioner(model, 5))
    before = analysis_tools.sharpness(first, tolerance=1e-12, max_iterations=first.dimension)
    # Running the second's solver assigns the shared loop's S; the first must not see it.
    analysis_tools.sharpness(second, tolerance=1e-12, max_iterations=second.dimension)
    assert analysis_tools.sharpness(first, tolerance=1e-12, max_iterations=first.dimension) == before
    assert hessian.preconditioner_scale is None  # nothing was stored in the operand
    # The stateful form keeps its own P: a preconditioned measurement through the functions does not replace it.
    hessian.set_preconditioner(_preconditioner(model, 9))
    stored = hessian.preconditioned_matvec(np.ones(hessian.dimension)).numpy()
    analysis_tools.hessian_eigenvalues(hessian, preconditioner=_preconditioner(model, 1), tolerance=1e-6)
    np.testing.assert_array_equal(hessian.preconditioned_matvec(np.ones(hessian.dimension)).numpy(), stored)


def test_sums_and_scalings_are_the_dense_combinations(operators):
    _, hessian, ggn = operators
    h, g = _dense(hessian), _dense(ggn)
    residual = hessian - ggn
    assert isinstance(residual, LinearCombination) and residual.curvature == "hessian - ggn"
    np.testing.assert_allclose(_dense(residual), h - g, atol=1e-13)
    np.testing.assert_allclose(_dense(2.0 * hessian + ggn / 4), 2 * h + g / 4, atol=1e-13)
    np.testing.assert_allclose(_dense(-(hessian * 3)), -3 * h, atol=1e-13)
    v = np.random.default_rng(1).normal(size=hessian.dimension)
    np.testing.assert_allclose((hessian @ v).numpy(), h @ v, rtol=1e-12)
    top = analysis_tools.hessian_eigenvalues(residual, k=1, tolerance=1e-12, max_iterations=residual.dimension)
    assert top.eigenvalues.numpy()[0] == pytest.approx(np.linalg.eigvalsh(h - g).max(), rel=1e-9)
    trace = analysis_tools.hessian_trace(residual, num_products=residual.dimension, estimator="hutchinson")
    assert abs(trace.estimate - np.trace(h - g)) < 4 * trace.standard_error + 1e-12


def test_blocks_of_composed_operators_are_the_dense_blocks(operators):
    model, hessian, ggn = operators
    p = _preconditioner(model)
    s = 1.0 / np.sqrt(_flat(p))
    layer = model.get_layer("hidden")
    rows = np.arange(sum(int(np.prod(v.shape)) for v in layer.trainable_variables))  # the first layer's weights
    block = hessian.preconditioned(p).block("hidden")
    expected = (s[:, None] * _dense(hessian) * s[None, :])[np.ix_(rows, rows)]
    np.testing.assert_allclose(_dense(block), expected, rtol=1e-12, atol=1e-14)
    eigenvalue = analysis_tools.sharpness(block, tolerance=1e-12, max_iterations=block.dimension)
    assert eigenvalue == pytest.approx(np.linalg.eigvalsh(expected).max(), rel=1e-9)
    np.testing.assert_allclose(
        _dense((hessian - ggn).block("hidden")), (_dense(hessian) - _dense(ggn))[np.ix_(rows, rows)], atol=1e-13
    )


def test_an_infinite_preconditioner_removes_its_coordinates(operators):
    """P = +inf (a weight the optimizer does not move, as ACClip's where τ = 0): S = 0 there."""
    model, hessian, _ = operators
    p = _preconditioner(model)
    p[0] = p[0].copy()
    p[0].flat[::3] = np.inf
    s = 1.0 / np.sqrt(_flat(p))
    assert np.count_nonzero(s == 0.0) > 0
    expected = s[:, None] * _dense(hessian) * s[None, :]
    np.testing.assert_allclose(_dense(hessian.preconditioned(p)), expected, rtol=1e-12, atol=1e-14)
    eigenvalue = analysis_tools.sharpness(hessian.preconditioned(p), tolerance=1e-10)
    assert eigenvalue == pytest.approx(np.linalg.eigvalsh(expected).max(), rel=1e-8)


def test_composition_refuses_what_is_not_an_operator_of_the_same_variables(operators):
    model, hessian, _ = operators
    for bad in (0.0, -1.0, np.nan):
        with pytest.raises(ValueError, match=r"positive \(\+inf allowed\)"):
            hessian.preconditioned([np.full(v.shape, bad) for v in model.trainable_variables])
    with pytest.raises(ValueError, match="tensors for"):
        hessian.preconditioned(_preconditioner(model)[:2])
    with pytest.raises(ValueError, match="different variables"):
        hessian + hessian.block("head")
    with pytest.raises(TypeError, match="not symmetric"):
        hessian @ hessian
    with pytest.raises(TypeError):
        hessian + 1.0
    with pytest.raises(ValueError, match="use `.preconditioned"):
        (2 * hessian).solver(preconditioned=True)


def test_a_composed_product_runs_inside_tf_function(operators):
    model, hessian, ggn = operators
    composed = (hessian - ggn).preconditioned(_preconditioner(model))
    v = tf.constant(np.random.default_rng(2).normal(size=composed.dimension))
    np.testing.assert_allclose(tf.function(composed.matvec)(v).numpy(), composed.matvec(v).numpy(), rtol=1e-12)
