"""Is gradient noise Gaussian or heavy-tailed? Maximum-likelihood fits compared by AIC.

Zhang et al. ("Why are adaptive methods good for attention models?", 2020,
§2, Fig. 2) set the norm of gradient noise against two references: the norm
of a Gaussian vector (their "normalized sum of squared Gaussians", well
concentrated) and a heavy-tailed law. `fit_noise_distribution` makes that
comparison a likelihood one, with laws TFP has or that we write in closed form:

* noise **coordinates** (real, symmetric): Normal(μ, σ) against
  StudentT(ν, μ, σ); the Normal is the ν → ∞ limit.
* noise **norms** (positive): the norm of a Gaussian vector, r = s·χ_k (the
  χ law with k degrees of freedom, scaled; for anisotropic noise k is an
  effective dimension), against the norm of a multivariate Student-t vector,
  r = s·sqrt(k F(k, ν)), whose density is

      f(r) = 2r/s² · u^(k/2 − 1) (1 + u/ν)^(−(k+ν)/2) / (ν^(k/2) B(k/2, ν/2)),   u = r²/s²,

  and which tends to s·χ_k as ν → ∞. Its tail is P(r > x) ~ x^(−ν). For
  heavy-tailed norms k and s are nearly confounded (5000 norms of
  40-dimensional t(1.5) vectors give k ≈ 22–26): ν and k s², the bulk scale
  of r², are what the data determine.
* the **tail** alone: a generalized Pareto law (TFP's `GeneralizedPareto`)
  against its ξ = 0 case, the exponential, on the exceedances over the
  (1 − `tail_fraction`) quantile of |x − median| (peaks over threshold;
  Pickands 1975). ξ > 0 is a power tail with index 1/ξ; Gaussian and χ tails
  have ξ = 0.

Each pair is nested (light ⊂ heavy), and the heavy law has one parameter more.
Parameters are found by BFGS on the host (`analysis_tools._optimize.bfgs`) on the mean negative
log-likelihood in float64 over unconstrained parameters, its value and
gradient from one traced TensorFlow function per law (the Normal has a
closed form), from two starts or more. The verdict compares AIC = 2p − 2 log L:
|ΔAIC| ≤ 2 is "indistinguishable", up to 10 "better", beyond 10 "decisively
better" (Burnham and Anderson 2002, §2.6), and reports log L per sample.

Caveats: the samples are taken as i.i.d., which the norms of independent
mini-batches are; noise coordinates pooled across layers mix scales, which
looks heavy-tailed by itself (standardize per layer first). A heavy law can
win on a large sample merely for a few outliers: read the tail fit and
`analysis_tools.noise.tail_estimators` alongside.
"""

import math
from typing import NamedTuple

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from analysis_tools._optimize import bfgs, on_host

tfd = tfp.distributions
tfb = tfp.bijectors

__all__ = ["FittedLaw", "NoiseFit", "TailFit", "fit_noise_distribution"]

KINDS = ("auto", "coordinates", "norms")


class FittedLaw(NamedTuple):
    """A maximum-likelihood fit: the law's name, its parameters, log L, p and AIC.

    Attributes:
        standard_errors: {parameter: standard error}, from the observed
            information (the inverse Hessian of −log L at the optimum, in the
            unconstrained parameters, carried to these by the delta method).
            NaN where the fit sits at the edge of its family (the heavy law at
            its light limit, ν = ∞), where the Hessian is not positive definite,
            or for parameters capped at 1e8 (`_LOG_MAX_DEGREES`). Coverage is in
            RESULTS.md (`benchmarks/coverage.py`).
        distribution: The fitted law as a float64 `tfp.distributions.Distribution`
            (of the samples: coordinates or norms).
    """

    name: str
    parameters: dict
    log_likelihood: float
    num_parameters: int
    aic: float
    standard_errors: dict = None
    distribution: object = None


class TailFit(NamedTuple):
    """Peaks over threshold: GPD vs exponential on the exceedances over `threshold`.

    `shape` is ξ (0 for the exponential); `tail_index` is 1/ξ for ξ > 0 and inf otherwise.
    `standard_errors` holds the generalized Pareto fit's ({"shape", "scale"}, observed
    information, as `FittedLaw`), and `distribution` is that fit as a
    `tfd.GeneralizedPareto` of |x − median| above `threshold`.
    """

    threshold: float
    num_exceedances: int
    shape: float
    scale: float
    tail_index: float
    aic_generalized_pareto: float
    aic_exponential: float
    heavy: bool
    standard_errors: dict = None
    distribution: object = None


