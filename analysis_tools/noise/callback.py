"""`GradientNoiseCallback`: the gradient noise over training, inside `model.fit`.

Zhang et al., "Why are adaptive methods good for attention models?" (NeurIPS
2020), Figs. 2 and 5: the histogram of the mini-batch noise norms ‖g_B − ∇f‖
and how it changes over training, with the tail index of the noise; and the
simple noise scale B_simple = tr Σ / |G|² of McCandlish et al., "An Empirical
Model of Large-Batch Training" (2018, eq. 2.8).
"""

import warnings
from typing import NamedTuple, Optional

import numpy as np

from analysis_tools._callback import MeasurementCallback
from analysis_tools._deprecation import renamed, renamed_attribute
from analysis_tools._model_loss import ModelLoss
from analysis_tools._probe import check_data
from analysis_tools.noise.sampling import _NoiseSampler, _num_examples
from analysis_tools.noise.tail_estimators import ESTIMATORS, TailIndex, tail_index

__all__ = ["GradientNoiseCallback", "NoiseRecord", "standardized_coordinates"]


class NoiseRecord(NamedTuple):
    """One measurement of the gradient noise.

    Attributes:
        epoch: Completed epochs (0: before training).
        step: The optimizer's step count at the measurement.
        norms: ‖g_B − ∇f‖ of every sampled mini-batch.
        counts: Histogram counts of `norms`.
        edges: Histogram bin edges (equal width, from the smallest to the largest norm).
        tail_index: The `TailIndex` of the standardized noise coordinates, or None.
        values: The scalars added to `logs`.
    """

    epoch: int
    step: int
    norms: np.ndarray
    counts: np.ndarray
    edges: np.ndarray
    tail_index: Optional[TailIndex]
    values: dict


def standardized_coordinates(coordinates):
    """Pools [num_batches, k] noise coordinates into one sample, each column divided by its scale.

    The scale of a column is its median absolute value (robust, and finite for
    α-stable noise); columns whose scale is 0 are dropped. Pooling raw
    coordinates of different scales makes light-tailed noise look heavy-tailed
    (see `analysis_tools.noise.tail_estimators`).
    """
    coordinates = np.asarray(coordinates, dtype=np.float64)
    scale = np.median(np.abs(coordinates), axis=0)
    keep = scale > 0
    return (coordinates[:, keep] / scale[keep]).reshape(-1)


