"""The one base of the measurement callbacks: schedule, records, logs and TensorBoard.

In the spirit of Keras's own `MonitorCallback`, which several callbacks share
and which leaves them only what they monitor, `MeasurementCallback` owns what
`SharpnessCallback`, `UpdateDistributionCallback` and `GradientNoiseCallback`
have in common, and each of them implements only its measurement:

* **The schedule.** Every `every_n_steps` optimizer steps or every
  `every_n_epochs` epochs. Step counts are read from
  ``optimizer.iterations``, not from the batch index, so they are right with
  ``steps_per_execution > 1`` (Keras then calls the batch hooks once per
  execution), with gradient accumulation and with skipped loss-scale steps,
  and they continue across several `fit` calls.
* **Records.** Every measurement is appended to ``self.records``.
* **Logs.** The latest values are merged into every epoch's `logs` (and into
  the batch `logs` of the measured step), so `History`, `CSVLogger` and
  Keras's `TensorBoard` pick them up with no extra code. Epochs before the
  first measurement carry none of the keys.
* **TensorBoard.** With `log_dir`, the callback's own scalars and histograms,
  indexed by the step (or epoch) of each measurement.

`StepMeasurementCallback` adds the hooks of the callbacks that measure at the
start of a step (`SharpnessCallback`, `SharpnessTracker`), which implement
only `measure()`.
"""

import keras
import tensorflow as tf

from analysis_tools._backend import require_tensorflow_backend
from analysis_tools._step_hook import PreconditionerReader
from analysis_tools.preconditioners import _unwrap


