"""`SharpnessTracker`: each estimator against exact values on a quadratic, against a dense P⁻¹H on a small
tanh network, and inside `fit` under XLA, under MirroredStrategy and across a save and a resume."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_adaptive
from analysis_tools import SharpnessTracker, preconditioner_of

ALL = ("update_curvature", "critical_sharpness", "power_iteration", "batch_sharpness")
RATE = 0.05


def _regression(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, 5)) * np.array([3.0, 1.0, 1.0, 0.5, 0.2])).astype("float32")
    return x, rng.normal(size=(n, 1)).astype("float32")


def _linear(optimizer, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1)])
    model.compile(optimizer, "mse", jit_compile=True)
    return model


def _flat(tensors):
    return np.concatenate([np.reshape(np.asarray(t, np.float64), -1) for t in tensors])


class _Recorder(keras.callbacks.Callback):
    """{optimizer steps: (flat weights, flat P)} after every update."""

    def __init__(self):
        super().__init__()
        self.after = {}

    def on_train_begin(self, logs=None):
        self.after.setdefault(int(self.model.optimizer.iterations), (_flat(self.model.get_weights()), None))

    def on_train_batch_end(self, batch, logs=None):
        variables = self.model.trainable_variables
        preconditioner = _flat(
            keras.ops.convert_to_numpy(p) for p in preconditioner_of(self.model.optimizer, variables)
        )
        self.after[int(self.model.optimizer.iterations)] = (_flat(self.model.get_weights()), preconditioner)


def _fit(model, x, y, tracker, steps, recorder=None):
    """`steps` full-batch steps in one epoch (an epoch per step would spend more on Keras's epochs than on them)."""
    callbacks = [tracker] + ([recorder] if recorder else [])
    batches = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False, callbacks=callbacks)


def _quadratic_hessian(x):
    design = np.concatenate([x.astype(np.float64), np.ones((len(x), 1))], axis=1)
    return 2.0 * design.T @ design / len(x), design


@pytest.mark.parametrize("num_products", [1, 3])
@pytest.mark.slow
def test_each_estimator_is_exact_on_a_quadratic(num_products):
    x, y = _regression()
    model = _linear(tf_adaptive.Adam(RATE))
    tracker = SharpnessTracker((x, y), estimators=ALL, batch_size=len(x), num_products=num_products)
    recorder = _Recorder()
    _fit(model, x, y, tracker, 12, recorder)
    hessian, design = _quadratic_hessian(x)
    top = np.linalg.eigvalsh(hessian)[-1]
    assert [r.step for r in tracker.records] == list(range(1, 13))
    assert math.isnan(tracker.records[0].values["update_curvature"])
    for record in tracker.records:
        t = record.step
        weights = {s: recorder.after[s][0] for s in (t - 2, t - 1, t) if s in recorder.after}
        # The line search: along the latest update Δ_t = θ_t - θ_{t-1}, from θ_{t-1}.
        update = weights[t] - weights[t - 1]
        gradient = 2.0 * design.T @ (design @ weights[t - 1] - y[:, 0].astype(np.float64)) / len(x)
        curvature = update @ hessian @ update
        np.testing.assert_allclose(
            record.values["critical_sharpness"], curvature / (-RATE * gradient @ update), rtol=1e-5
        )
        assert record.forward_passes <= (6 if t == 1 else 4)  # warm: L(θ_t), a bracket, the exact root
        # The secant: along the update before, Δ_{t-1}, in the metric of its P_{t-1}.
        if t >= 2:
            previous = weights[t - 1] - weights[t - 2]
            curvature = previous @ hessian @ previous
            np.testing.assert_allclose(record.values["update_curvature"], curvature / (previous @ previous), rtol=1e-4)
            np.testing.assert_allclose(
                record.values["preconditioned_update_curvature"],
                curvature / (previous @ (recorder.after[t - 1][1] * previous)),
                rtol=1e-4,
            )
        # Power iteration (or its Krylov form): Rayleigh quotients, never above λ1; H is constant here, so it
        # converges.
        assert record.products == 2 * num_products + 2  # and the batch sharpness's two
        assert record.values["power_sharpness"] <= top * (1 + 1e-6)
        scaled = hessian / np.sqrt(np.outer(recorder.after[t][1], recorder.after[t][1]))
        assert record.values["power_preconditioned_sharpness"] <= np.linalg.eigvalsh(scaled)[-1] * (1 + 1e-6)
    np.testing.assert_allclose(tracker.records[-1].values["power_sharpness"], top, rtol=1e-5)
    assert tracker.records[-1].values["power_sharpness_residual"] < 1e-2 * top


