"""Every optimizer against its independent NumPy reference (the papers' update rules).

Backend-agnostic: this module uses `keras` and `numpy` only, and also runs
under KERAS_BACKEND=jax and torch (see test_other_backends.py).
"""

import keras
import numpy as np
import pytest

import tf_adaptive
from tests.tf_adaptive.cases import CASES, ONE_PER_CLASS, gradient_stream, initial_values
from tf_adaptive import thresholds

STEPS = 50


def _run(case, steps=STEPS, dtype="float32", **overrides):
    optimizer = case.make(**overrides)
    variables = [keras.Variable(v, dtype=dtype) for v in initial_values()]
    ref = case.make_reference()
    ref_params = [v.astype(np.float64) for v in initial_values()]
    previous = None
    for grads in gradient_stream(steps):
        previous = [keras.ops.convert_to_numpy(v).astype(np.float64) for v in variables]
        optimizer.apply([keras.ops.convert_to_tensor(g, dtype=dtype) for g in grads], variables)
        ref_params = ref.step(ref_params, grads, case.learning_rate)
    return optimizer, variables, ref, ref_params, previous


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_matches_numpy_reference_over_50_steps(case):
    _, variables, _, ref_params, _ = _run(case)
    for variable, expected in zip(variables, ref_params):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_preconditioner_is_the_one_the_last_step_divided_by(case):
    optimizer, variables, ref, _, previous = _run(case)
    *_, last = gradient_stream(STEPS)  # SSD's P is |g_t|: it takes the last gradient
    for i, variable in enumerate(variables):
        gradient = last[i] if optimizer.preconditioner_needs_gradient else None
        p = keras.ops.convert_to_numpy(optimizer.preconditioner(variable, gradient))
        np.testing.assert_allclose(p, ref.preconditioner(i), rtol=2e-4, atol=1e-6)
        step = keras.ops.convert_to_numpy(variable) - previous[i]
        with np.errstate(divide="ignore", invalid="ignore"):
            expected = -case.learning_rate * ref.momentum(i) / p
        expected = np.where(np.isnan(expected), 0.0, expected)
        np.testing.assert_allclose(step, expected, rtol=2e-3, atol=1e-6)


@pytest.mark.parametrize("case", [c for c in ONE_PER_CLASS if c.cls is not tf_adaptive.FrozenAdam], ids=lambda c: c.id)
def test_preconditioner_is_identity_before_the_first_step(case):
    optimizer = case.make()
    variable = keras.Variable(np.ones((2, 3), "float32"))
    optimizer.build([variable])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(optimizer.preconditioner(variable)), np.ones((2, 3)))


def test_gclip_clips_by_the_norm_over_all_variables():
    # Each variable's own momentum norm is below τ; their global norm is above it.
    optimizer = tf_adaptive.GClip(learning_rate=1.0, beta_1=0.0, threshold=1.0)
    variables = [keras.Variable(np.zeros(2, "float32")), keras.Variable(np.zeros(3, "float32"))]
    grads = [np.array([0.6, 0.0], "float32"), np.array([0.0, 0.8, 0.6], "float32")]
    optimizer.apply(grads, variables)
    global_norm = np.sqrt(0.36 + 0.64 + 0.36)
    for variable, g in zip(variables, grads):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), -g / global_norm, rtol=1e-6)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(optimizer.preconditioner(variable)),
            np.full(g.shape, global_norm),
            rtol=1e-6,
        )


def test_cclip_threshold_schedule_is_evaluated_at_the_update_count():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.5, decay_steps=10, decay_rate=2.0)
    case = next(c for c in CASES if c.id == "CClip")
    ref = case.reference([(4, 3), (3,)], beta_1=0.8, threshold=lambda k: 0.5 * 2.0 ** (k / 10))
    optimizer = case.make(threshold=schedule)
    variables = [keras.Variable(v) for v in initial_values()]
    ref_params = [v.astype(np.float64) for v in initial_values()]
    for grads in gradient_stream(30):
        optimizer.apply(grads, variables)
        ref_params = ref.step(ref_params, grads, case.learning_rate)
    for variable, expected in zip(variables, ref_params):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), expected, rtol=1e-5, atol=1e-6)


