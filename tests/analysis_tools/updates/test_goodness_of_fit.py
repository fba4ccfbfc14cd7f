"""`analysis_tools.updates.goodness_of_fit`: Kolmogorov–Smirnov and Wasserstein-1 against their definitions."""

import math

import numpy as np
import pytest
import tensorflow_probability as tfp

from analysis_tools.updates.goodness_of_fit import kolmogorov_survival_function, ks_statistic, wasserstein_1
from analysis_tools.updates.law import AdaptiveUpdate

tfd = tfp.distributions
tfb = tfp.bijectors


# ---------------------------------------------------------------------------
# Goodness of fit.


def test_kolmogorov_survival_function():
    assert float(kolmogorov_survival_function(0.0)) == 1.0
    # Both series agree where they meet.
    below, above = kolmogorov_survival_function([1.0 - 1e-9, 1.0]).numpy()
    assert below == pytest.approx(above, abs=1e-8)
    # P(K > 1.3581) = 0.05, P(K > 1.6276) = 0.01 (tabulated quantiles).
    assert float(kolmogorov_survival_function(1.3581)) == pytest.approx(0.05, abs=1e-4)
    assert float(kolmogorov_survival_function(1.6276)) == pytest.approx(0.01, abs=1e-4)
    special = pytest.importorskip("scipy.special")
    grid = np.linspace(0.05, 3.0, 60)
    np.testing.assert_allclose(kolmogorov_survival_function(grid), special.kolmogorov(grid), atol=1e-12)


def test_ks_statistic_matches_definition():
    d = AdaptiveUpdate(np.float64(5.0))
    x = d.sample(500, seed=(2, 3)).numpy()
    cdf = np.sort(d.cdf(np.sort(x)).numpy())
    n = x.size
    i = np.arange(1, n + 1)
    expected = max(np.max(i / n - cdf), np.max(cdf - (i - 1) / n))
    result = ks_statistic(x, d)
    assert float(result.statistic) == pytest.approx(expected, rel=1e-12)
    pvalue = float(kolmogorov_survival_function(math.sqrt(n) * expected))
    assert float(result.pvalue) == pytest.approx(pvalue)
    with pytest.raises(ValueError, match="scalar distribution"):
        ks_statistic(x, AdaptiveUpdate([3.0, 5.0]))


def test_wasserstein_1():
    d = AdaptiveUpdate(np.float64(5.0))
    n = 20000
    # Samples at the quantiles (i − 1/2)/n shifted by δ: W1 = δ up to O(1/n).
    x = d.quantile((np.arange(n) + 0.5) / n).numpy()
    assert float(wasserstein_1(x, d)) < 1e-3
    assert float(wasserstein_1(x + 0.1, d)) == pytest.approx(0.1, abs=1e-3)
    # Distributions without a finite support or without a quantile.
    normal = tfd.Normal(np.float64(0.0), np.float64(1.0))
    z = normal.quantile((np.arange(n) + 0.5) / n).numpy()
    assert float(wasserstein_1(z - 0.2, normal)) == pytest.approx(0.2, abs=2e-3)
    mixture = tfd.MixtureSameFamily(
        tfd.Categorical(probs=np.array([0.5, 0.5])),
        tfd.Normal(np.array([-2.0, 2.0]), np.float64(1.0)),
    )
    mixed = np.concatenate([z - 2.0, z + 2.0])
    assert float(wasserstein_1(mixed, mixture)) < 2e-3
    assert float(wasserstein_1(mixed + 0.3, mixture)) == pytest.approx(0.3, abs=3e-3)
