"""Every instrument on the models users bring: KerasHub transformers and keras.applications networks.

For each model of `zoo.IN_SUITE` (`tests/analysis_tools/zoo.py`; small configurations,
dropout off), a few steps of `fit` with `tf_adaptive.Adam` run with the three
callbacks, measuring λ1(H), λ1(P⁻¹H), tr(H), tr(P⁻¹H), the SLQ density, one
nested block's λ1 (a transformer block inside the backbone, a layer of the
last block), the gradient noise with B_simple per variable, and the law of
the update; then the same quantities through the functions, outside `fit`, on
the callback's own operators (so the product and the Lanczos loops are traced
once). Every value
must be finite, and the measurements must agree with each other where they
measure the same thing at the same weights: the functions' λ1 with the
callback's, a diagonal block's λ1 at most the network's, a density whose
largest node is at most λ1.

The transformers are measured with XLA-compiled products (the default;
GPT-2 needs the second-order rule of `analysis_tools._second_order`
for the slice in its position embedding under XLA, as BERT does in the sweep). The keras.applications
networks are measured in graph mode, products and gradients (the same numbers to
rounding; `benchmarks/zoo_cost.py` runs them whole and under XLA), and, to
keep the suite within its time, with the layers before their last block
frozen: that block holds the kinds of layer the network is made of
(convolutions, batch or layer normalization, activations, the residual
addition, squeeze-and-excitation), so second order still runs through each
of them, while a product costs a fraction of the whole network's.

`test_top_eigenpair_passes_finite_differences` checks, on GPT-2 and Llama, the returned top
eigenpair itself, in float64: the central difference of first-order
gradients along the eigenvector, (g(θ+εv) − g(θ−εv)) / 2ε, must equal λv.
The other models, and every buildable KerasHub and keras.applications architecture, are checked the same
way by `benchmarks/zoo_sweep.py` (docs/ZOO_SWEEP.md), which a release runs.
"""

import numpy as np
import pytest

import analysis_tools
from analysis_tools.curvature.quantities import Density, Trace
from tests.analysis_tools import zoo

