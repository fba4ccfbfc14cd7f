"""Maximum-likelihood fits of the update law `AdaptiveUpdate(m)` to measured updates.

Zhang and Ziyin (UAI 2021) compare the law of Theorem 1 with the updates of
real networks (Figs. 2–4). `fit_update_distribution` finds the m that best
explains measured updates Δθ/λ, scores the fit (Kolmogorov–Smirnov,
Wasserstein-1), and optionally fits a mixture of shifted `AdaptiveUpdate`
laws by EM for multi-modal updates (the transformer updates of Fig. 4).
"""

import dataclasses
from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from analysis_tools._deprecation import renamed_attribute
from analysis_tools._optimize import bfgs, on_host
from analysis_tools.updates.goodness_of_fit import ks_statistic, wasserstein_1
from analysis_tools.updates.law import AdaptiveUpdate, log_beta_half

tfd = tfp.distributions
tfb = tfp.bijectors

__all__ = ["MixtureFit", "UpdateDistributionFit", "fit_update_distribution"]


@dataclasses.dataclass(frozen=True)
class MixtureFit:
    """A mixture of location-shifted `AdaptiveUpdate` laws fitted by EM.

    Attributes:
        distribution: `tfd.MixtureSameFamily` of `AdaptiveUpdate(m_k)` shifted by `locs[k]`.
        weights, locs, m: NumPy arrays of shape [K], sorted by location.
        log_likelihood: Σ log p(x_i) at the fit (float).
        iterations: EM iterations run.
        converged: Whether the log-likelihood stopped changing before the limit.
        ks_statistic, ks_pvalue, wasserstein_1: Goodness of fit (floats).
    """

    distribution: tfd.Distribution
    weights: np.ndarray
    locs: np.ndarray
    m: np.ndarray
    log_likelihood: float
    iterations: int
    converged: bool
    ks_statistic: float
    ks_pvalue: float
    wasserstein_1: float


@dataclasses.dataclass(frozen=True)
class UpdateDistributionFit:
    """The result of `fit_update_distribution`.

    Attributes:
        m: Maximum-likelihood m (float).
        m_standard_error: Its asymptotic standard error 1/sqrt(J), J the observed
            Fisher information −∂²/∂m² Σ log f_m(x_i) at m̂ (float). NaN for
            m̂ ≤ 5: the density vanishes at the support's edge like
            (√m − |x|)^((m−3)/2), and for an exponent ≤ 1 the likelihood is not
            regular (Smith 1985: for m < 3 m̂ is the edge itself, converging
            faster than 1/√n; for 3 < m ≤ 5 the expected information is
            infinite and 1/√J understates the spread). For m > 5 it matches the
            spread of m̂ over seeds, but m̂'s law is skewed while the standard
            error is a sizeable fraction of m, so m̂ ± 1.96 SE covers m less
            often than 95 % (`benchmarks/coverage.py` measures the coverage).
        distribution: `AdaptiveUpdate(m)` in the samples' floating dtype
            (float32 otherwise), with m rounded up into that dtype.
        log_likelihood: Σ log p(x_i) at m (float).
        converged: Whether the optimizer converged (always True when the
            likelihood is unbounded at the support edge, see
            `fit_update_distribution`).
        ks_statistic, ks_pvalue: One-sample Kolmogorov–Smirnov test of the
            samples against the fitted law (floats).
        wasserstein_1: ∫ |F_n − F| dx between samples and fitted law (float).
        num_samples: Number of samples used.
        mixture: A `MixtureFit` when `mixture_components` was given, else None.
    """

    m: float
    m_standard_error: float
    distribution: tfd.Distribution
    log_likelihood: float
    converged: bool
    ks_statistic: float
    ks_pvalue: float
    wasserstein_1: float
    num_samples: int
    mixture: Optional[MixtureFit] = None

    m_stderr = renamed_attribute("m_stderr", "m_standard_error")


def _log_density(y2, floor, s):
    """log f_m(y) for m = floor + s; m − y² is formed as (floor − y²) + s, exact near the edge."""
    m = floor + s
    log_norm = log_beta_half((m - 1.0) / 2.0) + 0.5 * tf.math.log(m)
    return ((m - 3.0) / 2.0) * (tf.math.log((floor - y2) + s) - tf.math.log(m)) - log_norm


def _tiny(floor):
    return 1e-12 * tf.maximum(floor, 1.0)


