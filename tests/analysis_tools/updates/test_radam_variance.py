"""`analysis_tools.updates.radam_variance`: the variance of the adaptive learning rate (Liu et al., Eq. 4).

Oracles: a Monte-Carlo of ψ = sqrt(ρ/χ²_ρ) (the scaled inverse chi-square
model with σ = 1), the Beta-function form of Liu et al.'s Eq. 4 with lgamma,
the formula of r_t in `tf_adaptive.RAdam`'s docstring and RAdam's own steps.
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from analysis_tools.updates.radam_variance import (
    adaptive_lr_mean,
    adaptive_lr_variance,
    adaptive_lr_variance_first_order,
    rectification,
    sma_length,
    sma_length_limit,
)
from tf_adaptive import RAdam
from tf_adaptive import radam as radam_module


def eq_4(rho):
    """ρ/(ρ−2) − ρ 2^{2ρ−5}/π · B((ρ−1)/2, (ρ−1)/2)², in logs (fine for moderate ρ)."""
    a = (rho - 1.0) / 2.0
    log_b = 2.0 * math.lgamma(a) - math.lgamma(2.0 * a)
    log_second = (2.0 * rho - 5.0) * math.log(2.0) - math.log(math.pi) + 2.0 * log_b
    return rho / (rho - 2.0) - rho * math.exp(log_second)


def test_sma_length_is_the_optimizers():
    assert sma_length is radam_module.sma_length
    assert float(sma_length_limit(0.999)) == pytest.approx(1999.0, rel=1e-14)
    assert float(sma_length_limit(0.9)) == pytest.approx(19.0, rel=1e-14)
    # ρ_t → ρ_∞ from below, and equals its definition.
    t = np.array([1.0, 5.0, 6.0, 100.0, 10_000.0, 100_000.0], dtype=np.float32)
    rho_t = np.asarray(sma_length(t, 0.999), dtype=np.float64)
    t64 = t.astype(np.float64)
    direct = 1999.0 - 2.0 * t64 * 0.999**t64 / (1.0 - 0.999**t64)
    np.testing.assert_allclose(rho_t, direct, rtol=1e-5, atol=1e-4)
    assert np.all(np.diff(rho_t) > 0.0) and np.all(rho_t <= 1999.0)
    assert rho_t[-1] == pytest.approx(1999.0, rel=1e-6)


@pytest.mark.parametrize("rho", [5.0, 10.0, 50.0])
def test_exact_variance_matches_monte_carlo(rho):
    rng = np.random.default_rng(int(rho))
    psi = np.sqrt(rho / rng.chisquare(rho, size=1_000_000))
    exact = float(adaptive_lr_variance(rho))
    assert np.var(psi) == pytest.approx(exact, rel=0.03)
    assert np.mean(psi) == pytest.approx(float(adaptive_lr_mean(rho)), rel=0.002)
    # Eq. 4 as printed (Beta-function form) is the same number.
    assert exact == pytest.approx(eq_4(rho), rel=1e-10)
    # σ scales ψ by 1/σ.
    assert float(adaptive_lr_variance(rho, sigma=2.0)) == pytest.approx(exact / 4.0, rel=1e-14)


def test_exact_variance_values_and_domain():
    # ρ = 5: 5/3 − (5/2) Γ(2)²/Γ(5/2)².
    expected = 5.0 / 3.0 - 2.5 / math.gamma(2.5) ** 2
    assert float(adaptive_lr_variance(5.0)) == pytest.approx(expected, rel=1e-14)
    # Finite on 2 < ρ ≤ 4 (the paper's ρ > 4 belongs to the approximation), infinite below.
    values = adaptive_lr_variance([1.0, 2.0, 2.5, 3.0, 4.0]).numpy()
    assert np.all(np.isinf(values[:2])) and np.all(np.isfinite(values[2:]))
    assert np.isinf(float(adaptive_lr_mean(1.0))) and np.isfinite(float(adaptive_lr_mean(1.5)))
    # Large ρ: no cancellation, ~ 1/(2ρ) + 15/(8ρ²).
    for rho in (1e4, 1e5, 1e8, 1e12):
        value = float(adaptive_lr_variance(rho))
        assert value == pytest.approx(1.0 / (2.0 * rho) + 15.0 / (8.0 * rho**2), rel=1e-6)
    # Continuity where the asymptotic series takes over (ρ = 1001).
    below, above = adaptive_lr_variance([1001.0 - 1e-9, 1001.0]).numpy()
    assert below == pytest.approx(above, rel=1e-9)
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    for rho in (2.5, 5.0, 37.0, 999.0, 1001.0, 1e4, 1e7):
        r = mpmath.mpf(rho)
        reference = r / (r - 2) - r / 2 * (mpmath.gamma((r - 1) / 2) / mpmath.gamma(r / 2)) ** 2
        assert float(adaptive_lr_variance(rho)) == pytest.approx(float(reference), rel=1e-11)


def test_exact_variance_decreases_in_rho():
    """Liu et al., Theorem 1: Var[ψ] decreases monotonically in ρ."""
    rho = np.geomspace(2.01, 1e9, 2000)
    values = adaptive_lr_variance(rho).numpy()
    assert np.all(np.diff(values) < 0.0)


def test_first_order_approximation():
    assert float(adaptive_lr_variance_first_order(5.0)) == pytest.approx(5.0 / 6.0, rel=1e-14)
    assert float(adaptive_lr_variance_first_order(10.0, sigma=0.5)) == pytest.approx(
        10.0 / (2.0 * 8.0 * 6.0) * 4.0, rel=1e-14
    )
    assert np.all(np.isinf(adaptive_lr_variance_first_order([3.0, 4.0]).numpy()))
    # Approaches the exact variance from above as ρ grows: the relative gap shrinks (≈ 1/ρ).
    rho = np.array([5.0, 10.0, 50.0, 500.0, 5000.0, 5e5])
    gap = (adaptive_lr_variance_first_order(rho) / adaptive_lr_variance(rho) - 1.0).numpy()
    assert np.all(gap > 0.0) and np.all(np.diff(gap) < 0.0)
    assert gap[0] > 2.0 and gap[2] == pytest.approx(0.049, abs=0.002) and gap[-1] < 1e-5  # ≈ 2.25/ρ


def test_rectification_matches_radam():
    beta_2 = 0.999
    rho_inf = sma_length_limit(beta_2)
    t = np.arange(1.0, 2001.0, dtype=np.float32)
    rho_t = sma_length(t, beta_2)
    r = rectification(rho_t, rho_inf).numpy()
    # The formula of tf_adaptive.RAdam's docstring.
    rho64 = np.asarray(rho_t, dtype=np.float64)
    inf64 = float(rho_inf)
    with np.errstate(invalid="ignore"):
        docstring = np.sqrt((rho64 - 4) * (rho64 - 2) * inf64 / ((inf64 - 4) * (inf64 - 2) * rho64))
    valid = rho64 > 4.0
    np.testing.assert_allclose(r[valid], docstring[valid], rtol=1e-12)
    assert np.all(np.isnan(r[~valid])) and np.sum(~valid) == 4  # t = 1..4; ρ_5 ≈ 4.99
    assert np.all(np.diff(r[valid]) > 0.0) and np.all(r[valid] < 1.0)
    # r_t² = V(ρ_∞) / V(ρ_t) with the first-order variance.
    first_order = adaptive_lr_variance_first_order
    ratio = first_order(rho_inf) / first_order(rho64[valid])
    np.testing.assert_allclose(r[valid] ** 2, ratio.numpy(), rtol=1e-12)
    assert rectification(tf.constant([6.0]), tf.constant(19.0)).dtype == tf.float32


def test_rectification_is_radams_step():
    """With β1 = 0, ε = 0, lr = 1 and a constant gradient, RAdam's rectified step is exactly r_t."""
    variable = keras.Variable(np.zeros(1, dtype=np.float32))
    optimizer = RAdam(learning_rate=1.0, beta_1=0.0, beta_2=0.999, epsilon=0.0)
    gradient = tf.ones([1])
    steps = []
    for _ in range(12):
        before = variable.numpy().copy()
        optimizer.apply_gradients([(gradient, variable)])
        steps.append(float(before[0] - variable.numpy()[0]))
    t = np.arange(1.0, 13.0, dtype=np.float32)
    r = rectification(sma_length(t, 0.999), sma_length_limit(0.999)).numpy()
    rectified = np.asarray(sma_length(t, 0.999)) > 5.0  # the optimizer's default threshold
    np.testing.assert_allclose(np.array(steps)[rectified], r[rectified], rtol=1e-4)
    np.testing.assert_allclose(np.array(steps)[~rectified], 1.0, rtol=1e-6)  # SGD phase


def test_array_and_tensor_inputs():
    assert adaptive_lr_variance(np.array([[5.0], [10.0]]), np.array([1.0, 2.0])).shape == (2, 2)
    assert adaptive_lr_variance(np.float32(5.0)).dtype == tf.float32
    assert adaptive_lr_variance(5).dtype == tf.float64
    assert adaptive_lr_variance(tf.constant([5.0, 6.0])).dtype == tf.float32
    np.testing.assert_allclose(
        adaptive_lr_variance(tf.constant([5.0, 50.0])), adaptive_lr_variance([5.0, 50.0]), rtol=1e-6
    )
