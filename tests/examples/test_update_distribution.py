"""examples/update_distribution.py runs on tiny flags and reproduces Zhang & Ziyin's Corollaries 1–2."""

import pytest

from tests.examples.runner import run_example

FIGURES = ("theory.png", "normal.png", "gradient_laws.png", "network.png", "variance.png")


@pytest.mark.slow
def test_update_distribution_writes_figures_and_matches_corollaries_1_and_2(tmp_path):
    _, results = run_example(
        "update_distribution",
        tmp_path,
        ["--steps=6", "--num_parameters=20000", "--learning_rates=0.001"],
        figures=FIGURES,
    )
    moments = results["synthetic"]["normal_moments"]
    assert moments["m"] == [1, 2, 3, 4, 5, 6]
    # Corollary 2: Var|Δθ| = 1 − 4mΓ(m/2)²/((m−1)²πΓ((m−1)/2)²) = 0.2969 at m = 5 (s.e. ≈ 0.002 here).
    assert moments["corollary_2"][4] == pytest.approx(0.29690, abs=1e-4)
    assert moments["abs_variance"][4] == pytest.approx(0.2969, abs=0.02)
    # Corollary 1: Var Δθ = 1 at every m; m = 1 is a random sign, so Var|Δθ| = 0 there.
    assert moments["variance"] == pytest.approx([1.0] * 6, abs=0.05)
    assert moments["abs_variance"][0] == pytest.approx(0.0, abs=1e-6)
    # Fig. 7: standard Cauchy gradients give three modes, near −√m, 0 and √m.
    cauchy_m3 = results["synthetic"]["laws"]["cauchy"]["steps"][2]
    assert cauchy_m3["modes"] == pytest.approx([-(3**0.5), 0.0, 3**0.5], abs=0.2)
    claims = [row["claim"] for row in results["verdicts"]]
    assert len(claims) == 12 and all(row["verdict"] in ("agree", "disagree") for row in results["verdicts"])
