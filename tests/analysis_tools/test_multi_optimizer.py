"""`analysis_tools` on a `keras.optimizers.MultiOptimizer`: each variable is read off its own sub-optimizer.

A MultiOptimizer updates block B_k of the variables with sub-optimizer k, so
each variable x ∈ B_k moves by x_t - x_{t-1} = -η_t^(k) · u_t^(k) / P_t^(k),
and P of the network is diag(P^(1), ..., P^(K)). The variables here
interleave the blocks, and are read in yet another order, so that answers in
the order of the blocks instead of the caller's would show. The callback test
compares the logged λ1(P⁻¹H) with a dense Hessian from nested gradient tapes
and a P assembled from each sub-optimizer's slots with its own formula.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

import tf_adaptive
from analysis_tools import SharpnessCallback
from analysis_tools import preconditioners as pc
from tf_adaptive import SecondMoment

SHAPES = {"kernel_0": (4, 3), "bias_0": (3,), "kernel_1": (3, 2), "bias_1": (2,)}
READ_ORDER = ["bias_1", "kernel_0", "bias_0", "kernel_1"]
STEPS = 3


def numpy_values(tensors):
    return [np.asarray(ops.convert_to_numpy(t), dtype=np.float64) for t in tensors]


def make_variables(seed=1):
    rng = np.random.default_rng(seed)
    return {name: keras.Variable(rng.normal(size=shape).astype("float32"), name=name) for name, shape in SHAPES.items()}


def three_sub_optimizers():
    """Adam on the kernels, Keras's Nesterov SGD on bias_1, RMSProp (a schedule) on the rest."""
    adam = tf_adaptive.Adam(0.05, epsilon=0.01)
    sgd = keras.optimizers.SGD(0.03, momentum=0.9, nesterov=True)
    rmsprop = tf_adaptive.RMSProp(keras.optimizers.schedules.ExponentialDecay(0.02, 1, 0.5), epsilon=0.01)
    owner = {"kernel_0": adam, "kernel_1": adam, "bias_1": sgd, "bias_0": rmsprop}
    multi = keras.optimizers.MultiOptimizer(
        keras.optimizers.OptimizerMap(default_optimizer=rmsprop, optimizer_map={"kernel_.*": adam, "bias_1": sgd})
    )
    return multi, owner


def trained(multi, variables, steps=STEPS):
    """`steps` updates; returns x before the last one and its gradients, by name."""
    rng = np.random.default_rng(0)
    for _ in range(steps):
        grads = {name: rng.normal(size=shape).astype("float32") for name, shape in SHAPES.items()}
        before = dict(zip(variables, numpy_values(variables.values())))
        multi.apply([ops.convert_to_tensor(g) for g in grads.values()], list(variables.values()))
    return before, grads


def test_each_variable_reads_p_u_and_eta_off_its_own_sub_optimizer():
    multi, owner = three_sub_optimizers()
    variables = make_variables()
    before, grads = trained(multi, variables)
    read = [variables[name] for name in READ_ORDER]
    read_grads = [grads[name] for name in READ_ORDER]
    p = pc.preconditioner_of(multi, read, read_grads)
    u = pc.momentum_of(multi, read, read_grads)
    eta = pc.last_learning_rate_of(multi, read)
    assert len(p) == len(u) == len(eta) == len(READ_ORDER)
    for i, name in enumerate(READ_ORDER):
        sub, variable, g = owner[name], variables[name], grads[name]
        np.testing.assert_array_equal(*numpy_values([p[i], pc.preconditioner_of(sub, [variable], [g])[0]]))
        np.testing.assert_array_equal(*numpy_values([u[i], pc.momentum_of(sub, [variable], [g])[0]]))
        np.testing.assert_array_equal(*numpy_values([eta[i], pc.last_learning_rate_of(sub)]))
        # The identity each variable's update obeys, with its own sub-optimizer's P, u and η.
        x, step = numpy_values([variable, eta[i] * u[i] / p[i]])
        ulp = np.spacing(np.abs(x).astype(np.float32)).astype(np.float64)
        np.testing.assert_allclose(x - before[name], -step, rtol=1e-5, atol=2 * float(np.max(ulp)))
    np.testing.assert_allclose(numpy_values(eta), [0.03, 0.05, 0.02 * 0.5**2, 0.05], rtol=1e-6)


