"""Stability thresholds and growth factors, for the measurement tools.

The formulas have one home, `tf_adaptive.thresholds`, which the optimizers
call too; this module re-exports them under the analysis namespace.
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
