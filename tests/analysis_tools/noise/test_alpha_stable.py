"""The symmetric α-stable sampler against its Gaussian and Cauchy cases and its characteristic function."""

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from analysis_tools.noise.alpha_stable import SymmetricAlphaStable
from analysis_tools.updates.goodness_of_fit import ks_statistic

tfd = tfp.distributions


def test_alpha_two_is_gaussian_with_variance_two_sigma_squared():
    x = SymmetricAlphaStable(2.0, scale=1.5, loc=0.25).sample(50_000, seed=(1, 2))
    assert float(ks_statistic(x, tfd.Normal(0.25, 1.5 * math.sqrt(2.0))).pvalue) > 0.01
    assert float(np.var(x.numpy())) == pytest.approx(2.0 * 1.5**2, rel=0.03)


def test_alpha_one_is_cauchy():
    x = SymmetricAlphaStable(1.0, scale=0.7).sample(50_000, seed=(3, 4))
    assert float(ks_statistic(x, tfd.Cauchy(0.0, 0.7)).pvalue) > 0.01


def test_alpha_one_is_not_gaussian_so_the_check_can_fail():
    x = SymmetricAlphaStable(1.0).sample(50_000, seed=(3, 4))
    assert float(ks_statistic(x, tfd.Normal(0.0, math.sqrt(2.0))).pvalue) < 1e-6


@pytest.mark.parametrize("alpha", [0.7, 1.1, 1.5, 1.8, 1.95])
def test_empirical_characteristic_function_matches_exp_of_minus_abs_sigma_t_to_the_alpha(alpha):
    n = 200_000
    scale = 2.0
    distribution = SymmetricAlphaStable(alpha, scale=scale, loc=0.0)
    x = distribution.sample(n, seed=(5, 6)).numpy().astype(np.float64)
    t = np.array([0.05, 0.2, 0.5, 1.0]) / scale
    empirical = np.array([np.mean(np.cos(s * x)) for s in t])
    exact = np.real(distribution.characteristic_function(t.astype(np.float32)).numpy())
    # Var cos(tX) ≤ 1/2: four standard errors of the mean.
    assert np.all(np.abs(empirical - exact) < 4 * math.sqrt(0.5 / n)), (empirical, exact)


def test_batch_shapes_dtypes_and_stateless_seeds():
    d = SymmetricAlphaStable([1.2, 1.9], scale=[[1.0], [3.0]], loc=0.0)
    assert d.batch_shape == (2, 2)
    draws = d.sample(7, seed=(1, 2))
    assert draws.shape == (7, 2, 2) and draws.dtype == tf.float32
    np.testing.assert_array_equal(draws, d.sample(7, seed=(1, 2)))
    assert not np.array_equal(draws, d.sample(7, seed=(1, 3)))
    d64 = SymmetricAlphaStable(np.float64(1.5))
    assert d64.sample(3, seed=1).dtype == tf.float64
    assert np.all(np.isfinite(SymmetricAlphaStable(0.5).sample(100_000, seed=(9, 9))))


def test_moments_and_missing_density():
    d = SymmetricAlphaStable([0.9, 1.5, 2.0], scale=2.0, loc=1.0)
    np.testing.assert_array_equal(d.mean().numpy()[1:], [1.0, 1.0])
    assert np.isnan(d.mean().numpy()[0])
    np.testing.assert_array_equal(d.variance(), [np.inf, np.inf, 8.0])
    with pytest.raises(NotImplementedError):
        d.log_prob(0.0)


def test_invalid_parameters_are_refused_with_validate_args():
    with pytest.raises(tf.errors.InvalidArgumentError, match="alpha"):
        SymmetricAlphaStable(2.5, validate_args=True).sample(1, seed=1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="scale"):
        SymmetricAlphaStable(1.5, scale=-1.0, validate_args=True).sample(1, seed=1)
