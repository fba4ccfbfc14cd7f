"""`analysis_tools.curvature.lanczos`: top algebraic eigenpairs of explicit symmetric matrices.

Every matrix is built from a known spectrum, A = Q diag(λ) Qᵀ with a random
orthogonal Q, and ``numpy.linalg.eigvalsh(A)`` is the oracle. The matvec is
a plain Python function of TF ops (or a ``tf.function``) that casts its
argument to float64, so the same matvec serves the float32-basis path.
"""

import numpy as np
import pytest
import tensorflow as tf

from analysis_tools.curvature.lanczos import Lanczos, LanczosResult, compensated_dot, lanczos


def symmetric(spectrum, seed=0):
    spectrum = np.asarray(spectrum, dtype=np.float64)
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(spectrum.size, spectrum.size)))
    a = (q * spectrum) @ q.T
    return (a + a.T) / 2


def matvec_of(a):
    a = tf.constant(a)

    def matvec(v):
        return tf.linalg.matvec(a, tf.cast(v, tf.float64))

    return matvec


def top(a, k=1):
    return np.linalg.eigvalsh(a)[::-1][:k]


@pytest.fixture(scope="module")
def gapped():
    """300×300 PSD, λ = 10, 9, 8 above a bulk in [0, 6]."""
    rng = np.random.default_rng(1)
    return symmetric(np.concatenate([[10.0, 9.0, 8.0], rng.uniform(0.0, 6.0, 297)]), seed=2)


def test_psd_top1_and_top3_to_1e_10(gapped):
    exact = top(gapped, 3)
    one = lanczos(matvec_of(gapped), 300, max_iterations=100, tolerance=1e-12)
    assert isinstance(one, LanczosResult)
    assert one.eigenvalues.dtype == tf.float64 and one.eigenvalues.shape == (1,)
    assert one.eigenvectors is None
    assert abs(one.eigenvalues.numpy()[0] - exact[0]) <= 1e-10 * exact[0]
    three = lanczos(matvec_of(gapped), 300, max_iterations=100, k=3, tolerance=1e-12)
    assert three.eigenvalues.shape == (3,) and three.residuals.shape == (3,)
    np.testing.assert_allclose(three.eigenvalues.numpy(), exact, rtol=1e-10)
    assert three.iterations.dtype == tf.int32 and int(three.iterations) < 100


def test_indefinite_returns_largest_algebraic_not_largest_magnitude():
    rng = np.random.default_rng(3)
    spectrum = np.concatenate([[-50.0, -20.0, 3.0, 2.0], rng.uniform(-1.0, 1.0, 196)])
    a = symmetric(spectrum, seed=4)
    result = lanczos(matvec_of(a), 200, max_iterations=100, k=2, tolerance=1e-12)
    np.testing.assert_allclose(result.eigenvalues.numpy(), [3.0, 2.0], rtol=1e-10)


def test_residual_stop_accuracy_and_error_bound(gapped):
    exact = top(gapped)[0]
    solver = Lanczos(300, max_iterations=40, tolerance=1e-3, return_vectors=True)
    result = solver(matvec_of(gapped))
    theta = result.eigenvalues.numpy()[0]
    residual = result.residuals.numpy()[0]
    assert 10 <= int(result.iterations) < 40  # min_iterations defaults to 10
    assert residual <= 1e-3 * abs(theta)
    # Some eigenvalue lies within the residual of θ; with a gap it is λ1, and the
    # error is in fact ~residual²/gap, far below the tolerance.
    assert abs(theta - exact) <= residual
    assert abs(theta - exact) <= 1e-3 * exact
    assert abs(theta - exact) <= 1e-5 * exact
    # The reported residual is the true one, ‖A y - θ y‖.
    y = result.eigenvectors.numpy()[0]
    np.testing.assert_allclose(np.linalg.norm(gapped @ y - theta * y), residual, rtol=1e-6)


