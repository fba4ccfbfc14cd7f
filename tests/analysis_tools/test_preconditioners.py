"""`analysis_tools.preconditioners`: P, u and η reproduce each optimizer's last update.

ε is large (0.01) in several configurations so that where it sits (inside or
outside the square root, of the bias-corrected v or not) shows in the check.

For every supported Keras configuration the most recent update must read
x_t - (1 - η λ) x_{t-1} = -η · u / P (λ the decoupled weight decay), with P, u
and η taken from the module right after that update. The comparison allows
rtol 1e-5 plus the rounding of the stored float32 variable (two ulps of x).
"""

import keras
import numpy as np
import pytest
from keras import ops

import tf_adaptive
from analysis_tools import preconditioners as pc
from tf_adaptive import thresholds

SHAPES = [(4, 3), (3,)]
STEPS = 5
RTOL = 1e-5

schedules = keras.optimizers.schedules

CONFIGS = {
    "Adam": lambda: keras.optimizers.Adam(0.05, epsilon=0.01),
    "Adam-amsgrad": lambda: keras.optimizers.Adam(0.05, beta_2=0.9, amsgrad=True),
    "Adam-schedule": lambda: keras.optimizers.Adam(schedules.ExponentialDecay(0.05, decay_steps=1, decay_rate=0.5)),
    "AdamW-wd0": lambda: keras.optimizers.AdamW(0.05, weight_decay=0.0),
    "AdamW-wd0.1": lambda: keras.optimizers.AdamW(0.05, weight_decay=0.1),
    "Nadam": lambda: keras.optimizers.Nadam(0.05, epsilon=0.01),
    "Nadam-default": lambda: keras.optimizers.Nadam(0.05),
    "RMSprop": lambda: keras.optimizers.RMSprop(0.02, epsilon=0.01),
    "RMSprop-momentum": lambda: keras.optimizers.RMSprop(0.02, momentum=0.5, epsilon=0.01),
    "RMSprop-centered": lambda: keras.optimizers.RMSprop(0.02, centered=True),
    "RMSprop-centered-momentum-schedule": lambda: keras.optimizers.RMSprop(
        schedules.ExponentialDecay(0.02, decay_steps=1, decay_rate=0.7), momentum=0.5, centered=True
    ),
    "Adagrad": lambda: keras.optimizers.Adagrad(0.05, epsilon=0.01),
    "Adagrad-default": lambda: keras.optimizers.Adagrad(0.05),
    "Adafactor": lambda: keras.optimizers.Adafactor(0.05),
    "Adafactor-unclipped": lambda: keras.optimizers.Adafactor(0.05, clip_threshold=10.0),
    "Adafactor-clipped": lambda: keras.optimizers.Adafactor(0.05, clip_threshold=0.3),
    "Adafactor-epsilon2": lambda: keras.optimizers.Adafactor(0.05, epsilon_2=10.0),
    "Adafactor-wd": lambda: keras.optimizers.Adafactor(0.05, weight_decay=0.1),
    "SGD": lambda: keras.optimizers.SGD(0.05),
    "SGD-momentum": lambda: keras.optimizers.SGD(0.05, momentum=0.9),
    "SGD-momentum-schedule": lambda: keras.optimizers.SGD(
        schedules.ExponentialDecay(0.05, decay_steps=1, decay_rate=0.5), momentum=0.9
    ),
    "SGD-nesterov": lambda: keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
    "Adamax": lambda: keras.optimizers.Adamax(0.05, epsilon=0.01),
    "Adadelta": lambda: keras.optimizers.Adadelta(0.5, epsilon=0.01),
    "Adadelta-default": lambda: keras.optimizers.Adadelta(1.0),
    "Lamb": lambda: keras.optimizers.Lamb(0.05, epsilon=0.01),
    "Lamb-schedule": lambda: keras.optimizers.Lamb(schedules.ExponentialDecay(0.3, decay_steps=1, decay_rate=0.5)),
}


