"""Where each optimizer's stability threshold applies, checked by running the optimizer itself.

Cohen et al., "Adaptive Gradient Methods at the Edge of Stability" (2022), §2
and App. A: with its preconditioner P held fixed, a method is a linear
recurrence on a quadratic, unstable exactly when λ1(P⁻¹H) exceeds the
threshold of its momentum type. Per optimizer (`CASES` below) that threshold
is exact (P fixed), given for the frozen P (adaptive methods), that of the
unclipped method (clipping), or absent (sign descent). Each claim is run on
f(x) = a x²/2 with the Keras optimizer's own `apply`, at 0.8 and 1.25 times
the threshold.

Backend-agnostic: keras and numpy only.
"""

import math

import keras
import numpy as np
import pytest

import tf_adaptive
from analysis_tools.preconditioners import clipped_fraction_of, stability_threshold_of
from tests.reference import numpy_optimizers as reference
from tf_adaptive import thresholds

EXACT, FROZEN, UNCLIPPED, NONE = "exact", "frozen", "unclipped", "none"

CASES = {
    tf_adaptive.HeavyBall: EXACT,
    tf_adaptive.Nesterov: EXACT,
    tf_adaptive.FrozenAdam: EXACT,
    tf_adaptive.Adam: FROZEN,
    tf_adaptive.Padam: FROZEN,
    tf_adaptive.Nadam: FROZEN,
    tf_adaptive.RMSProp: FROZEN,
    tf_adaptive.Adagrad: FROZEN,
    tf_adaptive.Adafactor: FROZEN,
    tf_adaptive.LaProp: FROZEN,
    tf_adaptive.RAdam: FROZEN,
    tf_adaptive.SVAG: FROZEN,
    tf_adaptive.MSVAG: FROZEN,
    tf_adaptive.ACClip: UNCLIPPED,
    tf_adaptive.CClip: UNCLIPPED,
    tf_adaptive.GClip: UNCLIPPED,
    tf_adaptive.SSD: NONE,
    tf_adaptive.MSSD: NONE,
}
CLIPPING = [cls for cls, case in CASES.items() if case == UNCLIPPED]
SIGN = [cls for cls, case in CASES.items() if case == NONE]

BOUNDED, DIVERGES = 0.8, 1.25


def _value(x):
    """The one entry of a scalar or one-element tensor, as a Python float."""
    return float(np.reshape(keras.ops.convert_to_numpy(x), -1)[0])


def _run_on_quadratic(optimizer, x, curvature, steps, stop_above=math.inf):
    """`steps` updates on f = curvature · x²/2; returns (final |x|, largest |x|)."""
    peak = abs(_value(x))
    for _ in range(steps):
        optimizer.apply([curvature * x], [x])
        peak = max(peak, abs(_value(x)))
        if not peak < stop_above:
            break
    return abs(_value(x)), peak


def _assert_bounded_or_divergent(factor, start, final, peak):
    if factor < 1.0:  # decays, after at most the momentum's transient overshoot
        assert peak < 10.0 * start and final < start, (final, peak, start)
    else:  # grows geometrically: a thousandfold
        assert peak > 1e3 * start, (final, peak, start)


def test_every_optimizer_has_a_threshold_case_and_its_docstring_states_it():
    optimizers = {
        getattr(tf_adaptive, name)
        for name in tf_adaptive.__all__
        if issubclass(getattr(tf_adaptive, name), keras.optimizers.Optimizer)
    }
    assert optimizers == set(CASES)
    for cls in CASES:
        assert "Stability threshold:" in cls.__doc__, cls.__name__


# ------------------------------------------------------- no threshold: sign descent
@pytest.mark.parametrize("cls", SIGN, ids=lambda c: c.__name__)
def test_sign_descent_has_no_stability_threshold(cls):
    optimizer = cls(learning_rate=0.01)
    assert optimizer.stability_threshold() is None
    assert stability_threshold_of(optimizer) is None
    assert stability_threshold_of(keras.optimizers.LossScaleOptimizer(optimizer)) is None


