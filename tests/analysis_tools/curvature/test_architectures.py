"""What the architecture sweep found, fixed at its cause: blocks, unused variables, ops with no second-order rule.

* Per-block discovery (`analysis_tools._blocks.layer_blocks`): a plain
  `Layer` that holds a stack of blocks is opened (KerasHub DeiT's encoder);
  a flat Functional is cut where its graph narrows to one tensor and grouped
  into stages by name (keras.applications ResNet50, DenseNet121,
  InceptionV3); `blocks=` names blocks by hand.
* A trainable variable the forward pass does not use (KerasHub DINOv2's mask
  token) is a direction of zero gradient and zero curvature, named by
  `HessianOperator.unused_variables`, as Keras's `fit` tolerates it.
* A forward pass that stops gradients on weight-dependent values (KerasHub
  D-FINE detaches its refined boxes) is named, with what is then measured:
  the Hessian of the loss with those values held
  (`HessianOperator.stopped_gradients`).
* An op with no second-order rule is reported by name.

Every block result is checked against an independent reference: the
block's operator against the dense Hessian built from
`tf.GradientTape.jacobian` of the gradient, restricted to the block.
"""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import analysis_tools
from analysis_tools import HessianOperator, SharpnessCallback
from analysis_tools._blocks import layer_blocks
from analysis_tools.curvature import model_blocks

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64")


def _names(model):
    return [name for name, _ in layer_blocks(model)]


def _application(constructor, size=32):
    return constructor(weights=None, input_shape=(size, size, 3), classes=4)


# ------------------------------------------------------------------ discovery
def test_resnet50_is_grouped_into_its_stages():
    model = _application(keras.applications.ResNet50)
    assert _names(model) == ["conv1", "conv2", "conv3", "conv4", "conv5", "predictions"]
    blocks = model_blocks(model)
    assert sum(len(v) for v in blocks.values()) == len(model.trainable_variables)
    assert all(v.path.startswith("conv3_") for v in blocks["conv3"])


def test_densenet121_gives_stages_and_transitions_not_its_layers():
    model = _application(keras.applications.DenseNet121)
    assert _names(model) == [
        "conv1",
        "conv2",
        "pool2",
        "conv3",
        "pool3",
        "conv4",
        "pool4",
        "conv5",
        "bn",
        "predictions",
    ]


def test_inception_v3_is_cut_at_its_modules():
    model = _application(keras.applications.InceptionV3, 75)
    names = _names(model)
    assert names[-12:] == [f"mixed{i}" for i in range(11)] + ["predictions"]
    # The stem is a chain of automatically named layers (conv2d_i, batch_normalization_j: the numbers
    # depend on what the process built before): one block each, never merged.
    stem = [layer.name for layer in model.layers if layer.weights][:4]
    assert names[:4] == stem
    assert [name.rstrip("_0123456789") for name in stem] == ["conv2d", "batch_normalization"] * 2


def test_chains_of_automatically_named_layers_stay_one_block_a_layer():
    layers = [keras.layers.Dense(3), keras.layers.Dense(3), keras.layers.Dense(2)]
    model = keras.Sequential([keras.Input((4,))] + layers)
    assert _names(model) == [layer.name for layer in layers]  # dense_i, dense_j, dense_k: never merged


def test_a_block_named_after_a_weightless_layer_is_measured_as_the_block():
    # A unit whose weighted layers share no prefix is named after its output layer, here a weightless Add
    # (as a KerasHub T5 decoder's block is named `decoder_output_dropout`): that name must select the
    # block, not the weightless layer.
    inputs = keras.Input((4,))
    h = keras.layers.Dense(4, name="stem")(inputs)
    mixed = keras.layers.Add(name="mix")(
        [keras.layers.Dense(4, name="left")(h), keras.layers.Dense(4, name="right")(h)]
    )
    outputs = keras.layers.Dense(2, name="head")(mixed)
    model = keras.Model(inputs, outputs)
    assert _names(model) == ["stem", "mix", "head"]
    x, y = np.random.default_rng(0).normal(size=(8, 4)), np.random.default_rng(1).normal(size=(8, 2))
    operator = HessianOperator(model, (x, y), loss="mse", variables="mix")
    assert {v.path for v in operator.variables} == {"left/kernel", "left/bias", "right/kernel", "right/bias"}
    assert HessianOperator(model, (x, y), loss="mse", variables="left").dimension == 20