def test_critical_sharpness_of_gradient_descent_is_the_rayleigh_quotient_along_the_gradient():
    # For plain gradient descent on a quadratic, Δ_t = -η g_t: the critical sharpness is gᵀHg / gᵀg.
    x, y = _regression(seed=1)
    model = _linear(keras.optimizers.SGD(0.01))
    tracker = SharpnessTracker(
        (x, y), estimators=("update_curvature", "critical_sharpness"), batch_size=len(x), num_forward_passes=10
    )
    recorder = _Recorder()
    _fit(model, x, y, tracker, 4, recorder)
    hessian, design = _quadratic_hessian(x)
    for record in tracker.records:
        gradient = 2.0 * design.T @ (design @ recorder.after[record.step - 1][0] - y[:, 0]) / len(x)
        expected = gradient @ hessian @ gradient / (gradient @ gradient)
        np.testing.assert_allclose(record.values["critical_sharpness"], expected, rtol=1e-5)
    # P = 1: the preconditioned secant is the raw one.
    for record in tracker.records[1:]:
        np.testing.assert_allclose(
            record.values["preconditioned_update_curvature"], record.values["update_curvature"], rtol=1e-6
        )


@pytest.mark.slow
def test_batch_sharpness_is_each_batch_rayleigh_quotient_along_its_gradient_on_a_quadratic():
    x, y = _regression(n=48)
    model = _linear(tf_adaptive.Adam(RATE))
    tracker = SharpnessTracker((x, y), estimators="batch_sharpness", batch_size=16)
    recorder = _Recorder()
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False, callbacks=[tracker, recorder])
    assert [r.step for r in tracker.records] == [1, 2, 3, 4, 5, 6]
    for k, record in enumerate(tracker.records):
        weights, preconditioner = recorder.after[record.step]
        batch = slice(16 * (k % 3), 16 * (k % 3 + 1))
        hessian, design = _quadratic_hessian(x[batch])
        gradient = 2.0 * design.T @ (design @ weights - y[batch, 0]) / 16
        np.testing.assert_allclose(
            record.values["batch_sharpness"], gradient @ hessian @ gradient / (gradient @ gradient), rtol=1e-5
        )
        step = gradient / preconditioner
        np.testing.assert_allclose(
            record.values["preconditioned_batch_sharpness"],
            step @ hessian @ step / (step @ (preconditioner * step)),
            rtol=1e-5,
        )
        assert record.products == 2


# ---------------------------------------------------------------- a small tanh network, dense P⁻¹H
def _tanh_net(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(6, activation="tanh"), keras.layers.Dense(1)])
    model.compile(tf_adaptive.Adam(2e-3), "mse", jit_compile=True)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(32, 3)).astype("float32")
    return model, x, np.sin(x.sum(axis=1, keepdims=True)).astype("float32")


def _tanh_loss(flat, x, y):
    kernel, bias, head, head_bias = tf.split(flat, [18, 6, 6, 1])
    hidden = tf.tanh(x @ tf.reshape(kernel, [3, 6]) + bias)
    return tf.reduce_mean((hidden @ tf.reshape(head, [6, 1]) + head_bias - y) ** 2)


