"""examples/curvature_spectrum.py: the P⁻¹H density before and at the edge of stability, on tiny settings."""

import os
import sys

import numpy as np
import pytest

from tests.examples.runner import run_example

sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "examples")
)
import curvature_spectrum

from analysis_tools.curvature import SpectralDensity


def test_the_bulk_edge_is_the_weighted_quantile_of_the_spectral_mass():
    # Mass 0.5 at 0, 0.495 at 1 and 0.005 at 10 (one vector and the mean of two).
    density = SpectralDensity([np.array([0.0, 1.0, 10.0])], [np.array([0.5, 0.495, 0.005])], 200, 3)
    assert curvature_spectrum.weighted_quantile(density, 0.5) == 0.0
    assert curvature_spectrum.weighted_quantile(density, 0.99) == 1.0
    assert curvature_spectrum.weighted_quantile(density, 0.999) == 10.0
    summary = curvature_spectrum.describe(density, threshold=10.0)
    assert summary["top_ratio"] == 1.0 and summary["top_over_bulk"] == 10.0
    assert summary["mean_eigenvalue"] == pytest.approx(0.495 + 0.05)


@pytest.mark.slow
def test_curvature_spectrum_writes_its_figure_and_measures_both_densities(tmp_path):
    _, results = run_example(
        "curvature_spectrum",
        tmp_path,
        [
            "--num_examples=64",
            "--hidden_layers=2",
            "--hidden_units=16",
            "--steps=12",
            "--before_step=4",
            "--measure_every=4",
            "--density_vectors=2",
            "--density_iterations=8",
            "--seeds=0,1",
        ],
        figures=("density.png",),
    )
    assert [run["seed"] for run in results["runs"]] == [0, 1]
    for run in results["runs"]:
        assert run["before"]["step"] == 4 and run["after"]["step"] == 12
        assert run["threshold"] == pytest.approx(38 / 2e-3, rel=1e-6)
        assert [r["step"] for r in run["trajectory"]] == [4, 8, 12]
        for label in ("before", "after"):
            assert run[label]["products"] == 16
            assert run[label]["bottom"] <= run[label]["bulk_edge"] <= run[label]["top"]
        # The top SLQ node is a Lanczos estimate of λ1(P⁻¹H): close to the callback's at the same step.
        assert run["after"]["top_ratio"] == pytest.approx(run["trajectory"][-1]["ratio"], rel=0.05)
    assert len(results["verdicts"]) == 3