class GradientNoiseCallback(MeasurementCallback):
    """Measure the mini-batch gradient noise during `model.fit` (Zhang et al. 2020, Figs. 2 and 5).

    Every `every_n_epochs` epochs, or every `every_n_steps` optimizer steps
    (and, with `at_start`, once before the first step) the callback freezes
    the weights it sees and measures what `analysis_tools.gradient_noise`
    returns on `data`: the gradient over
    all of `data`, then `num_batches` random mini-batches of `batch_size` and
    their noise g_B − ∇f. It keeps the noise norms with their histogram (the
    paper's Fig. 5 shows how this histogram changes over training: towards
    concentration for BERT, unchanged for ResNet50 on ImageNet), and the tail
    index of `num_coordinates` fixed random noise coordinates, standardized
    per coordinate and pooled (`standardized_coordinates`).

    It adds to the epoch's `logs` (so `History`, `CSVLogger` and `TensorBoard`
    record them; keys start with `prefix`): ``noise_norm_mean``,
    ``noise_norm_median``, ``noise_norm_max_over_median`` (≈ 1 for a
    concentrated law, large for a heavy tail), ``noise_full_gradient_norm``,
    ``noise_tail_index``, and ``noise_scale``, the simple noise scale
    B_simple = tr Σ / |G|² (McCandlish et al. 2018, eq. 2.8;
    `GradientNoise.noise_scale`, NaN where it is undefined), with
    `per_layer` also ``noise_scale/<variable path>`` for each trainable
    variable (`GradientNoise.layer_noise_scales`). Epochs without a
    measurement carry the latest values. With `log_dir` it also writes
    these scalars and a histogram ``noise_norm`` per measurement, indexed by
    the optimizer step of the measurement (``optimizer.iterations``), as
    `SharpnessCallback` and `UpdateDistributionCallback` index theirs, so
    the three share TensorBoard's x-axis.

    With `every_n_steps` a measurement is taken at the start of the first
    step after every `every_n_steps`-th optimizer step (on the weights the
    previous steps left), or at the end of the epoch if that comes first,
    and its values also go into that batch's `logs`; for a long run on a
    large data set, where an epoch is too coarse a clock.

    The gradient functions are traced (and XLA-compiled) once per `fit`, at
    the first measurement, and reused by every later one; a later `fit` of
    the same model with the same trainable variables reuses them too.

    Measurements are side-effect free (`model.stateless_call`): training is
    bit-identical with and without the callback. Each one costs about
    (|data| / batch_size + num_batches) gradient evaluations.

    `on_train_begin` refuses, with a `ValueError` and before the first step,
    a model without trainable variables and `data` that does not fit the
    model: inputs it cannot take, or targets whose shape a Keras loss would
    broadcast against the outputs (checked on one batch, without gradients).
    Where the pooled coordinates are degenerate (see `tail_index`) a
    measurement warns and logs no ``noise_tail_index``.

    Args:
        data: (x, y) arrays to sample from (the training set or a part of it).
        every_n_epochs: Measure after every n-th epoch (default 1 unless
            `every_n_steps` is given; give one of the two).
        every_n_steps: Measure after every n-th optimizer step instead.
        batch_size: The mini-batch size of the noise (use the training one).
        num_batches: Mini-batches per measurement.
        loss: Loss; default the model's compiled loss.
        num_coordinates: Noise coordinates kept for the tail index (0: none).
        tail_index_estimator: The estimator of `tail_index`, one of
            `analysis_tools.noise.tail_estimators.ESTIMATORS`.
        bins: Number of histogram bins.
        at_start: Also measure at the initial weights (epoch 0).
        log_dir: Optional TensorBoard directory for the callback's own summaries.
        prefix: Prefix of the log keys.
        mode: ``"train"`` or ``"inference"`` (see `gradient_noise`).
        seed: Seed of the mini-batches (a new draw per measurement) and coordinates.
        per_layer: Also log the noise scale of each trainable variable.
        jit_compile: Whether the mini-batch gradients are XLA-compiled (as in
            `gradient_noise`; default True). On a large network the
            compilation can cost more than the measurement: False traces the
            gradient in graph mode only (the same values to rounding).
    """

    tail_index_method = renamed_attribute("tail_index_method", "tail_index_estimator")

    @renamed(tail_index_method="tail_index_estimator")
    def __init__(
        self,
        data,
        every_n_epochs=None,
        batch_size=32,
        num_batches=100,
        loss=None,
        num_coordinates=1000,
        tail_index_estimator="simsekli",
        bins=30,
        at_start=True,
        log_dir=None,
        prefix="noise_",
        mode="train",
        seed=0,
        per_layer=False,
        jit_compile=True,
        every_n_steps=None,
    ):
        if every_n_epochs is not None and every_n_steps is not None:
            raise ValueError(
                f"Give one of `every_n_epochs` and `every_n_steps`, got {every_n_epochs} and {every_n_steps}."
            )
        if every_n_steps is None and every_n_epochs is None:
            every_n_epochs = 1
        super().__init__(every_n_steps=every_n_steps, every_n_epochs=every_n_epochs, log_dir=log_dir)
        if int(num_batches) < 2:
            raise ValueError(f"`num_batches` must be >= 2, got {num_batches}.")
        if int(bins) < 1:
            raise ValueError(f"`bins` must be >= 1, got {bins}.")
        if tail_index_estimator not in ESTIMATORS:
            raise ValueError(f"`tail_index_estimator` must be one of {ESTIMATORS}, got {tail_index_estimator!r}.")
        self.data = data
        self.batch_size = int(batch_size)
        self.num_batches = int(num_batches)
        self.loss = loss
        self.num_coordinates = int(num_coordinates)
        self.tail_index_estimator = tail_index_estimator
        self.bins = int(bins)
        self.at_start = bool(at_start)
        self.prefix = prefix
        self.mode = mode
        self.seed = int(seed)
        self.per_layer = bool(per_layer)
        self.jit_compile = bool(jit_compile)
        self._sampler = None
        self._sampler_key = ()
        self._epochs_done = 0

    def _sampler_for(self, model_loss=None):
        """The traced sampler, rebuilt only when the model, its trainable variables or its loss change.

        `model_loss` (at `on_train_begin`) lists the trainable variables now;
        without it the kept sampler serves if it belongs to this model.
        """
        key = (self.model, getattr(self.model, "loss", None))
        kept = self._sampler is not None and all(a is b for a, b in zip(self._sampler_key, key))
        if kept and model_loss is not None:
            kept = [id(v) for v in self._sampler.variables] == [id(v) for v in model_loss.variables]
        if not kept:
            self._sampler = _NoiseSampler(self.model, self.loss, self.mode, False, True, self.jit_compile)
            self._sampler_key = key
        return self._sampler

    def measure(self, epoch=None):
        """Measures the noise at the current weights, stores a `NoiseRecord` and returns it.

        `epoch` is the number of completed epochs recorded with it (default:
        those completed so far in this `fit`).
        """
        if epoch is None:
            epoch = self._epochs_done
        step = self.optimizer_steps()
        noise = self._sampler_for().sample(
            self.data,
            self.batch_size,
            self.num_batches,
            "full",
            None,
            self.num_coordinates,
            self.per_layer,
            False,
            self.seed + len(self.records),
        )
        norms = noise.norms
        counts, edges = np.histogram(norms, bins=self.bins)
        median = float(np.median(norms))
        p = self.prefix
        values = {
            f"{p}norm_mean": float(np.mean(norms)),
            f"{p}norm_median": median,
            f"{p}norm_max_over_median": float(np.max(norms) / median) if median > 0 else float("inf"),
            f"{p}full_gradient_norm": noise.full_gradient_norm,
            f"{p}scale": noise.noise_scale,
        }
        if self.per_layer:
            values.update({f"{p}scale/{path}": scale for path, scale in noise.layer_noise_scales.items()})
        estimate = None
        if noise.coordinates is not None:
            pooled = standardized_coordinates(noise.coordinates)
            if len(pooled) >= 16:
                try:
                    estimate = tail_index(pooled, estimator=self.tail_index_estimator)
                except ValueError as error:  # degenerate coordinates: no estimate, and training goes on
                    warnings.warn(f"No noise tail index at epoch {epoch}: {error}", stacklevel=2)
                else:
                    values[f"{p}tail_index"] = estimate.alpha
        record = NoiseRecord(epoch, step, norms, counts, edges, estimate, values)
        self.records.append(record)
        self.mark_measured(step)
        self.publish(step, values, histograms={f"{p}norm": (norms, self.bins)})
        return record

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        # Refuse a model or data that cannot be measured before the first step, not after an epoch.
        _num_examples(self.data)
        model_loss = ModelLoss(self.model, self.loss, self.mode, False, True, "its gradient noise")
        check_data(model_loss, self.data, self.batch_size, "the callback's `data`")
        self._sampler_for(model_loss)
        self._epochs_done = 0
        if self.every_n_steps is not None:
            self.mark_measured(self.optimizer_steps())  # a later `fit` continues the schedule
        if self.at_start and not self.records:
            self.measure(0)

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        self._epochs_done = epoch

    def on_train_batch_begin(self, batch, logs=None):
        # As SharpnessCallback: measured at the start of the next step, on the
        # weights the previous steps left, without stopping Keras's dispatch.
        super().on_train_batch_begin(batch, logs)
        if self.every_n_steps is not None and self.steps_due():
            self.measure()

    def on_epoch_end(self, epoch, logs=None):
        self._epochs_done = epoch + 1
        if self.every_n_steps is not None:
            self._batches_begun = float("inf")  # the epoch's steps are all done: read the counter
            if self.steps_due():
                self.measure()
        elif self.epoch_due(epoch):
            self.measure(epoch + 1)
        super().on_epoch_end(epoch, logs)
