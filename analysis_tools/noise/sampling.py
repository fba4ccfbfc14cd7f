"""Gradient noise at fixed parameters, and the empirical variance against the sample size.

Zhang et al. ("Why are adaptive methods good for attention models?", 2020,
§2, Figs. 2, 4 and 5, App. H) study the noise of a mini-batch gradient,

    ξ_B = g_B − ∇f,    g_B = ∇ (1/|B|) Σ_{i∈B} ℓ_i,    ∇f = ∇ (1/N) Σ_i ℓ_i,

at one point θ: the histogram of ‖ξ_B‖ over many mini-batches B (Fig. 2a/d),
its coordinates within one batch (Fig. 6c), how the histogram changes over
training (Fig. 5), and the empirical variance of the stochastic gradient as
the number of samples grows (Fig. 2c/f: it converges for light-tailed noise
and keeps growing for heavy-tailed noise).

`gradient_noise` computes ∇f once over the whole data set (batch-size-weighted
mean of the gradients over consecutive batches, as Simsekli et al.'s
reference code does), then g_B − ∇f for `num_batches` mini-batches of
`batch_size` examples drawn uniformly without replacement, with the parameters
fixed. It streams: one gradient and ∇f are held at a time, and only the norms,
per-layer norms and an optional fixed random subset of coordinates are kept,
so a model with ~10 M parameters needs a few copies of its weights, not one
per batch. The loss is evaluated with `model.stateless_call` (as for the
Hessian in `analysis_tools.curvature.hessian`): variables, BatchNorm statistics, seed
generators and the optimizer are never written. By default layers run in
training mode with Dropout off, so the noise is that of the data sampling
alone.

Under the model's `tf.distribute` strategy every gradient (the mini-batches'
and the full one) is split across the replicas by `analysis_tools._probe.Replicas`:
each batch is padded to the first batch's size (rounded up to a multiple of
the replicas) with a mask, each replica computes its static share inside
`strategy.run` as one `ReplicaProgram` (XLA-compiled with ``jit_compile=True``,
traced once, in the model's dtype), and the shares are all-reduced, each
example weighted by its mask. A dataset whose later batch is larger than
its first is refused (ValueError), as is a padded batch for a model with
BatchNorm in training mode.

For sampling without replacement from N examples, E‖ξ_B‖² = tr Cov(g_B) =
(N − |B|) / (|B| (N − 1)) · tr Σ, with Σ = (1/N) Σ_i (g_i − ∇f)(g_i − ∇f)ᵀ the
covariance of the per-example gradients g_i over the data set (each example
weighted 1/N, the covariance of the paper's data distribution when that is the
data set); `GradientNoise.trace_estimate` is the sample mean of ‖ξ_B‖², and
`GradientNoise.trace_covariance` inverts the factor to estimate tr Σ. From it
and ‖∇f‖ follows the simple gradient noise scale of McCandlish, Kaplan, Amodei
et al. ("An Empirical Model of Large-Batch Training", 2018, §2.2, eq. 2.8),

    B_simple = tr Σ / |G|²,    G = ∇f,

overall (`GradientNoise.noise_scale`) and per trainable variable
(`GradientNoise.layer_noise_scales`, with Σ and G restricted to it). It equals
their B_noise = tr(H Σ) / (Gᵀ H G) (eq. 2.7) when the Hessian H is a multiple
of the identity; the paper uses it as a cheap stand-in for B_noise, which
predicts the critical batch size beyond which a larger batch buys little. ∇f
is computed exactly over the data, so only tr Σ is estimated, and for array
data the estimate of B_simple is unbiased.
"""

import dataclasses
import math
import warnings
from typing import NamedTuple, Optional

import keras
import numpy as np
import tensorflow as tf

from analysis_tools._model_loss import ModelLoss
from analysis_tools._probe import FullGradient, ProbeSet, ReplicaProgram, Replicas, batch_count, check_data

