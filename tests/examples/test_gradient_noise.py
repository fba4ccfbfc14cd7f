"""examples/gradient_noise.py: the seed-gated verdicts, the vector view's isometric rows, and a tiny run."""

import os
import sys

import numpy as np
import pytest

from analysis_tools import tail_index
from analysis_tools.noise import empirical_variance_vs_sample_size
from tests.examples.runner import run_example

sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "examples")
)
import gradient_noise

FIGURES = ("noise_histograms.png", "empirical_variance.png", "noise_over_training.png", "tail_index_by_seed.png")


def test_isometric_rows_leave_the_vector_view_unchanged():
    rng = np.random.default_rng(0)
    vectors = (rng.standard_t(3, size=(64, 500)) * rng.uniform(0.1, 3.0, size=500)).astype(np.float32)
    rows = gradient_noise.isometric_rows(vectors)
    assert rows.shape == (64, 64)
    np.testing.assert_allclose(
        rows @ rows.T, vectors.astype(np.float64) @ vectors.T.astype(np.float64), rtol=1e-4, atol=1e-3
    )
    for estimator in ("simsekli", "hill"):
        assert tail_index(rows, estimator).alpha == pytest.approx(tail_index(vectors, estimator).alpha, rel=1e-4)
    np.testing.assert_allclose(
        empirical_variance_vs_sample_size(rows).variance, empirical_variance_vs_sample_size(vectors).variance, rtol=1e-4
    )


@pytest.mark.slow
def test_gradient_noise_runs_two_seeds_both_views_and_gates_its_verdicts(tmp_path):
    _, results = run_example(
        "gradient_noise",
        tmp_path,
        [
            "--seeds=0,1",
            "--num_windows=400",
            "--num_batches=30",
            "--num_coordinates=500",
            "--train_steps=20",
            "--num_blocks=1",
            "--nojit_compile",
        ],
        figures=FIGURES,
        results_file="gradient_noise.json",
    )
    assert results["view"] == "vectors" and results["seeds"] == [0, 1]
    for seed in ("0", "1"):
        run = results["runs"][seed]
        assert set(run["at_initialization"]) == {"attention+text", "attention+gaussian", "mlp+text", "mlp+gaussian"}
        assert set(run["after_training"]) == {"attention+text", "mlp+text"}
        for stage in ("at_initialization", "after_training"):
            for name, summary in run[stage].items():
                for view in ("vectors", "coordinates"):
                    assert 0 < summary[view]["tail_index"] <= 2.0, (seed, stage, name, view)
        # The Gaussian-input control without attention (the paper's Fig. 4d): light-tailed noise vectors.
        assert run["at_initialization"]["mlp+gaussian"]["vectors"]["tail_index"] >= 1.9
        assert run["gaussian_reference"]["vectors"]["tail_index_unclipped"] == pytest.approx(2.0, abs=0.1)
    for rows in (results["verdicts"], results["verdicts_other_view"]):
        assert len(rows) == 5
        for row in rows:
            assert row["verdict"] in ("agree", "disagree", "no verdict")
            decided = row["gap"] is not None and row["spread"] is not None and abs(row["gap"]) > row["spread"]
            assert (row["verdict"] != "no verdict") == decided, row