def test_a_loss_scale_optimizer_around_a_multi_optimizer_is_unwrapped():
    multi, _ = three_sub_optimizers()
    variables = make_variables()
    trained(multi, variables)
    wrapped = keras.optimizers.LossScaleOptimizer(multi)
    read = [variables[name] for name in READ_ORDER]
    for a, b in zip(pc.preconditioner_of(wrapped, read), pc.preconditioner_of(multi, read)):
        np.testing.assert_array_equal(*numpy_values([a, b]))


def test_unknown_variables_unbuilt_optimizers_and_a_missing_variable_list_are_refused():
    multi, _ = three_sub_optimizers()
    variables = make_variables()
    for function in (pc.preconditioner_of, pc.momentum_of, pc.last_learning_rate_of):
        with pytest.raises(ValueError, match="not built"):
            function(multi, list(variables.values()))
    trained(multi, variables, steps=1)
    stranger = keras.Variable(np.zeros(3, "float32"), name="stranger")
    for function in (pc.preconditioner_of, pc.momentum_of, pc.last_learning_rate_of, pc.clipped_fraction_of):
        with pytest.raises(ValueError, match="'stranger' is not one the optimizer"):
            function(multi, [variables["kernel_0"], stranger])
    with pytest.raises(ValueError, match="one learning rate per sub-optimizer"):
        pc.last_learning_rate_of(multi)


def built_pair(first, second):
    """A MultiOptimizer with `first` on a kernel and `second` on a bias, built."""
    multi = keras.optimizers.MultiOptimizer(lambda v: first if "kernel" in v.path else second)
    variables = make_variables()
    multi.build([variables["kernel_0"], variables["bias_0"]])
    return multi


@pytest.mark.parametrize(
    "first, second, expected",
    [
        (tf_adaptive.Adam(0.01), tf_adaptive.Adam(0.01, beta_2=0.99, epsilon=1e-3), 38.0 / 0.01),
        (tf_adaptive.Adam(0.01), keras.optimizers.Adam(0.01, beta_2=0.9), 38.0 / 0.01),
        (tf_adaptive.RMSProp(0.25), tf_adaptive.Adam(0.25, beta_1=0.0), 8.0),  # β = 0 is no momentum
        (tf_adaptive.RMSProp(0.25), keras.optimizers.SGD(0.25), 8.0),
        (tf_adaptive.Adam(0.01), tf_adaptive.Adam(0.02), None),  # η differs
        (tf_adaptive.Adam(0.01), tf_adaptive.Adam(0.01, beta_1=0.8), None),  # β differs
        (tf_adaptive.Adam(0.01), tf_adaptive.Nadam(0.01), None),  # EMA heavy ball, EMA Nesterov
        (tf_adaptive.Adam(0.01), tf_adaptive.RMSProp(0.01), None),  # EMA heavy ball, none
        (tf_adaptive.SSD(0.01), tf_adaptive.SSD(0.01), None),  # sign descent has none
    ],
    ids=[
        "adam-adam",
        "adam-keras_adam",
        "rmsprop-adam_beta0",
        "rmsprop-keras_sgd",
        "eta",
        "beta",
        "adam-nadam",
        "adam-rmsprop",
        "ssd",
    ],
)
def test_the_threshold_is_the_sub_optimizers_common_one_or_none(first, second, expected):
    threshold = pc.stability_threshold_of(built_pair(first, second))
    if expected is None:
        assert threshold is None
    else:
        assert threshold == pytest.approx(expected, rel=1e-6)
        assert threshold == pc.stability_threshold_of(first)


