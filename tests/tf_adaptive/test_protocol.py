"""The optimizer protocol: `momentum(v)`, `preconditioner(v)` and `second_moment`, for every optimizer.

The most recent update of every variable must be x_t - x_{t-1} = -η P_t⁻¹ u_t
with P_t = `preconditioner(v)` and u_t = `momentum(v)`. Backend-agnostic (keras
and numpy only) except the tf.function test, which skips itself elsewhere.
"""

import dataclasses
import re

import keras
import numpy as np
import pytest

import tf_adaptive
from tests.reference import numpy_adam_family as family
from tests.tf_adaptive.cases import CASES, SHAPES, Case, gradient_stream, initial_values
from tf_adaptive import SecondMoment, thresholds
from tf_adaptive.radam import sma_length

PROTOCOL_CASES = CASES + [
    Case(
        "Adam-amsgrad", tf_adaptive.Adam, family.Adam, dict(beta_1=0.9, beta_2=0.99, epsilon=1e-8, amsgrad=True), 0.01
    ),
    Case(
        "Adam-uncorrected",
        tf_adaptive.Adam,
        family.Adam,
        dict(beta_1=0.9, beta_2=0.99, epsilon=1e-8, bias_correction=False),
        0.01,
    ),
    Case("Nesterov-gd", tf_adaptive.Nesterov, family.Nesterov, dict(momentum=0.0, ema=True), 0.05, thresholds.NONE),
]

# Where u_t comes from: stored as is in the momentum slot; the latest gradient,
# which no slot keeps and `momentum(v, gradient)` is given; or computed from
# the slots (and, for the Nesterov forms, the given gradient).
U_IS_THE_MOMENTUM_SLOT = {
    "ACClip",
    "ACClip-alpha1.5",
    "GClip",
    "CClip",
    "RAdam",
    "RAdam-no-sgd-phase",
    "MSSD",
    "MSVAG",
    "Adam",
    "Adam-amsgrad-uncorrected",
    "Adam-amsgrad",
    "Adam-uncorrected",
    "Padam",
    "Padam-corrected",
    "Adafactor",
    "HeavyBall",
    "HeavyBall-standard",
    "FrozenAdam",
}
U_IS_THE_GRADIENT = {
    "SSD",
    "SVAG",
    "RMSProp",
    "Adagrad",
    "Adafactor-plain",
    "HeavyBall-gd",
    "Nesterov-gd",
}
U_IS_COMPUTED = {
    "Nadam",
    "Nadam-uncorrected",
    "Nesterov",
    "Nesterov-standard",
    "LaProp",
    "LaProp-uncorrected",
}

# The cases whose u_t contains g_t, which no slot keeps (storing it would cost
# every user a slot and a write per step): `momentum` needs the gradient.
NEEDS_GRADIENT = U_IS_THE_GRADIENT | {"Nadam", "Nadam-uncorrected", "Nesterov", "Nesterov-standard"}

# Steps before (2) and after (8) RAdam's rectification, see the RAdam test below.
STEPS = [2, 8]

by_case = pytest.mark.parametrize("case", PROTOCOL_CASES, ids=lambda c: c.id)


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _run(case, steps, dtype="float32"):
    """`steps` updates of the SHAPES variables.

    Returns (optimizer, variables, reference, values before the last update, last gradients).
    """
    optimizer = case.make()
    variables = [keras.Variable(v, dtype=dtype) for v in initial_values()]
    reference = case.make_reference()
    for grads in gradient_stream(steps):
        grads = [_numpy(keras.ops.cast(keras.ops.cast(g, dtype), "float32")) for g in grads]
        previous = [_numpy(keras.ops.cast(v, "float32")).astype(np.float64) for v in variables]
        optimizer.apply([keras.ops.cast(g, dtype) for g in grads], variables)
        reference.step([np.zeros(s) for s in SHAPES], grads, case.learning_rate)
    return optimizer, variables, reference, previous, grads


# The cases whose P_t is made of g_t itself (SSD: |g_t|): `preconditioner` needs the gradient.
P_NEEDS_GRADIENT = {"SSD"}


def _momentum(optimizer, variable, gradient):
    """u_t, given the last gradient exactly where the optimizer says it needs it."""
    return optimizer.momentum(variable, gradient if optimizer.momentum_needs_gradient else None)


def _preconditioner(optimizer, variable, gradient):
    """P_t, given the last gradient exactly where the optimizer says it needs it."""
    return optimizer.preconditioner(variable, gradient if optimizer.preconditioner_needs_gradient else None)