@pytest.mark.slow
def test_warm_start_from_top_eigenvector_converges_at_once(gapped):
    w, q = np.linalg.eigh(gapped)
    solver = Lanczos(300, max_iterations=40, tolerance=1e-6)
    cold = solver(matvec_of(gapped))
    warm = solver(matvec_of(gapped), initial_vector=3.0 * q[:, -1])  # normalized inside
    assert int(warm.iterations) <= 3 < int(cold.iterations)
    assert abs(warm.eigenvalues.numpy()[0] - w[-1]) <= 1e-12 * w[-1]
    # A noisy warm start (the realistic case) still beats a random one once the
    # minimum number of steps does not hide it.
    rng = np.random.default_rng(5)
    noisy = q[:, -1] + 1e-3 * rng.normal(size=300) / np.sqrt(300)
    quick = Lanczos(300, max_iterations=40, tolerance=1e-6, min_iterations=1)
    assert int(quick(matvec_of(gapped), initial_vector=noisy).iterations) < int(quick(matvec_of(gapped)).iterations)


def test_warm_start_eigenvector_with_k_above_one_restarts(gapped):
    """A breakdown before k Ritz values exist continues from a fresh direction."""
    _, q = np.linalg.eigh(gapped)
    result = lanczos(matvec_of(gapped), 300, max_iterations=100, k=3, tolerance=1e-12, initial_vector=q[:, -1])
    np.testing.assert_allclose(result.eigenvalues.numpy(), top(gapped, 3), rtol=1e-10)


def test_dimension_below_max_iterations_gives_exact_spectrum():
    a = symmetric(np.random.default_rng(6).normal(size=12), seed=7)
    exact = top(a, 12)
    full = lanczos(matvec_of(a), 12, max_iterations=40, k=12, tolerance=1e-14)
    assert int(full.iterations) <= 12
    np.testing.assert_allclose(full.eigenvalues.numpy(), exact, rtol=0, atol=1e-10)
    # An operator with an invariant Krylov space of dimension 3 stops there (lucky breakdown).
    d = symmetric([5.0, 5.0, 5.0, 5.0, 2.0, 2.0, 2.0, -1.0, -1.0, -1.0, -1.0, -1.0], seed=8)
    low = lanczos(matvec_of(d), 12, max_iterations=40, k=2)
    assert int(low.iterations) == 3
    np.testing.assert_allclose(low.eigenvalues.numpy(), [5.0, 2.0], rtol=0, atol=1e-10)
    assert np.all(low.residuals.numpy() <= 1e-10)


def test_ritz_vectors_are_unit_and_match_residuals(gapped):
    result = lanczos(matvec_of(gapped), 300, max_iterations=25, k=3, tolerance=1e-8, return_vectors=True)
    y = result.eigenvectors.numpy()
    theta = result.eigenvalues.numpy()
    assert y.shape == (3, 300) and result.eigenvectors.dtype == tf.float64
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(y @ y.T, np.eye(3), atol=1e-10)
    true_residuals = np.linalg.norm(gapped @ y.T - y.T * theta, axis=0)
    np.testing.assert_allclose(true_residuals, result.residuals.numpy(), rtol=1e-6, atol=1e-12)


def test_no_retrace_across_calls_and_start_vectors(gapped):
    traces = []
    a = tf.constant(gapped)

    def matvec(v):
        traces.append(1)  # runs at trace time only
        return tf.linalg.matvec(a, v)

    solver = Lanczos(300, max_iterations=20)
    rng = np.random.default_rng(9)
    solver(matvec)
    solver(matvec, initial_vector=rng.normal(size=300))
    solver(matvec, initial_vector=tf.constant(rng.normal(size=300), tf.float32))
    solver(matvec)
    assert len(traces) == 1
    assert solver._function.experimental_get_tracing_count() == 1

    compiled = tf.function(matvec)
    solver(compiled)
    solver(compiled, initial_vector=rng.normal(size=300))
    assert solver._function.experimental_get_tracing_count() == 1
    assert compiled.experimental_get_tracing_count() == 1

    class Operator:
        def matvec(self, v):
            traces.append(1)
            return tf.linalg.matvec(a, v)

    operator = Operator()
    del traces[:]
    solver(operator.matvec)  # a fresh bound-method object on every access
    solver(operator.matvec, initial_vector=rng.normal(size=300))
    assert len(traces) == 1


