"""`analysis_tools.updates.variance_adaptation`: Balles & Hennig's factors against closed forms."""

import math

import numpy as np
import pytest
import tensorflow as tf

from analysis_tools.updates.variance_adaptation import (
    variance_adaptation_adam,
    variance_adaptation_sgd,
    variance_adaptation_sign,
)


def test_variance_adaptation_values():
    for factor in (variance_adaptation_sgd, variance_adaptation_sign, variance_adaptation_adam):
        assert float(factor(0.0)) == 1.0
        assert float(factor(np.inf)) == 0.0
    assert float(variance_adaptation_sgd(1.0)) == pytest.approx(0.5, rel=1e-15)
    erf_value = math.erf(1.0 / math.sqrt(2.0))
    assert float(variance_adaptation_sign(1.0)) == pytest.approx(erf_value, rel=1e-15)
    assert float(variance_adaptation_sign(1.0)) == pytest.approx(0.682689492, rel=1e-9)
    assert float(variance_adaptation_adam(1.0)) == pytest.approx(1.0 / math.sqrt(2.0), rel=1e-15)
    # Large-η tails: 1/η², sqrt(2/π)/η, 1/η.
    eta = 1e4
    assert float(variance_adaptation_sgd(eta)) * eta**2 == pytest.approx(1.0, rel=1e-7)
    sign_tail = float(variance_adaptation_sign(eta)) * eta
    assert sign_tail == pytest.approx(math.sqrt(2.0 / math.pi), rel=1e-7)
    assert float(variance_adaptation_adam(eta)) * eta == pytest.approx(1.0, rel=1e-7)
    assert variance_adaptation_adam(np.float32(2.0)).dtype == tf.float32
    assert variance_adaptation_sign(np.zeros([2, 3])).shape == (2, 3)


def test_variance_adaptation_monotone():
    eta = np.concatenate([[0.0], np.geomspace(1e-3, 1e3, 500)])
    for factor in (variance_adaptation_sgd, variance_adaptation_sign, variance_adaptation_adam):
        values = factor(eta).numpy()
        assert np.all(np.diff(values) <= 0.0)
        assert np.all(np.diff(values[eta >= 0.2]) < 0.0)  # below, the sign factor is 1 in float64
        assert np.all((values > 0.0) & (values <= 1.0))
    # The sign factor sits close to Adam's (their Fig. 3); the SGD factor is the smallest.
    sign = variance_adaptation_sign(eta).numpy()
    adam = variance_adaptation_adam(eta).numpy()
    sgd = variance_adaptation_sgd(eta).numpy()
    assert np.max(np.abs(sign - adam)) < 0.1
    assert np.all(sgd <= adam)


def test_sign_factor_is_the_optimal_sign_damping():
    """erf(1/(√2 η)) = 2 P(sign g = sign ∇L) − 1 for g ~ N(∇L, σ²) (Monte-Carlo)."""
    rng = np.random.default_rng(3)
    for eta in (0.3, 1.0, 3.0):
        g = 1.0 + eta * rng.standard_normal(400_000)
        agree = np.mean(np.sign(g) == 1.0)
        assert 2.0 * agree - 1.0 == pytest.approx(float(variance_adaptation_sign(eta)), abs=0.005)