def _tanh_gradient(flat, x, y):
    flat = tf.constant(flat, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(flat)
        loss = _tanh_loss(flat, tf.constant(x, tf.float64), tf.constant(y, tf.float64))
    return tape.gradient(loss, flat).numpy()


def _tanh_hessian(flat, x, y):
    flat = tf.constant(flat, tf.float64)
    x, y = tf.constant(x, tf.float64), tf.constant(y, tf.float64)
    with tf.GradientTape() as outer:
        outer.watch(flat)
        with tf.GradientTape() as inner:
            inner.watch(flat)
            loss = _tanh_loss(flat, x, y)
        gradient = inner.gradient(loss, flat)
    return outer.jacobian(gradient, flat).numpy()


def _tanh_losses(flats, x, y):
    """The float64 loss of `_tanh_loss` at each row of `flats` ([s, 31]), in NumPy."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    kernel, bias = flats[:, :18].reshape(-1, 3, 6), flats[:, 18:24]
    head, head_bias = flats[:, 24:30], flats[:, 30]
    hidden = np.tanh(np.einsum("nd,sdh->snh", x, kernel) + bias[:, None, :])
    return np.mean((np.einsum("snh,sh->sn", hidden, head) + head_bias[:, None] - y[None, :, 0]) ** 2, axis=1)


def _critical_scale(start, update, x, y):
    """The smallest s > 0 with L(start + s·update) = L(start), in float64 (a fine scan, then bisection)."""

    def rise(scales):
        return (
            _tanh_losses(start[None] + np.asarray(scales)[:, None] * update[None], x, y)
            - _tanh_losses(start[None], x, y)[0]
        )

    scales = np.geomspace(1e-3, 1e4, 2000)
    high = scales[np.argmax(rise(scales) > 0.0)]
    low = scales[np.searchsorted(scales, high) - 1]
    for _ in range(60):
        middle = 0.5 * (low + high)
        low, high = (low, middle) if rise([middle])[0] > 0.0 else (middle, high)
    return 0.5 * (low + high)


@pytest.mark.slow
def test_estimators_against_a_dense_preconditioned_hessian_on_a_tanh_network():
    model, x, y = _tanh_net()
    tracker = SharpnessTracker((x, y), estimators=ALL, batch_size=len(x), num_forward_passes=12)
    recorder = _Recorder()
    _fit(model, x, y, tracker, 25, recorder)
    for record in tracker.records[1:]:
        t = record.step
        before, after = recorder.after[t - 1][0], recorder.after[t][0]
        update = after - before
        # The critical step: where the float64 loss along Δ_t from θ_{t-1} climbs back to L(θ_{t-1}).
        np.testing.assert_allclose(
            record.values["critical_sharpness"], 2.0 / (2e-3 * _critical_scale(before, update, x, y)), rtol=1e-3
        )
        # The secant: the curvature along Δ_{t-1} at the segment's midpoint, to second order.
        previous = before - recorder.after[t - 2][0]
        midpoint = recorder.after[t - 2][0] + 0.5 * previous
        curvature = previous @ _tanh_hessian(midpoint, x, y) @ previous
        np.testing.assert_allclose(record.values["update_curvature"], curvature / (previous @ previous), rtol=1e-2)
        np.testing.assert_allclose(
            record.values["preconditioned_update_curvature"],
            curvature / (previous @ (recorder.after[t - 1][1] * previous)),
            rtol=1e-2,
        )
        # Power iteration: a Rayleigh quotient of S H S (S = P^{-1/2}) at θ_t, and an eigenvalue within its
        # residual.
        scale = 1.0 / np.sqrt(recorder.after[t][1])
        hessian = _tanh_hessian(after, x, y)
        eigenvalues = np.linalg.eigvalsh(scale[:, None] * hessian * scale[None, :])
        quotient = record.values["power_preconditioned_sharpness"]
        assert quotient <= eigenvalues[-1] * (1 + 1e-5)
        assert np.min(np.abs(eigenvalues - quotient)) <= record.values["power_preconditioned_sharpness_residual"] * (
            1 + 1e-4
        ) + 1e-6 * abs(eigenvalues[-1])
        # Batch sharpness: one batch is the whole set here, so it is the quotient along the full gradient.
        gradient = _tanh_gradient(after, x, y)
        np.testing.assert_allclose(
            record.values["batch_sharpness"], gradient @ hessian @ gradient / (gradient @ gradient), rtol=1e-4
        )
        step = gradient / recorder.after[t][1]
        np.testing.assert_allclose(
            record.values["preconditioned_batch_sharpness"],
            step @ hessian @ step / (step @ (recorder.after[t][1] * step)),
            rtol=1e-4,
        )


# ---------------------------------------------------------------- fit: XLA, strategy, save and resume
def test_logs_reach_history_and_the_schedule_is_kept():
    x, y = _regression()
    model = _linear(tf_adaptive.Adam(RATE))
    tracker = SharpnessTracker(every_n_steps=2)
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False, callbacks=[tracker])
    assert [r.step for r in tracker.records] == [2, 4, 6, 8]
    assert history.history["update_curvature"][-1] == tracker.records[-1].values["update_curvature"]
    assert "preconditioned_update_curvature" in history.history
    assert all(r.forward_passes == 0 and r.products == 0 for r in tracker.records)


def test_a_weight_acclip_does_not_move_has_p_inf_and_every_estimate_stays_finite():
    """An input that is always 0 gives its weights zero gradients: ACClip's τ = 0 there, so P = +inf."""
    x, y = _regression()
    x[:, 2] = 0.0
    model = _linear(tf_adaptive.ACClip(RATE))
    tracker = SharpnessTracker((x, y), estimators=ALL, batch_size=len(x))
    recorder = _Recorder()
    _fit(model, x, y, tracker, 4, recorder)
    assert np.isinf(recorder.after[4][1]).sum() == 1  # the kernel's weight on the zero input
    for record in tracker.records[1:]:
        for key in (
            "preconditioned_update_curvature",
            "power_preconditioned_sharpness",
            "preconditioned_batch_sharpness",
        ):
            assert np.isfinite(record.values[key]) and record.values[key] > 0.0, (record.step, key, record.values)


@pytest.mark.slow
def test_same_values_under_mirrored_strategy():
    x, y = _regression()
    single = _linear(tf_adaptive.Adam(RATE))
    reference = SharpnessTracker((x, y), estimators=ALL, batch_size=len(x))
    _fit(single, x, y, reference, 5)
    strategy = tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice()
    )
    with strategy.scope():
        model = _linear(tf_adaptive.Adam(RATE))
        # Keras's XLA train step cannot run over logical CPU devices (a variable on another device); the
        # tracker's programs are compiled all the same.
        model.compile(tf_adaptive.Adam(RATE), "mse", jit_compile=False)
    tracker = SharpnessTracker((x, y), estimators=ALL, batch_size=len(x))
    _fit(model, x, y, tracker, 5)
    for ours, theirs in zip(tracker.records, reference.records):
        assert ours.values.keys() == theirs.values.keys()
        for key, value in theirs.values.items():
            if "residual" in key:
                continue  # a difference of nearly equal numbers
            np.testing.assert_allclose(ours.values[key], value, rtol=2e-4, err_msg=key)


