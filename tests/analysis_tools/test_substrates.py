"""`analysis_tools.substrates.jax`: the two laws on TFP's JAX substrate, against their TensorFlow originals.

The JAX copies are the same source with rewritten imports; the oracle is the
TensorFlow law at the same parameters (itself tested against scipy and mpmath
in `updates/test_adaptive_update_contract.py` and
`noise/test_symmetric_alpha_stable_contract.py`). A maximum-likelihood fit of
m with `jax.grad` and `jax.jit` shows the update law is fittable on JAX.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from analysis_tools.noise.alpha_stable import SymmetricAlphaStable
from analysis_tools.updates.fitting import fit_update_distribution
from analysis_tools.updates.law import AdaptiveUpdate


@pytest.fixture(scope="module")
def substrate():
    from analysis_tools.substrates import jax as substrate

    return substrate


@pytest.mark.slow
def test_adaptive_update_on_jax_matches_tensorflow(substrate):
    m = np.array([1.5, 2.0, 5.0, 20.0, 1e6])[:, None]  # one batch: JAX runs op by op, and each op once
    x = np.array([-0.9, -1e-7, 0.0, 0.4, 1.1]) * np.minimum(np.sqrt(m), 3.0)
    p = np.array([1e-6, 0.1, 0.5 - 1e-9, 0.5, 0.9])
    reference = AdaptiveUpdate(tf.constant(m, tf.float64))
    # JAX's incomplete beta is not TensorFlow's: they agree to 1e-12, and to 2e-9 at m = 1e6.
    tolerance = np.where(m > 100, 1e-8, 1e-12)
    with jax.enable_x64(True):
        law = substrate.AdaptiveUpdate(jnp.asarray(m))
        for name, argument in (("log_prob", x), ("cdf", x), ("survival_function", x), ("quantile", p)):
            got = np.asarray(getattr(law, name)(jnp.asarray(argument)))
            expected = getattr(reference, name)(argument).numpy()
            for row, (got_row, expected_row) in enumerate(zip(got, expected)):
                np.testing.assert_allclose(got_row, expected_row, rtol=tolerance[row, 0], atol=1e-300, err_msg=name)
        np.testing.assert_allclose(np.asarray(law.entropy()), reference.entropy().numpy(), rtol=1e-12)
        # Under jax.jit (static shapes throughout), with finite gradients at the median: the implicit
        # quantile gradient uses ordinary ops.
        flat = jnp.asarray(m[:, 0])
        grad_m = jax.jit(jax.grad(lambda mm: jnp.sum(substrate.AdaptiveUpdate(mm).quantile(0.5 - 1e-3))))(flat)
        grad_x = jax.grad(lambda v: jnp.sum(substrate.AdaptiveUpdate(flat).cdf(v)))(jnp.zeros_like(flat))
        assert np.all(np.isfinite(np.asarray(grad_m)))
        np.testing.assert_allclose(np.asarray(grad_x), reference.prob(0.0).numpy()[:, 0], rtol=1e-9)
        samples = np.asarray(law.sample(2000, seed=jax.random.PRNGKey(0)))
        assert samples.dtype == np.float64 and np.all(np.abs(samples) <= np.sqrt(m))


@pytest.mark.slow
def test_update_law_is_fitted_by_maximum_likelihood_on_jax(substrate):
    with jax.enable_x64(True):
        x = substrate.AdaptiveUpdate(jnp.float64(8.0)).sample(20_000, seed=jax.random.PRNGKey(3))
        floor = float(jnp.max(x**2))

        @jax.jit
        def slope(z):  # d/dz of −mean log f_m(x), m = max x² + softplus(z) (inside the support's bound)
            return jax.grad(lambda v: -jnp.mean(substrate.AdaptiveUpdate(floor + jax.nn.softplus(v)).log_prob(x)))(z)

        low, high = jnp.float64(-5.0), jnp.float64(10.0)  # the log-likelihood is unimodal in z: bisect its slope
        assert float(slope(low)) < 0.0 < float(slope(high))
        for _ in range(60):
            middle = 0.5 * (low + high)
            low, high = (middle, high) if float(slope(middle)) < 0.0 else (low, middle)
        m = floor + float(jax.nn.softplus(low))
        reference = fit_update_distribution(np.asarray(x))
    assert m == pytest.approx(8.0, rel=0.05)
    assert m == pytest.approx(reference.m, rel=1e-6)  # the TensorFlow fit of the same samples


@pytest.mark.slow
def test_symmetric_alpha_stable_on_jax(substrate):
    with jax.enable_x64(True):
        law = substrate.SymmetricAlphaStable(jnp.float64(1.5), jnp.float64(2.0))
        t = jnp.array([0.1, 0.5, 1.0])
        reference = SymmetricAlphaStable(tf.constant(1.5, tf.float64), tf.constant(2.0, tf.float64))
        np.testing.assert_allclose(
            np.asarray(law.characteristic_function(t)),
            reference.characteristic_function(np.asarray(t)).numpy(),
            rtol=1e-12,
        )
        samples = np.asarray(law.sample(20_000, seed=jax.random.PRNGKey(1)))
        # The empirical characteristic function of the JAX draws against the exact one.
        empirical = np.abs(np.mean(np.exp(1j * np.asarray(t)[:, None] * samples[None, :]), axis=1))
        np.testing.assert_allclose(empirical, np.exp(-(np.abs(2.0 * np.asarray(t)) ** 1.5)), atol=0.02)
        grad_alpha = jax.grad(
            lambda a: jnp.sum(jnp.tanh(substrate.SymmetricAlphaStable(a).sample(100, seed=jax.random.PRNGKey(2))))
        )(jnp.float64(1.3))
        assert np.isfinite(float(grad_alpha))
