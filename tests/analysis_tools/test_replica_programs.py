"""What runs on the replicas is TPU-shaped: float32, static shapes, traced once; padding is exact.

Under a MirroredStrategy over two logical CPUs, with a 100-example probe set
in global batches of 33 (shares of 17; the last batch has 1 example, so one
replica's share of it is all padding), every `ReplicaProgram` that
analysis_tools runs (products, gradients, diagonals, noise; in and out of
`fit`; arrays and `tf.data`) is walked: no float64 op, no tensor of unknown
size, one trace. The results are checked against single-device results and
a dense float64 Hessian built with `tf.GradientTape.jacobian`.
"""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2

import analysis_tools
from analysis_tools._probe import ReplicaProgram
from analysis_tools.noise.sampling import _NoiseSampler

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _strategy():
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())


def _data(n=100, dtype="float32", seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 5)).astype(dtype), rng.integers(0, 3, size=n)


def _model(dtype="float32", seed=0, batch_norm=False):
    keras.utils.set_random_seed(seed)
    layers = [
        keras.Input((5,), dtype=dtype),
        keras.layers.Dense(6, activation="tanh", kernel_regularizer=keras.regularizers.L2(1e-3), dtype=dtype),
    ]
    if batch_norm:
        layers.append(keras.layers.BatchNormalization(dtype=dtype))
    layers.append(keras.layers.Dense(3, dtype=dtype))
    model = keras.Sequential(layers)
    model.compile(keras.optimizers.SGD(0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype=dtype))
    return model


def replica_programs(root, seen=None, depth=0):
    """Every `ReplicaProgram` reachable from `root` through analysis_tools objects, dicts and lists."""
    seen = set() if seen is None else seen
    if id(root) in seen or depth > 8:
        return []
    seen.add(id(root))
    if isinstance(root, ReplicaProgram):
        return [root]
    if isinstance(root, dict):
        children = list(root.values())
    elif isinstance(root, (list, tuple)):
        children = list(root)
    else:
        children = list(getattr(root, "__dict__", {}).values())
    found = []
    for child in children:
        if isinstance(child, (ReplicaProgram, dict, list, tuple)) or type(child).__module__.startswith(
            "analysis_tools"
        ):
            found += replica_programs(child, seen, depth + 1)
    return found


def _is_double(attr):
    return (
        attr.type == types_pb2.DT_DOUBLE
        or types_pb2.DT_DOUBLE in attr.list.type
        or attr.tensor.dtype == types_pb2.DT_DOUBLE
    )


def audit(program):
    """(traces, float64 nodes (with the nested functions'), tensors of unknown size) of a program's one trace."""
    graph = program.concrete.graph
    graph_def = graph.as_graph_def()
    nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
    doubles = [n.name for n in nodes if any(_is_double(a) for a in n.attr.values())]
    unknown = [
        f"{op.type} {op.name} {t.shape}"
        for op in graph.get_operations()
        for t in op.outputs
        if not t.shape.is_fully_defined()
    ]
    return program.tracing_count, doubles, unknown


def _assert_tpu_shaped(programs, expected_names):
    programs = [p for p in programs if p.concrete is not None]  # built but never run: nothing traced
    names = sorted({p.name for p in programs})
    assert set(expected_names) <= set(names), names
    for program in programs:
        traces, doubles, unknown = audit(program)
        assert traces == 1, f"{program.name}: traced {traces} times"
        assert not doubles, f"{program.name}: float64 in {doubles[:5]}"
        assert not unknown, f"{program.name}: unknown sizes {unknown[:5]}"
        inputs = program.concrete.inputs
        assert all(t.shape.is_fully_defined() for t in inputs), f"{program.name}: dynamic inputs"


