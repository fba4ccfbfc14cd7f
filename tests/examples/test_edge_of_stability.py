"""examples/edge_of_stability.py runs on tiny flags and finds full-batch Adam at 38/η (Cohen et al. 2022, Fig. 1)."""

import numpy as np
import pytest

from tests.examples.runner import run_example


@pytest.mark.slow
def test_edge_of_stability_writes_figures_and_adam_equilibrates_at_38_over_eta(tmp_path):
    _, results = run_example(
        "edge_of_stability",
        tmp_path,
        [
            "--optimizer=adam_no_bias_correction",
            "--optimizer=frozen_adam",
            "--learning_rates=0.002",
            "--frozen_initial_ratios=1.0",
            "--num_examples=128",
            "--steps=100",
            "--measure_every=10",
            "--freeze_step=20",
        ],
        figures=("trajectories.png", "ratios.png"),
    )

    (adam,) = results["runs"]["adam_no_bias_correction"]
    assert adam["threshold_constant"] == pytest.approx(38.0, rel=1e-5)  # (2 + 2β1)/(1 - β1) at β1 = 0.9
    assert [record["step"] for record in adam["records"]] == list(range(10, 101, 10))
    # Fig. 1: λ1(P⁻¹H) starts below 38/η, reaches it, and its late-training median sits at it.
    assert adam["initial_ratio"] < 0.9
    assert adam["arrival_step"] is not None
    assert 0.7 <= adam["late_median_ratio"] <= 1.3
    # The tracker's estimate at every step: a Rayleigh quotient, never above certified λ1 (tolerance 1e-2).
    tracked = {record["step"]: record["preconditioned_sharpness"] for record in adam["tracked"]}
    assert sorted(tracked) == list(range(1, 101))
    for record in adam["records"]:
        assert tracked[record["step"]] <= record["preconditioned_sharpness"] * (1 + 1e-2)
    late = [r for r in adam["records"] if r["step"] > 50]
    assert np.median([tracked[r["step"]] / r["preconditioned_sharpness"] for r in late]) > 0.9

    (frozen,) = results["runs"]["frozen_adam"]
    assert frozen["threshold_constant"] == pytest.approx(38.0, rel=1e-5)
    initial = results["frozen_adam"]["initial_preconditioned_sharpness"]
    assert frozen["learning_rate"] == pytest.approx(38.0 / initial, rel=1e-5)  # ratio 1.0 at the start
    assert not frozen["diverged"]

    assert all(row["verdict"] in ("agree", "disagree") for row in results["verdicts"])
    assert results["flags"]["labels"] == "true" and results["flags"]["label_agreement"] == 1.0


@pytest.mark.slow
def test_edge_of_stability_random_labels_are_not_the_true_ones_and_the_run_completes(tmp_path):
    stdout, results = run_example(
        "edge_of_stability",
        tmp_path,
        [
            "--labels=random",
            "--optimizer=adam",
            "--optimizer=frozen_adam",
            "--learning_rates=0.0002",
            "--frozen_initial_ratios=0.5",
            "--freeze_learning_rate=0.0002",
            "--freeze_step=10",
            "--num_examples=128",
            "--steps=20",
            "--measure_every=10",
        ],
        figures=("trajectories.png", "ratios.png"),
    )

    assert "random labels" in stdout
    assert results["flags"]["labels"] == "random"
    # A permutation of the labels over the images: about 1 in 10 match the true label by chance.
    assert results["flags"]["label_agreement"] < 0.3
    assert results["frozen_adam"]["freeze_learning_rate"] == pytest.approx(2e-4)
    for name in ("adam", "frozen_adam"):
        (run,) = results["runs"][name]
        assert [record["step"] for record in run["records"]] == [10, 20]
        assert len(run["losses"]) == 20 and not run["diverged"]