@tf.function(reduce_retracing=True)
def _nll_of_m(z, x2):
    """(−(1/n) Σ log f_m(x_i), its gradient in z) at m = max(max x², 1) + softplus(z) + tiny."""
    floor = tf.maximum(tf.reduce_max(x2), tf.constant(1.0, tf.float64))
    n = tf.cast(tf.size(x2), tf.float64)

    def nll(z):
        s = tf.math.softplus(z[0]) + _tiny(floor)
        return -tf.reduce_sum(_log_density(x2, floor, s)) / n

    return tfp.math.value_and_gradient(nll, z)


def _fit_m(x2, z0, max_iterations, tolerance):
    """The maximum-likelihood m over z, m = max(max x², 1) + softplus(z) + tiny, by BFGS on the host.

    Returns (m̂, log-likelihood, converged, standard error).
    """
    x2 = tf.constant(x2, tf.float64)
    nll_opt, z, converged = bfgs(on_host(_nll_of_m, x2), z0, tolerance, max_iterations)
    floor = tf.maximum(tf.reduce_max(x2), tf.constant(1.0, tf.float64))
    tiny = _tiny(floor)
    n = tf.cast(tf.size(x2), tf.float64)
    m_opt = floor + tf.math.softplus(tf.constant(z[0], tf.float64)) + tiny
    # For m < 3 the density has poles at ±√m and the likelihood grows without
    # bound as m ↓ max x²: the maximum is then the edge itself.
    edge = floor + tiny
    nll_edge = float(-tf.reduce_sum(_log_density(x2, floor, tiny)) / n)
    use_edge = nll_edge < nll_opt
    m_hat = edge if use_edge else m_opt
    nll_hat = nll_edge if use_edge else nll_opt
    information = float(_observed_information(x2, m_hat))
    # For m ≤ 5 the density vanishes at ±√m like (√m − |x|)^((m−3)/2) with an exponent ≤ 1: the expected
    # information is infinite and the likelihood non-regular (Smith 1985), and the inverse observed
    # information understates the spread of m̂ (0.048 against 0.061 at m = 5, n = 5000): no standard error.
    regular = not use_edge and information > 0.0 and float(m_hat) > 5.0
    stderr = information**-0.5 if regular else np.nan
    return float(m_hat), -nll_hat * float(n), bool(converged or use_edge), stderr


def _observed_information(x2, m):
    """−Σ ∂² log f_m(x_i) / ∂m², in closed form (trigamma terms of the normaliser)."""
    one = tf.constant(1.0, tf.float64)
    n = tf.cast(tf.size(x2), tf.float64)
    d = m - x2
    # ∂²/∂m² of −log B(1/2, (m−1)/2) − (1/2) log m, per sample.
    normaliser = -0.25 * (tf.math.polygamma(one, (m - 1.0) / 2.0) - tf.math.polygamma(one, m / 2.0)) + 0.5 / tf.square(
        m
    )
    # ∂²/∂m² of ((m−3)/2)(log(m − x²) − log m).
    shape = (1.0 / d - 1.0 / m) + ((m - 3.0) / 2.0) * (1.0 / tf.square(m) - 1.0 / tf.square(d))
    return -(n * normaliser + tf.reduce_sum(shape))


def _initial_m(x2):
    """Method of moments on the kurtosis E x⁴ / (E x²)² = 3m/(m+2), i.e. m = 2κ/(3 − κ)."""
    kurtosis = np.mean(x2**2) / np.mean(x2) ** 2
    return 2.0 * kurtosis / (3.0 - kurtosis) if kurtosis < 2.99 else 1e3


@tf.function(reduce_retracing=True)
def _m_step_objective(p, x, r):
    """(−Σ r_i log f_m(x_i − μ) / Σ r_i, its gradient) at p = (μ, z), for `_weighted_m_step`."""
    active = r > 0.0
    total = tf.reduce_sum(r)

    def objective(p):
        y2 = tf.square(x - p[0])
        floor = tf.maximum(tf.reduce_max(tf.where(active, y2, tf.zeros_like(y2))), tf.constant(1.0, tf.float64))
        s = tf.math.softplus(p[1]) + _tiny(floor)
        safe_y2 = tf.where(active, y2, tf.zeros_like(y2))
        ll = _log_density(safe_y2, floor, s)
        return -tf.reduce_sum(tf.where(active, r * ll, tf.zeros_like(ll))) / total

    return tfp.math.value_and_gradient(objective, p)