def optimizer_steps(model):
    """The optimizer updates applied so far (``optimizer.iterations``) as a Python int; 0 without one.

    A `keras.optimizers.LossScaleOptimizer` reports its inner optimizer's
    count, which a skipped (non-finite) step does not advance.
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return 0
    return int(keras.ops.convert_to_numpy(optimizer.iterations))


class MeasurementCallback(keras.callbacks.Callback):
    """Base of the measurement callbacks (see the module docstring).

    Subclasses measure, then call `publish(step, values, logs, histograms)`,
    and use `steps_due()` or `epoch_due(epoch)` to decide when. They call the
    base's hooks when they override them.

    Args:
        every_n_steps: Measure after every N-th optimizer step (or None).
        every_n_epochs: Measure after every N-th epoch (or None).
        log_dir: Optional TensorBoard directory for the callback's own summaries.
    """

    def __init__(self, every_n_steps=None, every_n_epochs=None, log_dir=None):
        require_tensorflow_backend(type(self).__name__)
        super().__init__()
        for name, value in (("every_n_steps", every_n_steps), ("every_n_epochs", every_n_epochs)):
            if value is not None and int(value) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {value}.")
        self.every_n_steps = None if every_n_steps is None else int(every_n_steps)
        self.every_n_epochs = None if every_n_epochs is None else int(every_n_epochs)
        self.log_dir = log_dir
        self.records = []
        self._latest = {}
        self._writer = None
        self._last_step = 0
        self._steps_before_epoch = 0
        self._batches_begun = 0

    # ------------------------------------------------------------ schedule
    def optimizer_steps(self):
        """The optimizer updates applied so far (reads the device: a sync)."""
        return optimizer_steps(self.model)

    def next_due_step(self):
        """The first optimizer step count at which a step-scheduled measurement is due."""
        return (self._last_step // self.every_n_steps + 1) * self.every_n_steps

    def steps_due(self):
        """Whether a multiple of `every_n_steps` optimizer steps has passed since the last measurement.

        Reads ``optimizer.iterations`` (a device sync) only once the batch
        count says a measurement may be due, so most steps cost a Python
        comparison.
        """
        if self._steps_before_epoch + self._batches_begun < self.next_due_step():
            return False
        step = self.optimizer_steps()
        return step // self.every_n_steps > self._last_step // self.every_n_steps

    def epoch_due(self, epoch):
        """Whether epoch `epoch` (0-based, just ended) completes a multiple of `every_n_epochs`."""
        return (epoch + 1) % self.every_n_epochs == 0

    # -------------------------------------------------------------- output
    def publish(self, step, values, logs=None, histograms=None):
        """Make `values` the latest (replacing the previous ones), merge them into `logs`, and write
        them to TensorBoard at `step`.

        `histograms` maps a summary name to the values to histogram, or to a
        (values, number of buckets) pair.
        """
        self._latest = dict(values)
        if logs is not None:
            logs.update(values)
        if self.log_dir is None:
            return
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default(step=step):
            for name, data in (histograms or {}).items():
                data, buckets = data if isinstance(data, tuple) else (data, None)
                tf.summary.histogram(name, data, buckets=buckets)
            for key, value in values.items():
                tf.summary.scalar(key, value)

    def reset(self):
        """Forget every measurement: `records`, the latest values and the schedule.

        For a new training run of the same model (weights restored, a new
        optimizer compiled, its step count from 0): what the callback has
        built and traced for the model is kept, so the run does not pay for
        it again.
        """
        self.records = []
        self._latest = {}
        self._last_step = 0
        self._steps_before_epoch = 0
        self._batches_begun = 0

    def mark_measured(self, step):
        """Record that a step-scheduled measurement happened at optimizer step `step`."""
        self._last_step = int(step)

    # --------------------------------------------------------------- hooks
    def on_train_begin(self, logs=None):
        self._steps_before_epoch = self.optimizer_steps()
        self._batches_begun = 0

    def on_epoch_begin(self, epoch, logs=None):
        if self.every_n_steps is not None:
            self._steps_before_epoch = self.optimizer_steps()
        self._batches_begun = 0

    def on_train_batch_begin(self, batch, logs=None):
        # `batch` is the index of the first step of this execution, so with
        # steps_per_execution > 1 the count stays right.
        self._batches_begun = batch

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self._latest:
            logs.update(self._latest)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.flush()


class StepMeasurementCallback(MeasurementCallback):
    """A `MeasurementCallback` that measures every `every_n_steps` optimizer steps, at the start of a step.

    It calls ``self.measure()`` at the start of the first step after every
    `every_n_steps`-th optimizer step, on the weights the finished steps
    left (Keras runs `*_batch_begin` hooks in line and keeps dispatching
    steps asynchronously, which a `*_batch_end` hook would stop), and at the
    end of an epoch if one is due then; epoch logs get the latest values.

    `preconditioner()` reads P_t of the model's optimizer for a measurement
    (`PreconditionerReader`): for an optimizer whose P is made of the latest
    gradient (SSD, Keras's Adafactor) the step before each scheduled
    measurement keeps its gradient, and no other step writes anything.
    """

    _reader = None

    def measure(self):
        raise NotImplementedError

    def preconditioner(self, variables=None):
        """P_t per variable of `variables` (default: every trainable variable), as `preconditioner_of`."""
        self._refresh_reader()
        return self._reader(variables)

    def _refresh_reader(self):
        """A `PreconditionerReader` for the current optimizer, made anew only when the optimizer changed.

        The train step is traced again where the old or the new one listens in it.
        """
        if self._reader is not None and self._reader.optimizer is _unwrap(self.model.optimizer):
            return
        hooked = self._reader is not None and self._reader.hooked
        if self._reader is not None:
            self._reader.remove()
        self._reader = PreconditionerReader(self.model)
        if hooked or self._reader.hooked:
            self.model.make_train_function(force=True)

    def _measure_if_due(self, logs):
        if self.steps_due():
            self.measure()
        if logs is not None and self._latest:
            logs.update(self._latest)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._refresh_reader()

    def on_train_batch_begin(self, batch, logs=None):
        super().on_train_batch_begin(batch, logs)
        self._measure_if_due(None)
        # Keep the gradients of this execution's steps if a measurement falls due within it.
        executed = self._steps_before_epoch + batch + int(getattr(self.model, "steps_per_execution", 1) or 1)
        self._reader.arm(executed >= self.next_due_step())

    def on_epoch_end(self, epoch, logs=None):
        self._batches_begun = float("inf")  # the epoch's steps are all done: read the counter
        self._measure_if_due(logs)

    def on_train_end(self, logs=None):
        super().on_train_end(logs)
        if self._reader is not None:
            self._reader.arm(False)  # a `fit` without this callback keeps nothing
