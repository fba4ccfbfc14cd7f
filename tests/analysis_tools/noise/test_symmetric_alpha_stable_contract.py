"""`SymmetricAlphaStable` against TFP's contract for a distribution (as TFP's own per-distribution tests).

Oracles: scipy's `levy_stable` (its S1 parameterization with β = 0 is ours:
E e^{itX} = exp(iμt − |σt|^α)) for the law of the samples, the exact
characteristic function, and central differences of the sampler at a fixed
stateless seed for the reparameterization gradients.
"""

import math

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf
import tensorflow_probability as tfp

from analysis_tools.noise.alpha_stable import SymmetricAlphaStable

tfd = tfp.distributions


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_parameter_properties_and_make_trainable_in_either_dtype(dtype):
    # Filed: the α bijector was a float32 Sigmoid, so make_trainable(..., parameter_dtype=tf.float64) failed.
    properties = SymmetricAlphaStable.parameter_properties(dtype)
    alpha = properties["alpha"].default_constraining_bijector_fn()(tf.constant([-30.0, 0.0, 30.0], dtype))
    assert alpha.dtype == dtype and np.all((alpha.numpy() >= 0.0) & (alpha.numpy() <= 2.0))
    scale = properties["scale"].default_constraining_bijector_fn()(tf.constant([-30.0, 0.0], dtype))
    assert scale.dtype == dtype and np.all(scale.numpy() > 0.0)
    law = tfp.experimental.util.make_trainable(SymmetricAlphaStable, parameter_dtype=dtype, seed=(2, 1))
    assert law.dtype == dtype and law.sample(3, seed=(1, 1)).dtype == dtype


def test_shapes_broadcast_over_parameters():
    d = SymmetricAlphaStable(tf.constant([[1.2], [1.8]], tf.float64), scale=tf.constant([1.0, 2.0, 3.0], tf.float64))
    assert d.batch_shape == [2, 3] and d.event_shape == []
    assert d.sample([4], seed=(1, 2)).shape == [4, 2, 3]
    assert d.characteristic_function(tf.constant(0.5, tf.float64)).shape == [2, 3]
    assert d[1, :2].batch_shape == [2]


@pytest.mark.parametrize("alpha, scale, loc", [(0.7, 1.0, 0.0), (1.0, 2.0, 1.0), (1.5, 0.5, -1.0), (1.95, 1.0, 0.0)])
def test_samples_follow_scipys_levy_stable(alpha, scale, loc):
    samples = SymmetricAlphaStable(np.float64(alpha), scale, loc).sample(4000, seed=(5, 3)).numpy()
    law = scipy.stats.levy_stable(alpha, 0.0, loc=loc, scale=scale)
    assert scipy.stats.kstest(samples, law.cdf).pvalue > 1e-3


def test_samples_are_fully_reparameterized():
    # Filed: NOT_REPARAMETERIZED, although the sampling map is smooth in (α, σ, μ) for a fixed seed.
    assert SymmetricAlphaStable(1.5).reparameterization_type == tfd.FULLY_REPARAMETERIZED
    seed = (9, 4)

    def draws(alpha, scale, loc):
        return SymmetricAlphaStable(alpha, scale, loc).sample(200, seed=seed)

    point = [tf.constant(v, tf.float64) for v in (1.3, 0.8, 0.2)]
    with tf.GradientTape() as tape:
        tape.watch(point)
        # A smooth, bounded statistic of the draws, so that the comparison is not dominated by one outlier.
        statistic = tf.reduce_sum(tf.tanh(draws(*point)))
    gradients = tape.gradient(statistic, point)
    for i, gradient in enumerate(gradients):
        h = 1e-6
        up, down = list(point), list(point)
        up[i], down[i] = point[i] + h, point[i] - h
        numeric = (float(tf.reduce_sum(tf.tanh(draws(*up)))) - float(tf.reduce_sum(tf.tanh(draws(*down))))) / (2 * h)
        assert float(gradient) == pytest.approx(numeric, rel=1e-5, abs=1e-8)
    # Through α = 1 (Cauchy), where the factor's exponent (1 − α)/α passes through 0.
    alpha, scale, zero = (tf.constant(v, tf.float64) for v in (1.0, 1.0, 0.0))
    with tf.GradientTape() as tape:
        tape.watch(alpha)
        statistic = tf.reduce_sum(tf.tanh(draws(alpha, scale, zero)))
    h = 1e-6
    numeric = (
        float(tf.reduce_sum(tf.tanh(draws(alpha + h, scale, zero))))
        - float(tf.reduce_sum(tf.tanh(draws(alpha - h, scale, zero))))
    ) / (2 * h)
    assert float(tape.gradient(statistic, alpha)) == pytest.approx(numeric, rel=1e-5)


def test_entropy_is_not_implemented_for_lack_of_a_density():
    with pytest.raises(NotImplementedError):
        SymmetricAlphaStable(1.5).entropy()


@pytest.mark.slow
def test_sampling_and_the_characteristic_function_compile_under_xla():
    d = SymmetricAlphaStable(tf.constant([1.1, 1.9], tf.float64))

    @tf.function(jit_compile=True)
    def run(t):
        return d.sample(4000, seed=(3, 3)), d.characteristic_function(t)

    samples, phi = run(tf.constant(0.7, tf.float64))
    # XLA draws other stateless random numbers than TensorFlow's kernels do: compare laws, not draws.
    for column, alpha in zip(samples.numpy().T, (1.1, 1.9)):
        assert scipy.stats.kstest(column, scipy.stats.levy_stable(alpha, 0.0).cdf).pvalue > 1e-3
    np.testing.assert_allclose(np.abs(phi.numpy()), np.exp(-(0.7 ** np.array([1.1, 1.9]))), rtol=1e-12)
    assert math.isclose(float(tf.math.real(d.characteristic_function(0.0)[0])), 1.0)
