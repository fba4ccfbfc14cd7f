"""The Adam family, the momentum methods and FrozenAdam: what the reference tests do not cover.

Backend-agnostic (keras and numpy only).
"""

import math

import keras
import numpy as np
import pytest

import tf_adaptive
from analysis_tools.preconditioners import (
    last_learning_rate_of,
    momentum_of,
    preconditioner_of,
    second_moment_of,
    stability_threshold_of,
)
from tests.tf_adaptive.cases import ONE_PER_CLASS, gradient_stream, initial_values
from tf_adaptive import thresholds


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("case", ONE_PER_CLASS, ids=lambda c: c.id)
def test_analysis_tools_read_the_step_the_optimizer_took(case):
    optimizer = case.make()
    variables = [keras.Variable(v) for v in initial_values()]
    reference = case.make_reference()
    for grads in gradient_stream(6):
        previous = [_numpy(v).astype(np.float64) for v in variables]
        optimizer.apply(grads, variables)
        reference.step([np.zeros(s) for s in reference.shapes], grads, case.learning_rate)
    preconditioners = preconditioner_of(optimizer, variables, gradients=grads)
    momenta = momentum_of(optimizer, variables, gradients=grads)
    learning_rate = float(_numpy(last_learning_rate_of(optimizer)))
    for i, (variable, p, u) in enumerate(zip(variables, preconditioners, momenta)):
        given = grads[i] if optimizer.preconditioner_needs_gradient else None  # SSD: P = |g_t|
        np.testing.assert_array_equal(_numpy(p), _numpy(optimizer.preconditioner(variable, given)))
        np.testing.assert_array_equal(_numpy(u), _numpy(optimizer.momentum(variable, grads[i])))
        np.testing.assert_allclose(_numpy(u), reference.momentum(i), rtol=1e-4, atol=1e-6)
        # The step actually applied is -η P⁻¹ u, read entirely through analysis_tools.
        with np.errstate(divide="ignore", invalid="ignore"):
            expected = -learning_rate * _numpy(u).astype(np.float64) / _numpy(p)
        expected = np.where(np.isnan(expected), 0.0, expected)
        np.testing.assert_allclose(_numpy(variable) - previous[i], expected, rtol=1e-5, atol=1e-7)
    assert stability_threshold_of(optimizer) == optimizer.stability_threshold()
    assert second_moment_of(optimizer) == optimizer.second_moment


def _tensors(arrays):
    return [keras.ops.convert_to_tensor(a) for a in arrays]


