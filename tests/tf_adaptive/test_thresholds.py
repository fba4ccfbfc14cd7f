"""Stability thresholds against direct simulation of each method on a quadratic.

The simulations below write every update rule out explicitly (the table in
`tf_adaptive.thresholds`), so they do not share code with the characteristic
polynomials they check.
"""

import numpy as np
import pytest

from tf_adaptive import thresholds

MOMENTUM_CASES = [
    (thresholds.NONE, 0.0),
    (thresholds.HEAVY_BALL, 0.9),
    (thresholds.NESTEROV, 0.9),
    (thresholds.EMA_HEAVY_BALL, 0.9),
    (thresholds.EMA_HEAVY_BALL, 0.5),
    (thresholds.EMA_NESTEROV, 0.9),
    (thresholds.EMA_NESTEROV, 0.0),
]
case_ids = [f"{m}-beta{b}" for m, b in MOMENTUM_CASES]


def _simulate(curvatures, preconditioner, learning_rate, momentum, beta, steps):
    """Frozen-preconditioner run on f(x) = ½ Σ a_i x_i²; returns max |x| at the end."""
    a = np.asarray(curvatures, dtype=np.float64)
    p = np.asarray(preconditioner, dtype=np.float64)
    x = np.ones_like(a)
    m = np.zeros_like(a)
    ema = momentum in (thresholds.EMA_HEAVY_BALL, thresholds.EMA_NESTEROV)
    damping = (1.0 - beta) if ema else 1.0
    for _ in range(steps):
        g = a * x
        if momentum == thresholds.NONE:
            direction = g
        else:
            m = beta * m + damping * g
            if momentum in (thresholds.HEAVY_BALL, thresholds.EMA_HEAVY_BALL):
                direction = m
            else:
                direction = beta * m + damping * g
        x = x - learning_rate * direction / p
        if np.max(np.abs(x)) > 1e100:
            break
    return float(np.max(np.abs(x)))


@pytest.mark.parametrize("momentum, beta", MOMENTUM_CASES, ids=case_ids)
def test_growth_factor_is_one_at_the_threshold(momentum, beta):
    eta = 0.05
    threshold = thresholds.stability_threshold(eta, momentum, beta)
    at = thresholds.asymptotic_growth_factor(threshold, eta, momentum, beta)
    below = thresholds.asymptotic_growth_factor(0.99 * threshold, eta, momentum, beta)
    above = thresholds.asymptotic_growth_factor(1.01 * threshold, eta, momentum, beta)
    assert at == pytest.approx(1.0, abs=1e-6)
    assert below < 1.0 < above


@pytest.mark.parametrize("momentum, beta", MOMENTUM_CASES, ids=case_ids)
def test_growth_factor_predicts_the_simulated_rate(momentum, beta):
    eta, steps = 0.05, 200
    curvature = 1.05 * thresholds.stability_threshold(eta, momentum, beta)
    rate = thresholds.asymptotic_growth_factor(curvature, eta, momentum, beta)
    x_a = _simulate([curvature], [1.0], eta, momentum, beta, steps)
    x_b = _simulate([curvature], [1.0], eta, momentum, beta, steps + 100)
    assert x_b < 1e100, "the run left the range the rate is read from"
    assert (x_b / x_a) ** (1.0 / 100) == pytest.approx(rate, rel=1e-3)


@pytest.mark.parametrize("momentum, beta", MOMENTUM_CASES, ids=case_ids)
@pytest.mark.parametrize("factor, diverges", [(0.98, False), (1.02, True)])
def test_frozen_preconditioner_run_diverges_just_above_the_threshold(momentum, beta, factor, diverges):
    # Two coordinates with P = diag(4, 0.5): λ1(P⁻¹H) is set by the second one,
    # whose raw curvature is far below the first's.
    eta = 0.01
    preconditioner = np.array([4.0, 0.5])
    sharpness = factor * thresholds.stability_threshold(eta, momentum, beta)
    curvatures = np.array([0.9 * sharpness * 4.0 / 1.5, sharpness * 0.5])
    assert np.max(curvatures / preconditioner) == pytest.approx(sharpness)
    assert curvatures[0] > curvatures[1]
    final = _simulate(curvatures, preconditioner, eta, momentum, beta, steps=3000)
    assert (final > 1e3) == diverges, final
    assert (final < 1.0) == (not diverges), final


def test_threshold_validates_its_arguments():
    with pytest.raises(ValueError, match="`momentum`"):
        thresholds.stability_threshold(0.1, "adam")
    with pytest.raises(ValueError, match="`learning_rate`"):
        thresholds.stability_threshold(0.0)
    with pytest.raises(ValueError, match="`beta`"):
        thresholds.stability_threshold(0.1, thresholds.HEAVY_BALL, 1.0)
