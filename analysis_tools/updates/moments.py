"""Moments and limits of the update law `AdaptiveUpdate(m)`, and the m an exponential average stands for.

Zhang and Ziyin, "On the Distributional Properties of Adaptive Gradients"
(UAI 2021): Var[Δθ] = 1 (Corollary 1), Var|Δθ| (Corollary 2), the Gaussian
limit (Eq. 31) and the effective sample size of an exponential moving
average (Eq. 12). Functions of m and β take Python numbers, NumPy arrays or
tensors; floating inputs keep their dtype, Python numbers and integer inputs
are computed in float64.
"""

import math

import tensorflow as tf
import tensorflow_probability as tfp

from analysis_tools._tensors import as_float_tensor

tfd = tfp.distributions

__all__ = [
    "abs_update_mean",
    "abs_update_variance",
    "effective_sample_size",
    "gaussian_limit",
    "update_variance",
]


def update_variance(m):
    """Var[Δθ] = 1 for every m (Zhang & Ziyin, Corollary 1): ones shaped like m."""
    return tf.ones_like(as_float_tensor(m))


def abs_update_mean(m):
    """E|Δθ| = sqrt(m/π) Γ(m/2) / Γ((m+1)/2) under `AdaptiveUpdate(m)`.

    From E[B^{1/2}] = Γ(m/2) / (√π Γ((m+1)/2)) for B ~ Beta(1/2, (m−1)/2).
    The log-gamma difference is TFP's, accurate for large m; the limit is
    sqrt(2/π) ≈ 0.7979.
    """
    m = as_float_tensor(m)
    half = tf.constant(0.5, m.dtype)
    return tf.sqrt(m / math.pi) * tf.exp(tfp.math.log_gamma_difference(half, m / 2.0))


def abs_update_variance(m):
    """Var|Δθ| = 1 − 4 m Γ(m/2)² / ((m−1)² π Γ((m−1)/2)²) (Zhang & Ziyin, Corollary 2).

    Computed as 1 − (E|Δθ|)², since 2 √m Γ(m/2) / ((m−1) √π Γ((m−1)/2))
    = sqrt(m/π) Γ(m/2)/Γ((m+1)/2). Increasing in m, from 0 at m = 1 to
    1 − 2/π ≈ 0.3634 as m → ∞; no overflow for large m.
    """
    return 1.0 - tf.square(abs_update_mean(m))


def gaussian_limit(dtype=tf.float32):
    """The m → ∞ limit of `AdaptiveUpdate(m)` (Zhang & Ziyin, Eq. 31): `tfd.Normal(0, 1)`."""
    return tfd.Normal(tf.zeros([], dtype), tf.ones([], dtype))


def effective_sample_size(beta, step=None):
    """The number m of squared gradients that an exponential average stands for.

    Without `step`: m = 2 / (1 − β) (Zhang & Ziyin, Eq. 12), from matching the
    variance (1 − β)/(1 + β) of a converged EMA (Eq. 10) with 1/(m − 1) of a
    simple average (Eq. 11).

    With `step=t`: the exact Kish effective sample size 1 / Σ_i w_i² of the
    bias-corrected EMA weights w_i = (1 − β) β^{t−i} / (1 − β^t), i ≤ t, used
    by Adam's second moment:

        n_eff(β, t) = (1 + β)(1 − β^t) / ((1 − β)(1 + β^t))
                    = tanh(t ℓ/2) / tanh(ℓ/2),   ℓ = −log β,

    the reciprocal of the relative variance ρ(β, t) of a bias-corrected EMA
    that M-SVAG uses (Balles & Hennig 2018). It is 1 at t = 1, t for β = 1
    (equal weights), and tends to (1 + β)/(1 − β) = 2/(1 − β) − 1, i.e.
    RAdam's ρ_∞, as t → ∞ (19 for β = 0.9, where Eq. 12 says 20). The update
    law is then only approximately `AdaptiveUpdate(n_eff)`: unequal weights
    lower Var(Δθ) below 1.

    Args:
        beta: EMA coefficient in [0, 1], any shape.
        step: Optional step count t ≥ 1, broadcast against beta.

    Returns:
        A tensor of the broadcast shape.
    """
    if step is None:
        beta = as_float_tensor(beta)
        return 2.0 / (1.0 - beta)
    beta, step = as_float_tensor(beta, step)
    ell = -tf.math.log(beta)
    safe_ell = tf.where(ell > 0.0, ell, tf.ones_like(ell))
    kish = tf.tanh(step * safe_ell / 2.0) / tf.tanh(safe_ell / 2.0)
    return tf.where(ell > 0.0, kish, step * tf.ones_like(ell))
