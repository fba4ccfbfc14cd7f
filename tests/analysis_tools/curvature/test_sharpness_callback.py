"""SharpnessCallback inside a real `model.fit`, and the adaptive edge of stability end to end."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_adaptive
from analysis_tools import SharpnessCallback
from analysis_tools.curvature.quantities import TopSubspaceFraction

KEYS = ("sharpness", "preconditioned_sharpness", "stability_threshold", "sharpness_ratio")


def _problem(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    y = np.tanh(x @ rng.normal(size=(8, 2))).astype("float32")
    return x, y


def _model(seed=0, width=16):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(width, activation="tanh"),
            keras.layers.Dense(width, activation="tanh"),
            keras.layers.Dense(2),
        ]
    )


def _fit(make_optimizer, callbacks, epochs=4):
    x, y = _problem()
    model = _model()
    model.compile(optimizer=make_optimizer(), loss="mse")
    history = model.fit(x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0, callbacks=callbacks)
    return model, history


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda: tf_adaptive.Adam(learning_rate=1e-2),
        lambda: keras.optimizers.Adam(learning_rate=1e-2),
    ],
    ids=["tf_adaptive.Adam", "keras.Adam"],
)
@pytest.mark.slow
def test_callback_logs_reach_history_and_leave_the_trajectory_unchanged(make_optimizer, tmp_path):
    x, y = _problem()
    callback = SharpnessCallback((x, y), every_n_steps=3, k=2, log_dir=str(tmp_path), max_iterations=20)
    with_callback, history = _fit(make_optimizer, [callback])
    without_callback, _ = _fit(make_optimizer, [])
    for a, b in zip(with_callback.variables, without_callback.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    for a, b in zip(with_callback.optimizer.variables, without_callback.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))

    # 4 batches per epoch, 4 epochs: measurements after steps 3, 6, ..., 15.
    assert [r.step for r in callback.records] == [3, 6, 9, 12, 15]
    for key in KEYS:
        assert len(history.history[key]) == 4, key
    last = callback.records[-1]
    assert history.history["preconditioned_sharpness"][-1] == last.values["preconditioned_sharpness"]
    assert last.values["stability_threshold"] == pytest.approx(38.0 / 1e-2, rel=1e-5)
    assert last.values["sharpness_ratio"] == pytest.approx(
        last.values["preconditioned_sharpness"] / last.values["stability_threshold"]
    )
    assert last.eigenvalues["raw"].shape == (2,) and last.eigenvalues["raw"][0] >= last.eigenvalues["raw"][1]
    assert any(path.name.startswith("events.out.tfevents") for path in tmp_path.iterdir())


@pytest.mark.slow
def test_warm_start_needs_fewer_products_than_a_cold_start():
    x, y = _problem()
    warm = SharpnessCallback((x, y), every_n_steps=1, raw=False, max_iterations=40, tolerance=1e-4)
    cold = SharpnessCallback((x, y), every_n_steps=1, raw=False, max_iterations=40, tolerance=1e-4, warm_start=False)
    _fit(lambda: tf_adaptive.Adam(learning_rate=1e-4), [warm, cold], epochs=2)
    warm_iterations = [r.iterations["preconditioned"] for r in warm.records[1:]]
    cold_iterations = [r.iterations["preconditioned"] for r in cold.records[1:]]
    assert np.mean(warm_iterations) < np.mean(cold_iterations)
    np.testing.assert_allclose(
        [r.values["preconditioned_sharpness"] for r in warm.records],
        [r.values["preconditioned_sharpness"] for r in cold.records],
        rtol=1e-3,
    )


@pytest.mark.slow
def test_top_subspace_fraction_is_a_fraction():
    x, y = _problem()
    callback = SharpnessCallback((x, y), every_n_steps=2, k=3, quantities=[TopSubspaceFraction()])
    _, history = _fit(lambda: tf_adaptive.Adam(learning_rate=1e-2), [callback], epochs=1)
    fractions = [r.values["top_subspace_fraction"] for r in callback.records]
    assert fractions and all(0.0 <= f <= 1.0 + 1e-12 for f in fractions)


@pytest.mark.slow
def test_a_diverged_network_logs_nan_and_training_goes_on():
    # SGD at η = 100 on this MLP overflows within a few steps; the callback must report NaN
    # (as the loss does) rather than fail inside the eigensolver.
    x, y = _problem()
    callback = SharpnessCallback((x, y), every_n_steps=4, max_iterations=15)
    model = _model()
    model.compile(optimizer=tf_adaptive.HeavyBall(learning_rate=100.0, momentum=0.0), loss="mse")
    history = model.fit(x, y, batch_size=16, epochs=6, shuffle=False, verbose=0, callbacks=[callback])
    assert not np.isfinite(history.history["loss"][-1])
    assert [r.step for r in callback.records] == [4, 8, 12, 16, 20, 24]
    last = callback.records[-1].values
    assert np.isnan(last["sharpness"]) and np.isnan(last["preconditioned_sharpness"])
    assert np.isnan(history.history["sharpness_ratio"][-1])


def test_callback_arguments_are_validated():
    with pytest.raises(ValueError, match="`every_n_steps`"):
        SharpnessCallback(_problem(), every_n_steps=0)
    with pytest.raises(ValueError, match="Nothing to measure"):
        SharpnessCallback(_problem(), raw=False, preconditioned=False)


def _refused_before_the_first_step(model, callback, match):
    x, y = _problem()
    with pytest.raises(ValueError, match=match):
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[callback])
    assert int(model.optimizer.iterations) == 0


def test_a_model_without_trainable_variables_is_refused_at_train_begin():
    model = _model()
    model.trainable = False
    model.compile(optimizer=tf_adaptive.Adam(learning_rate=1e-2), loss="mse")
    _refused_before_the_first_step(model, SharpnessCallback(_problem(), every_n_steps=1), "no trainable variables")


@pytest.mark.parametrize(
    "probe",
    [
        lambda x, y: (x[:, :4], y),
        lambda x, y: (x, y[:, :1]),
        lambda x, y: (x, np.zeros(len(x), "int32")),
    ],
    ids=["inputs", "targets_to_broadcast", "labels_for_mse"],
)
def test_a_probe_set_that_does_not_fit_the_model_is_refused_at_train_begin(probe):
    model = _model()
    model.compile(optimizer=tf_adaptive.Adam(learning_rate=1e-2), loss="mse")
    callback = SharpnessCallback(probe(*_problem()), every_n_steps=1)
    _refused_before_the_first_step(model, callback, "probe set")


@pytest.mark.slow
def test_full_batch_adam_trains_at_the_adaptive_edge_of_stability():
    # Cohen et al. 2022, Fig. 1: λ1(P⁻¹H) rises to 38/η and then hovers there.
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data[:128] / 16.0).astype("float32")
    y = np.eye(10, dtype="float32")[digits.target[:128]]
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(32, activation="tanh"),
            keras.layers.Dense(32, activation="tanh"),
            keras.layers.Dense(10),
        ]
    )
    learning_rate = 0.01
    model.compile(optimizer=tf_adaptive.Adam(learning_rate, epsilon=1e-7), loss="mse", jit_compile=True)
    callback = SharpnessCallback((x, y), every_n_steps=10, raw=False, max_iterations=30)
    # 600 full-batch steps, as 60 epochs of 10 (Keras's per-epoch work would cost more than the steps).
    batches = tf.data.Dataset.from_tensors((x, y)).repeat()
    history = model.fit(batches, epochs=60, steps_per_epoch=10, shuffle=False, verbose=0, callbacks=[callback])

    ratios = np.array([r.values["sharpness_ratio"] for r in callback.records])
    assert callback.records[0].values["stability_threshold"] == pytest.approx(38.0 / learning_rate, rel=1e-5)
    assert ratios[0] < 0.5  # it starts well below the threshold ...
    arrival = int(np.argmax(ratios > 0.95))
    assert ratios[arrival] > 0.95  # ... reaches it ...
    after = ratios[arrival:]
    assert np.max(after) < 1.3  # ... and does not get far above it,
    assert 0.8 < np.mean(after) < 1.1  # hovering at it, while the loss keeps falling.
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][arrival]  # (epoch i: steps 10i to 10i + 9)


@pytest.mark.slow
def test_a_reset_callback_serves_a_second_run_without_retracing():
    # One callback, one model, two runs from the same weights with a new optimizer each:
    # the second run's records equal a new callback's, and nothing is traced again.
    x, y = _problem()
    model = _model()
    initial = model.get_weights()

    def run(callback):
        model.set_weights(initial)
        model.compile(optimizer=tf_adaptive.Adam(learning_rate=1e-2), loss="mse")
        model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0, callbacks=[callback])
        return [(r.step, r.values["sharpness"], r.values["preconditioned_sharpness"]) for r in callback.records]

    fresh = run(SharpnessCallback((x, y), every_n_steps=3, max_iterations=20))
    reused = SharpnessCallback((x, y), every_n_steps=3, max_iterations=20)
    run(reused)

    def traces():
        return {
            name: (solver._function, solver._function.experimental_get_tracing_count())
            for name, solver in reused._solvers.items()
        }

    operator, before = reused._operator, traces()
    reused.reset()
    assert reused.records == [] and reused._latest == {}
    again = run(reused)
    assert reused._operator is operator
    assert traces() == before
    assert [step for step, _, _ in again] == [3, 6]
    np.testing.assert_allclose(np.array(again)[:, 1:], np.array(fresh)[:, 1:], rtol=1e-6)