def test_a_residual_unit_is_one_block_named_by_its_layers_prefix():
    inputs = keras.Input((4,))
    h = keras.layers.Dense(4, name="stem")(inputs)
    branch = keras.layers.Dense(4, name="unit_a")(h)
    branch = keras.layers.Dense(4, name="unit_b")(branch)
    h = keras.layers.Add()([h, branch])
    outputs = keras.layers.Dense(2, name="head")(h)
    model = keras.Model(inputs, outputs)
    assert _names(model) == ["stem", "unit", "head"]


def _deit():
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.DeiTBackbone(
        image_shape=(16, 16, 3),
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        dtype="float64",
    )
    model = keras_hub.models.DeiTImageClassifier(backbone, num_classes=3, preprocessor=None)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(4, 16, 16, 3))
    model(x)
    return model, (x, rng.integers(0, 3, 4))


def test_deit_encoder_a_layer_holding_blocks_is_opened_into_them():
    model, _ = _deit()
    names = _names(model)
    assert "transformer_block_1" in names and "transformer_block_2" in names
    assert "deit_encoder" not in names


# ------------------------------------------------------------- block operators
def _mlp(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((3,), dtype="float64"),
            keras.layers.Dense(4, activation="tanh", dtype="float64", name="first"),
            keras.layers.Dense(3, activation="tanh", dtype="float64", name="second"),
            keras.layers.Dense(2, dtype="float64", name="head"),
        ]
    )
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(10, 3)), rng.integers(0, 2, 10)
    model.compile(optimizer="adam", loss=LOSS)
    return model, (x, y)


def _dense_hessian(model, x, y):
    """H of the mean loss over (x, y) from `tf.GradientTape.jacobian` of the gradient, in the model's order."""
    variables = model.trainable_variables
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            loss = LOSS(y, model(x))
        gradient = tf.concat([tf.reshape(g, [-1]) for g in inner.gradient(loss, variables)], 0)
    rows = outer.jacobian(gradient, variables)
    return tf.concat([tf.reshape(r, [gradient.shape[0], -1]) for r in rows], 1).numpy()


def _positions(model, variables):
    sizes = [int(np.prod(v.shape)) for v in model.trainable_variables]
    offsets = np.cumsum([0] + sizes)
    index = {id(v): i for i, v in enumerate(model.trainable_variables)}
    return np.concatenate([np.arange(offsets[index[id(v)]], offsets[index[id(v)] + 1]) for v in variables])


def test_a_block_operator_shares_the_probe_set_and_is_the_dense_block():
    model, (x, y) = _mlp()
    operator = HessianOperator(model, (x, y), batch_size=4)
    block = operator.block(["second", "head"])
    assert block.probe is operator.probe and block._loss is operator._loss
    assert operator.dimension == sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    selected = _positions(model, block.variables)
    expected = _dense_hessian(model, x, y)[np.ix_(selected, selected)]
    vectors = np.random.default_rng(1).normal(size=(3, block.dimension))
    for v in vectors:
        np.testing.assert_allclose(block.matvec(v).numpy(), expected @ v, rtol=1e-9, atol=1e-12)
    # One traced product serves the network and its blocks.
    operator.matvec(np.ones(operator.dimension))
    assert operator._hvp.experimental_get_tracing_count() == 1
    # P_B^{-1/2} H_BB P_B^{-1/2}, with P given for the whole network and restricted to the block.
    p = [np.full(v.shape, 2.0) + np.arange(np.prod(v.shape)).reshape(v.shape) for v in model.trainable_variables]
    block.set_preconditioner(p)
    scale = 1.0 / np.sqrt(np.concatenate([q.ravel() for q in p])[selected])
    np.testing.assert_allclose(
        block.preconditioned_matvec(vectors[0]).numpy(),
        scale * (expected @ (scale * vectors[0])),
        rtol=1e-9,
        atol=1e-12,
    )
    # A block of a block is the smaller block; a block outside the operator's is refused.
    head = block.block("head")
    inner = _positions(model, model.layers[2].trainable_variables)
    v = vectors[0][: head.dimension]
    np.testing.assert_allclose(
        head.matvec(v).numpy(), _dense_hessian(model, x, y)[np.ix_(inner, inner)] @ v, rtol=1e-9, atol=1e-12
    )
    with pytest.raises(ValueError, match="not in this operator's block"):
        head.block("first")