def test_equal_thresholds_of_different_recurrences_are_no_common_threshold():
    heavy_ball, rmsprop = tf_adaptive.HeavyBall(0.375, momentum=0.5, ema=False), tf_adaptive.RMSProp(0.25)
    assert heavy_ball.stability_threshold() == rmsprop.stability_threshold() == 8.0  # 3/0.375 = 2/0.25
    assert pc.stability_threshold_of(built_pair(heavy_ball, rmsprop)) is None


def test_only_sub_optimizers_that_update_a_variable_count():
    adam = tf_adaptive.Adam(0.01)
    multi = keras.optimizers.MultiOptimizer(
        keras.optimizers.OptimizerMap(
            default_optimizer=tf_adaptive.SSD(0.01), optimizer_map={"kernel_0": adam, "bias_0": adam}
        )
    )
    assert pc.stability_threshold_of(multi) is None  # unbuilt: the unused default counts
    assert pc.second_moment_of(multi) == SecondMoment(SecondMoment.NONE)
    variables = make_variables()
    multi.build([variables["kernel_0"], variables["bias_0"]])
    assert pc.stability_threshold_of(multi) == pytest.approx(3800.0, rel=1e-6)
    assert pc.second_moment_of(multi) == SecondMoment(SecondMoment.EMA, 0.999, 0.5)
    unbuilt = keras.optimizers.MultiOptimizer(lambda v: adam)  # names its sub-optimizers at build
    with pytest.raises(ValueError, match="not built"):
        pc.stability_threshold_of(unbuilt)


def test_second_moment_of_differing_sub_optimizers_is_none():
    multi = built_pair(tf_adaptive.Adam(0.01), tf_adaptive.Adam(0.01, beta_2=0.99))
    assert pc.second_moment_of(multi) == SecondMoment(SecondMoment.NONE)


def test_clipped_fraction_is_over_all_coordinates_and_none_without_a_clipping_sub_optimizer():
    cclip, adam = tf_adaptive.CClip(0.1, threshold=0.05), tf_adaptive.Adam(0.1)
    multi = keras.optimizers.MultiOptimizer(lambda v: cclip if "kernel" in v.path else adam)
    variables = make_variables()
    trained(multi, variables)
    read = [variables[name] for name in READ_ORDER]
    kernels = [variables["kernel_0"], variables["kernel_1"]]
    clipped = pc.clipped_fraction_of(cclip, kernels)
    assert clipped > 0.0
    assert pc.clipped_fraction_of(multi, read) == pytest.approx(clipped * 18 / 23, rel=1e-6)
    assert pc.clipped_fraction_of(multi, [variables["bias_0"]]) is None


# ------------------------------------------------------------- SharpnessCallback
def _reference_preconditioner(optimizer, variable):
    """P from the optimizer's slots with the formula of SPEC §1.5 (not from `preconditioner_of`)."""
    index = optimizer._get_variable_index(variable)
    v = np.asarray(optimizer._velocities[index].numpy(), np.float64)
    if isinstance(optimizer, tf_adaptive.RMSProp):
        return np.sqrt(v) + optimizer.epsilon
    t = int(optimizer.iterations.numpy())
    beta_1, beta_2 = optimizer.beta_1, optimizer.beta_2
    return (1 - beta_1**t) * (np.sqrt(v / (1 - beta_2**t)) + optimizer.epsilon)


def _dense_hessian(model, x, y):
    """∂²L/∂θ² of the mean squared error over (x, y), by nested gradient tapes, float64."""
    weights = model.trainable_variables
    with tf.GradientTape(persistent=True) as outer:
        with tf.GradientTape() as inner:
            loss = tf.reduce_mean(tf.square(model(x) - y))
        gradient = tf.concat([tf.reshape(g, [-1]) for g in inner.gradient(loss, weights)], axis=0)
    blocks = outer.jacobian(gradient, weights)
    hessian = np.concatenate([np.reshape(b.numpy(), (gradient.shape[0], -1)) for b in blocks], axis=1)
    return 0.5 * (hessian + hessian.T)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="SharpnessCallback runs on TensorFlow")
