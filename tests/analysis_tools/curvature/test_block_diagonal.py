"""Every block at once: D = diag(A_11, …, A_LL) in one probe pass, and L Lanczos in lockstep on it.

References: the dense matrix of the whole operator (one product per unit
vector), sliced to each block, and NumPy's eigenvalues of each slice. The
probe passes are counted at the source: a generator that counts how often it
is iterated.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import analysis_tools
from analysis_tools.curvature.block_diagonal import BlockDiagonalOperator, blockwise_eigenvalues
from analysis_tools.curvature.gauss_newton import GGNOperator


def _net():
    keras.utils.set_random_seed(6)
    model = keras.Sequential(
        [
            keras.Input((3,), dtype="float64"),
            keras.layers.Dense(5, activation="tanh", dtype="float64", name="first"),
            keras.layers.Dense(
                4, activation="softplus", dtype="float64", name="second", kernel_regularizer=keras.regularizers.L2(0.05)
            ),
            keras.layers.Dense(3, dtype="float64", name="head"),
        ]
    )
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(12, 3)), rng.integers(0, 3, 12)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64")
    return model, (x, y), loss


class _CountingProbe:
    """A probe set of 3 batches that counts the passes over it."""

    def __init__(self, x, y):
        self.x, self.y, self.passes = x, y, 0

    def __call__(self):
        self.passes += 1
        for start in range(0, len(self.x), 4):
            yield self.x[start : start + 4], self.y[start : start + 4]

    def dataset(self):
        spec = (tf.TensorSpec([None, 3], tf.float64), tf.TensorSpec([None], tf.int64))
        return tf.data.Dataset.from_generator(self, output_signature=spec)


def _dense(matvec, n):
    return np.stack([matvec(e).numpy() for e in np.eye(n)], axis=1)


def _reference(model, data, loss, curvature="hessian"):
    """(an operator on the arrays, in one batch: the same curvature, cheap products; its dense matrix)."""
    operator = analysis_tools.curvature.curvature_operator(model, data, curvature=curvature, loss=loss)
    return operator, _dense(operator.matvec, operator.dimension)


def _positions(operator, layer):
    offsets = np.cumsum([0] + operator.sizes)
    weights = operator.model.get_layer(layer).trainable_variables
    return np.concatenate(
        [
            np.arange(offsets[i], offsets[i + 1])
            for i, v in enumerate(operator.variables)
            if any(v is w for w in weights)
        ]
    )


@pytest.mark.parametrize("curvature", ["hessian", "ggn"])
@pytest.mark.slow
def test_every_block_product_in_one_pass_equals_the_dense_blocks(curvature):
    model, (x, y), loss = _net()
    probe = _CountingProbe(x, y)
    operator = analysis_tools.curvature.curvature_operator(model, probe.dataset(), curvature=curvature, loss=loss)
    _, dense = _reference(model, (x, y), loss, curvature)
    blocks = BlockDiagonalOperator(operator, {"head": "head", "first": "first", "second": "second"})
    assert blocks.names == ["head", "first", "second"] and blocks.dimension == operator.dimension
    order = np.concatenate([_positions(operator, name) for name in blocks.names])
    np.testing.assert_array_equal(np.concatenate(blocks.positions), order)
    mask = np.equal.outer(blocks.segments, blocks.segments)
    expected = dense[np.ix_(order, order)] * mask
    v = np.random.default_rng(0).normal(size=blocks.dimension)
    # One copy of the probe set (its arrays or stream) for every block.
    assert all(part.probe is operator.probe for part in blocks.operators)
    before = probe.passes
    product = blocks.matvec(v).numpy()
    assert probe.passes - before == 1 and blocks.num_passes == 1  # every block's product, one pass
    np.testing.assert_allclose(product, expected @ v, rtol=1e-10, atol=1e-13 * np.abs(expected @ v).max())
    for name, part in blocks.split(tf.constant(product)).items():
        assert part.shape[0] == len(_positions(operator, name))


@pytest.mark.slow
def test_lockstep_lanczos_gives_every_blocks_top_eigenvalues_with_one_pass_per_step():
    model, (x, y), loss = _net()
    probe = _CountingProbe(x, y)
    operator = analysis_tools.HessianOperator(model, probe.dataset(), loss=loss)
    reference, dense = _reference(model, (x, y), loss)
    blocks = BlockDiagonalOperator(operator, ["first", "second", "head"])
    before = probe.passes
    results = blockwise_eigenvalues(blocks, k=2, max_iterations=40, tolerance=1e-10, seed=1)
    steps = max(int(r.iterations) for r in results.values())
    assert probe.passes - before == steps == blocks.num_passes  # m steps: m passes, not Σ over blocks
    for (name, result), layer in zip(results.items(), ["first", "second", "head"]):
        rows = _positions(operator, layer)
        exact = np.sort(np.linalg.eigvalsh(dense[np.ix_(rows, rows)]))[::-1][:2]
        np.testing.assert_allclose(result.eigenvalues.numpy(), exact, rtol=1e-8, atol=1e-10 * abs(exact[0]))
        assert np.all(result.residuals.numpy() <= 1e-10 * np.abs(exact) + 1e-12)
        # The block's own Lanczos (an operator of its variables) agrees, and so does its T_m's spectrum.
        alone = analysis_tools.hessian_eigenvalues(reference.block(layer), k=2, tolerance=1e-10)
        np.testing.assert_allclose(result.eigenvalues.numpy(), alone.eigenvalues.numpy(), rtol=1e-8)
        a, b = result.alpha.numpy()[: int(result.iterations)], result.beta.numpy()[: int(result.iterations) - 1]
        top = np.linalg.eigvalsh(np.diag(a) + np.diag(b, 1) + np.diag(b, -1)).max()
        assert top == pytest.approx(exact[0], rel=1e-8)
    # The head (15 parameters) exhausts its Krylov space: its Ritz values are its eigenvalues.
    assert int(results["2"].iterations) <= 15


@pytest.mark.slow
def test_a_loose_tolerance_stops_each_block_on_its_own_and_the_model_blocks_are_the_default():
    model, data, loss = _net()
    operator = analysis_tools.HessianOperator(model, data, loss=loss)
    results = blockwise_eigenvalues(operator, k=1, tolerance=1e-2, seed=0)
    assert sorted(results) == sorted(analysis_tools.curvature.model_blocks(model))
    dense = _dense(operator.matvec, operator.dimension)
    for name, result in results.items():
        exact = np.linalg.eigvalsh(dense[np.ix_(_positions(operator, name), _positions(operator, name))]).max()
        assert abs(float(result.eigenvalues[0]) - exact) <= float(result.residuals[0]) + 1e-12
        assert float(result.residuals[0]) <= 1e-2 * abs(float(result.eigenvalues[0]))


def test_blocks_that_overlap_or_are_not_in_the_operator_are_refused():
    model, data, loss = _net()
    operator = analysis_tools.HessianOperator(model, data, loss=loss)
    with pytest.raises(ValueError, match="disjoint"):
        BlockDiagonalOperator(operator, {"a": ["first", "second"], "b": "second"})
    with pytest.raises(ValueError, match="not in the operator's block"):
        BlockDiagonalOperator(analysis_tools.HessianOperator(model, data, loss=loss, variables="head"), ["first"])
    with pytest.raises(ValueError, match="made with `block"):
        BlockDiagonalOperator(operator.block("head"))
    with pytest.raises(ValueError, match="curvature operator"):
        BlockDiagonalOperator(2 * operator)
    with pytest.raises(ValueError, match="empty"):
        BlockDiagonalOperator(operator, {})


@pytest.mark.slow
def test_every_problem_of_a_measurement_in_one_pass_per_step():
    # λ1 of H and of the GGN, raw and preconditioned, for two blocks each: 8 problems, one probe set.
    model, (x, y), loss = _net()
    probe = _CountingProbe(x, y)
    hessian = analysis_tools.HessianOperator(model, probe.dataset(), loss=loss)
    ggn = GGNOperator(model, hessian.probe, loss=loss)  # shares the Hessian's probe set and stream
    assert ggn.probe is hessian.probe
    p = [np.random.default_rng(i).uniform(0.3, 3.0, v.shape) for i, v in enumerate(model.trainable_variables)]
    s = 1.0 / np.sqrt(np.concatenate([a.ravel() for a in p]))
    blocks = ["first", "head"]
    parts = [
        BlockDiagonalOperator(operator, {f"{prefix}/{b}": b for b in blocks})
        for operator, prefix in (
            (hessian, "h"),
            (hessian.preconditioned(p), "h_p"),
            (ggn, "g"),
            (ggn.preconditioned(p), "g_p"),
        )
    ]
    stacked = BlockDiagonalOperator.stack(parts)
    before = probe.passes
    results = blockwise_eigenvalues(stacked, k=1, tolerance=1e-10, max_iterations=40)
    assert probe.passes - before == max(int(r.iterations) for r in results.values()) == stacked.num_passes
    dense = {"h": _reference(model, (x, y), loss)[1], "g": _reference(model, (x, y), loss, "ggn")[1]}
    for curvature in ("h", "g"):
        for block in blocks:
            rows = _positions(hessian, block)
            a = dense[curvature][np.ix_(rows, rows)]
            scaled = s[rows][:, None] * a * s[rows][None, :]
            for suffix, matrix in (("", a), ("_p", scaled)):
                value = float(results[f"{curvature}{suffix}/{block}"].eigenvalues[0])
                assert value == pytest.approx(np.linalg.eigvalsh(matrix).max(), rel=1e-8)
    with pytest.raises(ValueError, match="repeat"):
        BlockDiagonalOperator.stack([parts[0], parts[0]])
    other = analysis_tools.HessianOperator(model, (x, y), loss=loss)
    with pytest.raises(ValueError, match="different probe sets"):
        BlockDiagonalOperator.stack([parts[0], BlockDiagonalOperator(other, {"o": "head"})])