class NoiseFit(NamedTuple):
    """The result of `fit_noise_distribution`.

    Attributes:
        kind: ``"coordinates"`` or ``"norms"``.
        light: The light-tailed law's fit (Normal, or scaled χ for norms).
        heavy: The heavy-tailed law's fit (StudentT, or the multivariate-t norm).
        best: The name of the law with the smaller AIC.
        delta_aic: AIC(light) − AIC(heavy): positive favours the heavy tail.
        log_likelihood_ratio_per_sample: (log L_heavy − log L_light) / N.
        tail: The peaks-over-threshold `TailFit`.
        verdict: One sentence: which law fits better, and by how much.
    """

    kind: str
    light: FittedLaw
    heavy: FittedLaw
    best: str
    delta_aic: float
    log_likelihood_ratio_per_sample: float
    tail: TailFit
    verdict: str


_VALUE_AND_GRADIENT = {}


def _maximize(log_likelihood, data, starts):
    """The best (mean log L, position) of `log_likelihood(p, data)` by BFGS (`_optimize.bfgs`) from each start.

    The value and gradient of each law are traced once per process (a small
    graph; the optimizer's loop runs on the host).
    """
    if log_likelihood not in _VALUE_AND_GRADIENT:

        @tf.function(reduce_retracing=True)
        def value_and_gradient(position, samples):
            return tfp.math.value_and_gradient(lambda p: -log_likelihood(p, samples), position)

        _VALUE_AND_GRADIENT[log_likelihood] = value_and_gradient
    evaluate = on_host(_VALUE_AND_GRADIENT[log_likelihood], tf.constant(data, tf.float64))
    best = None
    for start in starts:
        objective, position, _ = bfgs(evaluate, start)
        value = -objective
        if math.isfinite(value) and (best is None or value > best[0]):
            best = (value, position)
    if best is None:
        raise RuntimeError("The maximum-likelihood fit failed from every start.")
    return best


def _aic(name, parameters, mean_log_likelihood, n, num_parameters=None, standard_errors=None, distribution=None):
    log_likelihood = mean_log_likelihood * n
    p = len(parameters) if num_parameters is None else num_parameters
    return FittedLaw(name, parameters, log_likelihood, p, 2 * p - 2 * log_likelihood, standard_errors, distribution)


def _standard_errors(log_likelihood, position, data, natural):
    """{name: standard error} of the parameters `natural(p)` (a dict of scalars) at the MLE p.

    The observed information: Σ = (−∇² log L(p))⁻¹ over the unconstrained p, and
    Var θ_i = J_i Σ J_iᵀ with J the Jacobian of θ = natural(p) (delta method).
    NaN for every parameter where −∇² log L is not positive definite, and for
    a parameter at the 1e8 cap of `_degrees`.
    """
    p = tf.constant(position, tf.float64)
    data = tf.constant(data, tf.float64)
    n = float(data.shape[0])
    # persistent: a 2-4-row Jacobian by a loop of gradients, without tracing pfor's function each call.
    with tf.GradientTape(persistent=True) as outer:
        outer.watch(p)
        with tf.GradientTape() as inner:
            inner.watch(p)
            total = -n * log_likelihood(p, data)
        gradient = inner.gradient(total, p)
    information = outer.jacobian(gradient, p, experimental_use_pfor=False).numpy()
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(p)
        values = natural(p)
        stacked = tf.stack([tf.cast(v, tf.float64) for v in values.values()])
    jacobian = tape.jacobian(stacked, p, experimental_use_pfor=False).numpy()
    try:
        np.linalg.cholesky(information)
    except np.linalg.LinAlgError:
        return {name: math.nan for name in values}
    variances = np.einsum("ij,jk,ik->i", jacobian, np.linalg.inv(information), jacobian)
    capped = stacked.numpy() >= math.exp(_LOG_MAX_DEGREES) * (1.0 - 1e-12)
    return {name: math.sqrt(v) if v > 0 and not cap else math.nan for name, v, cap in zip(values, variances, capped)}


