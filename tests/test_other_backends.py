"""The optimizer and preconditioner tests again, in a fresh interpreter on Keras's JAX and torch backends.

The update math is written in `keras.ops` only, so the same classes must give
the same results there. The TensorFlow-only execution tests (and, per
`tests/analysis_tools/conftest.py`, the TensorFlow measurement subpackages)
skip themselves.
"""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENVIRONMENTS = {
    "jax": dict(KERAS_BACKEND="jax", JAX_PLATFORMS="cpu"),
    "torch": dict(KERAS_BACKEND="torch"),
}


@pytest.mark.slow
@pytest.mark.parametrize("backend", sorted(ENVIRONMENTS))
def test_optimizer_tests_pass_on_another_backend(backend):
    pytest.importorskip(backend)  # both are in the `test` extra: CI runs both
    env = dict(os.environ, **ENVIRONMENTS[backend])
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-n",
            "0",
            os.path.join("tests", "tf_adaptive"),
            os.path.join("tests", "analysis_tools"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    summary = result.stdout[-3000:] + result.stderr[-2000:]
    assert result.returncode == 0, summary
    assert " passed" in result.stdout and backend in _backend_line(env), summary


def _backend_line(env):
    return subprocess.run(
        [sys.executable, "-c", "import keras; print(keras.backend.backend())"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