def _step_from_protocol(learning_rate, preconditioner, momentum):
    """-η P⁻¹ u in float64: 0 where u = 0 (whatever P) and where P = inf (the coordinate did not move)."""
    p, u = np.asarray(preconditioner, np.float64), np.asarray(momentum, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        step = -learning_rate * u / p
    return np.where((u == 0.0) | np.isinf(p), 0.0, step)


def test_every_case_says_where_its_momentum_lives():
    ids = [case.id for case in PROTOCOL_CASES]
    groups = (U_IS_THE_MOMENTUM_SLOT, U_IS_THE_GRADIENT, U_IS_COMPUTED)
    assert sorted(ids) == sorted(set().union(*groups))
    assert sum(len(group) for group in groups) == len(ids)
    assert {case.cls for case in PROTOCOL_CASES} == {getattr(tf_adaptive, n) for n in tf_adaptive.__all__} - {
        SecondMoment
    }


@by_case
@pytest.mark.parametrize("steps", STEPS)
def test_momentum_is_the_stored_momentum_or_the_reference_one(case, steps):
    optimizer, variables, reference, _, grads = _run(case, steps)
    for i, variable in enumerate(variables):
        u = _numpy(_momentum(optimizer, variable, grads[i]))
        assert u.shape == tuple(variable.shape) and u.dtype == np.float32
        if case.id in U_IS_THE_MOMENTUM_SLOT:
            np.testing.assert_array_equal(u, _numpy(optimizer._momentums[i]))
        elif case.id in U_IS_THE_GRADIENT:
            np.testing.assert_array_equal(u, grads[i])
        np.testing.assert_allclose(u, reference.momentum(i), rtol=1e-4, atol=1e-6)


@by_case
@pytest.mark.parametrize("steps", STEPS)
def test_last_step_is_minus_learning_rate_times_preconditioner_inverse_times_momentum(case, steps):
    optimizer, variables, _, previous, grads = _run(case, steps)
    for variable, before, gradient in zip(variables, previous, grads):
        after = _numpy(variable)
        p, u = _numpy(_preconditioner(optimizer, variable, gradient)), _numpy(_momentum(optimizer, variable, gradient))
        expected = _step_from_protocol(case.learning_rate, p, u)
        # Only the rounding of x_t to float32 separates the two.
        tolerance = 2e-6 * np.abs(expected) + np.spacing(np.abs(after))
        np.testing.assert_array_less(np.abs(after - before - expected), tolerance)


def test_the_step_identity_fails_for_a_wrong_momentum():
    # The check above is sharp enough to see Adam's bias correction of m_t.
    case = next(c for c in PROTOCOL_CASES if c.id == "Adam")
    optimizer, variables, _, previous, _ = _run(case, 3)
    variable, before = variables[0], previous[0]
    corrected = _numpy(optimizer.momentum(variable)) / (1.0 - 0.9**3)
    wrong = _step_from_protocol(case.learning_rate, _numpy(optimizer.preconditioner(variable)), corrected)
    assert np.all(np.abs(_numpy(variable) - before - wrong) > np.spacing(np.abs(_numpy(variable))) * 10)


@pytest.mark.parametrize("case_id", ["RAdam", "RAdam-no-sgd-phase"])
def test_radam_momentum_is_m_before_and_after_rectification(case_id):
    case = next(c for c in PROTOCOL_CASES if c.id == case_id)
    beta_2 = case.hyperparameters["beta_2"]
    threshold = case.hyperparameters.get("rectification_threshold", 5.0)
    before, after = STEPS
    assert float(_numpy(sma_length(keras.ops.convert_to_tensor(float(before)), beta_2))) <= threshold
    assert float(_numpy(sma_length(keras.ops.convert_to_tensor(float(after)), beta_2))) > threshold
    for steps, rectified in ((before, False), (after, True)):
        optimizer, variables, _, previous, _ = _run(case, steps)
        p = _numpy(optimizer.preconditioner(variables[0]))
        u = _numpy(optimizer.momentum(variables[0]))
        np.testing.assert_array_equal(u, _numpy(optimizer._momentums[0]))
        if rectified:
            assert np.all(np.isfinite(p)) and np.unique(p).size > 1
        elif case.hyperparameters.get("degenerated_to_sgd", True):
            np.testing.assert_allclose(p, 1.0 - 0.9**steps, rtol=1e-6)
        else:  # no step at all, yet u_t = m_t ≠ 0 and P_t = inf
            assert np.all(np.isinf(p)) and np.all(u != 0.0)
            assert np.all(_numpy(variables[0]) == previous[0])


@by_case
def test_momentum_is_zero_before_the_first_step(case):
    optimizer = case.make()
    variables = [keras.Variable(v) for v in initial_values()]
    optimizer.build(variables)
    for variable in variables:
        u = _numpy(optimizer.momentum(variable))
        assert u.shape == tuple(variable.shape) and u.dtype == np.float32
        np.testing.assert_array_equal(u, np.zeros(variable.shape))


@by_case
def test_bfloat16_variables_get_a_float32_momentum(case):
    optimizer, variables, reference, _, grads = _run(case, 2, dtype="bfloat16")
    for i, variable in enumerate(variables):
        u = _momentum(optimizer, variable, keras.ops.cast(grads[i], "bfloat16"))
        assert keras.backend.standardize_dtype(u.dtype) == "float32"
        assert tuple(u.shape) == tuple(variable.shape)
        np.testing.assert_allclose(_numpy(u), reference.momentum(i), rtol=2e-2, atol=1e-3)


@by_case
def test_momentum_asks_for_the_gradient_exactly_where_no_slot_keeps_it(case):
    assert case.make().momentum_needs_gradient == (case.id in NEEDS_GRADIENT)
    optimizer, variables, _, _, _ = _run(case, 2)
    # No optimizer spends a slot on keeping g_t for the protocol's sake.
    assert not any("gradient" in v.path for v in optimizer.variables)
    if case.id in NEEDS_GRADIENT:
        with pytest.raises(ValueError, match="needs the gradient"):
            optimizer.momentum(variables[0])
    else:
        optimizer.momentum(variables[0])


@by_case
def test_preconditioner_asks_for_the_gradient_exactly_where_no_slot_keeps_it(case):
    assert case.make().preconditioner_needs_gradient == (case.id in P_NEEDS_GRADIENT)
    optimizer, variables, _, _, grads = _run(case, 2)
    if case.id in P_NEEDS_GRADIENT:
        with pytest.raises(ValueError, match="preconditioner needs the gradient"):
            optimizer.preconditioner(variables[0])
        np.testing.assert_array_equal(_numpy(optimizer.preconditioner(variables[0], grads[0])), np.abs(grads[0]))
        # Before the first update P = 1, gradient or not.
        fresh = case.make()
        fresh.build(variables)
        np.testing.assert_array_equal(_numpy(fresh.preconditioner(variables[0])), 1.0)
    else:
        optimizer.preconditioner(variables[0])


def test_ssd_keeps_no_state_and_m_ssd_its_momentum():
    variables = [keras.Variable(v) for v in initial_values()]
    ssd, mssd = tf_adaptive.SSD(), tf_adaptive.MSSD()
    ssd.build(variables)
    mssd.build(variables)
    bare = keras.optimizers.SGD()  # its state: the step count and the learning rate
    bare.build(variables)
    assert len(ssd.variables) == len(bare.variables)
    assert len(mssd.variables) == len(bare.variables) + len(variables)


def test_momentum_needs_a_built_optimizer():
    with pytest.raises(ValueError, match="not built"):
        tf_adaptive.Adam().momentum(keras.Variable(np.zeros(3, "float32")))


def _expected_second_moment(case):
    """The table the class docstrings state (Cohen et al. 2022, Fig. 5)."""
    h = case.hyperparameters
    if case.cls is tf_adaptive.Padam:
        return SecondMoment(SecondMoment.EMA, beta=h["beta_2"], power=h["partial"])
    if case.cls in (tf_adaptive.Adam, tf_adaptive.Nadam, tf_adaptive.RAdam, tf_adaptive.LaProp, tf_adaptive.RMSProp):
        return SecondMoment(SecondMoment.EMA, beta=h["beta_2"], power=0.5)
    if case.cls is tf_adaptive.Adagrad:
        return SecondMoment(SecondMoment.SUM, power=0.5)
    if case.cls is tf_adaptive.Adafactor:
        return SecondMoment(SecondMoment.FACTORED, power=0.5)
    return SecondMoment(SecondMoment.NONE)


@by_case
def test_second_moment_is_the_one_the_docstring_states(case):
    second_moment = case.make().second_moment
    assert second_moment == _expected_second_moment(case)
    sentence = re.search(r"Second moment: ([^.]*)\.", " ".join(case.cls.__doc__.split())).group(1)
    assert sentence.split()[0].lower() == second_moment.form, sentence
    if second_moment.form == SecondMoment.EMA:
        assert "β2" in sentence, sentence
    if second_moment.power == 0.5:
        assert "power 1/2" in sentence, sentence
    elif second_moment.power is not None:
        assert "`partial`" in sentence, sentence


def test_second_moment_is_read_only_and_validated():
    optimizer = tf_adaptive.Adam(beta_2=0.95)
    assert optimizer.second_moment.beta == 0.95 and isinstance(optimizer.second_moment.beta, float)
    with pytest.raises(AttributeError):
        optimizer.second_moment = SecondMoment(SecondMoment.NONE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        optimizer.second_moment.beta = 0.5
    assert (SecondMoment.SUM, SecondMoment.EMA, SecondMoment.FACTORED, SecondMoment.NONE) == (
        "sum",
        "ema",
        "factored",
        "none",
    )
    for form, beta, power in [
        ("mean", None, 0.5),
        ("ema", None, 0.5),
        ("sum", 0.9, 0.5),
        ("none", None, 0.5),
        ("ema", 0.9, None),
    ]:
        with pytest.raises(ValueError):
            SecondMoment(form, beta=beta, power=power)


def test_padam_second_moment_power_is_its_partial_exponent():
    assert tf_adaptive.Padam(partial=0.125, beta_2=0.9).second_moment == SecondMoment("ema", 0.9, 0.125)


def test_heavy_ball_momentum_argument_is_the_beta_attribute():
    optimizer = tf_adaptive.HeavyBall(learning_rate=0.1, momentum=0.7, ema=False)
    assert optimizer.beta == 0.7 and callable(optimizer.momentum)
    assert optimizer.get_config()["momentum"] == 0.7
    assert tf_adaptive.HeavyBall.from_config(optimizer.get_config()).beta == 0.7


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
@pytest.mark.parametrize(
    "make", [tf_adaptive.ACClip, tf_adaptive.CClip, tf_adaptive.GClip], ids=["ACClip", "CClip", "GClip"]
)
def test_clipping_preconditioner_after_a_non_finite_gradient_is_nan_not_one(make, bad):
    # A NaN state fails the clipping comparison, which used to report P = 1.
    optimizer = make(learning_rate=0.1)
    variables = [keras.Variable(np.ones(3, "float32")), keras.Variable(np.ones(2, "float32"))]
    optimizer.build(variables)
    optimizer.apply([np.array([bad, 1.0, 0.5], "float32"), np.array([0.5, -0.5], "float32")], variables)
    first, second = (keras.ops.convert_to_numpy(optimizer.preconditioner(v)) for v in variables)
    assert np.isnan(first[0])
    if make is tf_adaptive.GClip:  # one global norm: every coordinate of every variable
        assert np.all(np.isnan(first)) and np.all(np.isnan(second))
    else:
        assert np.all(np.isfinite(first[1:])) and np.all(np.isfinite(second))


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("make", [tf_adaptive.SVAG, tf_adaptive.MSVAG], ids=["SVAG", "MSVAG"])
def test_variance_adaptation_preconditioner_after_a_non_finite_gradient_is_nan_not_inf(make, bad):
    # γ_t of a NaN state is NaN, which the update maps to 0 (no step): P = 1/γ used to read +inf,
    # the value of a coordinate that has only seen zero gradients.
    optimizer = make(learning_rate=0.1)
    variables = [keras.Variable(np.ones(3, "float32"))]
    optimizer.build(variables)
    for gradient in ([bad, 1.0, 0.0], [0.5, 1.5, 0.0]):
        optimizer.apply([np.array(gradient, "float32")], variables)
    p = keras.ops.convert_to_numpy(optimizer.preconditioner(variables[0]))
    assert np.isnan(p[0])
    assert np.isfinite(p[1]) and p[1] > 0
    assert p[2] == np.inf  # only zero gradients: γ = 0, documented +inf


@pytest.mark.slow
def test_momentum_and_preconditioner_inside_tf_function():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf.function is TensorFlow's")
    import tensorflow as tf

    for case in PROTOCOL_CASES:
        optimizer = case.make()
        variables = [keras.Variable(v) for v in initial_values()]
        optimizer.build(variables)

        @tf.function
        def step(grads):
            before = [tf.identity(v) for v in variables]
            optimizer.apply(grads, variables)
            return [v - b for v, b in zip(variables, before)], [
                (_preconditioner(optimizer, v, g), _momentum(optimizer, v, g)) for v, g in zip(variables, grads)
            ]

        for grads in gradient_stream(3):
            steps, protocol = step([tf.constant(g) for g in grads])
        for variable, taken, (p, u), gradient in zip(variables, steps, protocol, grads):
            # Graph optimizations may reorder the arithmetic: equal to the eager value up to rounding.
            np.testing.assert_allclose(u.numpy(), _momentum(optimizer, variable, gradient).numpy(), rtol=1e-6)
            np.testing.assert_allclose(p.numpy(), _preconditioner(optimizer, variable, gradient).numpy(), rtol=1e-6)
            expected = _step_from_protocol(case.learning_rate, p.numpy(), u.numpy())
            tolerance = 2e-6 * np.abs(expected) + np.spacing(np.abs(variable.numpy()))
            np.testing.assert_array_less(np.abs(taken.numpy() - expected), tolerance, err_msg=case.id)
