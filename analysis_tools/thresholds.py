"""Stability thresholds and growth factors, for the measurement tools.

The formulas have one home, `tf_adaptive.thresholds`, which the optimizers
call too; this module re-exports them under the analysis namespace.

Each is the threshold of a *frozen* form: with the preconditioner P held
fixed, a method is a linear recurrence on a quadratic and is unstable exactly
when λ1(P⁻¹H) exceeds it (Cohen et al. 2022, §2 and App. A). How that
relates to each tf_adaptive optimizer (`stability_threshold()`, read by
`analysis_tools.preconditioners.stability_threshold_of`):

* Exact (P is fixed): HeavyBall, Nesterov, FrozenAdam.
* Given, for P frozen, which the adaptive method follows while P_t changes
  slowly (the adaptive edge of stability): Adam, Padam, Nadam, RMSProp,
  Adagrad, Adafactor, LaProp, RAdam.
* Given, assuming the variance adaptation factor γ_t frozen (P = 1/γ_t, and
  (1-β^t)/γ_t): SVAG (2/η) and M-SVAG ((2+2β)/((1-β)η)). γ_t falls during an
  oscillation, which reads as gradient variance.
* That of the unclipped method, P = 1, (2+2β1)/((1-β1)η): ACClip, CClip,
  GClip. It holds while nothing is clipped
  (`analysis_tools.preconditioners.clipped_fraction_of` is 0).
* None (``None``): SSD, M-SSD. The step has length η at any curvature, so
  sign descent stays bounded on every quadratic.

A `keras.optimizers.MultiOptimizer`, whose sub-optimizer k updates block B_k
of the variables, has the frozen form of its sub-optimizers, and so their
threshold on λ1(P⁻¹H) with P = diag(P^(1), ..., P^(K)), exactly when they
share the momentum type, β and η; otherwise the blocks follow different
recurrences coupled through H and no single threshold applies
(`analysis_tools.preconditioners.stability_threshold_of` returns ``None``).

Above the unclipped threshold CClip and GClip with a constant τ oscillate
with a bounded amplitude (the step is capped at η τ); ACClip diverges, since
its τ_t, an average of |g|, grows with the oscillation.
"""

from tf_adaptive.thresholds import (
    EMA_HEAVY_BALL,
    EMA_NESTEROV,
    HEAVY_BALL,
    MOMENTUM_TYPES,
    NESTEROV,
    NONE,
    asymptotic_growth_factor,
    characteristic_polynomial,
    stability_threshold,
)

__all__ = [
    "EMA_HEAVY_BALL",
    "EMA_NESTEROV",
    "HEAVY_BALL",
    "MOMENTUM_TYPES",
    "NESTEROV",
    "NONE",
    "asymptotic_growth_factor",
    "characteristic_polynomial",
    "stability_threshold",
]