def test_float32_basis(gapped):
    exact = top(gapped)[0]
    forced = Lanczos(300, max_iterations=60, tolerance=1e-7, basis_dtype=tf.float32)
    by_size = Lanczos(300, max_iterations=60, tolerance=1e-7, float64_dimension_limit=100)
    assert forced.basis_dtype == tf.float32 and by_size.basis_dtype == tf.float32
    assert Lanczos(300).basis_dtype == tf.float64
    result = by_size(matvec_of(gapped))
    assert result.eigenvalues.dtype == tf.float64
    assert abs(result.eigenvalues.numpy()[0] - exact) <= 1e-5 * exact


def test_a_basis_in_host_memory_gives_the_same_results(gapped):
    # On a CPU-only machine both placements run the same kernels on the same device.
    results = [
        Lanczos(300, max_iterations=30, k=2, tolerance=1e-8, return_vectors=True, basis_device=device)(
            matvec_of(gapped)
        )
        for device in (None, "host")
    ]
    for default, host in zip(*results):
        np.testing.assert_array_equal(default.numpy(), host.numpy())
    np.testing.assert_allclose(results[1].eigenvalues.numpy(), top(gapped, 2), rtol=1e-8)


@pytest.mark.parametrize("n", [1, 7, 1024, 1025, 100_003])
def test_compensated_dot_is_float64_accurate_on_float32_vectors(n):
    rng = np.random.default_rng(n)
    # Entries over twelve orders of magnitude, half of the products cancelling.
    x = (rng.normal(size=n) * np.exp(rng.uniform(-14, 14, n))).astype(np.float32)
    y = (rng.normal(size=n) * np.exp(rng.uniform(-14, 14, n))).astype(np.float32)
    exact = np.dot(x.astype(np.float64), y.astype(np.float64))  # products of float32s are exact in float64
    size = np.abs(x.astype(np.float64) * y).sum()
    result = compensated_dot(tf.constant(x), tf.constant(y))
    assert result.dtype == tf.float64
    assert abs(float(result) - exact) <= 1e-9 * size
    if n > 1000:  # what it replaces: a float32 reduction, 1e-8 to 1e-6 of the same scale here
        assert abs(float(tf.reduce_sum(x * y)) - exact) > 1e-9 * size
    bad = x.copy()
    bad[n // 2] = np.nan
    assert np.isnan(float(compensated_dot(tf.constant(bad), tf.constant(y))))
    bad[n // 2] = np.inf
    assert not np.isfinite(float(compensated_dot(tf.constant(bad), tf.constant(y))))


def test_compensated_dot_refuses_what_it_cannot_sum_exactly():
    with pytest.raises(ValueError, match="two float32 vectors of one static length"):
        compensated_dot(tf.ones([3], tf.float64), tf.ones([3], tf.float64))
    with pytest.raises(ValueError, match="float32 vectors"):
        compensated_dot(tf.ones([3]), tf.ones([4]))
    with pytest.raises(ValueError, match="float32 vectors"):
        compensated_dot(tf.ones([2, 2]), tf.ones([2, 2]))
    assert float(compensated_dot(tf.zeros([0]), tf.zeros([0]))) == 0.0


@pytest.mark.parametrize("device_type", ["CPU", "GPU", "TPU"])
@pytest.mark.slow
def test_float32_basis_on_the_accelerator_matches_the_float64_basis(gapped, device_type):
    # The arithmetic follows the basis's device; here every kind runs on the CPU.
    exact = top(gapped, 3)
    a32 = tf.constant(gapped, tf.float32)
    solver = Lanczos(300, max_iterations=60, k=3, tolerance=1e-6, return_vectors=True, basis_device="accelerator")
    assert solver.basis_dtype == tf.float32 and solver._device_type == "CPU"
    solver._device_type = device_type
    result = solver(lambda v: tf.linalg.matvec(a32, v))
    assert result.eigenvalues.dtype == tf.float64 and result.eigenvectors.dtype == tf.float64
    # A float32 operator's eigenvalues are float32-rounded: 1e-6 relative, not 1e-10.
    np.testing.assert_allclose(result.eigenvalues.numpy(), exact, rtol=2e-6)
    m = int(result.iterations)
    basis = solver._basis.numpy()[:m].astype(np.float64)
    assert np.abs(basis @ basis.T - np.eye(m)).max() < 1e-6  # two passes: orthogonal to float32 rounding
    vectors = result.eigenvectors.numpy()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-9)  # compensated norms
    for value, vector in zip(exact, vectors):
        assert np.linalg.norm(gapped @ vector - value * vector) < 1e-4 * value
    assert float(result.asymmetry) < 1e-6


def _graph_nodes(solver):
    graph_def = solver._function.get_concrete_function().graph.as_graph_def()
    nodes = list(graph_def.node)
    for function in graph_def.library.function:
        nodes.extend(function.node_def)
    return nodes


def _float32_solver_graph(device_type):
    # The operator is elementwise, so every MatMul in the graph is the solver's.
    diagonal = tf.constant(np.arange(1.0, 301.0), tf.float32)
    solver = Lanczos(300, max_iterations=8, k=2, return_vectors=True, basis_device="accelerator")
    solver._device_type = device_type
    solver(lambda v: diagonal * v)
    nodes = _graph_nodes(solver)
    float64_ops = [
        node
        for node in nodes
        if any(
            node.attr[key].type == tf.float64.as_datatype_enum
            for key in ("T", "dtype", "DstT", "SrcT", "Tidx", "out_type")
            if key in node.attr
        )
    ]
    matmuls = [
        node.op
        for node in nodes
        if ("MatMul" in node.op or node.op == "Einsum") and node.attr["T"].type == tf.float32.as_datatype_enum
    ]  # float32 matmuls: TF32, bfloat16
    return float64_ops, matmuls


@pytest.mark.slow
def test_float32_basis_on_a_tpu_keeps_float64_on_the_host_and_off_the_matrix_units():
    # What a TPU needs: no float64 op outside the host (the dots are compensated float32 ones), and
    # no matmul on the basis (a TPU runs float32 matmuls as bfloat16 passes).
    float64_ops, matmuls = _float32_solver_graph("TPU")
    structural = {"Placeholder", "Identity", "While", "StatelessWhile", "If", "StatelessIf", "NoOp"}
    assert len(float64_ops) > 50
    assert not sorted({node.op for node in float64_ops if node.op not in structural and "CPU" not in node.device})
    assert not matmuls
    # On a GPU: float64 dots on the device, no float32 matmul (TF32); on a CPU matvecs are full float32.
    float64_ops, matmuls = _float32_solver_graph("GPU")
    assert [node for node in float64_ops if node.op == "Cast" and "CPU" not in node.device] and not matmuls
    float64_ops, matmuls = _float32_solver_graph("CPU")
    assert matmuls


def _devices_of(solver, matvec, op_types):
    """The device requested for every op of the given types in the traced solver, loops included."""
    solver(matvec)
    graph_def = solver._function.get_concrete_function().graph.as_graph_def()
    nodes = list(graph_def.node)
    for function in graph_def.library.function:
        nodes.extend(function.node_def)
    return {node.op: node.device for node in nodes if node.op in op_types}


def test_host_basis_pins_the_basis_work_to_the_cpu_and_leaves_the_matvec_unplaced(gapped):
    a = tf.constant(gapped)

    def matvec(v):
        return tf.linalg.matvec(a, tf.raw_ops.Sinh(x=tf.cast(v, tf.float64)))  # Sinh: a marker op

    host = Lanczos(300, max_iterations=5, basis_device="host")
    assert "CPU:0" in host._basis.device
    devices = _devices_of(host, matvec, {"ResourceGather", "ResourceScatterUpdate", "Sinh"})
    assert set(devices) == {"ResourceGather", "ResourceScatterUpdate", "Sinh"}
    assert devices["ResourceGather"].endswith("CPU:0")
    assert devices["ResourceScatterUpdate"].endswith("CPU:0")
    assert devices["Sinh"] == ""
    default = _devices_of(Lanczos(300, max_iterations=5), matvec, {"ResourceGather", "Sinh"})
    assert default == {"ResourceGather": "", "Sinh": ""}


def test_seeded_starts_and_zero_start():
    a = symmetric(np.linspace(0.0, 1.0, 100) ** 3, seed=10)
    first = Lanczos(100, max_iterations=15, seed=3)
    r1 = first(matvec_of(a))
    r2 = first(matvec_of(a))  # next call, next start vector
    again = Lanczos(100, max_iterations=15, seed=3)
    r3 = again(matvec_of(a), initial_vector=np.zeros(100))  # zero start: random fallback
    assert r1.eigenvalues.numpy()[0] == r3.eigenvalues.numpy()[0]
    assert r1.eigenvalues.numpy()[0] != r2.eigenvalues.numpy()[0]


def test_global_random_state_untouched():
    a = symmetric(np.linspace(0.0, 1.0, 50), seed=11)
    solver = Lanczos(50, max_iterations=10)
    solver(matvec_of(a))  # trace outside the comparison too
    generator_state = tf.random.get_global_generator().state.numpy().copy()
    tf.random.set_seed(123)
    expected = [tf.random.uniform([4]).numpy() for _ in range(2)]
    tf.random.set_seed(123)
    got = [tf.random.uniform([4]).numpy()]
    solver(matvec_of(a))
    got.append(tf.random.uniform([4]).numpy())
    np.testing.assert_array_equal(np.stack(got), np.stack(expected))
    np.testing.assert_array_equal(tf.random.get_global_generator().state.numpy(), generator_state)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(dimension=0), "dimension"),
        (dict(dimension=2.5), "dimension"),
        (dict(max_iterations=0), "max_iterations"),
        (dict(k=0), "k"),
        (dict(k=11, max_iterations=10), "k"),
        (dict(dimension=5, k=6), "k"),
        (dict(tolerance=0.0), "tolerance"),
        (dict(tolerance=-1e-3), "tolerance"),
        (dict(tolerance=float("nan")), "tolerance"),
        (dict(min_iterations=0), "min_iterations"),
        (dict(basis_dtype=tf.int32), "basis_dtype"),
        (dict(float64_dimension_limit=0), "float64_dimension_limit"),
        (dict(seed=1.5), "seed"),
        (dict(return_vectors="yes"), "return_vectors"),
        (dict(basis_device="cpu"), "basis_device"),
        (dict(basis_device="/device:GPU:0"), "basis_device"),
        (dict(basis_device="accelerator", basis_dtype=tf.float64), "basis_device"),
    ],
)
def test_bad_arguments(kwargs, name):
    kwargs = {"dimension": 20, **kwargs}
    with pytest.raises(ValueError, match=f"`{name}`"):
        Lanczos(**kwargs)


