"""Variance adaptation factors (Balles & Hennig, "Dissecting Adam", ICML 2018, §4).

For one coordinate with true gradient ∇L and stochastic gradient g ~ (∇L, σ²),
let η = σ / |∇L| be the relative standard deviation. By their Lemma 1 (the
factors are plotted in their Fig. 3):

* `variance_adaptation_sgd(η)` = 1 / (1 + η²) minimises E[(γ g − ∇L)²], the
  optimal damping of the stochastic gradient itself (SVAG / M-SVAG);
* `variance_adaptation_sign(η)` = erf(1 / (√2 η)) minimises
  E[(γ sign g − sign ∇L)²] for a Gaussian g: γ = 2 P(sign g = sign ∇L) − 1
  (the optimal step of sign descent, SSD / M-SSD);
* `variance_adaptation_adam(η)` = 1 / sqrt(1 + η²) is what Adam implicitly
  applies to the sign, |∇L| / sqrt(E g²), a close approximation of the
  sign factor.

All three are 1 at η = 0, decrease strictly in η and tend to 0 as η → ∞
(like 1/η², sqrt(2/π)/η and 1/η). Inputs are Python numbers, NumPy arrays or
tensors with η ≥ 0 (η = +inf is allowed: zero true gradient); the result is
a `tf.Tensor` of the same shape, float32 for float32 input and float64
otherwise.
"""

import math

import tensorflow as tf

from analysis_tools._tensors import as_float_tensor

__all__ = [
    "variance_adaptation_adam",
    "variance_adaptation_sgd",
    "variance_adaptation_sign",
]


def variance_adaptation_sgd(eta):
    """γ = (1 + η²)⁻¹, the optimal damping of a stochastic gradient (Balles & Hennig, §4)."""
    eta = as_float_tensor(eta)
    return tf.math.reciprocal(1.0 + tf.square(eta))


def variance_adaptation_sign(eta):
    """γ = erf[(√2 η)⁻¹], the optimal damping of the sign of a Gaussian stochastic gradient (§4).

    1 at η = 0, erf(1/√2) ≈ 0.6827 at η = 1.
    """
    eta = as_float_tensor(eta)
    safe = tf.where(eta > 0.0, eta, tf.ones_like(eta))
    factor = tf.math.erf(tf.math.reciprocal(math.sqrt(2.0) * safe))
    return tf.where(eta > 0.0, factor, tf.ones_like(eta))


def variance_adaptation_adam(eta):
    """γ = (1 + η²)^{-1/2}, the factor Adam implicitly applies to the gradient's sign (§4)."""
    eta = as_float_tensor(eta)
    return tf.math.reciprocal(tf.sqrt(1.0 + tf.square(eta)))