@pytest.mark.parametrize("cls", SIGN, ids=lambda c: c.__name__)
@pytest.mark.parametrize("curvature", [1e3, 1e12])
def test_sign_descent_stays_bounded_at_any_curvature(cls, curvature):
    # Every step has length η: x closes in on 0 and then oscillates within a few η.
    eta, start = 0.01, 0.05
    optimizer = cls(learning_rate=eta)
    x = keras.Variable([start])
    _, peak = _run_on_quadratic(optimizer, x, curvature, steps=20)
    assert peak <= start + eta
    _, late_peak = _run_on_quadratic(optimizer, x, curvature, steps=100)
    assert late_peak <= 3.0 * eta


# ------------------------------------------- the unclipped threshold: clipping methods
@pytest.mark.parametrize("cls", CLIPPING, ids=lambda c: c.__name__)
def test_clipping_methods_have_the_threshold_of_unclipped_ema_heavy_ball(cls):
    optimizer = cls(learning_rate=0.02, beta_1=0.8)
    expected = thresholds.stability_threshold(0.02, thresholds.EMA_HEAVY_BALL, 0.8)
    assert optimizer.stability_threshold() == pytest.approx(expected, rel=1e-6)
    assert stability_threshold_of(optimizer) == optimizer.stability_threshold()


def _unclipped(cls, eta):
    """A clipping optimizer built on one scalar, in a state where the next steps are not clipped.

    CClip and GClip: τ = 1e30. ACClip: τ_t = a_t is an average of |g|, so one
    gradient of 1000 followed by 300 zero gradients leaves
    a_t = 1000 (1 - β2) β2^300 ≈ 0.49 and the momentum at about 2e-12: the
    test's gradients start at 1e-5 · a_t.
    """
    if cls is tf_adaptive.ACClip:
        optimizer = cls(learning_rate=eta, beta_1=0.9, beta_2=0.99)
        x = keras.Variable([0.0])
        optimizer.apply([keras.ops.convert_to_tensor([1e3])], [x])
        for _ in range(300):
            optimizer.apply([keras.ops.zeros((1,))], [x])
        scale = 1e3 * (1.0 - 0.99) * 0.99**300 * 1e-5
    else:
        optimizer = cls(learning_rate=eta, threshold=1e30)
        x = keras.Variable([0.0])
        optimizer.build([x])
        scale = 1.0
    return optimizer, x, scale


@pytest.mark.parametrize("cls", CLIPPING, ids=lambda c: c.__name__)
@pytest.mark.parametrize("factor", [BOUNDED, DIVERGES])
def test_unclipped_clipping_methods_converge_below_and_diverge_above_the_threshold(cls, factor):
    optimizer, x, scale = _unclipped(cls, eta=0.01)
    curvature = factor * optimizer.stability_threshold()
    start = scale / curvature  # first gradient: `scale`
    x.assign([start])
    final, peak = _run_on_quadratic(optimizer, x, curvature, steps=200, stop_above=1e4 * start)
    _assert_bounded_or_divergent(factor, start, final, peak)
    if factor < 1.0:
        assert _value(optimizer.clipped_fraction([x])) == 0.0


@pytest.mark.parametrize("factor", [DIVERGES, 2.0])
def test_acclip_from_the_zero_state_diverges_above_the_threshold_although_it_clips(factor):
    # τ_t, an average of |g|, grows with the oscillation: the clipping rescales
    # the step but does not cap it.
    optimizer = tf_adaptive.ACClip(learning_rate=0.01)
    x = keras.Variable([1.0])
    curvature = factor * optimizer.stability_threshold()
    final, peak = _run_on_quadratic(optimizer, x, curvature, steps=300, stop_above=1e6)
    assert peak >= 1e6
    assert _value(optimizer.clipped_fraction([x])) == 1.0


def test_acclip_clipped_from_the_start_can_diverge_below_the_threshold():
    # Outside the frozen-P analysis: the zero state clips the first steps
    # (τ_1 = 0.01 |g_1| < |m_1| = 0.1 |g_1|), and at 0.8 times the threshold the
    # clipped transient locks into a growing cycle (a narrow window, about 0.78
    # to 0.80 with these β's; 0.75 and 0.9 converge).
    optimizer = tf_adaptive.ACClip(learning_rate=0.01, beta_1=0.9, beta_2=0.99)
    x = keras.Variable([1.0])
    curvature = 0.8 * optimizer.stability_threshold()
    _, peak = _run_on_quadratic(optimizer, x, curvature, steps=300, stop_above=1e6)
    assert peak >= 1e6
    assert _value(optimizer.clipped_fraction([x])) == 1.0