pytest.importorskip("keras_hub")

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", zoo.IN_SUITE)
@pytest.mark.slow
def test_every_instrument_in_and_out_of_fit(name):
    model, (x, y) = zoo.build(name, jit_compile=False, frozen_trunk=name in zoo.APPLICATIONS)
    block = zoo.BLOCKS[name]
    jit = name in zoo.TRANSFORMERS
    sharpness = analysis_tools.SharpnessCallback(
        (x, y),
        every_n_steps=4,
        blocks=[block],
        quantities=[Trace(num_products=3), Density(num_iterations=4)],
        tolerance=1e-3,
        warm_start=False,
        jit_compile=jit,
    )
    noise = analysis_tools.GradientNoiseCallback(
        (x, y), batch_size=2, num_batches=2, num_coordinates=0, per_layer=True, at_start=False, jit_compile=jit
    )
    updates = analysis_tools.UpdateDistributionCallback(layers=[block], steps=2)
    history = model.fit(x, y, batch_size=2, epochs=2, verbose=0, shuffle=False, callbacks=[sharpness, noise, updates])

    # In fit: every quantity logged, finite, consistent.
    logs = {key: values[-1] for key, values in history.history.items()}
    for key in (
        "sharpness",
        "preconditioned_sharpness",
        "stability_threshold",
        "sharpness_ratio",
        "hessian_trace",
        "preconditioned_hessian_trace",
        f"sharpness/{block}",
        f"preconditioned_sharpness/{block}",
        "noise_scale",
    ):
        assert np.isfinite(logs[key]), (name, key, logs[key])
    assert logs["sharpness"] > 0.0 and logs["preconditioned_sharpness"] > 0.0
    assert logs[f"sharpness/{block}"] <= logs["sharpness"] * (1.0 + 2e-2)  # a diagonal block's λ1 ≤ λ1
    record = sharpness.records[-1]
    assert record.step == 4  # measured after the last step: at the weights the functions see below
    density = record.densities["preconditioned"]
    assert max(np.max(nodes) for nodes in density.nodes) <= logs["preconditioned_sharpness"] * (1.0 + 2e-2)
    per_variable = [key for key in noise.records[-1].values if key.startswith("noise_scale/")]
    assert len(per_variable) == len(model.trainable_variables)
    assert len(updates.records) == 4  # one per optimizer step
    for update in updates.records:
        assert set(update.variance) == {block}
        assert np.isfinite(update.variance[block]) and update.variance[block] > 0.0

    # Out of fit: the functions, on the callback's operators (traced once), at the same weights.
    operator = sharpness.operator
    raw = analysis_tools.sharpness(operator, tolerance=1e-4)
    np.testing.assert_allclose(raw, logs["sharpness"], rtol=1e-2)
    preconditioned = analysis_tools.preconditioned_sharpness(operator, model.optimizer, tolerance=1e-4)
    np.testing.assert_allclose(preconditioned, logs["preconditioned_sharpness"], rtol=1e-2)
    trace = analysis_tools.hessian_trace(operator, num_products=6)
    assert np.isfinite(trace.estimate) and np.isfinite(trace.standard_error)
    preconditioner = analysis_tools.preconditioner_of(model.optimizer, model.trainable_variables)
    density = analysis_tools.curvature.spectral_density(
        operator, preconditioner=preconditioner, num_vectors=1, num_iterations=4
    )
    low, high = density.support
    assert low <= high <= preconditioned * (1.0 + 1e-2)  # SLQ's nodes lie within the spectrum of P⁻¹H
    # Every function ran on the callback's own solvers (`HessianOperator.solver`): no loop traced again.
    assert all(solver._function.experimental_get_tracing_count() == 1 for solver in operator._solvers.values())
    kinds = [key[0] == "masked" for key in operator._solvers]
    assert kinds.count(False) == 3  # λ1 of H and of P⁻¹H, and the density of P⁻¹H (4 steps)
    assert kinds.count(True) == 2  # the block's λ1 of H and of P⁻¹H, in the loops all blocks share
    block_sharpness = analysis_tools.sharpness(sharpness.layer_operators[block], tolerance=1e-4)
    np.testing.assert_allclose(block_sharpness, logs[f"sharpness/{block}"], rtol=1e-2)
    assert block_sharpness <= raw * (1.0 + 1e-2)
    if name == "gpt2":  # (the callback runs this function; checking its draw on one model is enough)
        result = analysis_tools.gradient_noise(
            model, (x, y), batch_size=2, num_batches=2, per_layer=True, seed=len(noise.records) - 1, jit_compile=jit
        )  # the callback's draw
        np.testing.assert_allclose(result.noise_scale, logs["noise_scale"], rtol=1e-6)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
@pytest.mark.slow
def test_top_eigenpair_passes_finite_differences(name):
    """(g(θ+εv) − g(θ−εv)) / 2ε = λv for the top eigenpair (λ, v) of H, in float64.

    GPT-2 through XLA, Llama with its float32 rotary embedding; benchmarks/zoo_sweep.py runs the same
    check on every other architecture (docs/ZOO_SWEEP.md).
    """
    model, data = zoo.build(name, dtype="float64", jit_compile=False)
    model.fit(*data, batch_size=2, epochs=1, verbose=0, shuffle=False)
    # GPT-2's products under XLA (through the second-order rule of its position embedding's slice); Llama's
    # in graph mode, the same derivatives without an XLA compilation.
    operator = analysis_tools.HessianOperator(model, data, jit_compile=name == "gpt2")
    result = analysis_tools.hessian_eigenvalues(operator, tolerance=1e-8, max_iterations=80, return_vectors=True)
    eigenvalue, vector = float(result.eigenvalues[0]), result.eigenvectors[0]
    assert result.residuals[0] <= 1e-6 * abs(eigenvalue)
    errors = zoo.finite_difference_errors(operator, eigenvalue, vector.numpy())
    # Llama and Gemma compute their rotary embedding in float32 inside a float64 model, so their
    # gradients carry float32 rounding (~1e-7 of ‖g‖ / ε): the best ε is then the largest.
    assert min(errors.values()) < 2e-4, (name, eigenvalue, errors)
    assert eigenvalue > 0.0
