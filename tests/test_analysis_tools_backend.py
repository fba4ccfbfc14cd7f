"""On a backend other than TensorFlow, `analysis_tools` refuses at once, with an error that says why.

The script runs in a fresh interpreter with ``KERAS_BACKEND=jax`` (Keras reads
the backend once, at import). It builds and trains a small model on JAX,
then checks that the three callbacks refuse in their constructor, so that
`fit` never takes a training step with them, that the measurement functions
refuse before touching the model, and that the backend-agnostic
preconditioner functions keep working.
"""

import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent(r"""
    import keras
    import numpy as np

    import analysis_tools
    import tf_adaptive

    assert keras.backend.backend() == "jax", keras.backend.backend()

    def refuses(call, name):
        try:
            call()
        except RuntimeError as error:
            message = str(error)
            assert "TensorFlow backend" in message and "'jax'" in message, message
            assert "KERAS_BACKEND=tensorflow" in message and name in message, message
            return
        raise AssertionError(f"{name} did not refuse the JAX backend")

    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = rng.normal(size=(32, 1)).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.Dense(1)])
    optimizer = tf_adaptive.Adam(0.01)
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    steps = int(optimizer.iterations)
    assert steps == 4, steps

    refuses(lambda: analysis_tools.SharpnessCallback((x, y), every_n_steps=1), "SharpnessCallback")
    refuses(lambda: analysis_tools.UpdateDistributionCallback(every_n_steps=1),
            "UpdateDistributionCallback")
    refuses(lambda: analysis_tools.GradientNoiseCallback((x, y)), "GradientNoiseCallback")
    refuses(lambda: analysis_tools.sharpness(model, (x, y)), "its Hessian")
    refuses(lambda: analysis_tools.gradient_noise(model, (x, y)), "its gradient noise")
    refuses(lambda: analysis_tools.updates.simulate_updates(tf_adaptive.Adam(0.1), "normal", 3, 5),
            "simulate_updates")

    # A fit with the callback is never reached: the constructor raised, no step was taken.
    def fit_with_callback():
        model.fit(x, y, batch_size=8, epochs=1, verbose=0,
                  callbacks=[analysis_tools.SharpnessCallback((x, y), every_n_steps=1)])

    refuses(fit_with_callback, "SharpnessCallback")
    assert int(optimizer.iterations) == steps, int(optimizer.iterations)

    # The preconditioner protocol is keras.ops only, and works on JAX.
    preconditioner = analysis_tools.preconditioner_of(optimizer, model.trainable_variables)
    assert len(preconditioner) == len(model.trainable_variables)
    for p, v in zip(preconditioner, model.trainable_variables):
        p = np.asarray(p)
        assert p.shape == tuple(v.shape) and np.all(np.isfinite(p)) and np.all(p > 0), p
    assert analysis_tools.preconditioners.stability_threshold_of(optimizer) > 0
    print("OK")
""")


@pytest.mark.slow
def test_measurements_and_callbacks_refuse_other_backends_before_any_training_step():
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("OK"), (
        result.stdout[-3000:] + result.stderr[-3000:]
    )
