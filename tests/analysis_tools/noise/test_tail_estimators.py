"""Tail-index estimators on symmetric α-stable draws, Pareto tails and the documented failure modes."""

import numpy as np
import pytest

from analysis_tools.noise.alpha_stable import SymmetricAlphaStable
from analysis_tools.noise.tail_estimators import ESTIMATORS, tail_index

ALPHAS = [1.1, 1.5, 1.8, 2.0]
_DRAWS = {}


def _stable(alpha, n=100_000, seed=11):
    key = (alpha, n, seed)
    if key not in _DRAWS:
        _DRAWS[key] = SymmetricAlphaStable(alpha, scale=3.0).sample(n, seed=(seed, 0)).numpy()
    return _DRAWS[key]


@pytest.mark.parametrize("estimator", ["simsekli", "characteristic_function"])
@pytest.mark.parametrize("alpha", ALPHAS)
def test_stable_law_estimators_recover_alpha_from_100k_symmetric_stable_draws(estimator, alpha):
    estimate = tail_index(_stable(alpha), estimator=estimator)
    # The issue asks for ±0.1; the estimators do better (±0.03 measured), so hold them to ±0.05.
    assert abs(estimate.alpha - alpha) <= 0.05, estimate
    assert 0 < estimate.alpha <= 2.0
    assert estimate.num_samples == 100_000


@pytest.mark.parametrize("alpha", [1.1, 1.5])
def test_hill_recovers_alpha_of_heavy_stable_tails(alpha):
    estimate = tail_index(_stable(alpha), estimator="hill")
    assert abs(estimate.alpha - alpha) <= 0.1, estimate
    assert 10 <= estimate.parameters["k"] <= 10_000


def test_hill_overestimates_near_two_as_documented():
    # An SαS tail reaches its power law only far out: α = 1.8 reads 1.8–2.2 …
    assert 1.8 < tail_index(_stable(1.8), estimator="hill").alpha < 2.2
    # … and a Gaussian has no power tail at all: Hill reads "finite variance".
    assert tail_index(_stable(2.0), estimator="hill").alpha > 4.0


def test_hill_on_an_exact_pareto_tail():
    rng = np.random.default_rng(0)
    x = rng.pareto(2.5, 100_000) + 1.0  # P(X > x) = x^-2.5 for x ≥ 1
    assert tail_index(x, estimator="hill").alpha == pytest.approx(2.5, abs=0.1)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_vector_samples_use_norms_or_projections(estimator):
    rows = SymmetricAlphaStable(1.5).sample((20_000, 16), seed=(2, 2)).numpy()
    assert tail_index(rows, estimator=estimator).alpha == pytest.approx(1.5, abs=0.1)


def test_student_t_three_reads_below_two_with_stable_estimators_but_three_with_hill():
    # The documented caveat: α̂ < 2 does not by itself mean infinite variance.
    x = np.random.default_rng(1).standard_t(3, 100_000)
    assert 1.6 < tail_index(x, estimator="simsekli").alpha < 1.95
    assert 1.5 < tail_index(x, estimator="characteristic_function").alpha < 1.85
    assert tail_index(x, estimator="hill").alpha == pytest.approx(3.0, abs=0.4)


def test_stable_estimates_are_reported_in_the_stable_range():
    x = np.random.default_rng(3).standard_normal(4096)
    estimates = [tail_index(x, estimator="simsekli", seed=s) for s in range(5)]
    assert all(e.alpha <= 2.0 for e in estimates)
    assert all(e.alpha == min(e.unclipped, 2.0) for e in estimates)
    assert any(e.unclipped > 2.0 for e in estimates)


def test_scale_and_order_do_not_matter_and_nonfinite_rows_are_dropped():
    x = _stable(1.5)
    base = tail_index(x, estimator="characteristic_function").alpha
    assert tail_index(1e-3 * x, estimator="characteristic_function").alpha == pytest.approx(base, abs=1e-9)
    with_nan = np.concatenate([x, [np.nan, np.inf]])
    assert tail_index(with_nan, estimator="simsekli").num_samples == len(x)


def test_simsekli_block_size_and_permutations():
    x = _stable(1.5)
    estimate = tail_index(x, estimator="simsekli", block_size=100, num_permutations=1)
    assert estimate.parameters == {"block_size": 100, "num_blocks": 1000, "num_permutations": 1}
    assert estimate.alpha == pytest.approx(1.5, abs=0.1)
    assert tail_index(x, estimator="simsekli").parameters["block_size"] == 316


def test_bad_arguments_are_refused():
    x = _stable(1.5, n=1000)
    with pytest.raises(ValueError, match="estimator"):
        tail_index(x, estimator="pickands")
    with pytest.raises(ValueError, match="16 finite"):
        tail_index(x[:10])
    with pytest.raises(ValueError, match="1-D"):
        tail_index(x.reshape(10, 10, 10))
    with pytest.raises(ValueError, match="block_size"):
        tail_index(x, block_size=1)


