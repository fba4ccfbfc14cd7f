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
from analysis_tools._model_loss import ModelLoss
from analysis_tools._probe import check_data
from analysis_tools.noise.sampling import gradient_noise
from analysis_tools.noise.tail_estimators import METHODS, TailIndex, tail_index

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

    Every `every_n_epochs` epochs (and, with `at_start`, once before the first
    step) the callback freezes the weights it sees and calls
    `analysis_tools.gradient_noise` on `data`: the gradient over
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
    completed epochs.

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
        every_n_epochs: Measure after every n-th epoch.
        batch_size: The mini-batch size of the noise (use the training one).
        num_batches: Mini-batches per measurement.
        loss: Loss; default the model's compiled loss.
        num_coordinates: Noise coordinates kept for the tail index (0: none).
        tail_index_method: One of `analysis_tools.noise.tail_estimators.METHODS`.
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

    def __init__(self, data, every_n_epochs=1, batch_size=32, num_batches=100, loss=None,
                 num_coordinates=1000, tail_index_method="simsekli", bins=30, at_start=True,
                 log_dir=None, prefix="noise_", mode="train", seed=0, per_layer=False, jit_compile=True):
        super().__init__(every_n_epochs=every_n_epochs, log_dir=log_dir)
        if int(num_batches) < 2:
            raise ValueError(f"`num_batches` must be >= 2, got {num_batches}.")
        if int(bins) < 1:
            raise ValueError(f"`bins` must be >= 1, got {bins}.")
        if tail_index_method not in METHODS:
            raise ValueError(f"`tail_index_method` must be one of {METHODS}, got {tail_index_method!r}.")
        self.data = data
        self.batch_size = int(batch_size)
        self.num_batches = int(num_batches)
        self.loss = loss
        self.num_coordinates = int(num_coordinates)
        self.tail_index_method = tail_index_method
        self.bins = int(bins)
        self.at_start = bool(at_start)
        self.prefix = prefix
        self.mode = mode
        self.seed = int(seed)
        self.per_layer = bool(per_layer)
        self.jit_compile = bool(jit_compile)

    def measure(self, epoch):
        """Measures the noise at the current weights, stores a `NoiseRecord` and returns it."""
        noise = gradient_noise(
            self.model, self.data, loss=self.loss, batch_size=self.batch_size,
            num_batches=self.num_batches, num_coordinates=self.num_coordinates, per_layer=self.per_layer,
            mode=self.mode, seed=self.seed + len(self.records), jit_compile=self.jit_compile)
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
                    estimate = tail_index(pooled, method=self.tail_index_method)
                except ValueError as error:  # degenerate coordinates: no estimate, and training goes on
                    warnings.warn(f"No noise tail index at epoch {epoch}: {error}", stacklevel=2)
                else:
                    values[f"{p}tail_index"] = estimate.alpha
        record = NoiseRecord(epoch, self.optimizer_steps(), norms, counts, edges, estimate, values)
        self.records.append(record)
        self.publish(epoch, values, histograms={f"{p}norm": (norms, self.bins)})
        return record

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        # Refuse a model or data that cannot be measured before the first step, not after an epoch.
        model_loss = ModelLoss(self.model, self.loss, self.mode, False, True, "its gradient noise")
        check_data(model_loss, self.data, self.batch_size, "the callback's `data`")
        if self.at_start and not self.records:
            self.measure(0)

    def on_epoch_end(self, epoch, logs=None):
        if self.epoch_due(epoch):
            self.measure(epoch + 1)
        super().on_epoch_end(epoch, logs)