def make_variables(seed=1):
    rng = np.random.default_rng(seed)
    return [keras.Variable(rng.normal(size=s).astype("float32")) for s in SHAPES]


def gradients(rng):
    return [rng.normal(size=s).astype("float32") for s in SHAPES]


def tensors(arrays):
    """Backend tensors: Keras's fused torch optimizers take no NumPy gradients."""
    return [ops.convert_to_tensor(a) for a in arrays]


def numpy_values(tensors):
    return [np.asarray(ops.convert_to_numpy(t), dtype=np.float64) for t in tensors]


def run(optimizer, variables, steps=STEPS, seed=0):
    """`steps` real updates; returns x before the last update and its gradients."""
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        grads = gradients(rng)
        before = numpy_values(variables)
        optimizer.apply(tensors(grads), variables)
    return before, grads


def assert_last_update_matches(optimizer, variables, before, grads, weight_decay=0.0):
    p = numpy_values(pc.preconditioner_of(optimizer, variables, gradients=grads))
    u = numpy_values(pc.momentum_of(optimizer, variables, gradients=grads))
    eta = float(ops.convert_to_numpy(pc.last_learning_rate_of(optimizer)))
    after = numpy_values(variables)
    for x0, x1, p_, u_ in zip(before, after, p, u):
        assert p_.shape == x0.shape and u_.shape == x0.shape
        step = x1 - (x0 - x0 * weight_decay * eta)
        expected = -eta * u_ / p_
        rounding = 2 * np.spacing(np.maximum(abs(x0), abs(x1)).astype(np.float32))
        error = np.abs(step - expected)
        assert np.all(error <= RTOL * np.abs(expected) + rounding), (
            f"max rel. error {np.max(error / np.abs(expected)):.3g}"
        )


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_last_update_is_minus_eta_u_over_p(name):
    optimizer = CONFIGS[name]()
    variables = make_variables()
    before, grads = run(optimizer, variables)
    assert int(ops.convert_to_numpy(optimizer.iterations)) == STEPS
    assert_last_update_matches(optimizer, variables, before, grads, optimizer.weight_decay or 0.0)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_before_the_first_update_p_is_one_and_u_is_zero(name):
    optimizer = CONFIGS[name]()
    variables = make_variables()
    optimizer.build(variables)
    for p, u, v in zip(pc.preconditioner_of(optimizer, variables), pc.momentum_of(optimizer, variables), variables):
        np.testing.assert_array_equal(ops.convert_to_numpy(p), np.ones(v.shape))
        np.testing.assert_array_equal(ops.convert_to_numpy(u), np.zeros(v.shape))


def test_adam_preconditioner_against_numpy():
    """Keras's Adam, step t: η sqrt(1-β2^t)/(1-β1^t) · m / (sqrt(v) + ε), u = m."""
    beta_1, beta_2, epsilon = 0.8, 0.95, 1e-3
    optimizer = keras.optimizers.Adam(0.05, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon)
    variables = make_variables()
    rng = np.random.default_rng(3)
    m = [np.zeros(s) for s in SHAPES]
    v = [np.zeros(s) for s in SHAPES]
    for t in range(1, STEPS + 1):
        grads = gradients(rng)
        optimizer.apply(tensors(grads), variables)
        m = [beta_1 * m_ + (1 - beta_1) * g for m_, g in zip(m, grads)]
        v = [beta_2 * v_ + (1 - beta_2) * g.astype(np.float64) ** 2 for v_, g in zip(v, grads)]
    t = STEPS
    expected = [(1 - beta_1**t) / np.sqrt(1 - beta_2**t) * (np.sqrt(v_) + epsilon) for v_ in v]
    for p, e in zip(numpy_values(pc.preconditioner_of(optimizer, variables)), expected):
        np.testing.assert_allclose(p, e, rtol=RTOL)
    for u, e in zip(numpy_values(pc.momentum_of(optimizer, variables)), m):
        np.testing.assert_allclose(u, e, rtol=RTOL, atol=1e-7)


