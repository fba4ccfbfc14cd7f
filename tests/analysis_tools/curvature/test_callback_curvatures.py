"""`SharpnessCallback(curvature=...)`: the Gauss-Newton matrix and the Fishers tracked in `fit` beside the Hessian.

References: each curvature's dense matrix at the weights of the measurement
(one product per unit vector of a separately built operator) and NumPy's
eigenvalues of it, of P⁻¹A and of its blocks.
"""

import keras
import numpy as np
import pytest

import analysis_tools
import tf_adaptive
from analysis_tools.curvature.quantities import PreconditionerAlignment, PrincipalAngles, TopSubspaceFraction, Trace


def _fitted(callback, epochs=2):
    keras.utils.set_random_seed(9)
    model = keras.Sequential(
        [
            keras.Input((3,), dtype="float64"),
            keras.layers.Dense(4, activation="tanh", dtype="float64", name="hidden"),
            keras.layers.Dense(3, dtype="float64", name="head"),
        ]
    )
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(16, 3)), rng.integers(0, 3, 16)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64")
    model.compile(optimizer=tf_adaptive.Adam(0.05), loss=loss)
    callback.data = (x, y)
    history = model.fit(x, y, batch_size=16, epochs=epochs, verbose=0, callbacks=[callback])
    return model, (x, y), loss, history


def _dense(operator):
    return np.stack([operator.matvec(e).numpy() for e in np.eye(operator.dimension)], axis=1)


@pytest.mark.slow
def test_each_curvature_is_logged_under_its_own_names_and_equals_its_dense_eigenvalues():
    callback = analysis_tools.SharpnessCallback(
        None,
        every_n_steps=1,
        curvature=("ggn", "hessian"),
        tolerance=1e-10,
        max_iterations=31,
        blocks=["hidden"],
        quantities=[Trace(num_products=93)],
        warm_start=False,
    )
    model, data, loss, history = _fitted(callback)
    for key in (
        "sharpness",
        "preconditioned_sharpness",
        "ggn_sharpness",
        "ggn_preconditioned_sharpness",
        "ggn_sharpness/hidden",
        "sharpness/hidden",
        "ggn_trace",
        "preconditioned_ggn_trace",
        "hessian_trace",
        "sharpness_ratio",
    ):
        assert key in history.history, key
    record = callback.measure()  # at the final weights, where the references are built
    p = np.concatenate(
        [np.ravel(t) for t in analysis_tools.preconditioner_of(model.optimizer, model.trainable_variables)]
    )
    hidden = np.arange(3 * 4 + 4)  # the first layer's kernel and bias lead the flat vector
    for curvature, prefix in (("hessian", ""), ("ggn", "ggn_")):
        dense = _dense(analysis_tools.curvature.curvature_operator(model, data, curvature=curvature, loss=loss))
        values = record.values
        assert values[prefix + "sharpness"] == pytest.approx(np.linalg.eigvalsh(dense).max(), rel=1e-8)
        exact = np.linalg.eigvals(dense / p[:, None]).real.max()
        assert values[prefix + "preconditioned_sharpness"] == pytest.approx(exact, rel=1e-8)
        block = dense[np.ix_(hidden, hidden)]
        assert values[prefix + "sharpness/hidden"] == pytest.approx(np.linalg.eigvalsh(block).max(), rel=1e-8)
        trace_key = "hessian_trace" if curvature == "hessian" else "ggn_trace"
        # 93 products ≥ 3 × 31 parameters: Hutch++'s sketch spans the whole space, the trace is exact.
        assert values[trace_key] == pytest.approx(np.trace(dense), rel=1e-8)
    # The ratio is the first curvature's: the GGN's.
    threshold = analysis_tools.preconditioners.stability_threshold_of(model.optimizer)
    assert record.values["sharpness_ratio"] == pytest.approx(record.values["ggn_preconditioned_sharpness"] / threshold)
    assert callback.operator.curvature == "ggn"
    assert set(record.eigenvalues) == {
        "raw",
        "preconditioned",
        "raw/hidden",
        "preconditioned/hidden",
        "ggn:raw",
        "ggn:preconditioned",
        "ggn:raw/hidden",
        "ggn:preconditioned/hidden",
    }
    # The GGN of softmax cross-entropy is positive semi-definite; the Hessian need not be.
    assert record.eigenvalues["ggn:raw"][0] >= 0


