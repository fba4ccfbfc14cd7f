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
