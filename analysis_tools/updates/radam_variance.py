"""The variance of Adam's adaptive learning rate, and RAdam's rectification term.

Liu, Jiang, He, Chen, Liu, Gao and Han, "On the Variance of the Adaptive
Learning Rate and Beyond" (ICLR 2020), §3: the adaptive learning rate

    ψ(g_1, …, g_t) = sqrt((1 − β2^t) / ((1 − β2) Σ_{i≤t} β2^{t−i} g_i²))

is modelled, for g_i ~ N(0, σ²), by ψ² ~ Scale-inv-χ²(ρ, 1/σ²), i.e.
ψ = sqrt(ρ / χ²_ρ) / σ, where the EMA is replaced by a simple moving average
(SMA) of length ρ = ρ_t (`sma_length`). Provided here:

* `adaptive_lr_variance(rho, sigma)`: the exact Var[ψ] (their Eq. 4);
* `adaptive_lr_variance_first_order(rho, sigma)`: the first-order (delta
  method) approximation ρ / (2 (ρ − 2)(ρ − 4) σ²) that RAdam uses;
* `adaptive_lr_mean(rho, sigma)`: E[ψ];
* `sma_length(t, β2)` = ρ_t (the optimizer's own, from `tf_adaptive.radam`),
  `sma_length_limit(β2)` = ρ_∞, and `rectification(ρ, ρ_∞)` = r_t.

`adaptive_lr_*`, `sma_length_limit` and `rectification` take Python numbers,
NumPy arrays or tensors and return a `tf.Tensor` of the broadcast shape:
float32 for float32 inputs, float64 otherwise (Python numbers, integers and
float64 inputs); the work is done in float64 either way. `sma_length` is the
optimizer's Keras-ops function and returns a float32 backend tensor.
"""

import math

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from analysis_tools._tensors import as_float_tensor
from tf_adaptive.radam import sma_length

__all__ = [
    "adaptive_lr_mean",
    "adaptive_lr_variance",
    "adaptive_lr_variance_first_order",
    "rectification",
    "sma_length",
    "sma_length_limit",
]

# Above this x = (ρ − 1)/2 the log-gamma ratio is taken from its asymptotic series.
_SERIES_FROM = 500.0


def _inputs(*values):
    """float64 tensors of the values, and the dtype to return."""
    tensors = as_float_tensor(*values)
    tensors = tensors if isinstance(tensors, list) else [tensors]
    out_dtype = tensors[0].dtype
    return [tf.cast(t, tf.float64) for t in tensors], out_dtype


def _log_ratio_excess(rho):
    """s(ρ) = 2 log(Γ((ρ−1)/2) / Γ(ρ/2)) + log((ρ−1)/2), for ρ > 1.

    E[ψ]² = ρ/(ρ−1) · e^s (σ = 1). s ≈ 1/(2(ρ−1)) is a small difference of two
    numbers near log ρ, so for x = (ρ−1)/2 ≥ 500 it comes from the asymptotic
    series log(Γ(x+½)/Γ(x)) = ½ log x − 1/(8x) + 1/(192x³) − 1/(640x⁵) + …,
    i.e. s = 1/(4x) − 1/(96x³) + 1/(320x⁵); its next term is below 1e-22.
    """
    x = (rho - 1.0) / 2.0
    safe_x = tf.where(x > 0.0, x, tf.ones_like(x))
    half = tf.constant(0.5, tf.float64)
    direct = 2.0 * tfp.math.log_gamma_difference(half, safe_x) + tf.math.log(safe_x)
    big_x = tf.maximum(safe_x, _SERIES_FROM)
    series = 1.0 / (4.0 * big_x) - 1.0 / (96.0 * big_x**3) + 1.0 / (320.0 * big_x**5)
    return tf.where(x >= _SERIES_FROM, series, direct)


def adaptive_lr_mean(rho, sigma=1.0):
    """E[ψ] = sqrt(ρ/2) Γ((ρ−1)/2) / (Γ(ρ/2) σ) for ψ² ~ Scale-inv-χ²(ρ, 1/σ²).

    From E[(χ²_ρ)^{−1/2}] = Γ((ρ−1)/2) / (√2 Γ(ρ/2)); finite for ρ > 1 (+inf
    otherwise). (The slides' transcription of Liu et al.'s Eq. 3 writes
    Γ(ρ/2 − 1) for Γ((ρ−1)/2); their Eq. 4 is consistent with the latter.)
    """
    (rho, sigma), dtype = _inputs(rho, sigma)
    safe = tf.where(rho > 1.0, rho, 2.0 * tf.ones_like(rho))
    mean = tf.sqrt(safe / (safe - 1.0) * tf.exp(_log_ratio_excess(safe))) / sigma
    return tf.cast(tf.where(rho > 1.0, mean, tf.constant(np.inf, tf.float64)), dtype)