def test_bad_initial_vector():
    solver = Lanczos(20, max_iterations=5)
    with pytest.raises(ValueError, match="`initial_vector`"):
        solver(matvec_of(np.eye(20)), initial_vector=np.ones(21))


def test_tiny_and_zero_operators():
    one = lanczos(lambda v: 3.0 * v, 1)
    assert int(one.iterations) == 1 and one.eigenvalues.numpy()[0] == pytest.approx(3.0)
    zero = lanczos(lambda v: 0.0 * v, 30, k=2, return_vectors=True)
    np.testing.assert_array_equal(zero.eigenvalues.numpy(), [0.0, 0.0])
    assert int(zero.iterations) == 2  # breakdown at once, one restart for the second value
    np.testing.assert_allclose(np.linalg.norm(zero.eigenvectors.numpy(), axis=1), 1.0)


@pytest.mark.parametrize("bad_from", [0, 3])
@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_a_non_finite_operator_gives_nan_instead_of_failing(gapped, bad_from, bad_value):
    # A diverged network's Hessian products are NaN or inf, from the first product or later.
    a = tf.constant(gapped)
    calls = tf.Variable(0)

    def matvec(v):
        product = tf.linalg.matvec(a, tf.cast(v, tf.float64))
        broken = calls.assign_add(1) > bad_from
        return tf.where(broken, tf.fill(tf.shape(product), tf.constant(bad_value, tf.float64)), product)

    solver = Lanczos(gapped.shape[0], max_iterations=20, k=2, return_vectors=True)
    result = solver(matvec)
    assert np.all(np.isnan(result.eigenvalues.numpy())) and np.all(np.isnan(result.residuals.numpy()))
    assert np.all(np.isnan(result.eigenvectors.numpy()))
    assert int(result.iterations) == bad_from + 1  # it stops at the first non-finite product
    # The same solver still works once the operator is finite again, from a NaN start vector too.
    calls.assign(-1000)
    again = solver(matvec, initial_vector=result.eigenvectors[0])
    np.testing.assert_allclose(again.eigenvalues.numpy(), top(gapped, 2), rtol=1e-6)