def _weighted_m_step(x, r, p0, max_iterations):
    """EM M-step for one shifted component: maximise Σ r_i log f_m(x_i − μ) over (μ, m), by BFGS on the host.

    m = max(max_{r_i>0} (x_i − μ)², 1) + softplus(z) + tiny keeps every point
    with r_i > 0 inside the support (the caller zeroes responsibilities below
    the floor), so the weighted log-likelihood stays finite. Returns (μ, m),
    or the start's where no step improved on it.
    """
    evaluate = on_host(_m_step_objective, tf.constant(x, tf.float64), tf.constant(r, tf.float64))
    p0 = np.asarray(p0, np.float64)
    start, _ = evaluate(p0)
    value, p, _ = bfgs(evaluate, p0, 1e-9, max_iterations)
    p = p if value < start else p0
    floor = max(float(np.max(np.where(r > 0.0, (x - p[0]) ** 2, 0.0))), 1.0)
    return float(p[0]), floor + float(np.logaddexp(0.0, p[1])) + float(_tiny(tf.constant(floor, tf.float64)))


def _softplus_inverse(y):
    return float(tfp.math.softplus_inverse(tf.constant(max(y, 1e-12), tf.float64)))


def _mixture_distribution(weights, locs, m, dtype):
    return tfd.MixtureSameFamily(
        mixture_distribution=tfd.Categorical(probs=tf.constant(weights, dtype)),
        components_distribution=tfd.TransformedDistribution(
            AdaptiveUpdate(tf.constant(m, dtype)), tfb.Shift(tf.constant(locs, dtype))
        ),
    )


def _component_log_probs(x, locs, m):
    """[n, K] log f_{m_k}(x_i − μ_k) in float64."""
    return AdaptiveUpdate(tf.constant(m, tf.float64)).log_prob(x[:, tf.newaxis] - tf.constant(locs, tf.float64))


# Responsibilities below this do not hold a point inside a component's support
# in the M-step, so that supports can shrink.
_RESPONSIBILITY_FLOOR = 1e-4


def _kmeans_1d(x, num_components, max_iterations=100):
    """Lloyd's algorithm on the line, from the (k + 1/2)/K quantiles."""
    centers = np.quantile(x, (np.arange(num_components) + 0.5) / num_components)
    labels = np.zeros(x.shape[0], dtype=int)
    for _ in range(max_iterations):
        labels = np.argmin(np.abs(x[:, None] - centers[None, :]), axis=1)
        new = np.array([x[labels == k].mean() if np.any(labels == k) else centers[k] for k in range(num_components)])
        if np.allclose(new, centers, rtol=0.0, atol=1e-12):
            break
        centers = new
    return centers, labels


def _cover(x, locs, m):
    """Gives each point outside every support to the component needing the least increase of m."""
    excess = (x[:, None] - locs[None, :]) ** 2 - m[None, :]
    uncovered = np.all(excess >= 0.0, axis=1)
    if np.any(uncovered):
        nearest = np.argmin(excess[uncovered], axis=1)
        reach = (x[uncovered] - locs[nearest]) ** 2
        for k in np.unique(nearest):
            m[k] = max(m[k], reach[nearest == k].max() * (1.0 + 1e-9) + 1e-12)


def _initial_mixture(x, num_components, init):
    """Starting (weights, locs, m) from 1-D k-means groups.

    "moments": m_k from the kurtosis of the group about its mean; "broad":
    m_k = 1.5 × the group's largest squared distance to its mean. Both are
    then widened where needed so that every point lies in some support.
    """
    n = x.shape[0]
    locs, labels = _kmeans_1d(x, num_components)
    m = np.empty(num_components)
    for k in range(num_components):
        y2 = (x[labels == k] - locs[k]) ** 2
        if init == "broad" or y2.size <= 3:
            m[k] = max(1.5 * (y2.max() if y2.size else 0.0), 1.5)
        else:
            m[k] = min(max(_initial_m(y2), 1.5), 1e3)
    _cover(x, locs, m)
    weights = np.maximum(np.bincount(labels, minlength=num_components) / n, 1.0 / n)
    return weights / weights.sum(), locs, m


