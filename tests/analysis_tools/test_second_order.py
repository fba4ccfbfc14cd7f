"""Second order through the ops TensorFlow mishandles: the slice under XLA, and moments.

Each Hessian-vector product of `HessianOperator` is compared with central
differences of first-order gradients, (g(θ+εv) − g(θ−εv)) / 2ε, in float64:
no second-order rule enters the reference.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import analysis_tools
from analysis_tools._second_order import ExactMoments
from tests.analysis_tools import zoo


class _SlicedPositions(keras.layers.Layer):
    """x + a learned position table sliced to the sequence length (as KerasHub's PositionEmbedding)."""

    def build(self, shape):
        self.table = self.add_weight(shape=(16, shape[-1]), initializer="random_normal", name="table")

    def call(self, x):
        length, width = keras.ops.shape(x)[-2], keras.ops.shape(x)[-1]
        return x + keras.ops.slice(self.table, (0, 0), (length, width))


def _model(normalization):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, 4), dtype="float64")
    hidden = _SlicedPositions(dtype="float64")(inputs)
    hidden = keras.layers.Dense(6, activation="tanh", dtype="float64")(hidden)
    if normalization is not None:
        hidden = normalization(hidden)
    outputs = keras.layers.Dense(3, dtype="float64")(keras.layers.Flatten(dtype="float64")(hidden))
    model = keras.Model(inputs, outputs)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64"))
    rng = np.random.default_rng(0)
    return model, (rng.standard_normal((8, 5, 4)), rng.integers(0, 3, 8).astype("int32"))


def _finite_difference(operator, vector, epsilon=1e-5):
    start = [v.numpy() for v in operator.variables]

    def gradient_at(step):
        for variable, value, direction in zip(operator.variables, start, operator.unflatten(step * vector)):
            variable.assign(value + direction.numpy())
        return operator.gradient()[0].numpy()

    difference = (gradient_at(epsilon) - gradient_at(-epsilon)) / (2.0 * epsilon)
    for variable, value in zip(operator.variables, start):
        variable.assign(value)
    return difference


NORMALIZATIONS = {
    "none": None,
    "layer_norm": lambda: keras.layers.LayerNormalization(dtype="float64"),
    "group_norm": lambda: keras.layers.GroupNormalization(groups=2, dtype="float64"),
    "batch_norm": lambda: keras.layers.BatchNormalization(dtype="float64"),
}


@pytest.mark.parametrize("jit_compile", [True, False])
@pytest.mark.parametrize("kind", NORMALIZATIONS)
@pytest.mark.slow
def test_hessian_vector_product_matches_central_differences(kind, jit_compile):
    make = NORMALIZATIONS[kind]
    model, data = _model(None if make is None else make())
    operator = analysis_tools.HessianOperator(model, data, jit_compile=jit_compile)
    vector = tf.constant(np.random.default_rng(1).standard_normal(operator.dimension))
    product = operator.matvec(vector).numpy()
    reference = _finite_difference(operator, vector)
    assert np.linalg.norm(product - reference) <= 1e-7 * np.linalg.norm(reference)