def test_radam_matches_tensorflow_addons_golden_values():
    # tensorflow-addons rectified_adam_test.py: dense sample, 100 steps, lr 1e-3,
    # ε = 1e-7 (its default), threshold 5, un-rectified phase = momentum SGD.
    for weight_decay, expected in [
        (None, [[0.985769, 1.985269], [2.986119, 3.986068]]),
        (0.01, [[0.984775, 1.983276], [2.983125, 3.982076]]),
    ]:
        optimizer = tf_adaptive.RAdam(learning_rate=1e-3, epsilon=1e-7, weight_decay=weight_decay)
        variables = [keras.Variable([1.0, 2.0]), keras.Variable([3.0, 4.0])]
        grads = [np.array([0.1, 0.2], "float32"), np.array([0.03, 0.04], "float32")]
        for _ in range(100):
            optimizer.apply(grads, variables)
        for variable, value in zip(variables, expected):
            np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), value, atol=1e-6)


def test_radam_falls_back_to_momentum_while_rho_below_threshold():
    # With β2 = 0.999 and threshold 5, steps 1-5 have ρ_t ≤ 5: the step is η m̂_t exactly.
    optimizer = tf_adaptive.RAdam(learning_rate=0.1)
    variable = keras.Variable(np.zeros(3, "float32"))
    g = np.array([1.0, -2.0, 0.5], "float32")
    positions = []
    for _ in range(6):
        optimizer.apply([g], [variable])
        positions.append(keras.ops.convert_to_numpy(variable).copy())
    # A constant gradient makes m̂_t = g, so each momentum step is -0.1 g.
    for t in range(5):
        np.testing.assert_allclose(positions[t], -0.1 * g * (t + 1), rtol=1e-6)
    # Step 6 is rectified: η r_6 m̂/(|g| + ε) = η r_6 sign(g), r_6 ≪ 1.
    step_6 = positions[5] - positions[4]
    np.testing.assert_allclose(np.abs(step_6), np.full(3, np.abs(step_6[0])), rtol=1e-4)
    assert 0 < np.abs(step_6[0]) < 0.01


@pytest.mark.parametrize("case", ONE_PER_CLASS, ids=lambda c: c.id)
def test_bfloat16_variables_get_the_float32_update(case):
    optimizer = case.make()
    variables = [keras.Variable(np.zeros(s, "float32"), dtype="bfloat16") for s in [(4, 3), (3,)]]
    grads = next(gradient_stream(1))
    optimizer.apply([keras.ops.cast(g, "bfloat16") for g in grads], variables)
    rounded = [keras.ops.convert_to_numpy(keras.ops.cast(keras.ops.cast(g, "bfloat16"), "float32")) for g in grads]
    expected = case.make_reference().step([np.zeros(s) for s in [(4, 3), (3,)]], rounded, case.learning_rate)
    for variable, value in zip(variables, expected):
        got = keras.ops.convert_to_numpy(keras.ops.cast(variable, "float32"))
        assert np.any(got != 0)
        np.testing.assert_allclose(got, value, rtol=1e-2, atol=1e-6)


def test_bfloat16_rectified_adam_steps_where_beta_2_rounds_to_one():
    # 0.999 is 1.0 in bfloat16: Keras's Adam computes sqrt(1 - β2^t) = 0 there.
    optimizer = tf_adaptive.RAdam(learning_rate=0.01)
    variable = keras.Variable(np.zeros(3, "float32"), dtype="bfloat16")
    for _ in range(8):
        optimizer.apply([keras.ops.ones(3, "bfloat16")], [variable])
    assert np.all(keras.ops.convert_to_numpy(keras.ops.cast(variable, "float32")) < -0.05)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_stability_threshold_follows_the_momentum_type(case):
    optimizer = case.make(learning_rate=0.02)
    assert optimizer.momentum_type == case.momentum_type
    if case.cls in (tf_adaptive.SSD, tf_adaptive.MSSD):  # sign descent has none
        assert optimizer.stability_threshold() is None
        return
    expected = thresholds.stability_threshold(0.02, case.momentum_type, case.beta)
    assert optimizer.stability_threshold() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("beta_1", [0.0, 0.9])