_DEGENERATE = {
    "all_equal": np.full(100, 3.0),
    "all_zero": np.zeros(100),
    "two_values": np.tile([-1.0, 1.0], 50),
    "fifteen_values": np.repeat(np.arange(1.0, 16.0), 10),
    "equal_rows": np.ones((100, 4)),
}


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("name", list(_DEGENERATE))
def test_every_estimator_refuses_constant_or_discrete_samples(estimator, name):
    # Unrefused, constant data read α = 1.0 (simsekli), NaN (characteristic_function) or ∞ (hill).
    with pytest.raises(ValueError, match="degenerate"):
        tail_index(_DEGENERATE[name], estimator=estimator)


def test_simsekli_refuses_samples_that_are_exactly_zero():
    # log|X| = −∞ at 0: the estimate was 0.04 for 1 % zeros in Gaussian data.
    x = np.random.default_rng(5).standard_normal(1000)
    x[::100] = 0.0
    with pytest.raises(ValueError, match="10 of the 1000 samples are exactly 0"):
        tail_index(x, estimator="simsekli")
    assert tail_index(x, estimator="hill").alpha > 2.0


def test_characteristic_function_refuses_samples_without_a_spread():
    # More than half the samples at the median: the scale of t is 0 (the estimate was NaN).
    rng = np.random.default_rng(6)
    x = np.concatenate([np.zeros(600), rng.standard_normal(400)])
    with pytest.raises(ValueError, match="median absolute deviation"):
        tail_index(x, estimator="characteristic_function")
    rows = np.concatenate([np.zeros((600, 3)), rng.standard_normal((400, 3))])
    with pytest.raises(ValueError, match="any of the 8 projections"):
        tail_index(rows, estimator="characteristic_function")


def test_hill_refuses_tied_largest_magnitudes():
    # Rows on the unit sphere: every norm is 1, so no tail lies above the threshold (the estimate was ∞).
    rows = np.random.default_rng(7).standard_normal((500, 4))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    with pytest.raises(ValueError, match="largest magnitudes are all equal"):
        tail_index(rows, estimator="hill")


# ---------------------------------------------------------------------------
# Standard errors (coverage over 100 seeds: benchmarks/coverage.py and RESULTS.md).


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_every_estimator_reports_a_standard_error_that_shrinks_like_one_over_root_n(estimator):
    small = tail_index(_stable(1.5, n=10_000, seed=3), estimator=estimator)
    large = tail_index(_stable(1.5, n=40_000, seed=3), estimator=estimator)
    assert 0.0 < large.standard_error < small.standard_error
    # Hill's k grows with N too, so its error shrinks by about N^(-1/2) only roughly.
    assert large.standard_error / small.standard_error == pytest.approx(0.5, rel=0.35)


@pytest.mark.parametrize("estimator", ["simsekli", "characteristic_function"])
def test_stable_law_standard_errors_match_the_spread_over_seeds(estimator):
    estimates = [tail_index(_stable(1.5, n=4_000, seed=100 + s), estimator=estimator) for s in range(20)]
    spread = np.std([e.unclipped for e in estimates], ddof=1)
    reported = np.mean([e.standard_error for e in estimates])
    # 20 seeds estimate a standard deviation to about ±16 %.
    assert reported == pytest.approx(spread, rel=0.4)


def test_hill_is_bias_reduced_and_its_interval_covers_where_the_plain_one_does_not():
    # Filed: the plain Hill interval α̂ ± 1.96 α̂/√k covered α = 1.5 in 5 of 20 seeds (its bias toward 2).
    plain, reduced = [], []
    for seed in range(20):
        estimate = tail_index(_stable(1.5, n=10_000, seed=200 + seed), estimator="hill")
        plain.append(abs(estimate.parameters["hill"] - 1.5) <= 1.96 * estimate.parameters["hill_standard_error"])
        reduced.append(abs(estimate.alpha - 1.5) <= 1.96 * estimate.standard_error)
    assert sum(reduced) >= 17 and sum(plain) <= 12


def test_hill_without_a_power_tail_reports_an_infinite_index():
    # |X| = 1 − U² has a bounded tail, P(|X| > 1 − t) = √t: the Hill estimates grow like (k/N)², so the
    # bias-reduced ξ = 2ξ̂(k/2) − ξ̂(k) = 1/α is negative: no power tail, not a large finite index.
    u = np.random.default_rng(5).uniform(size=20_000)
    estimate = tail_index((1.0 - u**2) * np.sign(u - 0.5), estimator="hill")
    assert estimate.alpha == np.inf and np.isnan(estimate.standard_error)
    assert "no power tail" in estimate.parameters["note"]