def test_learning_rate_of_the_last_update_and_gradient_accumulation():
    schedule = schedules.ExponentialDecay(0.05, decay_steps=1, decay_rate=0.5)
    optimizer = keras.optimizers.Adam(schedule, gradient_accumulation_steps=2)
    variables = make_variables()
    rng = np.random.default_rng(4)
    for _ in range(3):  # three updates, six apply calls
        first, second = gradients(rng), gradients(rng)
        optimizer.apply(tensors(first), variables)
        before = numpy_values(variables)
        optimizer.apply(tensors(second), variables)
    assert int(ops.convert_to_numpy(optimizer.iterations)) == 3
    # Keras evaluates the schedule at the raw apply count before incrementing.
    eta = float(ops.convert_to_numpy(pc.last_learning_rate_of(optimizer)))
    np.testing.assert_allclose(eta, 0.05 * 0.5**5, rtol=1e-6)
    average = [(a + b) / 2 for a, b in zip(first, second)]
    assert_last_update_matches(optimizer, variables, before, average)


@pytest.mark.parametrize(
    "optimizer, kind, beta",
    [
        (keras.optimizers.Adam(0.02), thresholds.EMA_HEAVY_BALL, 0.9),
        (keras.optimizers.Adam(0.02, beta_1=0.8, amsgrad=True), thresholds.EMA_HEAVY_BALL, 0.8),
        (keras.optimizers.AdamW(0.02), thresholds.EMA_HEAVY_BALL, 0.9),
        (keras.optimizers.Nadam(0.02), thresholds.EMA_NESTEROV, 0.9),
        (keras.optimizers.RMSprop(0.02), thresholds.NONE, 0.0),
        (keras.optimizers.RMSprop(0.02, momentum=0.5), thresholds.HEAVY_BALL, 0.5),
        (keras.optimizers.Adagrad(0.02), thresholds.NONE, 0.0),
        (keras.optimizers.Adafactor(0.02), thresholds.NONE, 0.0),
        (keras.optimizers.SGD(0.02), thresholds.NONE, 0.0),
        (keras.optimizers.SGD(0.02, momentum=0.9), thresholds.HEAVY_BALL, 0.9),
        (keras.optimizers.SGD(0.02, momentum=0.9, nesterov=True), thresholds.NESTEROV, 0.9),
        (keras.optimizers.Adamax(0.02), thresholds.EMA_HEAVY_BALL, 0.9),
        (keras.optimizers.Adadelta(0.02), thresholds.NONE, 0.0),
        (keras.optimizers.Lamb(0.02, beta_1=0.8), thresholds.EMA_HEAVY_BALL, 0.8),
    ],
    ids=lambda x: x if isinstance(x, str) else None,
)
def test_stability_threshold_of(optimizer, kind, beta):
    expected = thresholds.stability_threshold(0.02, kind, beta)
    np.testing.assert_allclose(pc.stability_threshold_of(optimizer), expected, rtol=1e-6)


def test_stability_threshold_values():
    np.testing.assert_allclose(pc.stability_threshold_of(keras.optimizers.Adam(0.02)), 1900.0, rtol=1e-6)
    np.testing.assert_allclose(pc.stability_threshold_of(keras.optimizers.Nadam(0.02)), 13.5714285 / 0.02, rtol=1e-6)
    np.testing.assert_allclose(pc.stability_threshold_of(keras.optimizers.SGD(0.1, momentum=0.9)), 38.0, rtol=1e-6)
    np.testing.assert_allclose(pc.stability_threshold_of(keras.optimizers.Adagrad(0.1)), 20.0, rtol=1e-6)


