"""The law of the normalized update Δθ/η, measured inside `model.fit`.

Zhang and Ziyin, "On the Distributional Properties of Adaptive Gradients"
(UAI 2021), call Δθ := (θ_t − θ_{t−1}) / η the update of an adaptive method
and show (Theorem 1) that for i.i.d. N(0, σ²) gradients, no momentum and a
simple-average preconditioner over m = t squared gradients, it follows
`AdaptiveUpdate(m)` (x²/m ~ Beta(1/2, (m−1)/2), random sign): bimodal for
m < 3, unimodal after, variance 1 (Corollary 1) and Var|x| of Corollary 2.
Their Figs. 2–4 compare this prediction with the updates of real networks,
layer by layer; `UpdateDistributionCallback` makes the same measurement in
`model.fit` and logs how far each layer's update law is from the prediction.
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from analysis_tools._blocks import find_layer, layer_blocks
from analysis_tools._callback import MeasurementCallback
from analysis_tools.preconditioners import last_learning_rate_of, second_moment_of
from analysis_tools.updates.goodness_of_fit import ks_statistic
from analysis_tools.updates.law import AdaptiveUpdate
from analysis_tools.updates.moments import effective_sample_size
from tf_adaptive import SecondMoment

__all__ = ["UpdateDistributionCallback", "UpdateHistogram", "UpdateRecord", "reference_law_of"]


@dataclasses.dataclass
class UpdateHistogram:
    """A histogram of one layer's Δθ/η at one optimizer step.

    `counts[i]` counts the values in [edges[i], edges[i+1]) (the last bin is
    closed); `underflow` and `overflow` count the values below `edges[0]` and
    above `edges[-1]`.
    """

    step: int
    edges: np.ndarray
    counts: np.ndarray
    underflow: int
    overflow: int

    def density(self):
        """The histogram as a density over all recorded values (under/overflow included in the total)."""
        total = self.counts.sum() + self.underflow + self.overflow
        return self.counts / (max(total, 1) * np.diff(self.edges))


@dataclasses.dataclass
class UpdateRecord:
    """The statistics of one recorded step of `UpdateDistributionCallback`.

    `scale` is the factor s_t with x = s_t · Δθ/η the paper's update (√t for
    a sum-form Adagrad, 1 otherwise); `reference_m` the m of the reference
    law `AdaptiveUpdate(m)` (None when there is none). The per-layer dicts
    hold Var(Δθ/η), Var|Δθ/η| and the Kolmogorov–Smirnov distance (and its
    p-value) of s_t · Δθ/η to `AdaptiveUpdate(reference_m)`.
    """

    step: int
    learning_rate: float
    scale: float
    reference_m: float
    variance: dict
    abs_variance: dict
    ks: dict
    ks_pvalue: dict


def reference_law_of(optimizer, step):
    """(m, s): the reference `AdaptiveUpdate(m)` and the scale s of x = s · Δθ/η at optimizer step `step`.

    The rule used by `UpdateDistributionCallback` when no `reference_m` is
    given. It reads the optimizer's description of its second moment
    (`analysis_tools.preconditioners.second_moment_of`: the optimizer's own
    ``second_moment`` for tf_adaptive, the table there for Keras's
    built-ins), not its class:

    * A sum of squared gradients under a square root (Adagrad's form,
      ``SecondMoment("sum", power=0.5)``): m = t and s = √t, since it divides
      by sqrt(Σ_{i≤t} g_i²), which is √t times the simple-average
      preconditioner of Zhang and Ziyin's Theorem 1 (exact for
      ``epsilon=0`` and an accumulator that starts at 0; approximate for
      Keras's Adagrad, whose sum starts at 0.1).
    * The root of an exponential average of squared gradients with
      coefficient β2 (``SecondMoment("ema", β2, 0.5)``: Adam, Nadam, Padam at
      partial = 1/2, RMSProp, LaProp, RAdam; Keras's Adam, AdamW, Nadam and
      RMSprop): m = `effective_sample_size(β2, step=t)`, the Kish count of
      the bias-corrected EMA weights, which tends to (1 + β2)/(1 − β2), close
      to the paper's 2/(1 − β2) (Eq. 12), and s = 1. This is approximate: the
      unequal weights put Var(x) below 1 (≈ 0.92 for β2 = 0.9), without bias
      correction (RMSProp) the first steps are inflated by 1/sqrt(1 − β2^t),
      momentum (β1 > 0) narrows the law further (the paper's theory is for
      β1 = 0), and RAdam's rectification rescales its early steps.
    * Anything else (other powers, SGD, sign methods, clipping, Adafactor,
      optimizers `second_moment_of` does not know, ...): no reference (m is None); pass `reference_m` to the callback to
      set one.

    m is returned as None as well where it is ≤ 1 (the first step, where the
    update is ±1), since `AdaptiveUpdate` needs m > 1.
    """
    t = int(step)
    try:
        moment = second_moment_of(optimizer)
    except TypeError:  # an optimizer that describes no second moment (e.g. keras.optimizers.Lion)
        return None, 1.0
    if moment.power != 0.5:
        return None, 1.0
    if moment.form == SecondMoment.SUM:
        return (float(t) if t > 1 else None), float(np.sqrt(max(t, 1)))
    if moment.form != SecondMoment.EMA or moment.beta is None:
        return None, 1.0
    m = float(effective_sample_size(np.float64(moment.beta), step=np.float64(t)).numpy())
    return (m if m > 1.0 + 1e-9 else None), 1.0


class UpdateDistributionCallback(MeasurementCallback):
    """Record each layer's normalized update Δθ/η during `model.fit` and compare it with theory.

    Zhang and Ziyin (UAI 2021) predict the law of the update Δθ := (θ_t − θ_{t−1}) / η
    of an adaptive method (`AdaptiveUpdate(m)`, Theorem 1) and compare it
    with real networks layer by layer (Figs. 2–4). For every recorded step t
    and every selected layer this callback takes Δθ/η of that layer's
    weights (its kernels, biases and other trainable variables flattened and
    concatenated, in `layer.trainable_weights` order; every coordinate is one
    sample), with η the learning rate of that update (read from the
    optimizer after the step: a `LearningRateSchedule` evaluated at
    ``iterations − 1``; a `LossScaleOptimizer` is unwrapped to its
    ``inner_optimizer``), and computes

    * ``update_variance/<layer>``: Var(Δθ/η) (the paper's Corollary 1 predicts 1
      for x = s·Δθ/η);
    * ``abs_update_variance/<layer>``: Var|Δθ/η| (Corollary 2: see
      `analysis_tools.updates.abs_update_variance`);
    * ``update_ks/<layer>``: the Kolmogorov–Smirnov distance of x = s·Δθ/η to
      `AdaptiveUpdate(m)`.

    The variances are those of Δθ/η as applied; the reference law is that of
    x = s·Δθ/η, where s = √t for a sum-form Adagrad (which divides by
    sqrt(Σ g²), √t times the simple-average preconditioner) and s = 1 for every
    other optimizer (so for Adagrad the paper's variances are t times the
    logged ones). m is `reference_m` if given, else the rule of
    `reference_law_of`: m = t for Adagrad, the effective sample count
    `effective_sample_size(β2, step=t)` for exponential averages (Adam,
    RMSProp; approximate), and no KS (the key is left out) for other
    optimizers and wherever m ≤ 1 (the first step). Δθ includes everything
    the optimizer applied (weight decay too), and is taken in float32 from the
    stored weights.

    The values are added to the batch `logs` of the recorded steps, and the
    latest ones to every epoch's logs, so `History`, `CSVLogger` and
    `TensorBoard` record them (epochs before the first recorded step have
    none of these keys). With `log_dir` the callback also writes its own
    TensorBoard scalars and a histogram ``update/<layer>`` per recorded step,
    indexed by the optimizer step.

    Kept on the callback, for plotting:

    * ``self.steps``: the recorded optimizer steps t (1 for the first update);
    * ``self.values[layer]``: for the first `steps` recorded steps, a float32
      array of Δθ/η per step (all coordinates, or a fixed random subset of
      `max_coordinates` of them, the same subset at every step);
    * ``self.histograms[layer]``: for the later recorded steps, one
      `UpdateHistogram` per step, with `histogram_bins` bins between the 0.5%
      and 99.5% quantiles of Δθ/η at the first histogrammed step (fixed from
      then on) and under/overflow counts;
    * ``self.records``: one `UpdateRecord` per recorded step (learning rate,
      scale s, reference m and the statistics of every layer).

    Under a `keras.optimizers.MultiOptimizer` each coordinate is divided by
    the η_t of the sub-optimizer that updates it; the record's learning rate
    is NaN where the watched variables' rates differ.

    The statistics of every step are computed on the (sub-sampled)
    coordinates. The callback only reads weights and the optimizer's step
    count: training is bit-identical with and without it.

    ``steps_per_execution > 1`` is refused with a `ValueError` in
    `on_train_begin`: Keras then calls the batch hooks once per execution, so
    the change of the weights would span several optimizer steps. With
    ``gradient_accumulation_steps`` a step is recorded only on the batches that
    apply an update (the optimizer's ``iterations`` advanced), and likewise a
    step skipped by a `LossScaleOptimizer` is not recorded.

    Args:
        layers: Layer names (nested names and ``"outer/inner"`` paths too)
            or layer objects to watch; default: the model's blocks
            (`analysis_tools.curvature.model_blocks`: nested models opened, a
            Functional cut into its blocks and stages).
        steps: How many recorded steps keep per-coordinate values.
        every_n_steps: Record optimizer steps t that are multiples of this.
        histogram_bins: Number of bins of the later histograms.
        max_coordinates: Per layer, sub-sample to this many coordinates (a fixed
            random subset drawn from `seed`) when the layer has more.
        log_dir: Optional TensorBoard directory for the callback's own summaries.
        reference_m: Optional m of the reference law: a number > 1, or a
            callable of the step t returning one (or None for no KS at t).
            Overrides the rule above; the scale s is still √t for Adagrad.
        seed: Seed of the coordinate subset (a private NumPy generator; the
            global random state is not touched).
    """

    def __init__(
        self,
        layers=None,
        steps=10,
        every_n_steps=1,
        histogram_bins=64,
        max_coordinates=100_000,
        log_dir=None,
        reference_m=None,
        seed=0,
    ):
        super().__init__(every_n_steps=every_n_steps, log_dir=log_dir)
        if int(steps) < 0:
            raise ValueError(f"`steps` must be >= 0, got {steps}.")
        if int(histogram_bins) < 1:
            raise ValueError(f"`histogram_bins` must be >= 1, got {histogram_bins}.")
        if int(max_coordinates) < 1:
            raise ValueError(f"`max_coordinates` must be >= 1, got {max_coordinates}.")
        if reference_m is not None and not callable(reference_m) and not float(reference_m) > 1.0:
            raise ValueError(f"`reference_m` must be > 1 (or a callable of the step), got {reference_m}.")
        self.layers = None if layers is None else list(layers)
        self.num_steps = int(steps)
        self.histogram_bins = int(histogram_bins)
        self.max_coordinates = int(max_coordinates)
        self.reference_m = reference_m
        self.seed = int(seed)
        self.steps = []
        self.values = {}
        self.histograms = {}
        self.histogram_edges = {}
        self._watched = None
        self._indices = {}
        self._snapshot = None

    # ------------------------------------------------------------- set-up
    def _optimizer(self):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            raise ValueError("UpdateDistributionCallback needs a compiled model with an optimizer.")
        return optimizer

    def _resolve_layers(self):
        if self.layers is None:
            chosen = layer_blocks(self.model)
        else:
            chosen = [
                (layer.name, [layer])
                for layer in (
                    find_layer(self.model, layer) if isinstance(layer, str) else layer for layer in self.layers
                )
            ]
        watched = {}
        for name, layers in chosen:
            variables = [v for layer in layers for v in layer.trainable_weights]
            if not variables:
                raise ValueError(f"Layer {name!r} has no trainable weights to watch.")
            watched[name] = variables
        if not watched:
            raise ValueError("The model has no layer with trainable weights to watch.")
        return watched

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        steps_per_execution = int(getattr(self.model, "steps_per_execution", 1) or 1)
        if steps_per_execution > 1:
            raise ValueError(
                f"UpdateDistributionCallback needs steps_per_execution=1 (got {steps_per_execution}): "
                "with several optimizer steps per execution Keras calls the batch hooks once per "
                "execution, so the weight change would span several updates. Compile the model "
                "with steps_per_execution=1."
            )
        self._optimizer()
        self._watched = self._resolve_layers()
        rng = np.random.default_rng(self.seed)
        self._indices = {}
        for name, variables in self._watched.items():
            size = int(sum(np.prod(v.shape) for v in variables))
            if size > self.max_coordinates:
                subset = np.sort(rng.choice(size, self.max_coordinates, replace=False))
                self._indices[name] = tf.constant(subset, tf.int64)
            else:
                self._indices[name] = None
            self.values.setdefault(name, [])
            self.histograms.setdefault(name, [])

    # ---------------------------------------------------------- measuring
    def _read(self, name):
        """The watched coordinates of layer `name`, flattened, as a float32 tensor."""
        flat = tf.concat(
            [tf.reshape(tf.cast(tf.convert_to_tensor(v.value), tf.float32), [-1]) for v in self._watched[name]],
            axis=0,
        )
        indices = self._indices[name]
        return flat if indices is None else tf.gather(flat, indices)

    def _learning_rates(self, name):
        """η_t of layer `name`'s watched coordinates: one float, or one per coordinate where they differ.

        They differ only under a `keras.optimizers.MultiOptimizer` whose
        sub-optimizers update the layer's variables with different rates: each
        coordinate is then divided by its own sub-optimizer's η_t.
        """
        variables = self._watched[name]
        optimizer = self.model.optimizer
        rates = [float(keras.ops.convert_to_numpy(r)) for r in last_learning_rate_of(optimizer, variables)]
        if len(set(rates)) == 1:
            return rates[0]
        per_coordinate = np.concatenate([np.full(int(np.prod(v.shape)), r) for v, r in zip(variables, rates)])
        indices = self._indices[name]
        return per_coordinate if indices is None else per_coordinate[np.asarray(indices)]

    def on_train_batch_begin(self, batch, logs=None):
        super().on_train_batch_begin(batch, logs)
        if self._watched is None:
            return
        completed = self.optimizer_steps()
        if (completed + 1) % self.every_n_steps != 0:
            self._snapshot = None
            return
        self._snapshot = (completed, {name: self._read(name) for name in self._watched})

    def _reference(self, step):
        m, scale = reference_law_of(self._optimizer(), step)
        if self.reference_m is not None:
            m = self.reference_m(step) if callable(self.reference_m) else self.reference_m
            m = None if m is None or not float(m) > 1.0 else float(m)
        return m, scale

    def _histogram(self, name, step, values):
        if name not in self.histogram_edges:
            low, high = np.quantile(values, [0.005, 0.995])
            if not high > low:
                half_width = max(abs(float(low)), 1.0) * 1e-3
                low, high = low - half_width, high + half_width
            self.histogram_edges[name] = np.linspace(low, high, self.histogram_bins + 1)
        edges = self.histogram_edges[name]
        counts, _ = np.histogram(values, bins=edges)
        return UpdateHistogram(
            step=step,
            edges=edges,
            counts=counts,
            underflow=int(np.sum(values < edges[0])),
            overflow=int(np.sum(values > edges[-1])),
        )

    def on_train_batch_end(self, batch, logs=None):
        if self._snapshot is None:
            return
        before_step, before = self._snapshot
        step = self.optimizer_steps()
        if step != before_step + 1:  # no update applied (accumulating, or a skipped step)
            return
        self._snapshot = None
        rates = {name: self._learning_rates(name) for name in self._watched}
        distinct = np.unique(np.concatenate([np.atleast_1d(r) for r in rates.values()]))
        learning_rate = float(distinct[0]) if len(distinct) == 1 else float("nan")
        m, scale = self._reference(step)
        reference = None if m is None else AdaptiveUpdate(np.float64(m))
        keep_values = len(self.steps) < self.num_steps
        record = UpdateRecord(step, learning_rate, scale, m, {}, {}, {}, {})
        latest, histograms = {}, {}
        for name in self._watched:
            delta = (self._read(name) - before[name]).numpy().astype("float64") / rates[name]
            values = delta.astype("float32")
            record.variance[name] = float(np.var(delta))
            record.abs_variance[name] = float(np.var(np.abs(delta)))
            latest[f"update_variance/{name}"] = record.variance[name]
            latest[f"abs_update_variance/{name}"] = record.abs_variance[name]
            if reference is not None:
                statistic, pvalue = ks_statistic(scale * delta, reference)
                record.ks[name], record.ks_pvalue[name] = float(statistic), float(pvalue)
                latest[f"update_ks/{name}"] = record.ks[name]
            if keep_values:
                self.values[name].append(values)
            else:
                self.histograms[name].append(self._histogram(name, step, values))
            histograms[f"update/{name}"] = values
        self.steps.append(step)
        self.records.append(record)
        self.publish(step, latest, logs, histograms)

    def on_train_end(self, logs=None):
        self._snapshot = None
        super().on_train_end(logs)