def _em(x, weights, locs, m, max_iterations, tolerance, inner_iterations):
    """EM iterations from (weights, locs, m); returns the best parameters seen.

    Returns:
        (log_likelihood, weights, locs, m, iterations, converged).
    """
    x_tf = tf.constant(x, tf.float64)
    weights, locs, m = weights.copy(), locs.copy(), m.copy()
    best = (-np.inf, weights.copy(), locs.copy(), m.copy())
    previous = -np.inf
    converged = False
    iterations = 0
    while True:
        # E-step (and the log-likelihood of the current parameters).
        joint = np.log(weights)[None, :] + _component_log_probs(x_tf, locs, m).numpy()
        norm = np.logaddexp.reduce(joint, axis=1)
        log_likelihood = float(norm.sum())
        if log_likelihood > best[0]:
            best = (log_likelihood, weights.copy(), locs.copy(), m.copy())
        if abs(log_likelihood - previous) <= tolerance * max(1.0, abs(log_likelihood)):
            converged = True
            break
        if iterations == max_iterations:
            break
        previous = log_likelihood
        iterations += 1
        r = np.exp(joint - norm[:, None])
        # M-step, one component at a time.
        weights = r.mean(axis=0)
        for k in range(weights.shape[0]):
            active = r[:, k] > _RESPONSIBILITY_FLOOR
            if not np.any(active):
                continue
            rk = np.where(active, r[:, k], 0.0)
            floor = max(((x[active] - locs[k]) ** 2).max(), 1.0)
            z0 = _softplus_inverse(max(m[k] - floor, 1e-6 * floor))
            locs[k], m[k] = _weighted_m_step(x, rk, [locs[k], z0], inner_iterations)
        _cover(x, locs, m)
    return best + (iterations, converged)


def _fit_mixture(x, num_components, max_iterations, tolerance, inner_iterations, dtype):
    """EM for Σ_k w_k AdaptiveUpdate(m_k)(x − μ_k), best of two starts (`fit_update_distribution`)."""
    runs = []
    for init in ("moments", "broad"):
        start = _initial_mixture(x, num_components, init)
        runs.append(_em(x, *start, max_iterations, tolerance, inner_iterations))
    log_likelihood, weights, locs, m, iterations, converged = max(runs, key=lambda run: run[0])
    order = np.argsort(locs)
    weights, locs, m = weights[order], locs[order], m[order]
    distribution = _mixture_distribution(weights, locs, m, dtype)
    check = _mixture_distribution(weights, locs, m, tf.float64)
    ks = ks_statistic(x, check)
    return MixtureFit(
        distribution=distribution,
        weights=weights,
        locs=locs,
        m=m,
        log_likelihood=log_likelihood,
        iterations=iterations,
        converged=converged,
        ks_statistic=float(ks.statistic),
        ks_pvalue=float(ks.pvalue),
        wasserstein_1=float(wasserstein_1(x, check)),
    )