__all__ = ["EmpiricalVariance", "GradientNoise", "empirical_variance_vs_sample_size", "gradient_noise"]


@dataclasses.dataclass
class GradientNoise:
    """The noise ξ_B = g_B − ∇f of `num_batches` mini-batches at fixed parameters.

    Attributes:
        norms: ‖ξ_B‖ per mini-batch, shape [num_batches].
        full_gradient_norm: ‖∇f‖ (of the reference gradient).
        batch_size: |B|. For a dataset, the size of its batches, and None when
            the batches drawn differ in size.
        num_examples: N, the size of the data set (None for a dataset of unknown size).
        layer_norms: With `per_layer=True`, {variable path: ‖ξ_B‖ restricted to it, [num_batches]}.
        layer_gradient_norms: With `per_layer=True`, {variable path: ‖∇f‖
            restricted to it} (of the reference gradient).
        coordinates: With `num_coordinates=k`, the noise at k fixed random
            coordinates of the flat parameter vector, [num_batches, k].
        coordinate_indices: Those coordinates (indices into the concatenation
            of `model.trainable_variables`, flattened).
        batch_noise: With `keep_batch_noise=True`, the whole flat noise vector
            of the first mini-batch (the per-coordinate noise of App. H, Fig. 6c).
    """

    norms: np.ndarray
    full_gradient_norm: float
    batch_size: Optional[int]
    num_examples: Optional[int]
    layer_norms: Optional[dict] = None
    layer_gradient_norms: Optional[dict] = None
    coordinates: Optional[np.ndarray] = None
    coordinate_indices: Optional[np.ndarray] = None
    batch_noise: Optional[np.ndarray] = None

    @property
    def trace_estimate(self):
        """mean ‖ξ_B‖², an unbiased estimate of tr Cov(g_B)."""
        return float(np.mean(np.square(self.norms, dtype=np.float64)))

    @property
    def trace_covariance(self):
        """An unbiased estimate of tr Σ, the trace of the per-example gradient covariance.

        Mini-batches drawn uniformly without replacement from N examples have
        E‖ξ_B‖² = (N − |B|) / (|B| (N − 1)) · tr Σ, with Σ = (1/N) Σ_i
        (g_i − ∇f)(g_i − ∇f)ᵀ, so tr Σ = mean ‖ξ_B‖² · |B| (N − 1) / (N − |B|).
        For a dataset (N unknown) the infinite-N limit, tr Σ ≈ |B| mean ‖ξ_B‖²,
        which is also the value for draws with replacement; over a finite
        data set it understates tr Σ by the factor (N − |B|) / (N − 1). Either
        way each batch must be a uniform random draw (a shuffled dataset):
        the fixed batches of an unshuffled one are not.

        NaN when |B| = N (every mini-batch is the whole data set, ξ_B = 0, and
        tr Σ cannot be seen) and when a dataset's batches differ in size.
        """
        return self.trace_estimate * _covariance_factor(self.batch_size, self.num_examples)

    @property
    def layer_trace_covariances(self):
        """{variable path: tr Σ restricted to that variable} (as `trace_covariance`); None without `per_layer`.

        They add up to `trace_covariance`.
        """
        if self.layer_norms is None:
            return None
        factor = _covariance_factor(self.batch_size, self.num_examples)
        return {
            path: float(np.mean(np.square(norms, dtype=np.float64))) * factor
            for path, norms in self.layer_norms.items()
        }

    @property
    def noise_scale(self):
        """The simple noise scale B_simple = tr Σ / |G|² (McCandlish et al. 2018, eq. 2.8).

        G is the reference gradient ∇f and tr Σ is `trace_covariance`. NaN
        where that is NaN, and when |G| = 0 (undefined: zero gradient).
        """
        return _noise_scale(self.trace_covariance, self.full_gradient_norm)

    @property
    def layer_noise_scales(self):
        """{variable path: tr Σ_l / |G_l|²}, B_simple of one variable's block; None without `per_layer`.

        Σ_l and G_l are Σ and ∇f restricted to the variable's coordinates; NaN
        as for `noise_scale`, and when G_l = 0.
        """
        traces = self.layer_trace_covariances
        if traces is None:
            return None
        return {path: _noise_scale(trace, self.layer_gradient_norms[path]) for path, trace in traces.items()}