@pytest.mark.slow
def test_sharpness_callback_blocks_by_name_match_the_dense_blocks():
    model, (x, y) = _mlp()
    callback = SharpnessCallback(
        (x, y),
        every_n_steps=1,
        blocks={"body": ["first", "second"], "head": "head"},
        preconditioned=False,
        tolerance=1e-10,
        max_iterations=40,
        warm_start=False,
        jit_compile=False,
    )
    callback.set_model(model)
    record = callback.measure()
    dense = _dense_hessian(model, x, y)
    for name, layers in (("body", model.layers[:2]), ("head", model.layers[2:])):
        selected = _positions(model, [v for layer in layers for v in layer.trainable_variables])
        top = np.linalg.eigvalsh(dense[np.ix_(selected, selected)])[-1]
        np.testing.assert_allclose(record.values[f"sharpness/{name}"], top, rtol=1e-8)


def test_every_block_runs_in_one_traced_lanczos_loop_and_finds_its_own_spectrum():
    # A block whose Hessian is negative definite: the top eigenvalue must be its own (-2 + the data part),
    # never the zeros of the rest of the network that the shared, network-length loop masks out.
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((3,), dtype="float64"),
            keras.layers.Dense(4, activation="tanh", dtype="float64", name="first"),
            keras.layers.Dense(
                2, dtype="float64", name="head", bias_regularizer=lambda b: -10.0 * tf.reduce_sum(tf.square(b))
            ),
        ]
    )
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(10, 3)), rng.integers(0, 2, 10)
    operator = HessianOperator(model, (x, y), loss=LOSS, jit_compile=False)
    dense = _dense_hessian(model, x, y)
    bias = _positions(model, [model.layers[1].bias])
    dense[np.ix_(bias, bias)] -= 20.0 * np.eye(2)  # the regularizer's Hessian, which the reference leaves out
    blocks = {"first": "first", "head": "head", "head bias": [model.layers[1].bias]}
    solvers = {}
    for name, selection in blocks.items():
        block = operator.block(selection)
        selected = _positions(model, block.variables)
        solver = block.solver(max_iterations=40, k=2, return_vectors=True)
        result = solver(block.matvec, tolerance=1e-10)
        expected = np.linalg.eigvalsh(dense[np.ix_(selected, selected)])[::-1][:2]
        np.testing.assert_allclose(result.eigenvalues.numpy(), expected, rtol=1e-8, atol=1e-10)
        assert result.eigenvectors.shape == (2, block.dimension)
        solvers[name] = solver
    assert np.all(np.linalg.eigvalsh(dense[np.ix_(bias, bias)]) < 0)  # the bias block is negative definite
    shared = {id(solver._shared) for solver in solvers.values()}
    assert len(shared) == 1 and solvers["first"]._shared._function.experimental_get_tracing_count() == 1


def test_sharpness_callback_refuses_empty_blocks():
    with pytest.raises(ValueError, match="must not be empty"):
        SharpnessCallback(([0.0], [0.0]), blocks={})
    with pytest.raises(ValueError, match="non-empty list"):
        SharpnessCallback(([0.0], [0.0]), blocks=[])


def test_variables_accepts_a_block_name_of_layer_blocks():
    inputs = keras.Input((3,))
    h = keras.layers.Dense(3, activation="tanh", name="conv2_a")(inputs)  # float32: names only
    h = keras.layers.Dense(3, activation="tanh", name="conv2_b")(h)
    outputs = keras.layers.Dense(2, name="head")(h)
    model = keras.Model(inputs, outputs)
    assert _names(model) == ["conv2", "head"]
    x, y = np.random.default_rng(0).normal(size=(6, 3)), np.arange(6) % 2
    by_block = HessianOperator(model, (x, y), loss=LOSS, variables="conv2", jit_compile=False)
    by_layers = HessianOperator(model, (x, y), loss=LOSS, variables=["conv2_a", "conv2_b"], jit_compile=False)
    assert [v.path for v in by_block.variables] == [v.path for v in by_layers.variables]


@pytest.mark.slow
def test_deit_per_block_sharpness_in_fit():
    model, (x, y) = _deit()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=LOSS, jit_compile=False)
    callback = SharpnessCallback(
        (x, y), every_n_steps=1, blocks=True, preconditioned=False, tolerance=1e-3, warm_start=False
    )
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[callback])
    blocks = {key for key in history.history if key.startswith("sharpness/")}
    assert {"sharpness/transformer_block_1", "sharpness/transformer_block_2"} <= blocks
    for key in blocks:
        assert np.isfinite(history.history[key][-1])
        assert history.history[key][-1] <= history.history["sharpness"][-1] * (1 + 1e-2)