def adaptive_lr_variance(rho, sigma=1.0):
    """Exact Var[ψ] for ψ² ~ Scale-inv-χ²(ρ, 1/σ²) (Liu et al., Eq. 4).

        Var[ψ] = (1/σ²) (ρ/(ρ−2) − ρ 2^{2ρ−5}/π · B((ρ−1)/2, (ρ−1)/2)²)
               = (1/σ²) (ρ/(ρ−2) − (ρ/2) Γ((ρ−1)/2)² / Γ(ρ/2)²)

    (the two agree by Legendre's duplication formula; checked against a
    Monte-Carlo of ψ = sqrt(ρ/χ²_ρ)). It is E[ψ²] − E[ψ]² with
    E[ψ²] = ρ/((ρ−2)σ²). Written as written it is unstable, as the paper
    notes: 2^{2ρ−5} B² under/overflows, and both terms tend to 1 while their
    difference is ≈ 1/(2ρ). Here it is evaluated as

        Var[ψ] σ² = ρ/(ρ−1) · (1/(ρ−2) − expm1(s)),

    s = 2 log(Γ((ρ−1)/2)/Γ(ρ/2)) + log((ρ−1)/2) ≈ 1/(2(ρ−1)) from TFP's
    log-gamma difference, or from its asymptotic series for large ρ: the
    remaining difference loses about one bit, for any ρ.

    Defined (finite) for ρ > 2, where E[ψ²] exists; +inf for ρ ≤ 2. The
    paper's condition ρ > 4 is that of the first-order approximation (it
    needs Var[ψ²]); the exact variance is finite on 2 < ρ ≤ 4. Strictly
    decreasing in ρ (Liu et al., Theorem 1), ~ 1/(2ρσ²) for large ρ.

    Args:
        rho: Degrees of freedom ρ (the SMA length), any shape.
        sigma: Gradient standard deviation σ > 0, broadcast against rho.

    Returns:
        A tensor of the broadcast shape (see the module docstring for dtypes).
    """
    (rho, sigma), dtype = _inputs(rho, sigma)
    safe = tf.where(rho > 2.0, rho, 3.0 * tf.ones_like(rho))
    variance = safe / (safe - 1.0) * (1.0 / (safe - 2.0) - tf.math.expm1(_log_ratio_excess(safe)))
    variance = variance / tf.square(sigma)
    return tf.cast(tf.where(rho > 2.0, variance, tf.constant(np.inf, tf.float64)), dtype)


def adaptive_lr_variance_first_order(rho, sigma=1.0):
    """First-order approximation Var[ψ] ≈ ρ / (2 (ρ−2)(ρ−4) σ²) (Liu et al., §3.2).

    The delta method sqrt(ψ²) ≈ sqrt(E ψ²) + (ψ² − E ψ²)/(2 sqrt(E ψ²)) gives
    Var[ψ] ≈ Var[ψ²] / (4 E[ψ²]), with the Scale-inv-χ² moments. RAdam's r_t
    is built from it. It needs Var[ψ²], finite only for ρ > 4: +inf for
    ρ ≤ 4. It overestimates the exact variance, by a relative gap of order
    1/ρ (about 3.3× at ρ = 5, 4.9 % at ρ = 50).
    """
    (rho, sigma), dtype = _inputs(rho, sigma)
    safe = tf.where(rho > 4.0, rho, 5.0 * tf.ones_like(rho))
    variance = safe / (2.0 * (safe - 2.0) * (safe - 4.0) * tf.square(sigma))
    return tf.cast(tf.where(rho > 4.0, variance, tf.constant(np.inf, tf.float64)), dtype)


def sma_length_limit(beta_2):
    """ρ_∞ = 2 / (1 − β2) − 1, the maximum length of the approximated SMA (Liu et al., Algorithm 2).

    The limit of ρ_t = `sma_length(t, β2)` as t → ∞; +inf for β2 = 1.
    """
    (beta_2,), dtype = _inputs(beta_2)
    return tf.cast(2.0 / (1.0 - beta_2) - 1.0, dtype)


def rectification(rho, rho_inf):
    """RAdam's variance rectification term r_t (Liu et al., Algorithm 2).

        r_t = sqrt((ρ_t − 4)(ρ_t − 2) ρ_∞ / ((ρ_∞ − 4)(ρ_∞ − 2) ρ_t)),

    i.e. sqrt(V(ρ_∞) / V(ρ_t)) with V the first-order variance
    (`adaptive_lr_variance_first_order`), so that r_t ψ has the variance of
    the converged ψ. Defined for ρ_t > 4 and ρ_∞ > 4; NaN elsewhere (RAdam
    then takes its un-adapted momentum step). r_t < 1 for ρ_t < ρ_∞.

    Args:
        rho: ρ_t, e.g. `sma_length(t, β2)`.
        rho_inf: ρ_∞, e.g. `sma_length_limit(β2)`, broadcast against rho.
    """
    (rho, rho_inf), dtype = _inputs(rho, rho_inf)
    valid = (rho > 4.0) & (rho_inf > 4.0)
    safe = tf.where(valid, rho, 5.0 * tf.ones_like(rho))
    safe_inf = tf.where(valid, rho_inf, 5.0 * tf.ones_like(rho_inf))
    r = tf.sqrt((safe - 4.0) * (safe - 2.0) * safe_inf / ((safe_inf - 4.0) * (safe_inf - 2.0) * safe))
    return tf.cast(tf.where(valid, r, tf.constant(math.nan, tf.float64)), dtype)