@pytest.mark.parametrize("source", ["arrays", "dataset"])
@pytest.mark.slow
def test_every_replica_program_is_float32_with_static_shapes_and_traced_once(source):
    x, y = _data()
    strategy = _strategy()
    with strategy.scope():
        model = _model()
    data = (x, y) if source == "arrays" else tf.data.Dataset.from_tensor_slices((x, y)).batch(33)
    hessian = analysis_tools.HessianOperator(model, data, batch_size=33)
    vector = tf.random.stateless_normal([hessian.dimension], [1, 2], dtype=tf.float64)
    for _ in range(3):
        hessian.matvec(vector)
        hessian.matvec(tf.cast(vector, tf.float32))  # a float32 basis shares the program
    hessian.gradient()
    ggn = analysis_tools.GGNOperator(model, data, batch_size=33)
    ggn.matvec(vector)
    fisher = analysis_tools.curvature.FisherOperator(model, data, batch_size=33, include_regularization=False)
    fisher.matvec(vector)
    fisher.per_example_diagonal()
    blocks = analysis_tools.curvature.BlockDiagonalOperator(hessian, analysis_tools.curvature.model_blocks(model))
    blocks.matvec(tf.ones([blocks.dimension], tf.float64))
    blocks.matvec(tf.ones([blocks.dimension], tf.float64))
    sampler = _NoiseSampler(model, None, "train", True, True, True)
    noise_data = (x, y) if source == "arrays" else tf.data.Dataset.from_tensor_slices((x, y)).batch(33)
    sampler.sample(noise_data, 33, 4, "full", 33, 0, False, False, 0)  # dataset: 33, 33, 33 and 1 examples
    programs = replica_programs([hessian, ggn, fisher, blocks, sampler])
    _assert_tpu_shaped(
        programs,
        [
            "a Hessian-vector product",
            "the gradient over the probe set",
            "a Gauss-Newton-vector product",
            "a Fisher-vector product",
            "the per-example diagonal of its Fisher",
            "a Hessian-vector product per block",
            "a mini-batch gradient",
        ],
    )
    assert hessian.examples_per_replica == [52, 48]  # batches of 33, 33, 33, 1 in shares of 17: 17·3 + 1, 16·3 + 0


@pytest.mark.slow
def test_the_callbacks_replica_programs_in_fit_are_float32_with_static_shapes_and_traced_once():
    x, y = _data()
    strategy = _strategy()
    with strategy.scope():
        model = _model()
    sharpness = analysis_tools.SharpnessCallback((x, y), batch_size=33, every_n_steps=3, max_iterations=10)
    noise = analysis_tools.GradientNoiseCallback((x, y), batch_size=33, num_batches=3, every_n_epochs=1)
    model.fit(x, y, batch_size=20, epochs=2, verbose=0, callbacks=[sharpness, noise])
    assert len(sharpness.records) >= 3 and len(noise.records) >= 2
    _assert_tpu_shaped(
        replica_programs([sharpness, noise]),
        ["a Hessian-vector product", "a mini-batch gradient", "the gradient over the probe set"],
    )


@pytest.mark.slow
def test_padded_and_split_products_equal_the_dense_float64_hessian_and_the_single_device_ones():
    x, y = _data(dtype="float64")
    strategy = _strategy()
    with strategy.scope():
        model = _model("float64")
    operator = analysis_tools.HessianOperator(model, (x, y), batch_size=33)  # the model's strategy
    single = analysis_tools.HessianOperator(model, (x, y), strategy=tf.distribute.get_strategy())
    variables = model.trainable_variables

    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            value = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64")(y, model(x))
            value += tf.add_n(model.losses)
        gradient = tf.concat([tf.reshape(g, [-1]) for g in inner.gradient(value, variables)], 0)
    dense = tf.concat([tf.reshape(j, [gradient.shape[0], -1]) for j in outer.jacobian(gradient, variables)], 1)
    vector = tf.random.stateless_normal([operator.dimension], [3, 4], dtype=tf.float64)
    np.testing.assert_allclose(
        operator.matvec(vector).numpy(), tf.linalg.matvec(dense, vector).numpy(), rtol=1e-10, atol=1e-12
    )
    np.testing.assert_allclose(operator.matvec(vector).numpy(), single.matvec(vector).numpy(), rtol=1e-12, atol=1e-14)
    flat, value_ = operator.gradient()
    np.testing.assert_allclose(flat.numpy(), gradient.numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(float(value_), float(value), rtol=1e-12)
    assert operator.examples_per_replica == [52, 48]


@pytest.mark.slow
def test_float32_padded_products_under_the_strategy_equal_single_device_ones_to_rounding():
    x, y = _data()
    strategy = _strategy()
    with strategy.scope():
        model = _model()
    vector = tf.random.stateless_normal([model.count_params()], [5, 6], dtype=tf.float64)
    distributed = analysis_tools.GGNOperator(model, (x, y), batch_size=33).matvec(vector).numpy()
    single = (
        analysis_tools.GGNOperator(model, (x, y), batch_size=100, strategy=tf.distribute.get_strategy())
        .matvec(vector)
        .numpy()
    )
    np.testing.assert_allclose(distributed, single, rtol=1e-5, atol=1e-6 * np.abs(single).max())


def test_batch_statistics_with_padding_are_refused_with_what_to_do():
    x, y = _data()
    model = _model(batch_norm=True)
    with pytest.raises(ValueError, match='BatchNormalization.*mode="inference"'):
        analysis_tools.HessianOperator(model, (x, y), batch_size=33)
    analysis_tools.HessianOperator(model, (x, y), batch_size=33, mode="inference")  # moving statistics: fine
    analysis_tools.HessianOperator(model, (x, y), batch_size=25)  # no padding: fine
    with pytest.raises(ValueError, match="BatchNormalization"):
        analysis_tools.gradient_noise(model, tf.data.Dataset.from_tensor_slices((x, y)).batch(30), num_batches=4)


def test_a_noise_batch_larger_than_the_first_is_refused_with_its_size():
    x, y = _data()
    model = _model()
    growing = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .take(30)
        .batch(10)
        .concatenate(tf.data.Dataset.from_tensor_slices((x, y)).batch(20))
    )
    with pytest.raises(ValueError, match="`data`: A batch of 20 examples is larger than the 10"):
        analysis_tools.gradient_noise(model, growing, num_batches=4)