@pytest.mark.parametrize("cls", [tf_adaptive.CClip, tf_adaptive.GClip], ids=lambda c: c.__name__)
@pytest.mark.parametrize("factor", [2.0, 100.0])
def test_cclip_and_gclip_with_a_constant_threshold_stay_bounded_above_it(cls, factor):
    # Once |m| reaches τ, every step is at most η τ long: a bounded oscillation.
    eta, tau = 0.01, 1.0
    optimizer = cls(learning_rate=eta, threshold=tau)
    x = keras.Variable([0.1])
    curvature = factor * optimizer.stability_threshold()
    _, peak = _run_on_quadratic(optimizer, x, curvature, steps=100)
    assert peak < 1.0
    _, late_peak = _run_on_quadratic(optimizer, x, curvature, steps=100)
    assert late_peak < 5.0 * eta * tau
    assert _value(optimizer.clipped_fraction([x])) == 1.0


# --------------------------------------------------------------- clipped_fraction
def _clipped_by_reference(ref):
    """True where the reference's most recent update multiplied the momentum by a factor below 1."""
    flags = []
    for i, m in enumerate(ref.m):
        if isinstance(ref, reference.ACClip):
            tau = ref.a[i] ** (1 / ref.alpha)
            flags.append(np.abs(m) + ref.eps > tau)
        elif isinstance(ref, reference.GClip):
            flags.append(np.full(m.shape, ref.norm() > ref.tau()))
        else:
            flags.append(np.abs(m) > ref.tau())
    return flags


CLIPPING_RUNS = {
    # ACClip: |g| steady at 1, then 0.1 in half of the coordinates: there m lags behind τ.
    "ACClip": (
        dict(beta_1=0.9, beta_2=0.5, epsilon=1e-5),
        [[np.ones(4), np.ones(2)]] * 10 + [[np.array([1.0, 1.0, 0.1, 0.1]), np.array([1.0, 0.1])]],
        0.5,
    ),
    "CClip": (dict(beta_1=0.0, threshold=0.5), [[np.array([2.0, 0.1, -3.0, 0.0]), np.array([0.2, 0.4])]], 2 / 6),
    "GClip-clipped": (dict(beta_1=0.0, threshold=0.5), [[np.array([0.2, 0.1, -0.3, 0.0]), np.array([0.2, 0.4])]], 1.0),
    "GClip-unclipped": (
        dict(beta_1=0.0, threshold=0.6),
        [[np.array([0.2, 0.1, -0.3, 0.0]), np.array([0.2, 0.1])]],
        0.0,
    ),
}


@pytest.mark.parametrize("name", CLIPPING_RUNS)
def test_clipped_fraction_counts_the_coordinates_the_last_update_clipped(name):
    hyperparameters, stream, expected = CLIPPING_RUNS[name]
    cls_name = name.split("-")[0]
    optimizer = getattr(tf_adaptive, cls_name)(learning_rate=0.1, **hyperparameters)
    ref = getattr(reference, cls_name)([(4,), (2,)], **hyperparameters)
    variables = [keras.Variable(np.zeros(4, "float32")), keras.Variable(np.zeros(2, "float32"))]
    optimizer.build(variables)
    assert _value(optimizer.clipped_fraction(variables)) == 0.0
    params = [np.zeros(4), np.zeros(2)]
    for grads in stream:
        optimizer.apply([np.asarray(g, "float32") for g in grads], variables)
        with np.errstate(divide="ignore"):  # τ / |m| at m = 0
            params = ref.step(params, grads, 0.1)
    flags = _clipped_by_reference(ref)
    counted = sum(int(np.sum(f)) for f in flags) / 6
    assert counted == pytest.approx(expected)
    assert _value(optimizer.clipped_fraction(variables)) == pytest.approx(expected)
    assert clipped_fraction_of(keras.optimizers.LossScaleOptimizer(optimizer), variables) == (pytest.approx(expected))
    # Clipped exactly where P > 1.
    for variable, flag in zip(variables, flags):
        p = keras.ops.convert_to_numpy(optimizer.preconditioner(variable))
        np.testing.assert_array_equal(p > 1.0, flag)