@pytest.mark.parametrize("factor, diverges", [(0.99, False), (1.01, True)])
@pytest.mark.slow
def test_unclipped_gclip_on_a_quadratic_diverges_just_above_its_threshold(beta_1, factor, diverges):
    # With τ huge GClip is EMA heavy ball with P = I (plain GD at β1 = 0).
    optimizer = tf_adaptive.GClip(learning_rate=0.1, beta_1=beta_1, threshold=1e30)
    curvature = factor * optimizer.stability_threshold()
    x = keras.Variable([1.0])
    for _ in range(1500 if beta_1 else 400):
        optimizer.apply([curvature * x], [x])
    final = abs(float(keras.ops.convert_to_numpy(x)[0]))
    assert (final > 10.0) == diverges, final
    assert (final < 1.0) == (not diverges), final


def test_get_config_round_trips_every_argument():
    schedule = keras.optimizers.schedules.CosineDecay(0.1, decay_steps=100)
    for case in CASES:
        optimizer = case.make(weight_decay=1e-4, clipnorm=2.0, use_ema=True, ema_momentum=0.9)
        config = optimizer.get_config()
        for name, value in case.hyperparameters.items():
            if name in case.cls.hyperparameter_names:
                assert config[name] == value
            else:  # state, not configuration (FrozenAdam's preconditioner)
                assert name not in config
        clone = case.cls.from_config(config)
        assert clone.get_config() == config
        restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
        assert type(restored) is case.cls and restored.get_config() == config
    for cls in (tf_adaptive.GClip, tf_adaptive.CClip):
        optimizer = cls(learning_rate=schedule, threshold=schedule)
        clone = cls.from_config(optimizer.get_config())
        assert isinstance(clone.threshold, keras.optimizers.schedules.CosineDecay)
        assert clone.get_config() == optimizer.get_config()


BAD_HYPERPARAMETERS = [
    (tf_adaptive.ACClip, dict(learning_rate=-1e-3), "learning_rate"),
    (tf_adaptive.ACClip, dict(beta_1=1.0), "beta_1"),
    (tf_adaptive.ACClip, dict(beta_2=-0.1), "beta_2"),
    (tf_adaptive.ACClip, dict(epsilon=-1e-8), "epsilon"),
    (tf_adaptive.ACClip, dict(alpha=0.0), "alpha"),
    (tf_adaptive.ACClip, dict(alpha=2.5), "alpha"),
    (tf_adaptive.GClip, dict(threshold=0.0), "threshold"),
    (tf_adaptive.GClip, dict(beta_1=1.5), "beta_1"),
    (tf_adaptive.CClip, dict(threshold=-1.0), "threshold"),
    (tf_adaptive.CClip, dict(learning_rate=-0.1), "learning_rate"),
    (tf_adaptive.RAdam, dict(beta_2=1.0), "beta_2"),
    (tf_adaptive.RAdam, dict(epsilon=-1.0), "epsilon"),
    (tf_adaptive.RAdam, dict(rectification_threshold=3.0), "rectification_threshold"),
    (tf_adaptive.SSD, dict(learning_rate=-1.0), "learning_rate"),
    (tf_adaptive.MSSD, dict(beta=1.0), "beta"),
    (tf_adaptive.SVAG, dict(beta=-0.5), "beta"),
    (tf_adaptive.MSVAG, dict(beta=float("nan")), "beta"),
]


@pytest.mark.parametrize("cls, kwargs, argument", BAD_HYPERPARAMETERS)
def test_bad_hyperparameters_raise_value_error_naming_the_argument(cls, kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        cls(**kwargs)


def test_integer_learning_rate_is_accepted_as_float():
    assert tf_adaptive.SSD(learning_rate=1).get_config()["learning_rate"] == 1.0


def test_threshold_formulas_match_the_published_constants():
    assert thresholds.stability_threshold(1.0, thresholds.EMA_HEAVY_BALL, 0.9) == pytest.approx(38.0)
    assert thresholds.stability_threshold(1.0, thresholds.EMA_NESTEROV, 0.9) == pytest.approx(13.571, abs=1e-3)