def _covariance_factor(batch_size, num_examples):
    """tr Σ / E‖ξ_B‖²: |B| (N − 1) / (N − |B|), or |B| when N is unknown; NaN when |B| is unknown or N."""
    if batch_size is None or batch_size == num_examples:
        return math.nan
    if num_examples is None:
        return float(batch_size)
    return batch_size * (num_examples - 1) / (num_examples - batch_size)


def _noise_scale(trace, gradient_norm):
    """tr Σ / |G|², NaN when |G| = 0."""
    return trace / gradient_norm**2 if gradient_norm > 0 else math.nan


class _NoiseSampler:
    """Gradients and noise statistics of one model and loss, in `tf.function`s."""

    def __init__(self, model, loss, mode, dropout, include_regularization, jit_compile):
        self.loss = ModelLoss(model, loss, mode, dropout, include_regularization, "its gradient noise")
        self.model = model
        self.strategy = getattr(model, "distribute_strategy", None) or tf.distribute.get_strategy()
        self.variables = self.loss.variables
        self.dtype = self.loss.dtype
        self.sizes = self.loss.sizes
        self.values = self.loss.values
        self.jit_compile = bool(jit_compile)
        self._replica = ReplicaProgram(self._replica_gradient, self.jit_compile, "a mini-batch gradient")
        self._replicas = None
        self.noise = tf.function(self._noise, reduce_retracing=True)
        self._full_gradients = {}  # (id(data), batch size) → (data, traced `FullGradient`)

    def full_gradient(self, trainable, non_trainable, data, batch_size):
        """∇f = Σ_b (n_b / N) ∇ loss_b over consecutive batches, streamed and split across replicas.

        The probe-set machinery of the Hessian (`analysis_tools._probe`): one
        traced pass over `data` in its order, each replica's share XLA-compiled,
        float64 accumulation, under the model's `tf.distribute` strategy. The
        traced pass is kept per (`data`, `batch_size`), so a sampler that
        measures the same data again (`GradientNoiseCallback`) traces it once.
        """
        key = (id(data), int(batch_size))
        if key not in self._full_gradients:
            probe = ProbeSet(data, batch_size, self.strategy)
            self._full_gradients[key] = (data, FullGradient(self.loss, probe, self.jit_compile))
        flat, _ = self._full_gradients[key][1](trainable, non_trainable)
        parts = tf.split(flat, self.sizes)
        return [tf.cast(tf.reshape(p, v.shape), self.dtype) for p, v in zip(parts, self.variables)]

    def _replica_gradient(self, trainable, non_trainable, scale, x, y, mask):
        """This replica's share of the mini-batch gradient: Σ_i mask_i ∇ℓ_i · scale (scale = 1 / |B|)."""
        with tf.GradientTape() as tape:
            tape.watch(trainable)
            total = self.loss.share(
                trainable, non_trainable, x, y, mask, scale, 1.0 / self.strategy.num_replicas_in_sync
            )
        return tuple(self.loss.gradients(tape, total, trainable, range(len(trainable))))

    def _replicas_for(self, batch_size):
        """The `Replicas` of this sampler's mini-batches (built for the first batch size; always masked)."""
        if self._replicas is None:
            self._replicas = Replicas(self.strategy, batch_size, padded=True)
        return self._replicas

    def _noise(self, trainable, non_trainable, batch, mask, scale, reference, coordinate_indices, keep_all):
        gradient = self._replicas.run(self._replica, (trainable, non_trainable, scale), batch, mask)
        noise = [g - r for g, r in zip(gradient, reference)]
        layer_squares = tf.stack([tf.reduce_sum(tf.square(tf.cast(n, tf.float64))) for n in noise])
        flat = tf.concat([tf.reshape(n, [-1]) for n in noise], axis=0)
        coordinates = tf.gather(flat, coordinate_indices)
        kept = flat if keep_all else tf.zeros([0], flat.dtype)
        return tf.sqrt(tf.reduce_sum(layer_squares)), tf.sqrt(layer_squares), coordinates, kept

    def sample(
        self,
        data,
        batch_size,
        num_batches,
        reference,
        reference_batch_size,
        num_coordinates,
        per_layer,
        keep_batch_noise,
        seed,
    ):
        """`gradient_noise` at the current weights, with this sampler's traced functions (`data` checked)."""
        num_examples = _num_examples(data)
        trainable, non_trainable = self.values()
        if isinstance(reference, str):
            if reference != "full":
                raise ValueError(f'`reference` must be "full" or a list of tensors, got {reference!r}.')
            reference = self.full_gradient(trainable, non_trainable, data, int(reference_batch_size or batch_size))
        else:
            reference = [tf.cast(tf.convert_to_tensor(r), self.dtype) for r in reference]
            if [tuple(r.shape) for r in reference] != [tuple(v.shape) for v in self.variables]:
                raise ValueError("`reference` must have the shapes of `model.trainable_variables`.")
        rng = np.random.default_rng(seed)
        dimension = sum(self.sizes)
        indices = np.sort(rng.choice(dimension, size=min(int(num_coordinates), dimension), replace=False))
        indices_tensor = tf.constant(indices, tf.int64)
        norms, layer_norms, coordinates, batch_noise, batch_sizes = [], [], [], None, set()
        for x, y in _batches_of(data, int(batch_size), int(num_batches), rng):
            keep = bool(keep_batch_noise and batch_noise is None)
            count = int(batch_count(y))
            batch_sizes.add(count)
            batch, mask = self._replicas_for(count).pad((x, y), self.loss, "`data`")
            norm, layers, coordinate_values, flat = self.noise(
                trainable,
                non_trainable,
                batch,
                mask,
                tf.constant(1.0 / count, self.dtype),
                reference,
                indices_tensor,
                keep,
            )
            norms.append(float(norm))
            if per_layer:
                layer_norms.append(layers.numpy())
            if len(indices):
                coordinates.append(coordinate_values.numpy())
            if keep:
                batch_noise = flat.numpy()
        if not norms:
            raise ValueError("`data` yielded no mini-batch.")
        if len(norms) < int(num_batches):
            warnings.warn(
                f"`data` holds {len(norms)} batches, fewer than the {int(num_batches)} asked for "
                f"(`num_batches`): the noise is measured on those {len(norms)}.",
                stacklevel=3,
            )
        reference_squares = [float(tf.reduce_sum(tf.square(tf.cast(r, tf.float64)))) for r in reference]
        return GradientNoise(
            norms=np.array(norms),
            full_gradient_norm=math.sqrt(math.fsum(reference_squares)),
            batch_size=batch_sizes.pop() if len(batch_sizes) == 1 else None,
            num_examples=num_examples,
            layer_norms=(
                {v.path: column for v, column in zip(self.variables, np.array(layer_norms).T)} if per_layer else None
            ),
            layer_gradient_norms=(
                {v.path: math.sqrt(s) for v, s in zip(self.variables, reference_squares)} if per_layer else None
            ),
            coordinates=np.array(coordinates) if len(indices) else None,
            coordinate_indices=indices if len(indices) else None,
            batch_noise=batch_noise,
        )


