"""The step hook: SSD, which keeps no state, measured by the callbacks with its P = |g_t| from inside the train step."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_adaptive
from analysis_tools import SharpnessCallback, SharpnessTracker
from analysis_tools._step_hook import StepHook

RATE = 0.01


def _regression(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, 4)) * np.array([2.0, 1.0, 0.7, 0.3])).astype("float32")
    return x, rng.normal(size=(n, 1)).astype("float32")


def _model(optimizer, jit_compile=True):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer, "mse", jit_compile=jit_compile)
    return model


class _Weights(keras.callbacks.Callback):
    """The flat weights after every step, by optimizer step count."""

    def on_train_begin(self, logs=None):
        self.after = {0: np.concatenate([w.ravel() for w in self.model.get_weights()]).astype(np.float64)}

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations)
        self.after[step] = np.concatenate([w.ravel() for w in self.model.get_weights()]).astype(np.float64)


def _dense(x, y, weights):
    """(H, ∇L) of the mean squared error of the linear model, in float64."""
    design = np.concatenate([x.astype(np.float64), np.ones((len(x), 1))], axis=1)
    return 2.0 * design.T @ design / len(x), 2.0 * design.T @ (design @ weights - y[:, 0]) / len(x)


@pytest.mark.slow
def test_sharpness_callback_measures_ssd_with_p_the_last_gradient():
    x, y = _regression()
    model = _model(tf_adaptive.SSD(RATE))
    callback = SharpnessCallback((x, y), every_n_steps=3, tolerance=1e-8, max_iterations=5)
    weights = _Weights()
    model.fit(x, y, batch_size=len(x), epochs=9, verbose=0, shuffle=False, callbacks=[callback, weights])
    assert [r.step for r in callback.records] == [3, 6, 9]
    for record in callback.records:
        hessian, _ = _dense(x, y, weights.after[record.step])
        _, gradient = _dense(x, y, weights.after[record.step - 1])  # the gradient the step divided by
        scale = 1.0 / np.sqrt(np.abs(gradient))
        expected = np.linalg.eigvalsh(scale[:, None] * hessian * scale[None, :])[-1]
        np.testing.assert_allclose(record.values["preconditioned_sharpness"], expected, rtol=1e-5)
    # Only the steps before a measurement keep the gradient: after step 9, step 9's.
    assert int(callback._reader._kept_step.numpy()) == 9


@pytest.mark.slow
def test_a_measurement_off_the_schedule_refuses_a_gradient_it_does_not_have():
    x, y = _regression()
    model = _model(tf_adaptive.SSD(RATE))
    callback = SharpnessCallback((x, y), every_n_steps=4, max_iterations=5)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False, callbacks=[callback])
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False, steps_per_epoch=1)  # without it
    with pytest.raises(ValueError, match="was not kept"):
        callback.measure()


def test_steps_before_no_measurement_write_nothing():
    x, y = _regression()
    model = _model(tf_adaptive.SSD(RATE))
    callback = SharpnessCallback((x, y), every_n_steps=100, max_iterations=5)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False, callbacks=[callback])
    assert not callback.records and int(callback._reader._kept_step.numpy()) == -1


@pytest.mark.slow
def test_kept_gradients_are_summed_over_the_replicas_as_keras_sums_them():
    x, y = _regression()
    values = []
    for strategy in (
        tf.distribute.get_strategy(),
        tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice()),
    ):
        with strategy.scope():
            model = _model(tf_adaptive.SSD(RATE), jit_compile=False)
        tracker = SharpnessTracker((x, y), estimators="power_iteration", batch_size=len(x), every_n_steps=2, raw=False)
        model.fit(x, y, batch_size=len(x), epochs=4, verbose=0, shuffle=False, callbacks=[tracker])
        values.append([r.values["power_preconditioned_sharpness"] for r in tracker.records])
    np.testing.assert_allclose(values[1], values[0], rtol=1e-4)


def test_listeners_share_one_wrapper_and_the_last_one_out_restores_apply():
    optimizer = keras.optimizers.SGD()

    class Listener:
        def before(self, gradients):
            pass

        def after(self, gradients):
            pass

    first, second = Listener(), Listener()
    hook = StepHook.attach(optimizer, first)
    assert StepHook.attach(optimizer, second) is hook and "apply" in optimizer.__dict__
    hook.detach(first)
    assert "apply" in optimizer.__dict__
    hook.detach(second)
    assert "apply" not in optimizer.__dict__


@pytest.mark.slow
def test_keras_adafactor_whose_p_needs_the_gradient_is_measured_too():
    x, y = _regression()
    model = _model(keras.optimizers.Adafactor(0.01))
    callback = SharpnessCallback((x, y), every_n_steps=2, max_iterations=5)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False, callbacks=[callback])
    assert [r.step for r in callback.records] == [2, 4]
    for record in callback.records:
        assert np.isfinite(record.values["preconditioned_sharpness"]) and record.values["preconditioned_sharpness"] > 0