def _near_eigenvector_problem(n=50):
    diagonal = np.concatenate([[10.0, 9.0], np.linspace(0.0, 5.0, n - 2)])
    start = np.full(n, 1e-5)  # every direction present, so no invariant subspace ends the run early
    start[0], start[1] = 1.0, 1e-3
    return tf.constant(np.diag(diagonal)), tf.constant(start)


def test_a_call_may_lower_min_iterations_for_a_warm_start():
    matrix, start = _near_eigenvector_problem()
    solver = Lanczos(50, max_iterations=30, tolerance=1e-3)
    matvec = lambda v: tf.linalg.matvec(matrix, v)  # noqa: E731
    assert int(solver(matvec, start).iterations) >= 10  # the instance's default
    warm = solver(matvec, start, min_iterations=1)
    assert int(warm.iterations) == 1
    assert float(warm.eigenvalues[0]) == pytest.approx(10.0, rel=1e-3)


def test_the_gap_test_needs_a_separated_ritz_value_before_it_certifies():
    matrix, start = _near_eigenvector_problem()
    solver = Lanczos(50, max_iterations=30, tolerance=1e-3)
    matvec = lambda v: tf.linalg.matvec(matrix, v)  # noqa: E731
    # One product: the residual test passes, but there is no second Ritz value to measure a gap.
    certified = solver(matvec, start, min_iterations=1, certify_gap=True)
    assert int(certified.iterations) >= 2
    residual, value = float(certified.residuals[0]), float(certified.eigenvalues[0])
    assert residual <= 1e-3 * abs(value)
    assert value == pytest.approx(10.0, rel=1e-6)