def _batches_of(data, batch_size, num_batches, rng):
    """Yields (x, y) mini-batches: random ones from arrays, or a dataset's first ones."""
    if isinstance(data, tf.data.Dataset):
        for index, element in enumerate(data):
            if index >= num_batches:
                return
            yield element[0], element[1]
        return
    x, y = data
    n = _num_examples(data)
    if batch_size > n:
        raise ValueError(f"`batch_size` ({batch_size}) exceeds the number of examples ({n}).")
    for _ in range(num_batches):
        index = np.sort(rng.choice(n, size=batch_size, replace=False))
        yield keras.tree.map_structure(lambda a: tf.convert_to_tensor(np.asarray(a)[index]), (x, y))


def _num_examples(data):
    if isinstance(data, tf.data.Dataset):
        return None
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError("`data` must be an (x, y) pair of arrays or a tf.data.Dataset of (x, y) batches.")
    sizes = {len(a) for a in keras.tree.flatten(data)}
    if len(sizes) != 1:
        raise ValueError(f"Inputs and targets must have the same number of examples, got sizes {sorted(sizes)}.")
    return sizes.pop()


def gradient_noise(
    model,
    data,
    loss=None,
    batch_size=32,
    num_batches=100,
    reference="full",
    reference_batch_size=None,
    num_coordinates=0,
    per_layer=False,
    keep_batch_noise=False,
    mode="train",
    dropout=False,
    include_regularization=True,
    seed=0,
    jit_compile=True,
):
    """Samples the mini-batch gradient noise ξ_B = g_B − ∇f at the model's current weights.

    Args:
        model: A built Keras model (single output).
        data: An (x, y) pair of arrays (x may be a nested structure), from which
            mini-batches are drawn at random; or a `tf.data.Dataset` of (x, y)
            batches, whose first `num_batches` batches are the mini-batches (a
            dataset is iterated twice when `reference="full"`).
        loss: Loss (string, `keras.losses.Loss` or callable); default the compiled loss.
        batch_size: |B| for array data (a dataset's batches keep their own size).
        num_batches: Number of mini-batches.
        reference: ``"full"``: ∇f over all of `data`; or the gradient itself,
            a list of tensors shaped like `model.trainable_variables` (e.g. an
            analytic ∇f).
        reference_batch_size: Batch size of the pass that computes ∇f
            (default `batch_size`; with BatchNorm in training mode ∇f depends on it).
        num_coordinates: Keep the noise at this many fixed random coordinates.
        per_layer: Keep ‖ξ_B‖ and ‖∇f‖ per trainable variable (for `GradientNoise.layer_noise_scales`).
        keep_batch_noise: Keep the first mini-batch's whole flat noise vector.
        mode: ``"train"`` (default) or ``"inference"`` (BatchNorm moving statistics).
        dropout: In training mode, whether Dropout stays active. Default False.
        include_regularization: Whether `model.losses` are part of the loss (they cancel in ξ_B).
        seed: Seed of the mini-batch draws and of the coordinate subset.
        jit_compile: Whether each replica's gradient work is compiled by XLA.

    Returns:
        A `GradientNoise`.

    Raises:
        ValueError: If an argument is out of range; the model is not built
            or has no trainable variables; `data` is not (x, y) data, does
            not fit the model (inputs it cannot take, or targets whose shape
            a Keras loss would broadcast against the outputs; checked on one
            batch before any gradient), or yields no mini-batch.

    Warns:
        UserWarning: If a dataset holds fewer than `num_batches` batches; the
            noise is then measured on the batches it holds, and the warning
            says how many.
    """
    if int(batch_size) < 1 or int(num_batches) < 1:
        raise ValueError(f"`batch_size` and `num_batches` must be >= 1, got {batch_size} and {num_batches}.")
    sampler = _NoiseSampler(model, loss, mode, dropout, include_regularization, jit_compile)
    _num_examples(data)
    check_data(sampler.loss, data, int(batch_size), "`data`")
    return sampler.sample(
        data,
        batch_size,
        num_batches,
        reference,
        reference_batch_size,
        num_coordinates,
        per_layer,
        keep_batch_noise,
        seed,
    )


