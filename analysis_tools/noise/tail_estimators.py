"""Tail-index estimators for gradient noise: `tail_index(samples, estimator=...)`.

The tail index α of a symmetric α-stable law (0 < α ≤ 2) governs
P(|X| > x) ~ x^(−α): α = 2 is Gaussian, α < 2 has infinite variance. Zhang et
al. ("Why are adaptive methods good for attention models?", 2020, App. H,
Fig. 7) apply the estimator of Simsekli et al. ("A tail-index analysis of
stochastic gradient noise in deep neural networks", 2019) to gradient noise
and report α ≈ 1.99 for ResNet50 on ImageNet and α ≈ 1.08 for BERT.

Three estimators, one signature. `samples` is either a 1-D array of i.i.d.
scalars (e.g. noise coordinates pooled over batches, Simsekli et al.'s view) or
an [N, d] array of N i.i.d. vectors (noise vectors, Zhang et al.'s view):

* ``"simsekli"``: block sums (Mohammadi et al. 2015, Cor. 2.4, as used by
  Simsekli et al. 2019, Eq. 7). For i.i.d. SαS X_j, a sum of K of them is
  distributed as K^(1/α) X, so with Y_i the sums of N/K blocks of K samples

      1/α̂ = (1/log K) · [ mean_i log|Y_i| − mean_j log|X_j| ]

  (|·| the Euclidean norm for vectors). Assumes i.i.d., symmetric, centred
  samples (noise is centred by construction); for data merely in an α-stable
  domain of attraction K must be large (default ⌊√N⌋, as Simsekli et al.).
  We average the block means over `num_permutations` random re-blockings of the
  samples (default 10): same expectation for i.i.d. data, 2–3× less spread.
* ``"characteristic_function"``: regression of log(−log|φ̂(t)|) on log t,
  since −log|φ(t)| = |σt|^α for SαS (Koutrouvelis 1980). φ̂ is the empirical
  characteristic function at 10 points t ∈ [0.1, 1]/s, s the median absolute
  deviation from the median; points where |φ̂| or −log|φ̂| are within
  3/√N of 0 (sampling noise) are dropped. Assumes symmetry and i.i.d.; needs
  no density. Vectors are projected on `num_directions` random unit
  directions (each projection of an SαS vector with i.i.d. coordinates, or of
  an isotropic one, is SαS with the same α) and the estimates averaged.
* ``"hill"``: the Hill (1975) estimator on the largest order statistics of
  |X| (norms for vectors), α̂_k = k / Σ_{i≤k} log(|X|_(i) / |X|_(k+1)), with k
  chosen automatically by Clauset, Shalizi and Newman's (2009) rule: the k
  whose Pareto fit to the top k values has the smallest Kolmogorov–Smirnov
  distance (candidates log-spaced from 10 to N/10). It assumes only a power
  tail, so it also reads tails above 2 (Student-t(ν) gives ≈ ν).

Standard errors (`TailIndex.standard_error`, of the unclipped estimate), with
the fraction of 100 seeds of 10,000 SαS draws whose ±1.96 SE interval covers
α = 1, 1.5, 1.9 (`benchmarks/coverage.py`, RESULTS.md):

* ``"simsekli"``: the delta method, SE(α̂) = α̂² SE(1/α̂). One blocking's
  variance of 1/α̂ is [Var log|Y|/B + Var log|X|/N] / log²K (B blocks); the
  spread V_w of the estimate over the blockings says how much of it the
  average over P blockings removes: Var = V₁ − V_w (1 − 1/P). Coverage 0.93,
  0.93, 0.96.
* ``"characteristic_function"``: the delete-a-group jackknife over 10 random
  groups of samples (rows). Coverage 0.95, 0.90, 0.94.
* ``"hill"``: the classical Hill interval α̂ ± 1.96 α̂/√k ignores the
  estimator's bias (it covered α = 1.5 in 38 of 100 seeds), so the estimate
  is the generalized jackknife of Gomes, Martins and Neves (2000) with
  ρ = −1, ξ = 1/α = 2ξ̂(k/2) − ξ̂(k), which cancels a bias linear in k/N
  (stable laws and Student-t have ρ = −1 in this sense), with variance
  5ξ²/k; the plain Hill value stays in `parameters["hill"]`. Coverage 0.98
  and 0.95 at α = 1 and 1.5, but 0.02 at α = 1.9: there an SαS tail follows
  its power law only far beyond the reach of 10⁴ samples (α̂ ≈ 3.7), which no
  correction of the top order statistics can see; use the stable-law
  estimators near 2. Where the bias-reduced ξ is ≤ 0 (a bounded or light
  tail) α is inf and the standard error NaN, with a note.

Ranges and known biases (measured on 100k SαS draws from
`analysis_tools.noise.SymmetricAlphaStable`, see the tests):

* ``"simsekli"`` and ``"characteristic_function"`` are within ±0.03 of α for
  α ∈ {1.1, 1.5, 1.8, 2.0}. Both estimate a *stable* index, so the estimate is
  reported in (0, 2]: a raw value above 2 (light tails plus sampling noise,
  e.g. 2.03 for Gaussian data) is reported as 2 and kept in `unclipped`.
* ``"hill"`` (bias-reduced) is within ±0.1 for α ≤ 1.5 but overestimates as α → 2: an SαS
  tail follows its power law only far out (≈ 1.9–2.0 at α = 1.8), and a
  Gaussian has no power tail at all (α̂ ≈ 9–11). Read α̂_hill > 2 as "finite
  variance", not as a stable index.

Caveats worth knowing before reading α̂ < 2 as "infinite variance": neither
stable-law estimator tests whether the data are stable. A Student-t(3)
(finite variance) reads α̂ ≈ 1.8 with ``"simsekli"`` and ≈ 1.7 with
``"characteristic_function"``; pooling coordinates with different scales also
pulls α̂ below the truth. Compare with ``"hill"`` and with
`analysis_tools.noise.fit_noise_distribution`, and standardise per layer
(`gradient_noise(..., per_layer=True)`) before pooling.
"""

