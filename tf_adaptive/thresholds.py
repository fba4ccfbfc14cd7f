"""Stability thresholds of first-order methods on a quadratic.

This module is the single source of truth for the thresholds of Cohen et al.,
"Adaptive Gradient Methods at the Edge of Stability" (2022), §2 and
Appendix A, and for the
"asymptotic growth factor" of their Appendix C (Fig. 14). It is pure Python and
NumPy, so both the optimizers and `analysis_tools` can use it.

Every method studied there reads, on the quadratic f(x) = a x² / 2 with its
preconditioner P held fixed, as a linear recurrence in x with the
preconditioned curvature a / P. The threshold is the largest preconditioned
curvature for which every root of the recurrence's characteristic polynomial
stays inside the unit circle:

| momentum type      | update                                              | threshold on λ1(P⁻¹H)       |
|--------------------|-----------------------------------------------------|-----------------------------|
| ``none``           | x ← x - η P⁻¹ g                                      | 2 / η                       |
| ``heavy_ball``     | m ← β m + g;  x ← x - η P⁻¹ m                         | (2 + 2β) / η                |
| ``nesterov``       | m ← β m + g;  x ← x - η P⁻¹ (β m + g)                 | (2 + 2β) / ((1 + 2β) η)     |
| ``ema_heavy_ball`` | m ← β m + (1-β) g;  x ← x - η P⁻¹ m                   | (2 + 2β) / ((1 - β) η)      |
| ``ema_nesterov``   | m ← β m + (1-β) g;  x ← x - η P⁻¹ (β m + (1-β) g)     | (2 + 2β) / ((1 - β)(1 + 2β) η) |

At β = 0.9 the EMA heavy-ball threshold is 38/η and the EMA Nesterov one
13.57/η, the numbers of the paper's Fig. 1 and Table 1.
"""

import numpy as np

NONE = "none"
HEAVY_BALL = "heavy_ball"
NESTEROV = "nesterov"
EMA_HEAVY_BALL = "ema_heavy_ball"
EMA_NESTEROV = "ema_nesterov"
MOMENTUM_TYPES = (NONE, HEAVY_BALL, NESTEROV, EMA_HEAVY_BALL, EMA_NESTEROV)


def _check(momentum, learning_rate, beta):
    if momentum not in MOMENTUM_TYPES:
        raise ValueError(f"`momentum` must be one of {MOMENTUM_TYPES}, got {momentum!r}.")
    if not learning_rate > 0:
        raise ValueError(f"`learning_rate` must be > 0 for a stability threshold, got {learning_rate}.")
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"`beta` must be in [0, 1), got {beta}.")


def stability_threshold(learning_rate, momentum=NONE, beta=0.0):
    """The largest stable λ1(P⁻¹H) for a method with this momentum type.

    Args:
        learning_rate: the step size η > 0.
        momentum: one of `MOMENTUM_TYPES` (see the module docstring).
        beta: the momentum coefficient β ∈ [0, 1); ignored for ``none``.

    Returns:
        The threshold as a Python float.
    """
    _check(momentum, learning_rate, beta)
    eta, b = float(learning_rate), float(beta)
    if momentum == NONE:
        return 2.0 / eta
    if momentum == HEAVY_BALL:
        return (2.0 + 2.0 * b) / eta
    if momentum == NESTEROV:
        return (2.0 + 2.0 * b) / ((1.0 + 2.0 * b) * eta)
    if momentum == EMA_HEAVY_BALL:
        return (2.0 + 2.0 * b) / ((1.0 - b) * eta)
    return (2.0 + 2.0 * b) / ((1.0 - b) * (1.0 + 2.0 * b) * eta)


def characteristic_polynomial(eigenvalue, learning_rate, momentum=NONE, beta=0.0):
    """Coefficients (highest degree first) of the recurrence's characteristic polynomial.

    For the preconditioned curvature `eigenvalue` = a (AEoS Appendix A):
    GD: z - (1 - ηa); heavy ball: z² - (1 + β - ηa) z + β;
    Nesterov: z² - (1 + β - ηa(1 + β)) z + β(1 - ηa). The EMA forms are the
    same with a replaced by (1 - β) a.
    """
    _check(momentum, learning_rate, beta)
    eta, b, a = float(learning_rate), float(beta), float(eigenvalue)
    if momentum == NONE:
        return np.array([1.0, -(1.0 - eta * a)])
    if momentum in (EMA_HEAVY_BALL, EMA_NESTEROV):
        a = (1.0 - b) * a
    if momentum in (HEAVY_BALL, EMA_HEAVY_BALL):
        return np.array([1.0, -(1.0 + b - eta * a), b])
    return np.array([1.0, -(1.0 + b - eta * a * (1.0 + b)), b * (1.0 - eta * a)])


def asymptotic_growth_factor(eigenvalue, learning_rate, momentum=NONE, beta=0.0):
    """Largest root magnitude of the characteristic polynomial (AEoS App. C, Fig. 14).

    It is the factor by which the component of x along an eigenvector with
    preconditioned eigenvalue `eigenvalue` grows per step, asymptotically. It
    equals 1 at `stability_threshold` and exceeds 1 above it.
    """
    roots = np.roots(characteristic_polynomial(eigenvalue, learning_rate, momentum, beta))
    return float(np.max(np.abs(roots)))