def test_a_loss_that_returns_one_value_per_batch_cannot_be_padded():
    x, y = _data()
    model = _model()

    def batch_mean(y_true, y_pred):
        return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True))

    with pytest.raises(ValueError, match="one value for the whole batch"):
        analysis_tools.HessianOperator(model, (x, y), loss=batch_mean, batch_size=33).gradient()
    exact = analysis_tools.HessianOperator(model, (x, y), loss=batch_mean, batch_size=50).gradient()[1]
    per_example = analysis_tools.HessianOperator(
        model,
        (x, y),
        loss=lambda t, p: keras.losses.sparse_categorical_crossentropy(t, p, from_logits=True),
        batch_size=33,
    ).gradient()[1]
    np.testing.assert_allclose(float(per_example), float(exact), rtol=1e-6)


def test_a_replica_program_refuses_a_second_signature_instead_of_compiling_again():
    program = ReplicaProgram(lambda a: (2.0 * a,), True, "a test program")
    program(tf.ones([4]))
    program(tf.zeros([4]))
    with pytest.raises(ValueError, match="a test program.*traced and compiled again"):
        program(tf.ones([5]))
    assert program.tracing_count == 1


@pytest.mark.slow
def test_each_replica_program_is_xla_compiled_once_per_device():
    # XLA's compilations are counted from its own log, which must be switched on before TensorFlow loads.
    script = textwrap.dedent("""
        import numpy as np, tensorflow as tf
        tf.config.set_logical_device_configuration(
            tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)
        import analysis_tools
        from tests.analysis_tools.test_replica_programs import _data, _model, _strategy, replica_programs
        x, y = _data()
        strategy = _strategy()
        with strategy.scope():
            model = _model()
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(33)
        operator = analysis_tools.HessianOperator(model, data)
        analysis_tools.hessian_eigenvalues(operator, max_iterations=8)
        analysis_tools.hessian_eigenvalues(operator, max_iterations=8,
                                          preconditioner=[np.full(v.shape, 2.0) for v in model.trainable_variables])
        operator.gradient()
        analysis_tools.gradient_noise(model, data, num_batches=4)
        print("PROGRAMS", len(replica_programs([operator])) + 2)
    """)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0", TF_CPP_VMODULE="device_compiler=1", PYTHONPATH=ROOT)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    programs = int(result.stdout.split("PROGRAMS")[1])
    compilations = result.stderr.count("Compilation of XLA executable")
    assert programs == 4  # the operator's product and gradient; the sampler's mini-batch and full gradients
    assert compilations == 2 * programs, result.stderr[-3000:]


def test_a_bfloat16_models_rounding_asymmetry_does_not_warn_but_a_float32_models_threshold_stays():
    import warnings

    from analysis_tools.curvature.lanczos import ASYMMETRY_WARNING, SIXTEEN_BIT_ASYMMETRY_WARNING

    x, y = _data()
    float32 = analysis_tools.HessianOperator(_model(), (x, y))
    assert float32.solver(False, 10).asymmetry_warning == ASYMMETRY_WARNING
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = _model()
    finally:
        keras.config.set_dtype_policy("float32")
    operator = analysis_tools.HessianOperator(model, (x, y))
    assert operator.solver(False, 10).asymmetry_warning == SIXTEEN_BIT_ASYMMETRY_WARNING
    preconditioned = operator.preconditioned([np.full(v.shape, 2.0) for v in model.trainable_variables])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rounding-level asymmetry: no "report it"
        for measured in (operator, preconditioned):  # P⁻¹H shares the operator's solver
            result = analysis_tools.hessian_eigenvalues(measured, max_iterations=30)
            assert np.isfinite(result.eigenvalues.numpy()).all()
