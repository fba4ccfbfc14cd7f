"""examples/gpt2_instruments.py: a KerasHub GPT-2 with the three instruments and TensorBoard, on tiny settings."""

import glob
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.examples.runner import run_example

pytest.importorskip("keras_hub")

BLOCK = "transformer_layer_0"


def tensorboard_scalars(run_dir):
    """{tag: [(step, value)]} of the scalar summaries in a TensorBoard run directory."""
    scalars = {}
    for path in glob.glob(os.path.join(run_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "scalars":
                    scalars.setdefault(value.tag, []).append((event.step, float(tf.make_ndarray(value.tensor))))
    return scalars


def finite(structure):
    """Whether every number in nested dicts and lists is finite (the results JSON writes NaN and ±inf as null)."""
    if isinstance(structure, dict):
        return all(finite(item) for item in structure.values())
    if isinstance(structure, list):
        return all(finite(item) for item in structure)
    return structure is not None and (not isinstance(structure, float) or math.isfinite(structure))


@pytest.mark.slow
def test_gpt2_instruments_measures_a_block_and_writes_figure_json_and_tensorboard(tmp_path):
    # Tracing and compiling dominate at this size: one block, no XLA (--nojit_compile) and one noise
    # measurement (each one traces the gradient anew) keep the run under half a minute on 2 cores.
    stdout, results = run_example(
        "gpt2_instruments",
        tmp_path,
        [
            "--num_windows=64",
            "--sequence_length=16",
            "--num_layers=1",
            "--hidden_dim=16",
            "--intermediate_dim=32",
            "--num_heads=2",
            "--batch_size=8",
            "--steps=2",
            "--measure_every=2",
            "--noise_every=4",
            "--update_every=1",
            "--probe_windows=8",
            "--num_batches=2",
            f"--blocks={BLOCK}",
            "--trace",
            "--trace_products=6",
            "--nojit_compile",
        ],
        figures=("instruments.png",),
    )
    assert results["blocks"] == [BLOCK]
    assert results["stability_threshold"] == pytest.approx(38 / 3e-3, rel=1e-6)
    [measurement] = results["sharpness"]
    assert measurement["step"] == 2
    for key in (
        "sharpness",
        "preconditioned_sharpness",
        f"sharpness/{BLOCK}",
        f"preconditioned_sharpness/{BLOCK}",
        "hessian_trace",
        "preconditioned_hessian_trace",
    ):
        assert np.isfinite(measurement[key]) and measurement[key] != 0.0, key
    assert [r["step"] for r in results["noise"]] == [0]  # --noise_every beyond --steps: at the start only
    assert [r["step"] for r in results["updates"]] == [2]  # step 1 has no reference law (m ≤ 1)
    block_row, network_row = results["table"]
    assert block_row["block"] == BLOCK and network_row["block"] == "network"
    assert block_row["noise_scale_max_variable"].startswith(f"{BLOCK}/")
    assert finite(results["table"]) and finite(results["sharpness"]) and finite(results["noise"])
    assert finite(results["updates"]) and np.isfinite(results["validation_loss"])
    # The tracker at every step: the secant needs two updates (NaN, written null, at step 1); its power
    # iteration is a Rayleigh quotient of the same probe's P^{-1/2} H P^{-1/2}, never above certified λ1.
    first, second = results["tracked"]
    assert (first["step"], second["step"]) == (1, 2)
    assert first["update_curvature"] is None and np.isfinite(second["update_curvature"])
    assert second["power_preconditioned_sharpness"] <= measurement["preconditioned_sharpness"] * 1.02
    assert len(results["verdicts"]) == 4
    assert "network" in stdout and "nan" not in stdout.split("At the last measurement")[1].split("\n\n")[0]

    # Keras's TensorBoard logs every instrument's values per epoch; each instrument writes its own run too.
    runs = {
        name: tensorboard_scalars(os.path.join(tmp_path, "tensorboard", name))
        for name in ("train", "sharpness", "noise", "updates")
    }
    for run, tag in (
        ("train", "epoch_preconditioned_sharpness"),
        ("train", "epoch_noise_scale"),
        ("train", f"epoch_update_ks/{BLOCK}"),
        ("sharpness", f"preconditioned_sharpness/{BLOCK}"),
        ("noise", "noise_scale"),
        ("updates", f"update_ks/{BLOCK}"),
    ):
        assert runs[run].get(tag), (run, tag, sorted(runs[run]))
        assert all(np.isfinite(value) for _, value in runs[run][tag]), (run, tag)