@pytest.mark.slow
def test_save_and_resume_continue_the_uninterrupted_values(tmp_path):
    x, y = _regression()
    straight = _linear(tf_adaptive.Adam(RATE))
    reference = SharpnessTracker()
    _fit(straight, x, y, reference, 6)
    model = _linear(tf_adaptive.Adam(RATE))
    _fit(model, x, y, SharpnessTracker(), 3)
    model.save(tmp_path / "model.keras")
    restored = keras.models.load_model(tmp_path / "model.keras")
    tracker = SharpnessTracker()
    _fit(restored, x, y, tracker, 3)
    assert [r.step for r in tracker.records] == [4, 5, 6]
    # The secant needs the update before the restore, which the checkpoint does not hold.
    assert math.isnan(tracker.records[0].values["update_curvature"])
    for ours, theirs in zip(tracker.records[1:], reference.records[4:]):
        for key in ("update_curvature", "preconditioned_update_curvature"):
            np.testing.assert_allclose(ours.values[key], theirs.values[key], rtol=1e-5)


@pytest.mark.slow
def test_a_tracker_reused_with_a_new_optimizer_keeps_its_probe_programs_and_measures_the_new_run():
    x, y = _regression()
    model = _linear(tf_adaptive.Adam(RATE))
    initial = model.get_weights()
    tracker = SharpnessTracker((x, y), estimators=ALL, batch_size=len(x))
    _fit(model, x, y, tracker, 3)
    operator = tracker._operator
    model.set_weights(initial)
    model.compile(tf_adaptive.Adam(RATE / 2), "mse", jit_compile=True)
    tracker.reset()
    _fit(model, x, y, tracker, 3)
    assert tracker._operator is operator
    fresh = SharpnessTracker((x, y), estimators=ALL, batch_size=len(x))
    model.set_weights(initial)
    model.compile(tf_adaptive.Adam(RATE / 2), "mse", jit_compile=True)
    _fit(model, x, y, fresh, 3)
    for ours, theirs in zip(tracker.records, fresh.records):
        assert ours.step == theirs.step
        for key, value in theirs.values.items():
            np.testing.assert_allclose(ours.values[key], value, rtol=1e-6, err_msg=key)