def test_clipped_fraction_is_for_clipping_optimizers_only():
    variables = [keras.Variable(np.zeros(3, "float32"))]
    for optimizer in (tf_adaptive.Adam(), tf_adaptive.SSD(), keras.optimizers.SGD(clipnorm=1.0)):
        optimizer.build(variables)
        assert not hasattr(optimizer, "clipped_fraction")
        assert clipped_fraction_of(optimizer, variables) is None


def test_clipped_fraction_is_nan_after_a_non_finite_gradient():
    optimizer = tf_adaptive.CClip(learning_rate=0.1, threshold=0.5)
    variables = [keras.Variable(np.zeros(3, "float32"))]
    optimizer.apply([np.array([np.nan, 1.0, 0.0], "float32")], variables)
    assert np.isnan(_value(optimizer.clipped_fraction(variables)))


# ---------------------------------------------------- clipping-threshold schedules
class _Linear(keras.optimizers.schedules.LearningRateSchedule):
    """τ_k = G k."""

    def __init__(self, slope):
        self.slope = slope

    def __call__(self, step):
        return self.slope * keras.ops.cast(step, "float32")

    def get_config(self):
        return {"slope": self.slope}


@pytest.mark.parametrize("cls", [tf_adaptive.CClip, tf_adaptive.GClip], ids=lambda c: c.__name__)
def test_threshold_schedule_is_evaluated_at_k_equals_one_on_the_first_update(cls):
    # Algorithm 1 of Zhang et al. counts k = 1, 2, ...: τ_k = G k must not give τ = 0 (a zero
    # first step) on the first update.
    slope, eta = 0.05, 0.1
    hyperparameters = dict(beta_1=0.5, threshold=_Linear(slope))
    optimizer = cls(learning_rate=eta, **hyperparameters)
    ref = getattr(reference, cls.__name__)([(3,), (2,)], beta_1=0.5, threshold=lambda k: slope * k)
    variables = [keras.Variable(np.zeros(3, "float32")), keras.Variable(np.zeros(2, "float32"))]
    params = [np.zeros(3), np.zeros(2)]
    rng = np.random.default_rng(3)
    for step in range(6):
        grads = [rng.normal(size=3).astype("float32"), rng.normal(size=2).astype("float32")]
        before = [keras.ops.convert_to_numpy(v).copy() for v in variables]
        optimizer.apply(grads, variables)
        params = ref.step(params, grads, eta)
        for i, (variable, expected) in enumerate(zip(variables, params)):
            value = keras.ops.convert_to_numpy(variable)
            np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(
                keras.ops.convert_to_numpy(optimizer.preconditioner(variable)), ref.preconditioner(i), rtol=1e-5
            )
            if step == 0:
                assert np.all(np.abs(value - before[i]) > 0), "the first update must move"
    assert ref.tau() == pytest.approx(slope * 6)


# --------------------------------- thresholds of a frozen P: the adaptive methods
def _near_frozen(make, prewarm, settle):
    """An optimizer on one scalar whose P will barely move for the next ~100 steps.

    `prewarm` steps of a constant gradient 1 set its second moment (the
    decay of every second moment here is within 1e-4 of 1, or a sum), then
    `settle` zero gradients let the momentum decay to nothing. The test
    gradients start at 1e-4, so they add little to the second moment before
    the outcome is clear.
    """
    optimizer = make()
    x = keras.Variable([0.0])
    optimizer.build([x])
    for _ in range(prewarm):
        optimizer.apply([keras.ops.ones((1,))], [x])
    for _ in range(settle):
        optimizer.apply([keras.ops.zeros((1,))], [x])
    return optimizer, x


