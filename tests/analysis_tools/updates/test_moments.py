"""`analysis_tools.updates.moments`: Corollaries 1–2, the Gaussian limit and the effective sample size.

Oracles: Corollary 2 in its Γ form, and Monte-Carlo simulations of Adam's
update with β1 = 0 for i.i.d. N(0, 1) gradients with fixed seeds.
"""

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from analysis_tools.updates.goodness_of_fit import ks_statistic
from analysis_tools.updates.law import AdaptiveUpdate
from analysis_tools.updates.moments import (
    abs_update_mean,
    abs_update_variance,
    effective_sample_size,
)

tfd = tfp.distributions
tfb = tfp.bijectors


def ema_updates(beta, steps, n, seed):
    """n draws of Adam's update with β1 = 0: g_t / sqrt(v_t / (1 − β^t))."""
    rng = np.random.default_rng(seed)
    v = np.zeros(n)
    for _ in range(steps):
        g = rng.standard_normal(n)
        v = beta * v + (1.0 - beta) * g * g
    return g / np.sqrt(v / (1.0 - beta**steps))


def corollary_2(m):
    """Var|Δθ| exactly as written in Corollary 2, with lgamma."""
    log_ratio = 2.0 * (math.lgamma(m / 2.0) - math.lgamma((m - 1.0) / 2.0))
    return 1.0 - 4.0 * m * math.exp(log_ratio) / ((m - 1.0) ** 2 * math.pi)


# ---------------------------------------------------------------------------
# Moments and the effective sample size.


def test_corollary_2():
    m = np.array([1.5, 2.0, 2.5, 3.0, 5.0, 10.0, 50.0, 300.0])
    np.testing.assert_allclose(abs_update_variance(m), [corollary_2(v) for v in m], rtol=1e-12)
    assert float(abs_update_variance(3.0)) == pytest.approx(0.25, rel=1e-12)
    # E|x|: arcsine on [-√2, √2] and uniform on [-√3, √3].
    assert float(abs_update_mean(2.0)) == pytest.approx(2.0 * math.sqrt(2.0) / math.pi, rel=1e-12)
    assert float(abs_update_mean(3.0)) == pytest.approx(math.sqrt(3.0) / 2.0, rel=1e-12)
    # Increasing, bounded by the Gaussian value 1 − 2/π, finite for huge m.
    grid = np.geomspace(1.01, 1e12, 200)
    values = abs_update_variance(grid).numpy()
    assert np.all(np.diff(values) > 0.0)
    assert values[-1] == pytest.approx(1.0 - 2.0 / math.pi, abs=1e-10)
    assert np.all(values < 1.0 - 2.0 / math.pi)
    assert abs_update_variance(np.float32(10.0)).dtype == tf.float32


def test_effective_sample_size():
    assert float(effective_sample_size(0.9)) == pytest.approx(20.0, rel=1e-14)  # Eq. 12
    assert float(effective_sample_size(0.999)) == pytest.approx(2000.0, rel=1e-12)
    for beta in (0.0, 0.5, 0.9, 0.999):
        for t in (1, 2, 10, 200, 5000):
            w = (1.0 - beta) * beta ** (t - np.arange(1, t + 1)) / (1.0 - beta**t)
            kish = 1.0 / np.sum(w**2)
            assert float(effective_sample_size(beta, step=t)) == pytest.approx(kish, rel=1e-10)
    # Limits: t = 1 → 1; β = 1 → t; t → ∞ → (1 + β)/(1 − β) = 2/(1 − β) − 1.
    np.testing.assert_allclose(effective_sample_size([0.3, 0.9, 0.999], step=1), 1.0, rtol=1e-12)
    assert float(effective_sample_size(1.0, step=37)) == 37.0
    assert float(effective_sample_size(0.9, step=10_000)) == pytest.approx(19.0, rel=1e-12)
    assert effective_sample_size(np.zeros([2, 3]), step=np.ones([3])).shape == (2, 3)


def test_ema_deviation_from_the_simple_average_law():
    """Documented deviation: bias-corrected EMA weights (β2 = 0.9, t = 200) give Var(x) ≈ 0.92."""
    m_eff = float(effective_sample_size(0.9, step=200))
    assert m_eff == pytest.approx(19.0, abs=1e-6)
    x = ema_updates(0.9, 200, 200_000, seed=5)
    assert np.var(x) == pytest.approx(0.92, abs=0.01)
    assert np.var(x) < 0.95
    # Var|x| is far below the simple-average value at the same effective m.
    assert np.var(np.abs(x)) < float(abs_update_variance(m_eff)) - 0.03
    assert float(ks_statistic(x[:50_000], AdaptiveUpdate(np.float64(m_eff))).pvalue) < 1e-3
    # While t ≪ 1/(1 − β2) the weights are nearly equal and the law holds.
    x = ema_updates(0.999, 10, 100_000, seed=6)
    assert np.var(x) == pytest.approx(1.0, abs=0.015)
    assert float(ks_statistic(x, AdaptiveUpdate(np.float64(10.0))).pvalue) > 0.01