def test_detach_restores_the_optimizer_and_the_train_step():
    x, y = _regression()
    model = _linear(tf_adaptive.Adam(RATE))
    tracker = SharpnessTracker()
    _fit(model, x, y, tracker, 2)
    assert "apply" in model.optimizer.__dict__
    tracker.detach()
    assert "apply" not in model.optimizer.__dict__
    _fit(model, x, y, keras.callbacks.Callback(), 1)
    assert int(model.optimizer.iterations) == 3


def test_an_optimizer_without_p_logs_only_the_raw_curvatures():
    x, y = _regression()
    model = _linear(keras.optimizers.Lion(1e-3))
    tracker = SharpnessTracker()
    _fit(model, x, y, tracker, 3)
    assert set(tracker.records[-1].values) == {"update_curvature"}
    assert np.isfinite(tracker.records[-1].values["update_curvature"])


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(estimators=("sharpness",)), "estimators"),
        (dict(estimators=()), "estimators"),
        (dict(estimators="power_iteration"), "pass `data`"),
        (dict(data=_regression(), estimators="update_curvature"), "does not include"),
        (dict(data=_regression(), estimators="critical_sharpness", num_forward_passes=2), "num_forward_passes"),
        (dict(data=_regression(), estimators="power_iteration", raw=False, preconditioned=False), "raw"),
        (dict(data=_regression(), estimators="batch_sharpness", raw=False, preconditioned=False), "raw"),
        (dict(data=tf.data.Dataset.from_tensor_slices(_regression()).batch(8), estimators="batch_sharpness"), "arrays"),
        (dict(data=_regression(), estimators="power_iteration", probe=1), "Unknown options"),
        (dict(data=_regression(), estimators="power_iteration", num_products=0), "num_products"),
        (dict(batch_size=3), "does not include"),
        (dict(data=_regression(), estimators="critical_sharpness", tolerance=0.0), "tolerance"),
    ],
)
def test_bad_arguments_are_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        SharpnessTracker(**arguments)


def test_gradient_accumulation_is_refused():
    x, y = _regression()
    model = _linear(keras.optimizers.Adam(1e-3, gradient_accumulation_steps=2))
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        _fit(model, x, y, SharpnessTracker(), 1)


def test_a_line_search_that_finds_no_crossing_says_why():
    x, y = _regression()
    model = _linear(keras.optimizers.SGD(1e-9))  # the loss cannot rise within 2⁴ steps this small
    tracker = SharpnessTracker((x, y), estimators="critical_sharpness", batch_size=len(x), num_forward_passes=4)
    _fit(model, x, y, tracker, 2)
    record = tracker.records[-1]
    assert math.isnan(record.values["critical_sharpness"])
    assert "stayed at or below L(θ_t) at every step length tried, up to 4 times" in record.notes["critical_sharpness"]
