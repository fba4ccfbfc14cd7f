"""examples/preconditioner_alignment.py: Adam's P against four curvature diagonals, on tiny settings."""

import pytest

from tests.examples.runner import run_example


@pytest.mark.slow
def test_preconditioner_alignment_measures_every_curvature_at_every_step(tmp_path):
    _, results = run_example(
        "preconditioner_alignment",
        tmp_path,
        [
            "--steps=20",
            "--measure_every=10",
            "--windows=64",
            "--probe_windows=16",
            "--fisher_samples=2",
            "--width=16",
            "--num_blocks=1",
            "--seeds=0,1",
        ],
        figures=("alignment.png",),
    )
    assert [run["seed"] for run in results["runs"]] == [0, 1]
    for run in results["runs"]:
        assert [r["step"] for r in run["records"]] == [10, 20]
        for record in run["records"]:
            for curvature in ("empirical_fisher", "fisher"):
                measured = record[curvature]
                assert -1.0 <= measured["rank_correlation"] <= 1.0 and 0.0 < measured["cosine"] <= 1.0
                assert measured["coordinates"] + measured["excluded"] == run["parameters"]
            assert record["empirical_fisher"]["diagonal_standard_error"] == 0  # exact
            assert record["fisher"]["diagonal_standard_error"] > 0  # label draws: a random estimate
    assert len(results["verdicts"]) == 1