def test_stop_gradient_moments_give_a_wrong_second_derivative_and_exact_moments_do_not():
    """What `ExactMoments` fixes: tf.nn.moments' second derivative, and that values are unchanged."""
    x = tf.constant(np.random.default_rng(2).standard_normal((3, 7)))
    v = tf.constant(np.random.default_rng(3).standard_normal((3, 7)))

    def second_derivative():
        with tf.GradientTape() as outer:
            outer.watch(x)
            with tf.GradientTape() as inner:
                inner.watch(x)
                variance = keras.ops.moments(x, axes=[1])[1]
                value = tf.reduce_sum(variance)
            gradient = tf.reduce_sum(inner.gradient(value, x) * v)
        return outer.gradient(gradient, x).numpy(), variance.numpy()

    # Σ_rows var(x_row): its Hessian is (2/n)(I − 11ᵀ/n) per row.
    n = x.shape[1]
    exact = (2.0 / n) * (v.numpy() - v.numpy().mean(axis=1, keepdims=True))
    plain, plain_variance = second_derivative()
    assert np.max(np.abs(plain - exact)) > 1e-2  # TensorFlow's stop-gradient drops the −11ᵀ/n term
    with ExactMoments():
        fixed, fixed_variance = second_derivative()
    np.testing.assert_allclose(fixed, exact, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(fixed_variance, plain_variance)
    # The switch is undone on exit.
    np.testing.assert_allclose(second_derivative()[0], plain, rtol=0, atol=0)


RESIZINGS = {
    "bilinear": lambda: keras.layers.UpSampling2D(2, interpolation="bilinear", dtype="float64"),
    "nearest": lambda: keras.layers.Resizing(7, 7, interpolation="nearest", dtype="float64"),
    "bicubic": lambda: keras.layers.Resizing(7, 7, interpolation="bicubic", dtype="float64"),
}


def _resizing_model(resizing):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, 5, 2), dtype="float64")
    hidden = keras.layers.Conv2D(2, 3, padding="same", activation="tanh", dtype="float64")(inputs)
    hidden = resizing()(hidden)
    hidden = keras.layers.Conv2D(2, 3, activation="tanh", dtype="float64")(hidden)
    outputs = keras.layers.Dense(3, dtype="float64")(keras.layers.Flatten(dtype="float64")(hidden))
    model = keras.Model(inputs, outputs)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64"))
    rng = np.random.default_rng(1)
    return model, (rng.standard_normal((4, 5, 5, 2)), rng.integers(0, 3, 4).astype("int32"))


@pytest.mark.parametrize("differentiation", ["reverse_over_reverse", "forward_over_reverse"])
@pytest.mark.parametrize("kind", sorted(RESIZINGS))
def test_resizing_has_an_exact_and_symmetric_hessian(kind, differentiation):
    # TensorFlow declares ResizeBilinearGrad not differentiable: the second-order term through a bilinear
    # upsampling was silently zero, and H v was not even symmetric. The other resizes had no rule at all.
    model, data = _resizing_model(RESIZINGS[kind])
    operator = analysis_tools.HessianOperator(model, data, differentiation=differentiation, jit_compile=False)
    rng = np.random.default_rng(2)
    u, v = rng.standard_normal(operator.dimension), rng.standard_normal(operator.dimension)
    hu, hv = operator.matvec(tf.constant(u)).numpy(), operator.matvec(tf.constant(v)).numpy()
    # TensorFlow's bilinear and bicubic resizes compute in float32 even in a float64 model (their ops
    # return float32), so central differences agree to about 5e-5 at best (TF's rule: by O(1)); nearest
    # neighbour is a float64 gather, exact to rounding.
    errors = zoo.finite_difference_errors(operator, None, v, epsilons=(1e-3, 1e-4, 1e-6), expected=hv)
    assert min(errors.values()) < (1e-8 if kind == "nearest" else 2e-4), errors
    np.testing.assert_allclose(np.dot(u, hv), np.dot(v, hu), rtol=1e-12 if kind == "nearest" else 1e-6)


@pytest.mark.parametrize("kind", ["bilinear", "nearest"])
@pytest.mark.slow
def test_resizing_rule_compiles_with_xla(kind):
    model, data = _resizing_model(RESIZINGS[kind])
    compiled = analysis_tools.HessianOperator(model, data, jit_compile=True)
    plain = analysis_tools.HessianOperator(model, data, jit_compile=False)
    v = tf.constant(np.random.default_rng(3).standard_normal(compiled.dimension))
    a, b = compiled.matvec(v).numpy(), plain.matvec(v).numpy()
    # The bilinear resize runs in float32 either way, computed differently by XLA.
    assert np.linalg.norm(a - b) / np.linalg.norm(b) < (1e-12 if kind == "nearest" else 1e-6)