def test_a_call_validates_min_iterations():
    solver = Lanczos(5, max_iterations=5)
    with pytest.raises(ValueError, match="min_iterations"):
        solver(lambda v: v, min_iterations=0)


@pytest.mark.parametrize("tolerance", [1e-3, 1e-6])
@pytest.mark.slow
def test_the_eigenvalue_criterion_stops_earlier_within_its_tolerance(gapped, tolerance):
    # The Kato–Temple bound r²/δ certifies θ1 before the residual r itself is small.
    exact = top(gapped)[0]
    runs = {
        criterion: Lanczos(300, max_iterations=100, tolerance=tolerance, criterion=criterion, min_iterations=1)(
            matvec_of(gapped)
        )
        for criterion in ("residual", "eigenvalue")
    }
    for result in runs.values():
        assert abs(float(result.eigenvalues[0]) - exact) <= tolerance * exact
    eigenvalue, residual = runs["eigenvalue"], runs["residual"]
    assert int(eigenvalue.iterations) < int(residual.iterations)
    # It stopped on the squared residual, not on the residual.
    assert float(eigenvalue.residuals[0]) > tolerance * float(eigenvalue.eigenvalues[0])


def test_the_criterion_is_validated():
    with pytest.raises(ValueError, match="criterion"):
        Lanczos(5, criterion="ritz")