import math
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from analysis_tools._deprecation import renamed, renamed_attribute, renamed_constants

__all__ = ["ESTIMATORS", "TailIndex", "tail_index"]

ESTIMATORS = ("simsekli", "characteristic_function", "hill")
__getattr__ = renamed_constants(globals(), METHODS="ESTIMATORS")
MIN_SAMPLES = 16


class TailIndex(NamedTuple):
    """A tail-index estimate.

    Attributes:
        alpha: The estimate (for the stable-law estimators, at most 2).
        unclipped: The raw estimate before the stable range was applied.
        estimator: The estimator's name.
        num_samples: N, the number of scalars or vectors used.
        parameters: The estimator's choices (block size, k, threshold, t range, …).
        standard_error: The estimate's standard error (of `unclipped`; see each
            estimator in the module docstring for how, and its measured coverage).
    """

    alpha: float
    unclipped: float
    estimator: str
    num_samples: int
    parameters: dict
    standard_error: float = math.nan

    method = renamed_attribute("method", "estimator")


def _as_samples(samples):
    x = tf.convert_to_tensor(samples)
    x = tf.cast(x, tf.float64)
    if x.shape.rank not in (1, 2):
        raise ValueError(f"`samples` must be 1-D (scalars) or 2-D (rows are vectors), got shape {x.shape}.")
    finite = tf.reduce_all(tf.math.is_finite(x), axis=list(range(1, x.shape.rank)))
    x = tf.boolean_mask(x, finite)
    n = int(tf.shape(x)[0])
    if n < MIN_SAMPLES:
        raise ValueError(f"Need at least {MIN_SAMPLES} finite samples, got {n}.")
    values = x.numpy()
    # Rows are told apart by a random projection: O(N d), and distinct rows project apart almost surely.
    keys = values if values.ndim == 1 else values @ np.random.default_rng(0).standard_normal(values.shape[1])
    distinct = len(np.unique(keys))
    if distinct < MIN_SAMPLES:
        kind = "samples" if x.shape.rank == 1 else "rows"
        if distinct == 1:
            found = f"all {n} finite {kind} are equal (to {values[0].tolist()})"
        else:
            found = f"only {distinct} distinct values among its {n} finite {kind}"
        raise ValueError(
            f"`samples` are degenerate: {found}. A tail index needs at least {MIN_SAMPLES} distinct "
            "finite samples from a continuous law; constant or discrete data have no tail to estimate."
        )
    return x