# ------------------------------------------------------------ unused variables
def _dinov2():
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.DINOV2Backbone(
        patch_size=8,
        num_layers=1,
        hidden_dim=8,
        num_heads=2,
        intermediate_dim=16,
        image_shape=(16, 16, 3),
        position_embedding_shape=(16, 16, 3),
        dtype="float64",
    )
    inputs = keras.Input((16, 16, 3), dtype="float64")
    features = keras.layers.GlobalAveragePooling1D(dtype="float64")(backbone(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, dtype="float64")(features))
    model.compile(optimizer="adam", loss=LOSS, jit_compile=False)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(4, 16, 16, 3))
    return model, (x, rng.integers(0, 3, 4))


@pytest.mark.slow
def test_dinov2_mask_token_is_a_zero_curvature_direction_named_in_the_result():
    model, data = _dinov2()
    with pytest.warns(UserWarning, match="mask_token"):
        operator = HessianOperator(model, data)
        assert operator.unused_variables == ["embeddings/mask_token"]
        gradient, _ = operator.gradient()
    used = [v for v in model.trainable_variables if not v.path.endswith("mask_token")]
    reference = HessianOperator(model, data, variables=used)
    assert reference.unused_variables == []
    unused = _positions(model, [v for v in model.trainable_variables if v.path.endswith("mask_token")])
    np.testing.assert_array_equal(gradient.numpy()[unused], 0.0)
    v = np.random.default_rng(2).normal(size=operator.dimension)
    product = operator.matvec(v).numpy()
    np.testing.assert_array_equal(product[unused], 0.0)
    kept = np.setdiff1d(np.arange(operator.dimension), unused)
    np.testing.assert_allclose(product[kept], reference.matvec(v[kept]).numpy(), rtol=1e-10, atol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        top = analysis_tools.sharpness(operator, tolerance=1e-8)
        np.testing.assert_allclose(top, analysis_tools.sharpness(reference, tolerance=1e-8), rtol=1e-6)


@pytest.mark.slow
def test_dinov2_gradient_noise_and_callback_run_with_the_unused_token():
    model, (x, y) = _dinov2()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        noise = analysis_tools.gradient_noise(model, (x, y), batch_size=2)
        assert np.isfinite(noise.noise_scale)
        callback = SharpnessCallback((x, y), every_n_steps=1, tolerance=1e-3, warm_start=False, jit_compile=False)
        history = model.fit(x, y, batch_size=2, epochs=1, verbose=0, callbacks=[callback])
    assert np.isfinite(history.history["preconditioned_sharpness"][-1])


# ----------------------------------------------------------- stopped gradients
class DetachedScale(keras.layers.Layer):
    """x·w·sg(w) + sg(x): one stop on a weight-dependent value, one on data."""

    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1],), initializer="ones", dtype="float64")

    def call(self, x):
        return x * self.w * keras.ops.stop_gradient(self.w) + keras.ops.stop_gradient(x)


def _detached_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,), dtype="float64")
    model = keras.Model(inputs, keras.layers.Dense(1, dtype="float64")(DetachedScale(dtype="float64")(inputs)))
    rng = np.random.default_rng(0)
    model.layers[1].w.assign(rng.uniform(0.5, 1.5, 3))
    return model, (rng.normal(size=(8, 3)), rng.normal(size=(8, 1)))


