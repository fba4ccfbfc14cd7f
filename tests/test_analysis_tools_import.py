"""`analysis_tools` imports, and its thresholds are the optimizers' (one source of truth)."""

import pytest

import analysis_tools
import analysis_tools.thresholds
import tf_adaptive
from tf_adaptive import thresholds


def test_analysis_tools_thresholds_are_the_optimizers_formulas():
    assert analysis_tools.thresholds.stability_threshold is thresholds.stability_threshold
    assert analysis_tools.thresholds.asymptotic_growth_factor is thresholds.asymptotic_growth_factor
    assert set(analysis_tools.thresholds.MOMENTUM_TYPES) == set(thresholds.MOMENTUM_TYPES)


def test_an_optimizer_threshold_agrees_with_the_analysis_formula():
    optimizer = tf_adaptive.MSSD(learning_rate=0.02, beta=0.9)
    expected = analysis_tools.thresholds.stability_threshold(0.02, analysis_tools.thresholds.EMA_HEAVY_BALL, 0.9)
    assert optimizer.stability_threshold() == pytest.approx(expected, rel=1e-6)  # η is stored in float32
    assert expected == pytest.approx((2 + 2 * 0.9) / ((1 - 0.9) * 0.02), rel=1e-12)