def _nested(heavy_name, heavy_value, heavy_parameters, light, limit, n, standard_errors, distribution):
    """The heavy law's fit, or its limit (the light law) when that is at least as likely.

    The heavy family contains the light law as ν → ∞, so its maximum likelihood
    is at least the light one's; an optimizer stopping slightly short of it
    must not make the richer law look worse. At the limit the fit is the light
    law's (its distribution and standard errors), and ν = ∞, on the edge of
    the family, has no standard error (NaN).
    """
    if heavy_value * n >= light.log_likelihood:
        return _aic(
            heavy_name, heavy_parameters, heavy_value, n, standard_errors=standard_errors(), distribution=distribution()
        )
    parameters = dict(light.parameters, **limit)
    errors = dict(light.standard_errors, **{name: math.nan for name in limit})
    return _aic(
        heavy_name,
        parameters,
        light.log_likelihood / n,
        n,
        num_parameters=len(heavy_parameters),
        standard_errors=errors,
        distribution=light.distribution,
    )


def _student_t_parameters(p):
    """The Student-t's (ν, μ, σ) from the unconstrained position p the fit moves."""
    return {"df": tf.exp(p[0]), "loc": p[1], "scale": tf.exp(p[2])}


def _student_t(p, x):
    return tf.reduce_mean(tfd.StudentT(**_student_t_parameters(p)).log_prob(x))


def _fit_coordinates(x):
    n = len(x)
    mu, sigma = float(np.mean(x)), float(np.std(x))
    # The Normal's MLE has a closed form, and so has its information: Var μ̂ = σ²/n, Var σ̂ = σ²/(2n).
    law = tfd.Normal(tf.constant(mu, tf.float64), tf.constant(sigma, tf.float64))
    normal = _aic(
        "normal",
        {"loc": mu, "scale": sigma},
        float(tf.reduce_mean(law.log_prob(x))),
        n,
        standard_errors={"loc": sigma / math.sqrt(n), "scale": sigma / math.sqrt(2.0 * n)},
        distribution=law,
    )
    median = float(np.median(x))
    spread = 1.4826 * float(np.median(np.abs(x - median))) or sigma
    starts = [[math.log(df), median, math.log(spread)] for df in (2.0, 30.0)]
    value, p = _maximize(_student_t, x, starts)
    parameters = {name: float(v) for name, v in _student_t_parameters(tf.constant(p)).items()}
    heavy = _nested(
        "student_t",
        value,
        parameters,
        normal,
        {"df": math.inf},
        n,
        lambda: _standard_errors(_student_t, p, x, _student_t_parameters),
        lambda: tfd.StudentT(*(tf.constant(parameters[k], tf.float64) for k in ("df", "loc", "scale"))),
    )
    return normal, heavy


def _as(value, dtype):
    """`value` as a tensor of `dtype`; a Python float goes straight there (`tf.cast` would round it to float32)."""
    return tf.cast(tf.convert_to_tensor(value, dtype_hint=dtype), dtype)


def _log_chi_norm(r, k, s):
    k, s = (_as(v, r.dtype) for v in (k, s))
    return tfd.Chi(k).log_prob(r / s) - tf.math.log(s)


def _log_t_norm(r, k, s, nu):
    """log density of r = s·sqrt(k F(k, ν)) (the module docstring's f)."""
    k, s, nu = (_as(v, r.dtype) for v in (k, s, nu))
    u = tf.square(r / s)
    return (
        math.log(2.0)
        + tf.math.log(r)
        - 2.0 * tf.math.log(s)
        + (k / 2.0 - 1.0) * tf.math.log(u)
        - (k + nu) / 2.0 * tf.math.log1p(u / nu)
        - k / 2.0 * tf.math.log(nu)
        - tfp.math.lbeta(k / 2.0, nu / 2.0)
    )


# Degrees of freedom beyond 1e8 are numerically meaningless here: the terms of
# log f grow like k log k and cancel to O(log k), so float64 loses them. A χ
# norm with k > 1e8 is indistinguishable from a point mass at our sample sizes.
_LOG_MAX_DEGREES = math.log(1e8)