@pytest.mark.parametrize(
    "jit_compile, make_rest, threshold",
    [
        (False, lambda: tf_adaptive.RMSProp(0.01, epsilon=1e-3), None),
        (True, lambda: tf_adaptive.Adam(0.01, beta_2=0.8, epsilon=1e-3), 38.0 / 0.01),
    ],
    ids=["adam-rmsprop", "adam-adam_jit"],
)
@pytest.mark.slow
def test_sharpness_callback_logs_lambda_1_of_the_block_diagonal_p_inverse_h(jit_compile, make_rest, threshold):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3))
    y = np.tanh(x @ rng.normal(size=(3, 2)))
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((3,), dtype="float64"),
            keras.layers.Dense(4, activation="tanh", dtype="float64"),
            keras.layers.Dense(2, dtype="float64"),
        ]
    )
    # tf_adaptive forms 1 - β2^t in float32; β2 ≤ 0.9 keeps it exact to ~1e-7 at t = 4.
    adam, rest = tf_adaptive.Adam(0.01, beta_2=0.9, epsilon=1e-3), make_rest()
    multi = keras.optimizers.MultiOptimizer(
        keras.optimizers.OptimizerMap(default_optimizer=rest, optimizer_map={".*/kernel": adam})
    )
    model.compile(multi, keras.losses.MeanSquaredError(dtype="float64"), jit_compile=jit_compile)
    callback = SharpnessCallback(
        (x, y), every_n_steps=2, raw=False, tolerance=1e-10, max_iterations=26, warm_start=False
    )
    history = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0, callbacks=[callback])

    assert [r.step for r in callback.records] == [2, 4]
    owner = {id(v): adam if v.path.endswith("kernel") else rest for v in model.trainable_variables}
    assert {id(o) for o in owner.values()} == {id(adam), id(rest)}
    p = np.concatenate([np.ravel(_reference_preconditioner(owner[id(v)], v)) for v in model.trainable_variables])
    scale = 1.0 / np.sqrt(p)
    hessian = _dense_hessian(model, x, y)
    expected = np.linalg.eigvalsh(scale[:, None] * hessian * scale[None, :])[-1]
    assert history.history["preconditioned_sharpness"][-1] == pytest.approx(expected, rel=1e-6)
    if threshold is None:
        assert "stability_threshold" not in history.history and "sharpness_ratio" not in history.history
    else:
        assert history.history["stability_threshold"][-1] == pytest.approx(threshold, rel=1e-6)
        assert history.history["sharpness_ratio"][-1] == pytest.approx(expected / threshold, rel=1e-6)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="UpdateDistributionCallback runs on TensorFlow")
def test_update_distribution_divides_each_coordinate_by_its_sub_optimizers_eta():
    """Two plain SGDs at η = 0.1 (kernels) and 0.4 (biases): Δθ/η is −g, as with one SGD at any η."""
    from analysis_tools import UpdateDistributionCallback

    def run(optimizer):
        keras.utils.set_random_seed(3)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="dense")])
        model.compile(optimizer=optimizer, loss="mse")
        callback = UpdateDistributionCallback(layers=["dense"], steps=1)
        x = np.random.default_rng(0).standard_normal((8, 4)).astype("float32")
        model.fit(x, np.ones((8, 3), "float32"), batch_size=8, epochs=1, verbose=0, callbacks=[callback])
        return callback

    multi = keras.optimizers.MultiOptimizer(
        keras.optimizers.OptimizerMap(keras.optimizers.SGD(0.4), {".*kernel": keras.optimizers.SGD(0.1)})
    )
    split, single = run(multi), run(keras.optimizers.SGD(0.25))
    np.testing.assert_allclose(split.values["dense"][0], single.values["dense"][0], rtol=1e-4, atol=1e-6)
    assert np.isnan(split.records[0].learning_rate) and single.records[0].learning_rate == 0.25