def test_a_stopped_gradient_is_named_and_the_hessian_is_that_of_the_loss_with_it_held():
    model, (x, y) = _detached_model()
    with pytest.warns(UserWarning, match=r"stops gradients \(stop_gradient\) on 1 value that depends"):
        operator = HessianOperator(model, (x, y), loss="mse")
        assert len(operator.stopped_gradients) == 1 and "detached_scale" in operator.stopped_gradients[0]
        dense = np.stack([operator.matvec(e).numpy() for e in np.eye(operator.dimension)])
    # Reference: the loss with sg(w) replaced by the constant w₀, differentiated twice by a tape.
    held = tf.constant(model.layers[1].w.numpy())
    values = [tf.constant(v.numpy()) for v in operator.variables]

    def loss(flat):
        w, kernel, bias = tf.split(flat, [3, 3, 1])
        hidden = x * w * held + x
        return tf.reduce_mean((hidden @ tf.reshape(kernel, [3, 1]) + bias - y) ** 2)

    flat = tf.concat([tf.reshape(v, [-1]) for v in values], 0)
    with tf.GradientTape() as outer:
        outer.watch(flat)
        with tf.GradientTape() as inner:
            inner.watch(flat)
            value = loss(flat)
        gradient = inner.gradient(value, flat)
    reference = outer.jacobian(gradient, flat).numpy()
    np.testing.assert_allclose(dense, reference, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dense, dense.T, rtol=1e-12, atol=1e-12)
    # Finite differences of the gradient move the stopped value: they see another matrix.
    epsilon, start = 1e-6, model.layers[1].w.numpy()
    model.layers[1].w.assign(start + epsilon * np.eye(3)[0])
    plus = operator.gradient()[0].numpy()
    model.layers[1].w.assign(start - epsilon * np.eye(3)[0])
    minus = operator.gradient()[0].numpy()
    model.layers[1].w.assign(start)
    assert np.abs((plus - minus) / (2 * epsilon) - dense[0]).max() > 1e-3 * np.abs(dense[0]).max()


def test_a_stop_on_data_alone_is_not_reported():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,), dtype="float64")
    detached = keras.layers.Lambda(lambda t: keras.ops.stop_gradient(t) * 2.0, dtype="float64")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, dtype="float64")(detached))
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        operator = HessianOperator(model, (rng.normal(size=(8, 3)), rng.normal(size=(8, 1))), loss="mse")
        assert operator.stopped_gradients == []
        operator.matvec(np.ones(operator.dimension))


# ------------------------------------------------------------- clear failures
class _FractionalPool(keras.layers.Layer):
    def call(self, x):
        return tf.nn.fractional_max_pool(x, [1.0, 1.5, 1.5, 1.0], pseudo_random=True, seed=1)[0]


@pytest.mark.parametrize("jit_compile", [True, False])
def test_an_op_without_a_second_order_rule_is_named(jit_compile):
    model = keras.Sequential(
        [
            keras.Input((6, 6, 1)),
            keras.layers.Conv2D(2, 3, padding="same"),
            _FractionalPool(),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )
    x, y = np.random.default_rng(0).uniform(size=(4, 6, 6, 1)).astype("float32"), np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"no gradient rule for the op FractionalMaxPoolGrad.*RegisterGradient"):
        analysis_tools.sharpness(
            model, (x, y), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=jit_compile
        )


def _max_pool_model(dtype):
    model = keras.Sequential(
        [
            keras.Input((6, 6, 1), dtype=dtype),
            keras.layers.Conv2D(2, 3, dtype=dtype),
            keras.layers.MaxPooling2D(2, dtype=dtype),
            keras.layers.Flatten(dtype=dtype),
            keras.layers.Dense(2, dtype=dtype),
        ]
    )
    x = np.random.default_rng(0).uniform(size=(4, 6, 6, 1)).astype(dtype)
    return model, (x, np.array([0, 1, 0, 1]))


@pytest.mark.slow
def test_an_op_xla_cannot_compile_in_this_dtype_is_named():
    # TensorFlow's XLA bridge registers MaxPoolGradGrad for float32 only: a float64 product with
    # max pooling cannot be compiled, and XLA says so only when the compiled function first runs.
    model, data = _max_pool_model("float64")
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    operator = analysis_tools.HessianOperator(model, data, loss=loss)
    expected = r"XLA has no kernel for the op MaxPoolGradGrad for double on XLA_CPU_JIT.*jit_compile=False"
    with pytest.raises(ValueError, match=expected):
        operator.matvec(tf.ones([operator.dimension], tf.float64))
    with pytest.raises(ValueError, match=expected):
        analysis_tools.sharpness(operator, tolerance=1e-3)
    # What the message says to do works, and float32 compiles.
    uncompiled = analysis_tools.HessianOperator(model, data, loss=loss, jit_compile=False)
    assert np.isfinite(analysis_tools.sharpness(uncompiled, tolerance=1e-3))
    model32, data32 = _max_pool_model("float32")
    assert np.isfinite(analysis_tools.sharpness(model32, data32, loss=loss, tolerance=1e-3))