@pytest.mark.slow
def test_the_fisher_takes_its_options_and_a_bad_curvature_is_refused():
    callback = analysis_tools.SharpnessCallback(
        None,
        every_n_steps=1,
        curvature="fisher",
        samples=2,
        label_seed=4,
        raw=True,
        preconditioned=False,
        warm_start=False,
        tolerance=1e-10,
    )
    model, data, loss, history = _fitted(callback, epochs=1)
    fisher = analysis_tools.curvature.FisherOperator(model, data, loss=loss, samples=2, label_seed=4)
    assert history.history["fisher_sharpness"][-1] == pytest.approx(np.linalg.eigvalsh(_dense(fisher)).max(), rel=1e-8)
    with pytest.raises(ValueError, match="curvature"):
        analysis_tools.SharpnessCallback(None, curvature="kfac")
    with pytest.raises(ValueError, match="distinct"):
        analysis_tools.SharpnessCallback(None, curvature=("ggn", "ggn"))
    with pytest.raises(ValueError, match="`samples` is an option of the fisher operator"):
        analysis_tools.SharpnessCallback(None, curvature="ggn", samples=3)


@pytest.mark.slow
def test_alignment_of_p_with_each_curvature_diagonal_is_logged_and_equals_the_dense_diagonals():
    callback = analysis_tools.SharpnessCallback(
        None,
        every_n_steps=1,
        curvature=("empirical_fisher", "ggn"),
        preconditioned=False,
        quantities=[PreconditionerAlignment(num_products=31)],
    )
    model, data, loss, history = _fitted(callback)
    for curvature in ("empirical_fisher", "ggn"):
        for statistic in ("rank_correlation", "cosine", "ratio_spread"):
            assert np.isfinite(history.history[f"{curvature}_alignment_{statistic}"][-1])
    record = callback.measure()
    p = analysis_tools.preconditioner_of(model.optimizer, model.trainable_variables)
    for curvature in ("empirical_fisher", "ggn"):
        # Both diagonals are exact here: per-example gradients, and 31 products for 31 parameters.
        dense = _dense(analysis_tools.curvature.curvature_operator(model, data, curvature=curvature, loss=loss))
        expected = analysis_tools.curvature.alignment(p, np.diag(dense))
        for statistic in ("rank_correlation", "cosine", "ratio_spread"):
            assert record.values[f"{curvature}_alignment_{statistic}"] == pytest.approx(
                getattr(expected, statistic), rel=1e-9, abs=1e-12
            )


@pytest.mark.slow
def test_lockstep_measures_every_problem_in_one_pass_per_step_and_agrees_with_the_sequential_runs():
    settings = dict(
        every_n_steps=1,
        curvature=("hessian", "ggn"),
        blocks=["hidden", "head"],
        tolerance=1e-8,
        max_iterations=31,
        warm_start=False,
    )
    lockstep = analysis_tools.SharpnessCallback(None, lockstep=True, **settings)
    _fitted(lockstep, epochs=1)
    sequential = analysis_tools.SharpnessCallback(None, **settings)
    _fitted(sequential, epochs=1)
    first, second = lockstep.records[-1], sequential.records[-1]
    assert set(first.values) == set(second.values) and len(first.eigenvalues) == 12
    for key, value in second.values.items():
        assert first.values[key] == pytest.approx(value, rel=1e-6), key
    # 12 problems, one probe pass per step: the passes are the slowest problem's steps.
    assert lockstep._lockstep.num_passes == max(first.iterations.values())
    assert sum(first.iterations.values()) > 3 * lockstep._lockstep.num_passes
    with pytest.raises(ValueError, match="Ritz vectors"):
        analysis_tools.SharpnessCallback(None, lockstep=True, quantities=[TopSubspaceFraction()])


@pytest.mark.slow
def test_the_angles_between_the_curvatures_top_eigenspaces_are_those_of_the_dense_eigenvectors():
    callback = analysis_tools.SharpnessCallback(
        None,
        every_n_steps=1,
        curvature=("hessian", "ggn", "empirical_fisher"),
        k=2,
        quantities=[PrincipalAngles()],
        tolerance=1e-10,
        max_iterations=31,
        preconditioned=False,
    )
    model, data, loss, _ = _fitted(callback)
    record = callback.measure()
    tops = {}
    for curvature in ("hessian", "ggn", "empirical_fisher"):
        operator = analysis_tools.curvature.curvature_operator(model, data, curvature=curvature, loss=loss)
        values, vectors = np.linalg.eigh(_dense(operator))
        tops[curvature] = vectors[:, -2:].T
    for first, second in (("hessian", "ggn"), ("hessian", "empirical_fisher"), ("ggn", "empirical_fisher")):
        expected = analysis_tools.curvature.principal_angles(tops[first], tops[second]).max()
        assert record.values[f"principal_angle/{first}_{second}"] == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="two curvatures"):
        analysis_tools.SharpnessCallback(None, quantities=[PrincipalAngles()])
