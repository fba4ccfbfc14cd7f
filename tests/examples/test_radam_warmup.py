"""examples/radam_warmup.py: the seed-gated verdicts, and a tiny run that reproduces Liu et al.'s Figs. 8 and 9."""

import os
import sys

import numpy as np
import pytest

from tests.examples.runner import run_example

sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "examples")
)
import radam_warmup

OPTIMIZERS = ("Adam", "Adam + warmup", "RAdam")


def warmup_case(warmup, radam):
    """A result/summary pair with only what `warmup_verdicts` reads: lengths 25, 100, 400 at η = 0.03."""
    result = dict(warmup_lengths=[25, 100, 400], warmup_multipliers=[0.25, 1.0, 4.0], warmup_learning_rate=0.03)
    return result, dict(warmup=np.asarray(warmup, dtype=np.float64), warmup_radam=np.asarray(radam))


def test_warmup_claim_needs_a_length_dependence_beyond_the_spread():
    # Rows are seeds, columns the warmup lengths. The length matters (gap 1.0 > spread 0.1).
    warmup = [[3.0, 2.7, 3.7], [3.1, 2.8, 3.8]]
    needs_tuning, removes = radam_warmup.warmup_verdicts(*warmup_case(warmup, [2.75, 2.85]))
    assert needs_tuning["verdict"] == "agree" and "best 1× (100 steps)" in needs_tuning["measured"]
    assert "worst 4× (400 steps)" in needs_tuning["measured"]
    assert removes["verdict"] == "agree"  # RAdam 0.05 above the best length, within the spread 0.1
    _, removes = radam_warmup.warmup_verdicts(*warmup_case(warmup, [3.3, 3.4]))
    assert removes["verdict"] == "disagree" and "gap 0.60 > spread 0.10" in removes["measured"]
    # The warmup length makes no difference beyond the noise: nothing to tune, no verdict on RAdam.
    flat = [[3.0, 2.7, 3.1], [2.6, 3.2, 2.9]]
    needs_tuning, removes = radam_warmup.warmup_verdicts(*warmup_case(flat, [3.3, 3.4]))
    assert needs_tuning["verdict"] == "no verdict" and removes["verdict"] == "no verdict"
    assert "within spread" in removes["measured"]


@pytest.mark.slow
def test_radam_warmup_writes_figures_and_reproduces_the_variance_of_psi(tmp_path):
    _, results = run_example(
        "radam_warmup",
        tmp_path,
        [
            "--steps=10",
            "--eval_every=5",
            "--learning_rates=0.01,0.03",
            "--seeds=0,1",
            "--warmup_multipliers=0.5,1",
            "--warmup_steps=4",
            "--simulation_coordinates=20000",
            "--simulation_steps=40",
            "--num_layers=1",
            "--model_dim=16",
            "--sequence_length=16",
            "--validation_windows=32",
        ],
        figures=("variance.png", "simulation.png", "sweep.png", "warmup.png"),
    )

    # Fig. 8: the first-order approximation ρ/(2(ρ−2)(ρ−4)) meets the exact Eq. 4 for large ρ
    # and overestimates it about 3.3× at ρ = 5, where RAdam starts rectifying.
    curves = results["variance"]
    rho, exact, first_order = curves["rho"], curves["exact"], curves["first_order"]
    assert first_order[-1] == pytest.approx(exact[-1], rel=0.005) and rho[-1] == pytest.approx(2000.0)
    at_five = min(range(len(rho)), key=lambda i: abs(rho[i] - 5.0))
    assert 2.5 < first_order[at_five] / exact[at_five] < 4.0
    for row in curves["monte_carlo"][1:]:  # ρ ≥ 10; ρ = 6 is heavy-tailed for 2·10⁵ samples
        assert row["variance"] == pytest.approx(row["exact"], rel=0.05), row

    # Fig. 9: Adam's simulated Var ψ_t follows the SMA model at ρ_t and falls; r_t ψ_t does not.
    paper = next(sim for sim in results["simulation"] if sim["beta_2"] == 0.999)
    t = 20
    assert paper["variance"][t - 1] == pytest.approx(paper["sma_model"][t - 1], rel=0.1)
    assert paper["variance"][5] > 10 * paper["variance"][-1]
    assert paper["first_rectified_step"] == 6

    # Every seed trains every optimizer at every η, and the warmup lengths at the largest η;
    # the run shared by the sweep and the warmup comparison (1×, η = 0.03) is the same run.
    sweep = results["sweep"]
    assert sweep["seeds"] == [0, 1] and sweep["warmup_lengths"] == [2, 4]
    assert sweep["warmup_learning_rate"] == 0.03
    for seed in sweep["per_seed"]:
        assert set(seed["runs"]) == set(OPTIMIZERS)
        for name in OPTIMIZERS:
            assert [run["learning_rate"] for run in seed["runs"][name]] == [0.01, 0.03]
            for run in seed["runs"][name]:
                # Ten steps leave the loss near its initial ≈ 8 bits (log2 256); a divergence scores 8.
                assert run["step"] == [5, 10] and 0.0 < run["final_bits"] < 9.0
        assert [run["warmup_steps"] for run in seed["warmup"]["runs"]] == [2, 4]
        assert seed["warmup"]["runs"][1] == seed["runs"]["Adam + warmup"][1]
        assert seed["warmup"]["radam"] == seed["runs"]["RAdam"][1]
    # Different seeds draw different data and weights.
    assert (
        sweep["per_seed"][0]["runs"]["RAdam"][0]["final_bits"] != sweep["per_seed"][1]["runs"]["RAdam"][0]["final_bits"]
    )
    summary = results["summary"]
    assert len(summary["range_over_rates"]["RAdam"]) == 2 and len(summary["warmup_bits"]) == 2
    rows = results["verdicts"]
    assert all(row["verdict"] in ("agree", "disagree", "no verdict") for row in rows)
    for row in rows[-7:]:  # the language-model rows carry their gap and spread
        assert "spread" in row and "gap" in row, row
