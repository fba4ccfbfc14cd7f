"""examples/gradient_noise.py: the seed-gated verdicts, the vector view's isometric rows, and a tiny run."""

import os
import sys

import numpy as np
import pytest

from analysis_tools import empirical_variance_vs_sample_size, tail_index
from tests.examples.runner import run_example

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                "examples"))
import gradient_noise  # noqa: E402

FIGURES = ("noise_histograms.png", "empirical_variance.png", "noise_over_training.png", "tail_index_by_seed.png")
CLAIM = "a is heavier-tailed than b"


def test_verdict_only_when_the_gap_exceeds_the_seed_to_seed_spread():
    # Gap 0.20 between the means, spread 0.10 (the larger range): a verdict.
    row = gradient_noise.seed_verdict(CLAIM, "a", [1.70, 1.75, 1.80], "b", [1.95, 2.00, 1.95])
    assert row["verdict"] == "agree"
    assert row["gap"] == pytest.approx(0.2167, abs=1e-3) and row["spread"] == pytest.approx(0.10)
    assert "gap 0.22 > spread 0.10" in row["measured"]
    # The same gap the other way round: the claim is contradicted.
    assert gradient_noise.seed_verdict(CLAIM, "a", [1.95, 2.00, 1.95], "b", [1.70, 1.75, 1.80])["verdict"] == "disagree"
    # The case: the ordering flips between seeds, the gap is within the spread.
    row = gradient_noise.seed_verdict(CLAIM, "a", [1.70, 1.76], "b", [1.84, 1.70])
    assert row["verdict"] == "no verdict"
    assert "no verdict: gap 0.04 within spread 0.14" in row["measured"]
    # Gap equal to the spread: still no verdict; `larger=True` flips the claimed direction.
    assert gradient_noise.seed_verdict(CLAIM, "a", [1.0, 1.5], "b", [1.75, 1.75])["verdict"] == "no verdict"
    assert gradient_noise.seed_verdict(CLAIM, "a", [0.5, 0.6], "b", [0.0, 0.1], larger=True)["verdict"] == "agree"
    # One seed: no spread, any gap decides. A NaN anywhere: no verdict.
    assert gradient_noise.seed_verdict(CLAIM, "a", [1.9], "b", [2.0])["verdict"] == "agree"
    row = gradient_noise.seed_verdict(CLAIM, "a", [1.0, float("nan")], "b", [2.0, 2.0])
    assert row["verdict"] == "no verdict" and "NaN" in row["measured"]


def test_isometric_rows_leave_the_vector_view_unchanged():
    rng = np.random.default_rng(0)
    vectors = (rng.standard_t(3, size=(64, 500)) * rng.uniform(0.1, 3.0, size=500)).astype(np.float32)
    rows = gradient_noise.isometric_rows(vectors)
    assert rows.shape == (64, 64)
    np.testing.assert_allclose(rows @ rows.T, vectors.astype(np.float64) @ vectors.T.astype(np.float64), rtol=1e-4,
                               atol=1e-3)
    for method in ("simsekli", "hill"):
        assert tail_index(rows, method).alpha == pytest.approx(tail_index(vectors, method).alpha, rel=1e-4)
    np.testing.assert_allclose(empirical_variance_vs_sample_size(rows).variance,
                               empirical_variance_vs_sample_size(vectors).variance, rtol=1e-4)


@pytest.mark.slow
def test_gradient_noise_runs_two_seeds_both_views_and_gates_its_verdicts(tmp_path):
    _, results = run_example(
        "gradient_noise", tmp_path,
        ["--seeds=0,1", "--num_windows=400", "--num_batches=30", "--num_coordinates=500", "--train_steps=20",
         "--num_blocks=1"],
        figures=FIGURES, results_file="gradient_noise.json", timeout=600,
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