def test_loss_scale_optimizer_is_unwrapped():
    inner = keras.optimizers.Adam(0.05)
    optimizer = keras.optimizers.LossScaleOptimizer(inner)
    variables = make_variables()
    rng = np.random.default_rng(5)
    scale = float(optimizer.initial_scale)  # a power of two: unscaling is exact
    for _ in range(3):
        grads = gradients(rng)
        before = numpy_values(variables)
        scaled = [g * scale for g in grads]
        if keras.backend.backend() == "jax":
            # Keras's LossScaleOptimizer updates state inside a jax.lax.cond, so
            # on JAX it runs statelessly only (as in a jitted train step).
            optimizer.build(variables)
            new_values, new_state = optimizer.stateless_apply(
                [v.value for v in optimizer.variables], scaled, [v.value for v in variables]
            )
            for v, value in zip(list(variables) + list(optimizer.variables), list(new_values) + list(new_state)):
                v.assign(value)
        else:
            optimizer.apply(tensors(scaled), variables)
    assert int(ops.convert_to_numpy(inner.iterations)) == 3
    assert_last_update_matches(optimizer, variables, before, grads)
    for a, b in zip(pc.preconditioner_of(optimizer, variables), pc.preconditioner_of(inner, variables)):
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))
    assert pc.stability_threshold_of(optimizer) == pc.stability_threshold_of(inner)


def test_lamb_from_zero_weights_takes_keras_ratio_of_one():
    # A zero-initialized bias: Keras's trust ratio is 1 at the first step, which the recovery must see.
    variables = [keras.Variable(np.zeros((3,), "float32")), keras.Variable(np.ones((2, 2), "float32"))]
    optimizer = keras.optimizers.Lamb(0.05)
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=v.shape).astype("float32") for v in variables]
    before = numpy_values(variables)
    optimizer.apply(tensors(grads), variables)
    assert_last_update_matches(optimizer, variables, before, grads)


@pytest.mark.parametrize("name", ["Lion", "Muon", "Ftrl", "ScheduleFreeAdamW"])
def test_optimizers_without_a_diagonal_p_say_why(name):
    optimizer = getattr(keras.optimizers, name)(0.01)
    variables = make_variables()
    optimizer.build(variables)
    reason = {
        "Lion": "sign",
        "Muon": "orthogonalized",
        "Ftrl": "accumulated sums",
        "ScheduleFreeAdamW": "interpolation",
    }[name]
    with pytest.raises(TypeError, match=f"does not apply to keras.optimizers.{name}: .*{reason}"):
        pc.preconditioner_of(optimizer, variables)
    with pytest.raises(TypeError, match="does not apply"):
        pc.stability_threshold_of(optimizer)


def test_unsupported_optimizer_type_error_lists_supported():
    class MyAdam(keras.optimizers.Adam):
        pass

    variables = make_variables()
    for optimizer in (keras.optimizers.Lion(0.01), MyAdam(0.01), keras.optimizers.Ftrl(0.01)):
        optimizer.build(variables)
        for call in (
            lambda: pc.preconditioner_of(optimizer, variables),
            lambda: pc.momentum_of(optimizer, variables),
            lambda: pc.stability_threshold_of(optimizer),
        ):
            with pytest.raises(TypeError) as info:
                call()
            for name in (
                "Adam",
                "AdamW",
                "Nadam",
                "RMSprop",
                "Adagrad",
                "Adafactor",
                "SGD",
                "LossScaleOptimizer",
                "preconditioner",
            ):
                assert name in str(info.value)


def test_missing_gradients_raise_after_the_first_update():
    variables = make_variables()
    optimizer = keras.optimizers.Adafactor(0.05)
    run(optimizer, variables, steps=1)
    with pytest.raises(ValueError, match="gradients"):
        pc.preconditioner_of(optimizer, variables)
    adagrad = keras.optimizers.Adagrad(0.05)
    run(adagrad, variables, steps=1)
    pc.preconditioner_of(adagrad, variables)  # P needs no gradient
    with pytest.raises(ValueError, match="gradients"):
        pc.momentum_of(adagrad, variables)


