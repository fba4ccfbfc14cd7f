"""examples/radam_warmup.py runs on tiny flags and reproduces Liu et al.'s Figs. 8 and 9."""

import pytest

from tests.examples.runner import run_example

OPTIMIZERS = ("Adam", "Adam + warmup", "RAdam")


@pytest.mark.slow
def test_radam_warmup_writes_figures_and_reproduces_the_variance_of_psi(tmp_path):
    _, results = run_example(
        "radam_warmup", tmp_path,
        ["--steps=10", "--eval_every=5", "--learning_rates=0.01", "--simulation_coordinates=20000",
         "--simulation_steps=40", "--num_layers=1", "--model_dim=16", "--sequence_length=16",
         "--validation_windows=32"],
        figures=("variance.png", "simulation.png", "sweep.png"),
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

    runs = results["sweep"]["runs"]
    assert set(runs) == set(OPTIMIZERS)
    for name in OPTIMIZERS:
        (run,) = runs[name]
        assert run["learning_rate"] == 0.01 and run["step"] == [5, 10]
        assert 0.0 < run["final_bits"] <= 8.0
    assert all(row["verdict"] in ("agree", "disagree") for row in results["verdicts"])