def test_adam_matches_keras_adam_when_epsilon_is_zero():
    ours = tf_adaptive.Adam(learning_rate=0.01, beta_1=0.9, beta_2=0.99, epsilon=0.0)
    theirs = keras.optimizers.Adam(learning_rate=0.01, beta_1=0.9, beta_2=0.99, epsilon=0.0)
    ours_vars = [keras.Variable(v) for v in initial_values()]
    their_vars = [keras.Variable(v) for v in initial_values()]
    for grads in gradient_stream(50):
        ours.apply(grads, ours_vars)
        theirs.apply(_tensors(grads), their_vars)  # Keras's fused torch Adam takes tensors only
    for a, b in zip(ours_vars, their_vars):
        np.testing.assert_allclose(_numpy(a), _numpy(b), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("steps", [1, 10])
def test_keras_adam_epsilon_is_ours_scaled_by_the_second_bias_correction(steps):
    # keras Adam(ε̂) adds ε̂ to the un-corrected sqrt(v): our ε = ε̂ / sqrt(1 - β2^t).
    beta_2, keras_epsilon = 0.99, 0.05
    theirs = keras.optimizers.Adam(learning_rate=0.01, beta_2=beta_2, epsilon=keras_epsilon)
    ours = tf_adaptive.Adam(learning_rate=0.01, beta_2=beta_2, epsilon=keras_epsilon / math.sqrt(1.0 - beta_2**steps))
    ours_vars = [keras.Variable(v) for v in initial_values()]
    their_vars = [keras.Variable(v) for v in initial_values()]
    for grads in gradient_stream(steps):
        previous = [_numpy(v) for v in their_vars]
        ours.apply(grads, ours_vars)
        theirs.apply(_tensors(grads), their_vars)  # Keras's fused torch Adam takes tensors only
    for mine, keras_p in zip(ours_vars, preconditioner_of(theirs, their_vars)):
        np.testing.assert_allclose(_numpy(ours.preconditioner(mine)), _numpy(keras_p), rtol=1e-5)
    if steps == 1:  # same state, same ε: the same step
        for a, b, before in zip(ours_vars, their_vars, previous):
            np.testing.assert_allclose(_numpy(a) - before, _numpy(b) - before, rtol=1e-5)


def test_bfloat16_adam_moves_where_keras_adam_does_not():
    ours, theirs = tf_adaptive.Adam(learning_rate=0.01), keras.optimizers.Adam(learning_rate=0.01)
    mine = keras.Variable(np.zeros(3, "float32"), dtype="bfloat16")
    their = keras.Variable(np.zeros(3, "float32"), dtype="bfloat16")
    for _ in range(3):
        ours.apply([keras.ops.ones(3, "bfloat16")], [mine])
        theirs.apply([keras.ops.ones(3, "bfloat16")], [their])
    np.testing.assert_allclose(_numpy(keras.ops.cast(mine, "float32")), -0.03, rtol=1e-2)
    assert np.all(_numpy(keras.ops.cast(their, "float32")) == 0.0)


FROZEN_FORMS = [
    ("gd", lambda: tf_adaptive.HeavyBall(learning_rate=0.1, momentum=0.0), 1.0),
    ("heavy_ball", lambda: tf_adaptive.HeavyBall(learning_rate=0.1, momentum=0.9, ema=False), 1.0),
    ("ema_heavy_ball", lambda: tf_adaptive.HeavyBall(learning_rate=0.1, momentum=0.9), 1.0),
    ("nesterov", lambda: tf_adaptive.Nesterov(learning_rate=0.1, momentum=0.9, ema=False), 1.0),
    ("ema_nesterov", lambda: tf_adaptive.Nesterov(learning_rate=0.1, momentum=0.9), 1.0),
    (
        "frozen_adam",
        lambda: tf_adaptive.FrozenAdam(learning_rate=0.1, beta_1=0.9, preconditioner=[np.array([0.25], "float32")]),
        0.25,
    ),
]


@pytest.mark.parametrize("name, make, preconditioner", FROZEN_FORMS, ids=[f[0] for f in FROZEN_FORMS])
@pytest.mark.parametrize("factor, diverges", [(0.99, False), (1.01, True)])
def test_frozen_form_on_a_quadratic_diverges_just_above_the_threshold(name, make, preconditioner, factor, diverges):
    optimizer = make()
    threshold = optimizer.stability_threshold()
    curvature = factor * threshold * preconditioner  # λ1(P⁻¹H) = factor × threshold
    # Enough steps for the 1.01× growth factor to multiply |x| by 10⁴.
    growth = thresholds.asymptotic_growth_factor(
        1.01 * threshold,
        float(_numpy(optimizer.learning_rate)),
        optimizer.momentum_type,
        getattr(optimizer, optimizer.momentum_coefficient_name) if optimizer.momentum_coefficient_name else 0.0,
    )
    steps = int(math.log(1e4) / math.log(growth)) + 50
    x = keras.Variable([1.0])
    for _ in range(steps):
        optimizer.apply([curvature * x], [x])
    final = abs(float(_numpy(x)[0]))
    assert (final > 10.0) == diverges, (final, steps)
    assert (final < 1.0) == (not diverges), (final, steps)


def test_frozen_adam_from_a_running_adam_uses_its_preconditioner():
    adam = tf_adaptive.Adam(learning_rate=0.02, beta_1=0.8)
    variables = [keras.Variable(v) for v in initial_values()]
    for grads in gradient_stream(5):
        adam.apply(grads, variables)
    frozen = tf_adaptive.FrozenAdam.from_optimizer(adam, variables)
    frozen.build(variables)
    assert frozen.beta_1 == 0.8
    assert float(_numpy(frozen.learning_rate)) == pytest.approx(0.02)
    for v in variables:
        np.testing.assert_array_equal(_numpy(frozen.preconditioner(v)), _numpy(adam.preconditioner(v)))
    # The first frozen step is η (1 - β1) g / P with that P.
    grads = next(gradient_stream(1, seed=9))
    before = [_numpy(v) for v in variables]
    frozen.apply(grads, variables)
    for v, g, b in zip(variables, grads, before):
        expected = -0.02 * 0.2 * g / _numpy(adam.preconditioner(v))
        np.testing.assert_allclose(_numpy(v) - b, expected, rtol=1e-5, atol=1e-7)


def test_frozen_adam_freeze_replaces_the_preconditioner_and_checks_shapes():
    variables = [keras.Variable(v) for v in initial_values()]
    frozen = tf_adaptive.FrozenAdam(learning_rate=0.1)
    frozen.build(variables)
    np.testing.assert_array_equal(_numpy(frozen.preconditioner(variables[1])), np.ones(3))
    frozen.freeze(variables, [np.full(v.shape, 3.0) for v in variables])
    np.testing.assert_array_equal(_numpy(frozen.preconditioner(variables[1])), np.full(3, 3.0))
    with pytest.raises(ValueError, match="shape"):
        frozen.freeze(variables, [np.ones((2, 2)), np.ones(3)])
    with pytest.raises(ValueError, match="2 arrays for 1 variables"):
        tf_adaptive.FrozenAdam(preconditioner=[np.ones(3), np.ones(3)]).build(variables[1:])
    with pytest.raises(TypeError, match="preconditioner_of"):
        tf_adaptive.FrozenAdam.from_optimizer(keras.optimizers.Adam(), variables)


def test_adafactor_factors_matrices_and_not_vectors():
    optimizer = tf_adaptive.Adafactor()
    variables = [keras.Variable(np.zeros((2, 4, 3), "float32")), keras.Variable(np.zeros(3, "float32"))]
    optimizer.build(variables)
    assert tuple(optimizer._rows[0].shape) == (2, 4) and tuple(optimizer._columns[0].shape) == (2, 3)
    assert optimizer._rows[1] is None and tuple(optimizer._second_moments[1].shape) == (3,)
    # Memory: rows + columns, not the full second moment.
    assert optimizer._second_moments[0] is None


def test_nadam_and_nesterov_thresholds_are_the_nesterov_ones():
    assert tf_adaptive.Nadam(learning_rate=1.0, beta_1=0.9).stability_threshold() == pytest.approx(
        (2 + 1.8) / (0.1 * 2.8), rel=1e-6
    )
    assert tf_adaptive.Nesterov(learning_rate=1.0, momentum=0.9, ema=False).stability_threshold() == (
        pytest.approx(3.8 / 2.8, rel=1e-6)
    )


BAD_HYPERPARAMETERS = [
    (tf_adaptive.Adam, dict(beta_2=1.0), "beta_2"),
    (tf_adaptive.Adam, dict(epsilon=-1.0), "epsilon"),
    (tf_adaptive.Padam, dict(partial=0.6), "partial"),
    (tf_adaptive.Padam, dict(partial=0.0), "partial"),
    (tf_adaptive.Nadam, dict(beta_1=-0.1), "beta_1"),
    (tf_adaptive.RMSProp, dict(beta_2=1.0), "beta_2"),
    (tf_adaptive.Adagrad, dict(initial_accumulator_value=-1.0), "initial_accumulator_value"),
    (tf_adaptive.Adagrad, dict(learning_rate=-0.1), "learning_rate"),
    (tf_adaptive.Adafactor, dict(decay_rate=0.0), "decay_rate"),
    (tf_adaptive.Adafactor, dict(clip_threshold=0.0), "clip_threshold"),
    (tf_adaptive.Adafactor, dict(epsilon_1=0.0, epsilon=0.0), "epsilon_1"),
    (tf_adaptive.LaProp, dict(epsilon=-1e-8), "epsilon"),
    (tf_adaptive.HeavyBall, dict(momentum=1.0), "momentum"),
    (tf_adaptive.Nesterov, dict(momentum=-0.5), "momentum"),
    (tf_adaptive.FrozenAdam, dict(beta_1=1.0), "beta_1"),
    (tf_adaptive.FrozenAdam, dict(epsilon=-1.0), "epsilon"),
]


@pytest.mark.parametrize(
    "cls, kwargs, argument", BAD_HYPERPARAMETERS, ids=[f"{c.__name__}-{a}" for c, _, a in BAD_HYPERPARAMETERS]
)
def test_bad_hyperparameters_raise_value_error_naming_the_argument(cls, kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        cls(**kwargs)