def _magnitudes(x):
    return tf.abs(x) if x.shape.rank == 1 else tf.norm(x, axis=1)


def simsekli(x, block_size=None, num_permutations=10, seed=0):
    """1/α̂ = [mean log|Y_i| − mean log|X_j|] / log K over blocks of K samples (module docstring)."""
    n = int(tf.shape(x)[0])
    k = int(math.isqrt(n)) if block_size is None else int(block_size)
    if not 2 <= k <= n // 2:
        raise ValueError(f"`block_size` must be in [2, N/2] = [2, {n // 2}], got {k}.")
    blocks = n // k
    magnitudes = _magnitudes(x)
    zeros = int(tf.math.count_nonzero(magnitudes == 0.0))
    if zeros:
        raise ValueError(
            f"{zeros} of the {n} samples are exactly 0, where log|X| is -inf: the block-sum estimator "
            "needs a law without an atom at 0. Drop them (e.g. coordinates whose noise is always 0), "
            'or use estimator="hill", which reads only the largest magnitudes.'
        )
    log_magnitudes = tf.math.log(magnitudes)
    log_x = tf.reduce_mean(log_magnitudes)
    rng = np.random.default_rng(seed)
    permutations = max(1, int(num_permutations))
    log_y, variance_y = [], []
    for p in range(permutations):
        shuffled = x if p == 0 else tf.gather(x, rng.permutation(n))
        sums = _magnitudes(tf.reduce_sum(tf.reshape(shuffled[: blocks * k], [blocks, k, -1]), axis=1))
        if not bool(tf.reduce_all(sums > 0.0)):
            raise ValueError(
                f"A sum of {k} samples is exactly 0, where log|Y| is -inf: the samples are not from a "
                "continuous law (too few distinct values). Use more samples, or another block_size."
            )
        log_sums = tf.math.log(sums)
        log_y.append(float(tf.reduce_mean(log_sums)))
        variance_y.append(float(tf.math.reduce_variance(log_sums)) * blocks / (blocks - 1))
    log_k = math.log(k)
    inverse = (np.mean(log_y) - float(log_x)) / log_k
    # Standard error (delta method, α̂ = 1/inverse): one blocking's variance of the inverse is
    # [Var log|Y|/B + Var log|X|/N] / log²K; the blockings' own spread V_w shows how much of it the
    # average over P blockings removes (V_1 − V_w (1 − 1/P)).
    variance_x = float(tf.math.reduce_variance(log_magnitudes)) * n / (n - 1)
    one_blocking = (np.mean(variance_y) / blocks + variance_x / n) / log_k**2
    within = float(np.var((np.asarray(log_y) - float(log_x)) / log_k, ddof=1)) if permutations > 1 else 0.0
    variance = max(one_blocking - within * (1.0 - 1.0 / permutations), one_blocking / permutations)
    alpha = 1.0 / inverse
    return float(alpha), {
        "block_size": k,
        "num_blocks": blocks,
        "num_permutations": permutations,
        "standard_error": float(alpha * alpha * math.sqrt(variance)),
    }


def _characteristic_function_1d(x, num_points):
    """(α̂, t range), or (NaN, the reason) where the regression has nothing to fit."""
    n = int(tf.shape(x)[0])
    centred = x - _median(x)
    spread = _median(tf.abs(centred))
    if not spread > 0:
        return float("nan"), (
            "at least half of the samples equal their median (the median absolute deviation, which "
            "sets the scale of t, is 0)"
        )
    t = tf.constant(np.geomspace(0.1, 1.0, num_points), tf.float64) / spread
    phase = t[:, None] * centred[None, :]
    modulus = tf.sqrt(tf.reduce_mean(tf.cos(phase), axis=1) ** 2 + tf.reduce_mean(tf.sin(phase), axis=1) ** 2)
    noise = 3.0 / math.sqrt(n)
    minus_log = -tf.math.log(modulus)
    keep = (modulus > noise) & (minus_log > noise)
    t, minus_log = tf.boolean_mask(t, keep), tf.boolean_mask(minus_log, keep)
    if int(tf.shape(t)[0]) < 3:
        return float("nan"), (
            f"|φ̂(t)| is within sampling noise (3/√N) of 0 or 1 at {num_points - int(tf.shape(t)[0])} "
            f"of the {num_points} points t, leaving fewer than 3 to fit a slope"
        )
    log_t, log_y = tf.math.log(t), tf.math.log(minus_log)
    slope = tf.reduce_sum((log_t - tf.reduce_mean(log_t)) * (log_y - tf.reduce_mean(log_y))) / tf.reduce_sum(
        tf.square(log_t - tf.reduce_mean(log_t))
    )
    return float(slope), (float(t[0]), float(t[-1]))