class EmpiricalVariance(NamedTuple):
    """The empirical variance of samples against the number of samples (Zhang et al., Fig. 2c/f).

    Attributes:
        sample_sizes: n, log-spaced, shape [S].
        variance: The median over repeats of the empirical variance of n
            samples (the trace of the sample covariance for vectors), [S].
        variances: Every repeat, [num_repeats, S].
        slope: How fast the variance grows: the least-squares slope of log v(n)
            on log n, where v(n) is the median variance of the disjoint blocks
            of n samples, over the larger half of the sizes n ≤ N/10 (so at
            least 10 blocks). ≈ 0 when the variance is finite, and ≈ 2/α − 1 > 0
            for an α-stable law, whose sample variance of n draws grows like
            n^(2/α − 1), approached from below (100k SαS draws read 0.61,
            0.23, 0.09 and 0.00 for α = 1.1, 1.5, 1.8, 2; a Student-t(3) 0.02).
            NaN when fewer than 4 sizes qualify.
    """

    sample_sizes: np.ndarray
    variance: np.ndarray
    variances: np.ndarray
    slope: float


def empirical_variance_vs_sample_size(samples, sample_sizes=None, num_repeats=1, seed=0):
    """The empirical variance of the first n samples, for growing n.

    With ``num_repeats > 1`` each repeat uses a fresh random order of the
    samples and the median is reported, which steadies the curve of a
    heavy-tailed sample (one draw can dominate a single path).

    Args:
        samples: [N] scalars or [N, d] vectors (e.g. `GradientNoise.coordinates`).
        sample_sizes: The n to evaluate (each in [2, N]); default 30
            log-spaced values from 10 (or 2) to N.
        num_repeats: Random orders; the first repeat keeps the given order.
        seed: Seed of the orders.

    Returns:
        An `EmpiricalVariance`.
    """
    x = np.asarray(samples, dtype=np.float64)
    x = x.reshape(len(x), -1)
    n = len(x)
    if n < 3:
        raise ValueError(f"Need at least 3 samples, got {n}.")
    if sample_sizes is None:
        sample_sizes = np.unique(np.geomspace(min(10, n - 1), n, 30).astype(int))
    sample_sizes = np.asarray(sample_sizes, dtype=int)
    if np.any(sample_sizes < 2) or np.any(sample_sizes > n):
        raise ValueError(f"`sample_sizes` must lie in [2, {n}].")
    rng = np.random.default_rng(seed)
    variances = []
    for repeat in range(max(1, int(num_repeats))):
        ordered = x if repeat == 0 else x[rng.permutation(n)]
        centred = ordered - ordered.mean(axis=0)  # running sums of centred data stay accurate
        first = np.cumsum(centred, axis=0)[sample_sizes - 1]
        second = np.cumsum(np.square(centred), axis=0)[sample_sizes - 1]
        sizes = sample_sizes[:, None].astype(np.float64)
        variances.append(np.sum((second - np.square(first) / sizes) / (sizes - 1.0), axis=1))
    variances = np.array(variances)
    variance = np.median(variances, axis=0)
    return EmpiricalVariance(sample_sizes, variance, variances, _growth_exponent(x, sample_sizes))


def _growth_exponent(x, sample_sizes):
    """Slope of log(median variance of disjoint blocks of n samples) on log n (`EmpiricalVariance.slope`)."""
    n = len(x)
    sizes = sample_sizes[sample_sizes <= n // 10]
    if len(sizes) < 4:
        return math.nan
    sizes = sizes[sizes >= math.sqrt(sizes[0] * sizes[-1])]
    medians = []
    for size in sizes:
        blocks = x[: n // size * size].reshape(n // size, size, -1)
        medians.append(np.median(np.sum(np.var(blocks, axis=1, ddof=1), axis=1)))
    medians = np.array(medians)
    if len(sizes) < 2 or not np.all(medians > 0):
        return math.nan
    return float(np.polyfit(np.log(sizes), np.log(medians), 1)[0])
