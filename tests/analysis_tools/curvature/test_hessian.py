"""Hessian-vector products and (preconditioned) sharpness against exact eigendecompositions."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import analysis_tools
import tf_adaptive
from analysis_tools.curvature.hessian import HessianOperator


def _data(n=32, features=6, outputs=3, seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(dtype)
    y = rng.normal(size=(n, outputs)).astype(dtype)
    return x, y


def _mlp(dtype="float64", seed=0, features=6, hidden=10, outputs=3):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((features,), dtype=dtype),
            keras.layers.Dense(hidden, activation="tanh", dtype=dtype),
            keras.layers.Dense(outputs, dtype=dtype),
        ]
    )
    return model


def _explicit_hessian(operator):
    n = operator.dimension
    columns = [operator.matvec(tf.one_hot(i, n, dtype=tf.float64)).numpy() for i in range(n)]
    return np.stack(columns, axis=1)


class Quadratic(keras.layers.Layer):
    """Outputs ½ wᵀ A w for every example, so that with loss = mean(output) the Hessian is A."""

    def __init__(self, matrix, **kwargs):
        super().__init__(dtype="float64", **kwargs)
        self.matrix = np.asarray(matrix, "float64")

    def build(self, input_shape):
        rng = np.random.default_rng(0)
        self.w = self.add_weight(
            shape=(len(self.matrix),),
            dtype="float64",
            initializer=keras.initializers.Constant(rng.normal(size=len(self.matrix))),
        )

    def call(self, x):
        a = keras.ops.convert_to_tensor(self.matrix)
        q = 0.5 * keras.ops.sum(self.w * keras.ops.matmul(a, self.w))
        return keras.ops.zeros_like(x[:, :1]) + q


def _quadratic_model(matrix):
    model = keras.Sequential([keras.Input((1,), dtype="float64"), Quadratic(matrix)])
    return model, (np.zeros((4, 1)), np.zeros((4, 1)))


def _mean_output(y_true, y_pred):
    return keras.ops.mean(y_pred)


@pytest.mark.slow
def test_top_three_eigenvalues_match_the_explicit_hessian_of_a_tiny_network():
    model, data = _mlp(), _data()
    operator = HessianOperator(model, data, loss="mse")
    hessian = _explicit_hessian(operator)
    assert np.max(np.abs(hessian - hessian.T)) <= 1e-12 * np.max(np.abs(hessian))
    exact = np.sort(np.linalg.eigvalsh(hessian))[::-1]
    result = analysis_tools.hessian_eigenvalues(
        model, data, loss="mse", k=3, max_iterations=operator.dimension, tolerance=1e-10
    )
    np.testing.assert_allclose(result.eigenvalues.numpy(), exact[:3], rtol=1e-6)
    assert analysis_tools.sharpness(model, data, loss="mse", tolerance=1e-10, max_iterations=80) == (
        pytest.approx(exact[0], rel=1e-6)
    )


@pytest.mark.parametrize("loss", ["mse", keras.losses.MeanSquaredError(dtype="float64")], ids=["string", "object"])
def test_linear_regression_hessian_is_the_analytic_one(loss):
    # Keras's MSE averages over N examples and d outputs: for a Dense layer with
    # kernel W (f × d) and bias b, H = 2 / (N d) · X̃ᵀX̃ per output, X̃ = [X, 1].
    x, y = _data(n=20, features=4, outputs=2)
    model = keras.Sequential([keras.Input((4,), dtype="float64"), keras.layers.Dense(2, dtype="float64")])
    operator = HessianOperator(model, (x, y), loss=loss, batch_size=8)
    hessian = _explicit_hessian(operator)
    xt = np.hstack([x, np.ones((20, 1))])
    per_output = 2.0 / (20 * 2) * xt.T @ xt

    # Flat order: kernel (4 × 2, row-major: feature-major), then bias (2).
    def kernel_index(feature, output):
        return feature * 2 + output

    def bias_index(output):
        return 8 + output

    for output in range(2):
        index = [kernel_index(f, output) for f in range(4)] + [bias_index(output)]
        np.testing.assert_allclose(hessian[np.ix_(index, index)], per_output, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(
        hessian[np.ix_([kernel_index(f, 0) for f in range(4)], [kernel_index(f, 1) for f in range(4)])],
        0.0,
        atol=1e-14,
    )


def _adam_trained_mlp(epochs):
    """(model, data, its tf_adaptive.Adam, a HessianOperator) after `epochs` full-batch epochs."""
    model, data = _mlp(), _data()
    optimizer = tf_adaptive.Adam(learning_rate=0.01)
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(*data, batch_size=32, epochs=epochs, verbose=0)
    return model, data, optimizer, HessianOperator(model, data)


@pytest.mark.slow
def test_preconditioned_sharpness_is_the_top_eigenvalue_of_p_inverse_h():
    model, data, optimizer, operator = _adam_trained_mlp(epochs=5)
    hessian = _explicit_hessian(operator)
    p = np.concatenate(
        [keras.ops.convert_to_numpy(optimizer.preconditioner(v)).ravel() for v in model.trainable_variables]
    )
    exact = np.max(np.linalg.eigvals(hessian / p[:, None]).real)
    scaled = hessian / np.sqrt(p)[:, None] / np.sqrt(p)[None, :]
    assert np.max(np.linalg.eigvalsh(scaled)) == pytest.approx(exact, rel=1e-9)
    measured = analysis_tools.preconditioned_sharpness(model, optimizer, data, tolerance=1e-10, max_iterations=80)
    assert measured == pytest.approx(exact, rel=1e-6)


def test_quadratic_with_known_hessian_and_preconditioner():
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.normal(size=(20, 20)))
    spectrum = np.concatenate([[-50.0, 7.0, 6.5], rng.uniform(-3, 3, size=17)])
    a = q @ np.diag(spectrum) @ q.T
    model, data = _quadratic_model(a)
    # Indefinite, with the largest-magnitude eigenvalue negative: λ1 is the largest algebraic one.
    result = analysis_tools.hessian_eigenvalues(model, data, loss=_mean_output, tolerance=1e-12, max_iterations=20)
    assert float(result.eigenvalues[0]) == pytest.approx(7.0, rel=1e-9)
    p = rng.uniform(0.1, 2.0, size=20)
    expected = np.max(np.linalg.eigvalsh(a / np.sqrt(np.outer(p, p))))
    result = analysis_tools.hessian_eigenvalues(
        model, data, loss=_mean_output, preconditioner=[p], tolerance=1e-12, max_iterations=20
    )
    assert float(result.eigenvalues[0]) == pytest.approx(expected, rel=1e-9)


def _float32_mlp_and_operator(differentiation="reverse_over_reverse"):
    model = _mlp(dtype="float32")
    data = _data(n=64, dtype="float32")
    return model, HessianOperator(model, data, loss="mse", batch_size=16, differentiation=differentiation)


def test_hvp_is_symmetric_and_forward_and_reverse_agree_in_float32():
    model, reverse = _float32_mlp_and_operator()
    forward = HessianOperator(
        model, _data(n=64, dtype="float32"), loss="mse", batch_size=16, differentiation="forward_over_reverse"
    )
    rng = np.random.default_rng(1)
    u = tf.constant(rng.normal(size=reverse.dimension))
    v = tf.constant(rng.normal(size=reverse.dimension))
    hu, hv = reverse.matvec(u), reverse.matvec(v)
    assert float(tf.tensordot(u, hv, 1)) == pytest.approx(float(tf.tensordot(v, hu, 1)), rel=1e-5)
    np.testing.assert_allclose(forward.matvec(v).numpy(), hv.numpy(), rtol=1e-5, atol=1e-6)


def test_float32_and_float64_vectors_share_one_traced_product():
    # Lanczos keeps a float32 basis above `float64_dimension_limit` parameters, while Hutchinson and a
    # user's own vectors are float64: one operator must not trace (and XLA-compile) its product twice.
    model, operator = _float32_mlp_and_operator()
    v = np.random.default_rng(3).normal(size=operator.dimension)
    in_float64 = operator.matvec(tf.constant(v))
    in_float32 = operator.matvec(tf.constant(v, tf.float32))
    assert in_float64.dtype == tf.float64 and in_float32.dtype == tf.float32
    np.testing.assert_allclose(in_float32.numpy(), in_float64.numpy(), rtol=1e-6, atol=1e-6)
    operator.set_preconditioner([tf.ones_like(w) * 2.0 for w in model.trainable_variables])
    scaled = operator.preconditioned_matvec(tf.constant(v, tf.float32))
    assert scaled.dtype == tf.float32
    np.testing.assert_allclose(scaled.numpy(), in_float64.numpy() / 2.0, rtol=1e-6, atol=1e-6)
    in_float32_basis = analysis_tools.Lanczos(operator.dimension, basis_dtype=tf.float32)(operator.matvec)
    in_float64_basis = analysis_tools.hessian_eigenvalues(operator)
    assert float(in_float32_basis.eigenvalues[0]) == pytest.approx(float(in_float64_basis.eigenvalues[0]), rel=1e-5)
    assert operator._hvp.experimental_get_tracing_count() == 1


def test_hvp_matches_central_finite_differences_of_the_gradient():
    model, data = _mlp(), _data()
    operator = HessianOperator(model, data, loss="mse")
    rng = np.random.default_rng(2)
    v = rng.normal(size=operator.dimension)
    v /= np.linalg.norm(v)
    weights = model.get_weights()
    step = 1e-5

    def gradient_at(offset):
        parts = operator.unflatten(tf.constant(offset))
        model.set_weights([w + p.numpy() for w, p in zip(weights, parts)])
        return operator.gradient()[0].numpy()

    difference = (gradient_at(step * v) - gradient_at(-step * v)) / (2 * step)
    model.set_weights(weights)
    np.testing.assert_allclose(operator.matvec(tf.constant(v)).numpy(), difference, rtol=1e-6, atol=1e-9)


def _batchnorm_dropout_model():
    keras.utils.set_random_seed(4)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(16),
            keras.layers.BatchNormalization(),
            keras.layers.Activation("tanh"),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(3),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    x, y = _data(n=64, dtype="float32")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    return model, (x, y)


@pytest.mark.slow
def test_products_are_deterministic_and_leave_batchnorm_and_dropout_state_alone():
    model, data = _batchnorm_dropout_model()
    before = [keras.ops.convert_to_numpy(v).copy() for v in model.variables]
    operator = HessianOperator(model, data, batch_size=16)
    v = tf.constant(np.random.default_rng(0).normal(size=operator.dimension))
    first, second = operator.matvec(v).numpy(), operator.matvec(v).numpy()
    np.testing.assert_array_equal(first, second)
    analysis_tools.sharpness(model, data, batch_size=16, max_iterations=10)
    for old, variable in zip(before, model.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), old, err_msg=variable.path)
    no_dropout = HessianOperator(model, data, batch_size=16, dropout=False).matvec(v).numpy()
    inference = HessianOperator(model, data, batch_size=16, mode="inference").matvec(v).numpy()
    assert not np.allclose(no_dropout, first) and not np.allclose(inference, no_dropout)


def test_operator_arguments_are_validated():
    model, data = _mlp(), _data()
    with pytest.raises(ValueError, match="`differentiation`"):
        HessianOperator(model, data, loss="mse", differentiation="finite_differences")
    with pytest.raises(ValueError, match="`mode`"):
        HessianOperator(model, data, loss="mse", mode="eval")
    with pytest.raises(ValueError, match="loss"):
        HessianOperator(model, data)
    operator = HessianOperator(model, data, loss="mse")
    with pytest.raises(ValueError, match="positive"):
        operator.set_preconditioner([np.zeros(w.shape) for w in model.trainable_variables])


def _frozen_mlp():
    model = _mlp()
    model.trainable = False
    return model


def _weightless_model():
    return keras.Sequential([keras.Input((6,), dtype="float64"), keras.layers.Activation("tanh")])


@pytest.mark.parametrize("make_model", [_frozen_mlp, _weightless_model], ids=["frozen", "weightless"])
@pytest.mark.parametrize(
    "measure",
    [
        lambda model, data: HessianOperator(model, data, loss="mse"),
        lambda model, data: analysis_tools.hessian_eigenvalues(model, data, loss="mse"),
        lambda model, data: analysis_tools.sharpness(model, data, loss="mse"),
        # Read first, an unbuilt Keras optimizer used to report "Adam is not built yet".
        lambda model, data: analysis_tools.preconditioned_sharpness(model, keras.optimizers.Adam(), data, loss="mse"),
        lambda model, data: analysis_tools.preconditioned_sharpness(model, tf_adaptive.Adam(), data, loss="mse"),
    ],
    ids=[
        "HessianOperator",
        "hessian_eigenvalues",
        "sharpness",
        "preconditioned_sharpness_keras",
        "preconditioned_sharpness_ours",
    ],
)
def test_every_curvature_entry_point_refuses_a_model_without_trainable_variables(make_model, measure):
    with pytest.raises(ValueError, match="no trainable variables"):
        measure(make_model(), _data())


def _classifier(loss):
    model = _mlp()
    model.compile(loss=loss)
    return model


@pytest.mark.parametrize("as_dataset", [False, True], ids=["arrays", "dataset"])
def test_a_probe_set_that_does_not_fit_the_model_is_refused_at_construction(as_dataset):
    x, y = _data()
    labels = np.arange(len(x)) % 3

    def probe(inputs, targets):
        data = (inputs, targets)
        return tf.data.Dataset.from_tensor_slices(data).batch(8) if as_dataset else data

    mse = _classifier("mse")
    HessianOperator(mse, probe(x, y))
    with pytest.raises(
        ValueError, match=r"cannot run on the first batch of the probe set \(inputs of shape \(None, 4\)\)"
    ):
        HessianOperator(mse, probe(x[:, :4], y))
    # Targets that mean_squared_error would broadcast against the (n, 3) outputs.
    for targets in (y[:, :1], labels):
        with pytest.raises(ValueError, match=r"outputs have shape \(None, 3\): mean_squared_error"):
            HessianOperator(mse, probe(x, targets))
    sparse = _classifier(keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    HessianOperator(sparse, probe(x, labels))
    HessianOperator(sparse, probe(x, labels[:, None]))
    with pytest.raises(ValueError, match=r"integer class labels of shape \(None,\)"):
        HessianOperator(sparse, probe(x, y))
    # A custom loss decides what its targets are: not checked.
    HessianOperator(mse, probe(x, labels), loss=_mean_output)


def test_a_probe_set_is_checked_on_the_model_itself_where_it_cannot_be_traced_symbolically():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3, dtype="float64")

        def call(self, x, training=False):
            return self.dense(x)

        def compute_output_spec(self, *args, **kwargs):
            raise NotImplementedError("no symbolic trace")

    x, y = _data()
    model = Subclassed()
    model(x[:1])
    HessianOperator(model, (x, y), loss="mse")
    with pytest.raises(ValueError, match="outputs have shape"):
        HessianOperator(model, (x, y[:, :1]), loss="mse")
    with pytest.raises(ValueError, match="cannot run on the first batch"):
        HessianOperator(model, (x[:, :4], y), loss="mse")


@pytest.mark.slow
def test_functions_on_an_operator_reuse_its_lanczos_loop_and_return_what_a_new_solver_returns():
    model, data, optimizer, operator = _adam_trained_mlp(epochs=3)
    first = analysis_tools.hessian_eigenvalues(operator, tolerance=1e-3, seed=3)
    again = [
        analysis_tools.hessian_eigenvalues(operator, tolerance=tol, seed=seed)
        for tol, seed in ((1e-3, 3), (1e-10, 3), (1e-3, 5))
    ]
    solver = operator.solver()
    assert solver._function.experimental_get_tracing_count() == 1 and len(operator._solvers) == 1
    # Each call equals a new solver's with those settings: the tolerance, seed and start are per call.
    for (tol, seed), result in zip(((1e-3, 3), (1e-10, 3), (1e-3, 5)), again):
        fresh = analysis_tools.Lanczos(operator.dimension, tolerance=tol, seed=seed)(operator.matvec)
        assert int(result.iterations) == int(fresh.iterations)
        np.testing.assert_allclose(result.eigenvalues.numpy(), fresh.eigenvalues.numpy(), rtol=1e-12)
    np.testing.assert_array_equal(again[0].eigenvalues.numpy(), first.eigenvalues.numpy())
    assert int(again[1].iterations) > int(again[0].iterations)  # the tighter tolerance took effect
    exact = np.max(np.linalg.eigvalsh(_explicit_hessian(operator)))
    assert float(again[1].eigenvalues[0]) == pytest.approx(exact, rel=1e-8)

    # The preconditioned problem (every P shares one loop, its S a variable) and the density get solvers of
    # their own, sharing a basis by length.
    analysis_tools.preconditioned_sharpness(operator, optimizer)
    analysis_tools.preconditioned_sharpness(operator, optimizer, tolerance=1e-6)
    analysis_tools.curvature.spectral_density(operator, num_vectors=2, num_iterations=40)
    analysis_tools.curvature.spectral_density(operator, num_vectors=1, num_iterations=12)
    assert set(operator._solvers) == {(False, 12, 1, False), (False, 40, 1, False), ("scratch", 40, 1, False)}
    assert all(s._function.experimental_get_tracing_count() == 1 for s in operator._solvers.values())
    assert operator._solvers[("scratch", 40, 1, False)]._basis is solver._basis
    assert len(operator._bases) == 2
    # Its arguments are checked as a new solver's were, on a cached size too.
    for bad in (dict(return_vectors=1), dict(return_vectors="yes"), dict(max_iterations=0), dict(k=0), dict(k=41)):
        with pytest.raises(ValueError):
            analysis_tools.hessian_eigenvalues(operator, **bad)
    with pytest.raises(ValueError, match="tolerance"):
        analysis_tools.sharpness(operator, tolerance=0.0)


@pytest.mark.slow
def test_sharpness_callback_and_the_functions_share_the_operator_solvers():
    model, data = _mlp(), _data()
    model.compile(optimizer=tf_adaptive.Adam(learning_rate=0.01), loss="mse")
    callback = analysis_tools.SharpnessCallback(data, every_n_steps=1, warm_start=False, tolerance=1e-3)
    model.fit(*data, batch_size=16, epochs=1, verbose=0, callbacks=[callback])
    operator = callback.operator
    solvers = dict(operator._solvers)
    raw = analysis_tools.sharpness(operator, tolerance=1e-10)
    preconditioned = analysis_tools.preconditioned_sharpness(operator, model.optimizer, tolerance=1e-10)
    assert operator._solvers == solvers  # no new solver, and no new trace
    assert all(s._function.experimental_get_tracing_count() == 1 for s in solvers.values())
    assert raw == pytest.approx(callback.records[-1].values["sharpness"], rel=1e-3)
    assert preconditioned == pytest.approx(callback.records[-1].values["preconditioned_sharpness"], rel=1e-3)
    # The functions' calls do not move the callback's random starts: its next record is a new callback's.
    fresh = analysis_tools.SharpnessCallback(data, every_n_steps=1, warm_start=False, tolerance=1e-3)
    fresh.set_model(model)
    fresh.on_train_begin()
    callback.reset()
    np.testing.assert_array_equal(callback.measure().eigenvalues["raw"], fresh.measure().eigenvalues["raw"])
