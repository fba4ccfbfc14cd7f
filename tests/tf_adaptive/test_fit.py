"""`model.fit` with the compiled train step equals the uncompiled one, on any backend."""

import keras
import numpy as np
import pytest

from tests.tf_adaptive.cases import ONE_PER_CLASS, initial_values


def _fit(case, **compile_kwargs):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = (x @ rng.normal(size=(4, 3)) + 0.3 * rng.standard_t(3, size=(32, 3))).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.set_weights(initial_values())
    model.compile(optimizer=case.make(), loss="mse", **compile_kwargs)
    history = model.fit(x, y, batch_size=16, epochs=6, shuffle=False, verbose=0)
    return model, history.history["loss"]


@pytest.mark.parametrize("case", ONE_PER_CLASS, ids=lambda c: c.id)
@pytest.mark.slow
def test_jit_compiled_fit_matches_eager_fit(case):
    compiled, compiled_loss = _fit(case, jit_compile=True)
    eager, eager_loss = _fit(case, run_eagerly=True)
    for a, b in zip(eager.get_weights(), compiled.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)
    assert compiled_loss[-1] < compiled_loss[0]
    np.testing.assert_allclose(compiled_loss, eager_loss, rtol=1e-5)