def test_the_gradient_of_a_float64_resizing_model_compiles_with_xla():
    # TensorFlow's ResizeBilinearGrad under XLA, in a float64 model whose resize computes in float32, mixes
    # the two precisions and fails XLA's verifier (a KerasHub SegFormer's gradient); the exact rule compiles.
    model, data = _resizing_model(RESIZINGS["bilinear"])
    compiled, plain = (analysis_tools.HessianOperator(model, data, jit_compile=jit) for jit in (True, False))
    gradient, loss = compiled.gradient()
    expected, expected_loss = plain.gradient()
    # The resize runs in float32 either way, computed differently by XLA.
    assert np.linalg.norm(gradient.numpy() - expected.numpy()) / np.linalg.norm(expected.numpy()) < 1e-6
    assert float(loss) == pytest.approx(float(expected_loss), rel=1e-6)


def test_bicubic_resizing_under_xla_is_named_with_what_to_do():
    # XLA has no ResizeBicubic kernel at all, not even for the forward pass.
    model, data = _resizing_model(RESIZINGS["bicubic"])
    operator = analysis_tools.HessianOperator(model, data, jit_compile=True)
    with pytest.raises(ValueError, match=r"XLA has no kernel for the op ResizeBicubic.*jit_compile=False"):
        operator.gradient()
    assert np.isfinite(analysis_tools.HessianOperator(model, data, jit_compile=False).gradient()[1])


def test_resize_rules_are_restored_outside_a_product():
    from tensorflow.python.framework import ops

    before = {name: ops._gradient_registry._registry.get(name) for name in ("ResizeBilinear", "ResizeNearestNeighbor")}
    model, data = _resizing_model(RESIZINGS["bilinear"])
    analysis_tools.HessianOperator(model, data, jit_compile=False).matvec(tf.ones([model.count_params()], tf.float64))
    assert {name: ops._gradient_registry._registry.get(name) for name in before} == before


@pytest.mark.slow
def test_tensorflows_resize_rule_would_be_caught_as_asymmetric(monkeypatch):
    # With TensorFlow's own rules (ours removed), Lanczos sees an operator that is not symmetric and says so.
    import analysis_tools._second_order as second_order

    monkeypatch.setattr(second_order, "_RESIZE_RULES", {})
    model, data = _resizing_model(RESIZINGS["bilinear"])
    operator = analysis_tools.HessianOperator(model, data, jit_compile=False)
    with pytest.warns(UserWarning, match="not symmetric"):
        analysis_tools.sharpness(operator, tolerance=1e-8)
    monkeypatch.undo()
    exact = analysis_tools.HessianOperator(model, data, jit_compile=False)
    solver = exact.solver()
    solver(exact.matvec, tolerance=1e-8)
    assert solver.asymmetry < 1e-6


def test_a_float32_loss_on_a_float64_model_is_warned_about():
    # A Keras Loss casts y_pred to its own dtype (float32 by default): the float64 model's curvature would
    # silently be float32-accurate.
    model, data = _model(None)
    with pytest.warns(UserWarning, match="computes in float32.*dtype='float64'"):
        coarse = analysis_tools.HessianOperator(
            model, data, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False
        )
    exact = analysis_tools.HessianOperator(model, data, jit_compile=False)  # compiled with a float64 loss
    rng = np.random.default_rng(0)
    u, v = rng.standard_normal(exact.dimension), rng.standard_normal(exact.dimension)

    def asymmetry(operator):
        hu, hv = operator.matvec(tf.constant(u)).numpy(), operator.matvec(tf.constant(v)).numpy()
        return abs(np.dot(u, hv) - np.dot(v, hu)) / (np.linalg.norm(hu) * np.linalg.norm(v))

    assert asymmetry(exact) < 1e-14 < 1e-10 < asymmetry(coarse)