@pytest.mark.slow
def test_per_call_tolerance_criterion_seed_and_call_match_a_new_instance_without_retracing(gapped):
    matvec = matvec_of(gapped)
    solver = Lanczos(300, max_iterations=60)
    solver(matvec)
    for settings in (dict(tolerance=1e-9), dict(criterion="eigenvalue", tolerance=1e-6), dict(seed=4)):
        fresh = Lanczos(300, max_iterations=60, **settings)(matvec)
        # call=0: the start a new instance draws on its first call, whatever this one ran before.
        reused = solver(matvec, **settings, call=0)
        assert int(reused.iterations) == int(fresh.iterations), settings
        np.testing.assert_array_equal(reused.eigenvalues.numpy(), fresh.eigenvalues.numpy())
    second = Lanczos(300, max_iterations=60)
    second(matvec)
    np.testing.assert_array_equal(solver(matvec, call=1).eigenvalues.numpy(), second(matvec).eigenvalues.numpy())
    assert solver._function.experimental_get_tracing_count() == 1
    with pytest.raises(ValueError, match="tolerance"):
        solver(matvec, tolerance=0.0)
    with pytest.raises(ValueError, match="criterion"):
        solver(matvec, criterion="gap")
    with pytest.raises(ValueError, match="call"):
        solver(matvec, call=-1)


def test_a_shared_basis_is_checked_and_used(gapped):
    basis = tf.Variable(tf.zeros([30, 300], tf.float64))
    one = Lanczos(300, max_iterations=30, basis=basis)
    two = Lanczos(300, max_iterations=30, k=3, basis=basis, return_vectors=True)
    assert one._basis is basis and two._basis is basis
    np.testing.assert_allclose(one(matvec_of(gapped), tolerance=1e-10).eigenvalues.numpy(), top(gapped), rtol=1e-9)
    three = two(matvec_of(gapped), tolerance=1e-10)
    np.testing.assert_allclose(three.eigenvalues.numpy(), top(gapped, 3), rtol=1e-9)
    for wrong in (
        tf.Variable(tf.zeros([20, 300], tf.float64)),
        tf.Variable(tf.zeros([30, 300], tf.float32)),
        tf.zeros([30, 300], tf.float64),
    ):
        with pytest.raises(ValueError, match="basis"):
            Lanczos(300, max_iterations=30, basis=wrong)


def test_an_asymmetric_operator_is_measured_and_warned_about():
    rng = np.random.default_rng(0)
    b = rng.standard_normal((40, 40))
    symmetric = tf.constant(b + b.T)
    solver = Lanczos(40, max_iterations=40)
    solver(lambda v: tf.linalg.matvec(symmetric, v), tolerance=1e-10)
    assert solver.asymmetry < 1e-13
    skewed = tf.constant(b + b.T + 1e-2 * (b - b.T))
    with pytest.warns(UserWarning, match="not symmetric"):
        solver(lambda v: tf.linalg.matvec(skewed, v), tolerance=1e-10)
    assert 1e-3 < solver.asymmetry < 1e-1


def test_the_result_carries_t_m_and_the_asymmetry_under_tf_function(gapped):
    solver = Lanczos(300, max_iterations=40, k=2, tolerance=1e-10)
    matvec = matvec_of(gapped)

    @tf.function
    def run():
        result = solver(matvec, call=0)
        alpha, beta = result.tridiagonal()
        return result.eigenvalues, result.iterations, alpha, beta, result.asymmetry

    eigenvalues, m, alpha, beta, asymmetry = (t.numpy() for t in run())
    assert alpha.shape == (m,) and beta.shape == (m - 1,)
    tridiagonal = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
    np.testing.assert_allclose(np.linalg.eigvalsh(tridiagonal)[::-1][:2], eigenvalues, rtol=1e-12)
    np.testing.assert_allclose(eigenvalues, top(gapped, 2), rtol=1e-10)
    assert asymmetry < 1e-13
    # The same run eagerly: the same T_m, and the padded fields stop at m.
    eager = solver(matvec, call=0)
    np.testing.assert_array_equal(eager.tridiagonal()[0].numpy(), alpha)
    assert np.all(eager.alpha.numpy()[m:] == 0.0) and eager.alpha.shape == (40,)