def _degrees(z):
    """exp(z) capped at 1e8 (the cap reads the same in TF and NumPy)."""
    if isinstance(z, tf.Tensor):
        return tf.exp(tf.minimum(z, _LOG_MAX_DEGREES))
    return math.exp(min(float(z), _LOG_MAX_DEGREES))


def _chi_parameters(p):
    """The scaled χ's (k, s) from the unconstrained position p the fit moves."""
    return {"k": _degrees(p[0]), "scale": tf.exp(p[1])}


def _t_norm_parameters(p):
    """The multivariate-t norm's (k, s, ν) from the unconstrained position p the fit moves."""
    return {"k": _degrees(p[0]), "scale": tf.exp(p[1]), "df": _degrees(p[2])}


def _chi(p, r):
    law = _chi_parameters(p)
    return tf.reduce_mean(_log_chi_norm(r, law["k"], law["scale"]))


def _t_norm(p, r):
    law = _t_norm_parameters(p)
    return tf.reduce_mean(_log_t_norm(r, law["k"], law["scale"], law["df"]))


def chi_norm_distribution(k, scale):
    """s·χ_k, the norm of a Gaussian vector (module docstring), as a float64 distribution."""
    return tfd.TransformedDistribution(tfd.Chi(tf.constant(k, tf.float64)), tfb.Scale(tf.constant(scale, tf.float64)))


def t_norm_distribution(k, scale, df):
    """s·sqrt(k F(k, ν)), the norm of a multivariate Student-t vector, as a float64 distribution.

    k F(k, ν) = ν B/(1 − B) with B ~ Beta(k/2, ν/2) (a beta-prime law scaled by ν),
    so r = s √(ν B/(1 − B)): a bijection of the Beta law, whose density is the
    module docstring's f.
    """
    k, scale, df = (tf.constant(v, tf.float64) for v in (k, scale, df))
    odds = tfb.Chain([tfb.Exp(), tfb.Invert(tfb.Sigmoid())])  # B ↦ B/(1 − B)
    return tfd.TransformedDistribution(
        tfd.Beta(k / 2.0, df / 2.0),
        tfb.Chain([tfb.Scale(scale), tfb.Power(tf.constant(0.5, tf.float64)), tfb.Scale(df), odds]),
    )


def _fit_norms(r):
    n = len(r)
    mean, variance = float(np.mean(r)), float(np.var(r))
    k0 = max(mean * mean / (2.0 * variance), 0.5)  # r/s ~ χ_k: mean ≈ s√k, variance ≈ s²/2
    s0 = mean / math.sqrt(k0)
    value, p = _maximize(_chi, r, [[math.log(k0), math.log(s0)], [math.log(max(k0 / 4, 0.1)), math.log(s0)]])
    chi = {name: float(v) for name, v in _chi_parameters(tf.constant(p)).items()}
    light = _aic(
        "scaled_chi",
        chi,
        value,
        n,
        standard_errors=_standard_errors(_chi, p, r, _chi_parameters),
        distribution=chi_norm_distribution(chi["k"], chi["scale"]),
    )
    k_light, s_light = light.parameters["k"], light.parameters["scale"]
    # Heavy data make the χ fit's k useless as a start for the heavy law: also
    # start from a few dimensions, with s matching the median (r/s ≈ √k in the bulk).
    median = float(np.median(r))
    starts = [
        [math.log(k), math.log(s), math.log(nu)]
        for k, s in [(k_light, s_light)] + [(k, median / math.sqrt(k)) for k in (4.0, 32.0, 256.0)]
        for nu in (2.0, 100.0)
    ]
    value, p = _maximize(_t_norm, r, starts)
    t_norm = {name: float(v) for name, v in _t_norm_parameters(tf.constant(p)).items()}
    heavy = _nested(
        "multivariate_t_norm",
        value,
        t_norm,
        light,
        {"df": math.inf},
        n,
        lambda: _standard_errors(_t_norm, p, r, _t_norm_parameters),
        lambda: t_norm_distribution(t_norm["k"], t_norm["scale"], t_norm["df"]),
    )
    return light, heavy


def _gpd_scale(p, largest):
    # σ > −ξ · max(excess) keeps every exceedance inside the support when ξ < 0
    # (softplus(y) ≥ max(0, y), smooth at ξ = 0).
    return tf.exp(p[0]) + largest * tf.nn.softplus(-50.0 * p[1]) / 50.0