def fit_update_distribution(
    samples,
    mixture_components=None,
    initial_m=None,
    max_iterations=200,
    tolerance=1e-10,
    mixture_max_iterations=200,
    mixture_tolerance=1e-9,
):
    """Fits `AdaptiveUpdate(m)` to measured updates by maximum likelihood, and scores the fit.

    The samples are standardized updates Δθ / λ (one per coordinate, one
    step), whose law under Zhang & Ziyin's assumptions is `AdaptiveUpdate(m)`
    with m the (effective) number of averaged squared gradients.

    Maximum likelihood. The support [−√m, √m] depends on m, so m > max x² is
    imposed through the parameterisation m = max(max x², 1) + softplus(z) +
    tiny, and −Σ log f_m(x_i) is minimised over z with
    BFGS on the host in float64 (`analysis_tools._optimize.bfgs`), from the kurtosis estimate
    m₀ = 2κ/(3 − κ) (κ = E x⁴/(E x²)² = 3m/(m+2)). A looser lower bound
    biases m̂ upward. For m < 3 the density has poles at ±√m and the
    likelihood is unbounded as m ↓ max x²; the estimate is then that edge,
    max x² + tiny, which converges to m from below. Gaussian samples (the
    m → ∞ limit) give a large m̂.

    Goodness of fit. The one-sample Kolmogorov–Smirnov statistic and its
    asymptotic p-value (`ks_statistic`), and the Wasserstein-1 distance
    (`wasserstein_1`), against the fitted law. With m estimated from the same
    samples the p-value is conservative (Lilliefors effect).

    Mixtures. With `mixture_components=K`, also fits
    p(x) = Σ_k w_k f_{m_k}(x − μ_k), K location-shifted laws for multi-modal
    updates (e.g. the transformer updates of the paper's Fig. 4), by EM. The
    E-step computes responsibilities r_ik; the M-step sets w_k = mean_i r_ik
    and, one component at a time, maximises Σ_i r_ik log f_{m_k}(x_i − μ_k)
    over (μ_k, m_k) by the same BFGS, under m_k > max (x_i − μ_k)² over the points
    with r_ik > 1e-4 (points below that may leave the support, so supports
    can shrink); a point that then lies in no support is given to the
    component that needs the smallest increase of m_k, so the likelihood stays
    finite. It stops when the log-likelihood changes by less than
    `mixture_tolerance` (relative). Starts: 1-D k-means groups, with m_k from
    the group's kurtosis or 1.5 × its largest squared spread; the run with
    the higher likelihood is kept (and, within a run, the best iterate). EM
    finds a local maximum: well separated or moderately overlapping modes are
    recovered, but strongly overlapping bimodal components (m < 3, whose
    poles pin the support edges) can stay at a worse optimum; check
    `mixture.ks_pvalue`. Compare `log_likelihood` of the single and the
    mixture fit (e.g. by BIC with 1 vs 3K − 1 parameters).

    Args:
        samples: Any shape; flattened; must be finite.
        mixture_components: Optional integer K ≥ 1 for the mixture fit.
        initial_m: Optional starting m (> max x²); default: the kurtosis estimate.
        max_iterations: The BFGS iteration limit for m.
        tolerance: The BFGS tolerance for m: the largest gradient of the mean negative log-likelihood in z.
        mixture_max_iterations: The EM iteration limit.
        mixture_tolerance: The EM tolerance.

    Returns:
        An `UpdateDistributionFit`.

    Raises:
        ValueError: If there are fewer than 2 samples, a sample is not
            finite, the samples are constant (all zero, or all equal: there
            is no spread to fit), or `mixture_components` < 1.
    """
    values = np.asarray(tf.reshape(tf.convert_to_tensor(samples), [-1]))
    dtype = tf.as_dtype(values.dtype) if np.issubdtype(values.dtype, np.floating) else tf.float32
    x = values.astype(np.float64)
    if x.size < 2:
        raise ValueError(f"Need at least 2 samples, got {x.size}.")
    if not np.all(np.isfinite(x)):
        raise ValueError("`samples` must be finite.")
    if x.min() == x.max():
        found = "all zero (no update was applied)" if x[0] == 0.0 else f"all equal to {x[0]}"
        raise ValueError(
            f"The {x.size} samples are {found}: a constant has no spread to fit AdaptiveUpdate(m) to "
            "(its variance is 1 for every m)."
        )
    x2 = x**2
    floor = max(x2.max(), 1.0)
    m0 = _initial_m(x2) if initial_m is None else float(initial_m)
    z0 = _softplus_inverse(max(m0 - floor, 1e-3 * floor))
    m_hat, log_likelihood, converged, m_standard_error = _fit_m(x2, [z0], max_iterations, tolerance)
    check = AdaptiveUpdate(tf.constant(m_hat, tf.float64))
    ks = ks_statistic(x, check)
    mixture = None
    if mixture_components is not None:
        if int(mixture_components) < 1:
            raise ValueError(f"`mixture_components` must be >= 1, got {mixture_components}.")
        mixture = _fit_mixture(
            x,
            int(mixture_components),
            mixture_max_iterations,
            mixture_tolerance,
            inner_iterations=50,
            dtype=dtype,
        )
    # Round up into the samples' dtype, so that every sample stays in the support.
    m_cast = np.asarray(m_hat, dtype.as_numpy_dtype)
    if float(m_cast) < m_hat:
        m_cast = np.nextafter(m_cast, m_cast.dtype.type(np.inf))
    return UpdateDistributionFit(
        m=m_hat,
        m_standard_error=float(m_standard_error),
        distribution=AdaptiveUpdate(tf.constant(m_cast, dtype)),
        log_likelihood=float(log_likelihood),
        converged=bool(converged),
        ks_statistic=float(ks.statistic),
        ks_pvalue=float(ks.pvalue),
        wasserstein_1=float(wasserstein_1(x, check)),
        num_samples=int(x.size),
        mixture=mixture,
    )
