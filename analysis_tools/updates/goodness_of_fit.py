"""Goodness of fit of samples to a scalar distribution: Kolmogorov–Smirnov and Wasserstein-1.

Used to compare measured updates with `AdaptiveUpdate(m)` (Zhang and Ziyin,
UAI 2021, Figs. 2–4), and valid for any scalar `tfd.Distribution` with a cdf.
Results are float64 tensors.
"""

import math
from typing import NamedTuple

import tensorflow as tf

from analysis_tools._tensors import as_float_tensor

__all__ = ["KSTest", "kolmogorov_survival_function", "ks_statistic", "wasserstein_1"]


class KSTest(NamedTuple):
    """One-sample Kolmogorov–Smirnov test: sup |F_n − F| and its asymptotic p-value.

    Both are scalar float64 tensors.
    """

    statistic: tf.Tensor
    pvalue: tf.Tensor


def kolmogorov_survival_function(x):
    """P(K > x) for the Kolmogorov distribution K = sup_t |B(t)| of a Brownian bridge.

    1 − (√(2π)/x) Σ_{k≥1} exp(−(2k−1)² π² / (8x²)) for x < 1 and
    2 Σ_{k≥1} (−1)^{k−1} exp(−2k² x²) for x ≥ 1 (100 terms of either series
    reach float64 precision on its side); 1 for x ≤ 0.
    """
    x = as_float_tensor(x)
    k = tf.range(1, 101, dtype=x.dtype)
    xe = x[..., tf.newaxis]
    safe = tf.where(xe > 0.0, xe, tf.ones_like(xe))
    small = 1.0 - math.sqrt(2.0 * math.pi) / safe[..., 0] * tf.reduce_sum(
        tf.exp(-tf.square(2.0 * k - 1.0) * (math.pi**2) / (8.0 * tf.square(safe))), axis=-1
    )
    signs = tf.where(tf.math.floormod(k, 2.0) == 1.0, 1.0, -1.0)
    signs = tf.cast(signs, x.dtype)
    large = 2.0 * tf.reduce_sum(signs * tf.exp(-2.0 * tf.square(k) * tf.square(safe)), axis=-1)
    sf = tf.where(x < 1.0, small, large)
    return tf.clip_by_value(tf.where(x > 0.0, sf, tf.ones_like(sf)), 0.0, 1.0)


def _sorted_samples(samples):
    x = tf.reshape(as_float_tensor(samples), [-1])
    return tf.sort(tf.cast(x, tf.float64))


def _check_scalar(distribution):
    ranks = (distribution.batch_shape.rank, distribution.event_shape.rank)
    if any(rank not in (None, 0) for rank in ranks):
        raise ValueError(
            "Expected a scalar distribution (batch and event shape []), got batch shape "
            f"{distribution.batch_shape} and event shape {distribution.event_shape}."
        )


def _cdf64(distribution, x):
    return tf.cast(distribution.cdf(tf.cast(x, distribution.dtype)), tf.float64)


def ks_statistic(samples, distribution):
    """Kolmogorov–Smirnov statistic of samples against a scalar distribution, and its p-value.

    D = sup_x |F_n(x) − F(x)| = max_i max(i/n − F(x_(i)), F(x_(i)) − (i−1)/n)
    over the sorted samples, and the asymptotic p-value P(K > √n D) of
    `kolmogorov_survival_function` (accurate for n ≳ 100; conservative below).

    Args:
        samples: Any shape; flattened. Float64 is used for the statistic.
        distribution: A `tfd.Distribution` with batch and event shape [] and a cdf.

    Returns:
        `KSTest(statistic, pvalue)`, float64 scalar tensors.
    """
    _check_scalar(distribution)
    x = _sorted_samples(samples)
    n = tf.cast(tf.size(x), tf.float64)
    cdf = _cdf64(distribution, x)
    i = tf.range(1.0, n + 1.0, dtype=tf.float64)
    d = tf.maximum(tf.reduce_max(i / n - cdf), tf.reduce_max(cdf - (i - 1.0) / n))
    return KSTest(d, kolmogorov_survival_function(tf.sqrt(n) * d))


def _integration_range(x, distribution):
    """An interval that holds the samples and all but ~1e-10 of the distribution's mass."""
    x_min, x_max = x[0], x[-1]
    try:
        ends = tf.cast(distribution.quantile(tf.constant([1e-10, 1.0 - 1e-10], distribution.dtype)), tf.float64)
        lo, hi = ends[0], ends[1]
    except NotImplementedError:
        try:
            mean = tf.cast(distribution.mean(), tf.float64)
            spread = 12.0 * tf.cast(distribution.stddev(), tf.float64)
            lo, hi = mean - spread, mean + spread
        except NotImplementedError:
            pad = 3.0 * tf.math.reduce_std(x)
            lo, hi = x_min - pad, x_max + pad
    ok = tf.math.is_finite(lo) & tf.math.is_finite(hi)
    lo = tf.where(ok, tf.minimum(lo, x_min), x_min)
    hi = tf.where(ok, tf.maximum(hi, x_max), x_max)
    return lo, hi


def wasserstein_1(samples, distribution, num_grid=8192):
    """Wasserstein-1 distance ∫ |F_n(x) − F(x)| dx between samples and a scalar distribution.

    F_n is constant between consecutive samples, so the integral is taken on
    the union of the sorted samples and `num_grid` equispaced points of an
    interval holding the samples and all but ~1e-10 of the distribution's
    mass (its quantiles if implemented, else mean ± 12 sd, else the sample
    range padded by 3 sample sd), with the trapezoidal rule for |c − F(x)| on
    each piece.

    Args:
        samples: Any shape; flattened.
        distribution: A `tfd.Distribution` with batch and event shape [] and a cdf.
        num_grid: Number of extra grid points.

    Returns:
        A float64 scalar tensor, in the units of the samples.
    """
    _check_scalar(distribution)
    x = _sorted_samples(samples)
    n = tf.cast(tf.size(x), tf.float64)
    lo, hi = _integration_range(x, distribution)
    grid = tf.sort(tf.concat([x, tf.linspace(lo, hi, num_grid)], axis=0))
    empirical = tf.cast(tf.searchsorted(x, grid, side="right"), tf.float64) / n
    cdf = _cdf64(distribution, grid)
    left = tf.abs(empirical[:-1] - cdf[:-1])
    right = tf.abs(empirical[:-1] - cdf[1:])
    return tf.reduce_sum(0.5 * (left + right) * (grid[1:] - grid[:-1]))


# ---------------------------------------------------------------------------