def test_low_precision_variables_give_float32():
    variables = [keras.Variable(np.ones(s), dtype="bfloat16") for s in SHAPES]
    optimizer = keras.optimizers.Adam(0.05)
    optimizer.apply(tensors([np.full(s, 0.5, "float32") for s in SHAPES]), variables)
    for p in pc.preconditioner_of(optimizer, variables):
        assert keras.backend.standardize_dtype(p.dtype) == "float32"
        assert np.all(np.isfinite(ops.convert_to_numpy(p)))


def test_tf_adaptive_optimizer_is_delegated_to():
    optimizer = tf_adaptive.MSSD(0.05, beta=0.8)
    variables = make_variables()
    run(optimizer, variables, steps=2)
    wrapped = keras.optimizers.LossScaleOptimizer(optimizer)
    for candidate in (optimizer, wrapped):
        for got, own in zip(pc.preconditioner_of(candidate, variables), variables):
            np.testing.assert_array_equal(
                ops.convert_to_numpy(got), ops.convert_to_numpy(optimizer.preconditioner(own))
            )
        assert pc.stability_threshold_of(candidate) == optimizer.stability_threshold()
    if callable(getattr(optimizer, "momentum", None)):
        for got, own in zip(pc.momentum_of(optimizer, variables), variables):
            np.testing.assert_array_equal(ops.convert_to_numpy(got), ops.convert_to_numpy(optimizer.momentum(own)))
    else:
        with pytest.raises(TypeError, match="momentum"):
            pc.momentum_of(optimizer, variables)


def test_any_object_with_the_protocol_is_delegated_to():
    class Protocol:
        def preconditioner(self, variable):
            return ("P", variable)

        def stability_threshold(self):
            return 7.0

    assert pc.preconditioner_of(Protocol(), ["x"]) == [("P", "x")]
    assert pc.stability_threshold_of(Protocol()) == 7.0


@pytest.mark.parametrize(
    "optimizer, expected",
    [
        (keras.optimizers.Adam(beta_2=0.99), tf_adaptive.SecondMoment("ema", 0.99, 0.5)),
        (keras.optimizers.Adam(beta_2=0.9, amsgrad=True), tf_adaptive.SecondMoment("ema", 0.9, 0.5)),
        (keras.optimizers.AdamW(beta_2=0.95), tf_adaptive.SecondMoment("ema", 0.95, 0.5)),
        (keras.optimizers.Nadam(beta_2=0.98), tf_adaptive.SecondMoment("ema", 0.98, 0.5)),
        (keras.optimizers.RMSprop(rho=0.8), tf_adaptive.SecondMoment("ema", 0.8, 0.5)),
        (keras.optimizers.RMSprop(centered=True), tf_adaptive.SecondMoment("none")),
        (keras.optimizers.Adagrad(), tf_adaptive.SecondMoment("sum", None, 0.5)),
        (keras.optimizers.SGD(momentum=0.9), tf_adaptive.SecondMoment("none")),
        (keras.optimizers.Adafactor(), tf_adaptive.SecondMoment("none")),
        (
            keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(beta_2=0.9)),
            tf_adaptive.SecondMoment("ema", 0.9, 0.5),
        ),
    ],
    ids=lambda value: type(value).__name__,
)
def test_second_moment_of_keras_builtins(optimizer, expected):
    moment = pc.second_moment_of(optimizer)
    assert moment.form == expected.form and moment.power == expected.power
    assert moment.beta == pytest.approx(expected.beta, rel=1e-6) if expected.beta else moment.beta is None


def test_second_moment_of_a_tf_adaptive_optimizer_is_its_own_description():
    optimizer = tf_adaptive.Padam(beta_2=0.95, partial=0.125)
    assert pc.second_moment_of(optimizer) == tf_adaptive.SecondMoment("ema", 0.95, 0.125)
    with pytest.raises(TypeError, match="Supported"):
        pc.second_moment_of(keras.optimizers.Lion())