NEAR_FROZEN = {
    "HeavyBall": (lambda: tf_adaptive.HeavyBall(0.01, momentum=0.9), 0, 0),
    "HeavyBall-standard": (lambda: tf_adaptive.HeavyBall(0.01, momentum=0.8, ema=False), 0, 0),
    "Nesterov": (lambda: tf_adaptive.Nesterov(0.01, momentum=0.9), 0, 0),
    "FrozenAdam": (lambda: tf_adaptive.FrozenAdam(0.01, preconditioner=[np.array([0.3], "float32")]), 0, 0),
    "Adam": (lambda: tf_adaptive.Adam(0.01, beta_2=0.9999, bias_correction=False), 50, 150),
    "Adam-bias-corrected": (lambda: tf_adaptive.Adam(0.01, beta_2=0.99999), 500, 150),
    "Padam": (lambda: tf_adaptive.Padam(0.01, beta_2=0.9999), 50, 150),
    "Nadam": (lambda: tf_adaptive.Nadam(0.01, beta_2=0.9999, bias_correction=False), 50, 150),
    "RMSProp": (lambda: tf_adaptive.RMSProp(0.01, beta_2=0.9999), 50, 0),
    "Adagrad": (lambda: tf_adaptive.Adagrad(0.01), 50, 0),
    "Adafactor": (lambda: tf_adaptive.Adafactor(0.01, beta_1=0.9, decay_rate=2.0, clip_threshold=None), 50, 150),
    "LaProp": (lambda: tf_adaptive.LaProp(0.01, beta_2=0.9999, bias_correction=False), 50, 150),
    "RAdam": (lambda: tf_adaptive.RAdam(0.01, beta_2=0.9999), 1000, 150),
    # SVAG steps along g, so its β (which sets γ_t's memory, not the threshold) can be near 1.
    "SVAG": (lambda: tf_adaptive.SVAG(0.01, beta=0.9999), 300, 0),
}


@pytest.mark.parametrize("name", NEAR_FROZEN)
@pytest.mark.parametrize("factor", [BOUNDED, DIVERGES])
@pytest.mark.slow
def test_threshold_of_the_frozen_preconditioner_holds_for_the_optimizer_itself(name, factor):
    make, prewarm, settle = NEAR_FROZEN[name]
    optimizer, x = _near_frozen(make, prewarm, settle)
    assert CASES[type(optimizer)] in (EXACT, FROZEN)
    preconditioner = _value(optimizer.preconditioner(x))
    curvature = factor * optimizer.stability_threshold() * preconditioner  # λ1(P⁻¹H) = factor × threshold
    start = 1e-4 / curvature
    x.assign([start])
    steps = 60 if factor < 1.0 else 100
    final, peak = _run_on_quadratic(optimizer, x, curvature, steps=steps, stop_above=1e4 * start)
    _assert_bounded_or_divergent(factor, start, final, peak)
    # P moved so little that λ1(P⁻¹H) stayed on its side of the threshold, 10 % clear of it.
    ratio = curvature / _value(optimizer.preconditioner(x)) / optimizer.stability_threshold()
    assert ratio < 0.9 if factor < 1.0 else ratio > 1.1, ratio


@pytest.mark.parametrize("factor", [BOUNDED, DIVERGES])
def test_msvag_threshold_holds_with_its_variance_adaptation_frozen(factor):
    # γ_t shares β with the momentum, so it cannot be held still while the
    # momentum runs: the claim is about the frozen form, EMA heavy ball with
    # β and M-SVAG's P = (1 - β^t)/γ_t, which is FrozenAdam.
    msvag = tf_adaptive.MSVAG(learning_rate=0.01, beta=0.8)
    x = keras.Variable([0.0])
    rng = np.random.default_rng(0)
    for _ in range(20):
        msvag.apply([np.array([1.0 + 0.5 * rng.standard_normal()], "float32")], [x])
    frozen = tf_adaptive.FrozenAdam.from_optimizer(msvag, [x])
    frozen.build([x])
    assert frozen.stability_threshold() == pytest.approx(msvag.stability_threshold(), rel=1e-6)
    preconditioner = _value(msvag.preconditioner(x))
    curvature = factor * msvag.stability_threshold() * preconditioner
    x.assign([1.0])
    final, peak = _run_on_quadratic(frozen, x, curvature, steps=200, stop_above=1e4)
    _assert_bounded_or_divergent(factor, 1.0, final, peak)
