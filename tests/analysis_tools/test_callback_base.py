"""`analysis_tools._callback.MeasurementCallback`: schedule, records, logs and TensorBoard all three callbacks share."""

import glob
import os

import keras
import numpy as np
import pytest

from analysis_tools._callback import MeasurementCallback


class _CountingCallback(MeasurementCallback):
    """Measures the optimizer step itself, on the step schedule, as SharpnessCallback does."""

    def measure(self, logs=None):
        step = self.optimizer_steps()
        self.records.append(step)
        self.mark_measured(step)
        self.publish(step, {"measured_step": float(step)}, logs, {"a_histogram": np.arange(4.0)})

    def on_train_batch_begin(self, batch, logs=None):
        super().on_train_batch_begin(batch, logs)
        if self.steps_due():
            self.measure()

    def on_epoch_end(self, epoch, logs=None):
        self._batches_begun = float("inf")
        if self.steps_due():
            self.measure()
        super().on_epoch_end(epoch, logs)


class _EpochCallback(MeasurementCallback):
    def on_epoch_end(self, epoch, logs=None):
        if self.epoch_due(epoch):
            self.records.append(epoch + 1)
            self.publish(epoch + 1, {"epochs_done": float(epoch + 1)})
        super().on_epoch_end(epoch, logs)


def _fit(callback, steps_per_execution=1, epochs=2, num_batches=6, model=None):
    keras.utils.set_random_seed(0)
    if model is None:
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse", steps_per_execution=steps_per_execution)
    x = np.random.default_rng(0).normal(size=(8 * num_batches, 3)).astype("float32")
    return model.fit(x, x[:, :1], batch_size=8, epochs=epochs, verbose=0, callbacks=[callback])


@pytest.mark.parametrize("steps_per_execution", [1, 2, 4])
def test_every_multiple_of_n_steps_is_measured_once_whatever_the_steps_per_execution(steps_per_execution):
    callback = _CountingCallback(every_n_steps=3)
    _fit(callback, steps_per_execution)
    steps = callback.records
    # 12 optimizer steps: the multiples 3, 6, 9, 12 are each crossed by exactly one measurement.
    assert [step // 3 for step in steps] == [1, 2, 3, 4], steps
    expected = {1: [3, 6, 9, 12], 2: [4, 6, 10, 12], 4: [4, 6, 10, 12]}  # execution boundaries
    assert steps == expected[steps_per_execution]


def test_the_schedule_continues_across_fit_calls():
    callback = _CountingCallback(every_n_steps=4)
    history = _fit(callback, epochs=1)
    _fit(callback, epochs=2, model=history.model)  # the optimizer goes on from step 6
    assert callback.records == [4, 8, 12, 16]


def test_latest_values_reach_epoch_logs_and_history_after_the_first_measurement(tmp_path):
    callback = _CountingCallback(every_n_steps=9, log_dir=str(tmp_path))
    history = _fit(callback, epochs=3)
    # Measured at 9 and 18: epoch 1 (steps 1-6) has no value yet, epoch 2 the one at 9.
    assert callback.records == [9, 18]
    assert history.history["measured_step"] == [9.0, 18.0]
    assert glob.glob(os.path.join(str(tmp_path), "*tfevents*"))


def test_epoch_schedule():
    callback = _EpochCallback(every_n_epochs=2)
    history = _fit(callback, epochs=5)
    assert callback.records == [2, 4]
    assert history.history["epochs_done"] == [2.0, 2.0, 4.0, 4.0]


def test_publish_replaces_the_latest_values():
    callback = MeasurementCallback()
    logs = {}
    callback.publish(1, {"a": 1.0, "b": 2.0}, logs)
    callback.publish(2, {"a": 3.0})
    assert logs == {"a": 1.0, "b": 2.0}
    epoch_logs = {}
    callback.on_epoch_end(0, epoch_logs)
    assert epoch_logs == {"a": 3.0}


@pytest.mark.parametrize("argument", ["every_n_steps", "every_n_epochs"])
def test_schedules_must_be_positive(argument):
    with pytest.raises(ValueError, match=argument):
        MeasurementCallback(**{argument: 0})