def _generalized_pareto(p, excess):
    scale = _gpd_scale(p, tf.reduce_max(excess))
    return tf.reduce_mean(tfd.GeneralizedPareto(tf.zeros([], tf.float64), scale, p[1]).log_prob(excess))


def _fit_tail(magnitudes, tail_fraction):
    threshold = float(np.quantile(magnitudes, 1.0 - tail_fraction))
    excess = magnitudes[magnitudes > threshold] - threshold
    m = len(excess)
    if m < 20:
        raise ValueError(f"Only {m} exceedances over the tail threshold: pass more samples or a larger tail_fraction.")
    mean_excess = float(np.mean(excess))
    exponential = _aic("exponential", {"scale": mean_excess}, -math.log(mean_excess) - 1.0, m)
    value, p = _maximize(_generalized_pareto, excess, [[math.log(mean_excess), shape] for shape in (0.1, 0.5)])
    largest = float(np.max(excess))
    scale = float(_gpd_scale(tf.constant(p), largest))
    pareto = _aic("generalized_pareto", {"scale": scale, "shape": float(p[1])}, value, m)
    shape = pareto.parameters["shape"]
    heavy = pareto.aic < exponential.aic and shape > 0
    errors = _standard_errors(
        _generalized_pareto, p, excess, lambda q: {"shape": q[1], "scale": _gpd_scale(q, largest)}
    )
    distribution = tfd.GeneralizedPareto(*(tf.constant(v, tf.float64) for v in (threshold, scale, shape)))
    return TailFit(
        threshold,
        m,
        shape,
        pareto.parameters["scale"],
        1.0 / shape if shape > 0 else math.inf,
        pareto.aic,
        exponential.aic,
        heavy,
        errors,
        distribution,
    )


def _strength(delta):
    delta = abs(delta)
    return "indistinguishable from" if delta <= 2 else ("better than" if delta <= 10 else "decisively better than")


def fit_noise_distribution(samples, kind="auto", tail_fraction=None):
    """Fits light- and heavy-tailed laws to noise samples and says which fits better.

    Args:
        samples: 1-D noise norms (positive) or noise coordinates (real).
            Non-finite values are dropped.
        kind: ``"norms"``, ``"coordinates"``, or ``"auto"`` (norms when every sample is ≥ 0).
        tail_fraction: Fraction of the largest |x − median| used by the tail
            fit. Default: 5 %, or enough for 25 exceedances on small samples.

    Returns:
        A `NoiseFit` (see the module docstring for the laws and the verdict rule).
    """
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {KINDS}, got {kind!r}.")
    if tail_fraction is not None and not 0.0 < tail_fraction < 1.0:
        raise ValueError(f"`tail_fraction` must be in (0, 1), got {tail_fraction}.")
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    x = x[np.isfinite(x)]
    if len(x) < 100:
        raise ValueError(f"Need at least 100 finite samples, got {len(x)}.")
    if tail_fraction is None:
        tail_fraction = max(0.05, 25.5 / len(x))
    if kind == "auto":
        kind = "norms" if np.all(x >= 0) else "coordinates"
    if kind == "norms":
        if np.any(x <= 0):
            raise ValueError("Norms must be positive.")
        light, heavy = _fit_norms(x)
    else:
        light, heavy = _fit_coordinates(x)
    tail = _fit_tail(np.abs(x - np.median(x)), tail_fraction)
    delta = light.aic - heavy.aic
    best, other = (heavy, light) if delta > 0 else (light, heavy)
    per_sample = (heavy.log_likelihood - light.log_likelihood) / len(x)
    verdict = (
        f"{best.name} is {_strength(delta)} {other.name} (ΔAIC = {abs(delta):.1f}, "
        f"log-likelihood ratio {per_sample:+.4f} per sample); tail above the "
        f"{1 - tail_fraction:.0%} quantile: ξ = {tail.shape:+.3f}"
        + (f", a power tail with index {tail.tail_index:.2f}." if tail.heavy else ", no power tail.")
    )
    return NoiseFit(kind, light, heavy, best.name, delta, per_sample, tail, verdict)
