"""examples/gradient_noise.py runs on tiny flags and measures the noise of four models."""

import pytest

from tests.examples.runner import run_example

FIGURES = ("noise_histograms.png", "empirical_variance.png", "noise_over_training.png")


@pytest.mark.slow
def test_gradient_noise_writes_figures_and_reads_gaussian_input_noise_as_light_tailed(tmp_path):
    _, results = run_example(
        "gradient_noise", tmp_path,
        ["--num_windows=400", "--num_batches=30", "--num_coordinates=500", "--epochs=1", "--num_blocks=1"],
        figures=FIGURES, results_file="gradient_noise.json", timeout=600,
    )
    start = results["at_initialization"]
    assert set(start) == {"attention+text", "attention+gaussian", "mlp+text", "mlp+gaussian"}
    for name, summary in start.items():
        assert 0 < summary["tail_index"] <= 2.0, name
    # The Gaussian-input control without attention (the paper's Fig. 4d): light-tailed noise.
    assert start["mlp+gaussian"]["tail_index"] >= 1.9
    assert [r["epoch"] for r in results["over_training"]["attention"]] == [0, 1]
    assert len(results["verdicts"]) == 5
