"""examples/acclip_vs_adam.py trains its transformer LM on tiny settings and it learns."""

import math

import pytest

from tests.examples.runner import run_example


@pytest.mark.slow
def test_acclip_vs_adam_writes_figures_and_the_language_model_learns(tmp_path):
    _, results = run_example(
        "acclip_vs_adam", tmp_path,
        ["--steps=20", "--eval_every=10", "--num_blocks=1", "--validation_windows=32",
         "--optimizers=Adam,ACClip", "--adam_learning_rates=3e-3", "--acclip_learning_rates=1"],
        figures=("curves.png", "lr_sweep.png"),
    )

    # At initialization the byte predictions are near uniform: validation loss ≈ ln 256 ≈ 5.55.
    # Twenty steps of either optimizer must cut it by more than a nat (in the default run
    # they reach ≈ 3.0–3.5 by step 20), which a broken model, loss or update would not.
    uniform = math.log(256.0)
    assert results["uniform_loss"] == pytest.approx(uniform)
    for name in ("Adam", "ACClip"):
        run = results["runs"][name]["1" if name == "ACClip" else "0.003"]
        assert abs(run["val_loss"][0] - uniform) < 0.5, run["val_loss"]
        assert results["summary"][name]["val_loss"] < uniform - 1.0, results["summary"][name]
        assert len(run["train_loss"]) == 20
    assert results["verdicts"][-1]["verdict"] == "agree"  # every optimizer below ln 256