def _median(x):
    """The median of a 1-D float tensor (the mean of the two middle order statistics)."""
    ordered = tf.sort(x)
    n = int(tf.shape(ordered)[0])
    return 0.5 * (ordered[(n - 1) // 2] + ordered[n // 2])


# Groups of the delete-a-group jackknife that gives the characteristic-function estimator its standard error.
JACKKNIFE_GROUPS = 10


def _jackknife_standard_error(estimate, x, seed):
    """The delete-a-group jackknife's standard error of `estimate(x)` (G = JACKKNIFE_GROUPS random groups).

    √((G − 1)/G Σ_g (θ_(g) − θ̄)²), θ_(g) the estimate without group g (Efron and
    Stein; Shao and Tu 1995, §2.1). NaN where a group-deleted estimate is.
    """
    n = int(tf.shape(x)[0])
    order = np.random.default_rng(seed + 1).permutation(n)
    estimates = np.array(
        [
            estimate(tf.gather(x, np.setdiff1d(order, group, assume_unique=True)))
            for group in np.array_split(order, JACKKNIFE_GROUPS)
        ]
    )
    groups = len(estimates)
    return float(math.sqrt((groups - 1) / groups * np.sum((estimates - estimates.mean()) ** 2)))


def characteristic_function(x, num_points=10, num_directions=8, seed=0):
    """Slope of log(−log|φ̂(t)|) against log t (module docstring)."""
    if x.shape.rank == 1:
        alpha, t_range = _characteristic_function_1d(x, num_points)
        if math.isnan(alpha):
            raise ValueError(f"The characteristic-function estimator cannot read these samples: {t_range}.")
        error = _jackknife_standard_error(lambda part: _characteristic_function_1d(part, num_points)[0], x, seed)
        return alpha, {"t_range": t_range, "num_points": num_points, "standard_error": error}
    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((int(x.shape[1]), num_directions))
    directions /= np.linalg.norm(directions, axis=0, keepdims=True)

    def per_direction(rows):
        projections = tf.matmul(rows, tf.constant(directions))
        return [_characteristic_function_1d(projections[:, j], num_points) for j in range(num_directions)]

    results = per_direction(x)
    estimates = [alpha for alpha, _ in results]
    if all(math.isnan(alpha) for alpha in estimates):
        raise ValueError(
            "The characteristic-function estimator cannot read these samples in any of the "
            f"{num_directions} projections, e.g. {results[0][1]}."
        )
    error = _jackknife_standard_error(lambda rows: np.nanmean([a for a, _ in per_direction(rows)]), x, seed)
    return float(np.nanmean(estimates)), {
        "num_points": num_points,
        "num_directions": num_directions,
        "per_direction": estimates,
        "standard_error": error,
    }


# Magnitudes whose mean log-excess over the threshold is below this are tied up to rounding (a few
# float32 ulps), not a tail: their α̂ = 1 / mean log-excess would exceed 10⁶.
_TIE_TOLERANCE = 1e-6


def hill(x, min_tail=10, max_tail_fraction=0.1, num_candidates=60):
    """Hill's estimator with the KS-optimal number k of order statistics (module docstring)."""
    magnitudes = tf.sort(_magnitudes(x), direction="DESCENDING")
    magnitudes = tf.boolean_mask(magnitudes, magnitudes > 0)
    n = int(tf.shape(magnitudes)[0])
    largest_k = max(min_tail + 1, int(n * max_tail_fraction))
    if largest_k >= n:
        raise ValueError(f"Hill's estimator needs more than {largest_k} nonzero samples, got {n}.")
    logs = tf.math.log(magnitudes)
    cumulative = tf.math.cumsum(logs)
    best = None
    for k in np.unique(np.geomspace(min_tail, largest_k, num_candidates).astype(int)):
        threshold = logs[k]
        excess_sum = float(cumulative[k - 1] - k * threshold)
        if not excess_sum > k * _TIE_TOLERANCE:  # the top k + 1 magnitudes are tied: no tail above them
            continue
        alpha = k / excess_sum
        # KS distance between the top k (ascending) and the Pareto law above the threshold.
        excess = tf.reverse(logs[:k], [0]) - threshold
        fitted = 1.0 - tf.exp(-alpha * excess)
        upper = tf.range(1, k + 1, dtype=tf.float64) / k
        distance = float(tf.reduce_max(tf.maximum(tf.abs(upper - fitted), tf.abs(upper - 1.0 / k - fitted))))
        if best is None or distance < best[0]:
            best = (distance, alpha, int(k), float(tf.exp(threshold)))
    if best is None:
        raise ValueError(
            f"The {largest_k + 1} largest magnitudes are all equal (to {float(magnitudes[0])}, within "
            f"a relative {_TIE_TOLERANCE:g}): Hill's estimator finds no tail above them."
        )
    distance, hill_alpha, k, threshold = best
    # The generalized jackknife with ρ = −1 (Gomes, Martins and Neves 2000): ξ = 1/α from Hill at k/2 and
    # at k, 2ξ̂(k/2) − ξ̂(k), cancels a bias linear in k/N (stable laws, Student-t); its variance is
    # 5ξ²/k (nested Hill estimates: Var ξ̂(j) = ξ²/j, Cov = ξ²/max).
    half = k // 2
    xi = 2.0 * float(cumulative[half - 1] - half * logs[half]) / half - 1.0 / hill_alpha
    parameters = {
        "k": k,
        "threshold": threshold,
        "ks_distance": distance,
        "hill": hill_alpha,
        "hill_standard_error": hill_alpha / math.sqrt(k),
    }
    if not xi > 0:
        # ξ ≤ 0 is a light tail (Gumbel or Weibull domain): no power tail, an infinite index.
        return math.inf, dict(
            parameters, standard_error=math.nan, note=f"the bias-reduced ξ = 1/α is {xi:.3g} ≤ 0: no power tail"
        )
    alpha = 1.0 / xi
    return alpha, dict(parameters, standard_error=math.sqrt(5.0) * alpha / math.sqrt(k))


@renamed(method="estimator")
def tail_index(samples, estimator="simsekli", **options):
    """Estimates the tail index α of i.i.d. noise samples.

    Args:
        samples: A 1-D array of i.i.d. scalars (pooled coordinates), or an
            [N, d] array whose rows are i.i.d. noise vectors. Non-finite rows are dropped.
        estimator: ``"simsekli"`` (default), ``"characteristic_function"`` or ``"hill"``.
        **options: Estimator options: ``block_size``, ``num_permutations``,
            ``seed`` (simsekli); ``num_points``, ``num_directions``, ``seed``
            (characteristic_function); ``min_tail``, ``max_tail_fraction``,
            ``num_candidates`` (hill).

    Returns:
        A `TailIndex`. See the module docstring for each estimator's
        assumptions, range and biases.

    Raises:
        ValueError: If `estimator` is unknown, or the data cannot carry an
            estimate: fewer than 16 finite samples; degenerate samples (all
            equal, all zero, or fewer than 16 distinct finite values);
            samples that are exactly 0 (``"simsekli"``, whose log|X| is
            −∞ there); samples whose median absolute deviation is 0, or
            whose |φ̂(t)| is within sampling noise of 0 or 1 at nearly every t
            (``"characteristic_function"``); largest magnitudes that are all
            tied (``"hill"``).
    """
    estimators = {"simsekli": simsekli, "characteristic_function": characteristic_function, "hill": hill}
    if estimator not in estimators:
        raise ValueError(f"`estimator` must be one of {ESTIMATORS}, got {estimator!r}.")
    x = _as_samples(samples)
    raw, parameters = estimators[estimator](x, **options)
    alpha = raw if estimator == "hill" or not raw > 2.0 else 2.0
    return TailIndex(
        alpha=alpha,
        unclipped=raw,
        estimator=estimator,
        num_samples=int(tf.shape(x)[0]),
        parameters=parameters,
        standard_error=parameters.pop("standard_error"),
    )
