"""Top eigenvalues of a symmetric linear operator by Lanczos iteration, in one `tf.function`.

The operator is given only through its action, ``matvec(v) = A v`` (a
Hessian- or preconditioned-Hessian-vector product, say), and A is assumed
symmetric. `Lanczos` returns the k largest *algebraic* eigenvalues (the
"LA" end of the spectrum, not the largest magnitude: an indefinite operator
with a large negative eigenvalue still yields its largest positive one),
optionally their Ritz vectors, the Ritz residuals and the number of matvecs.

Algorithm
---------
Lanczos (1950) builds an orthonormal basis v_1, ..., v_m of the Krylov space
span{v_1, A v_1, ..., A^(m-1) v_1} and the tridiagonal projection
T_m = V_mᵀ A V_m (diagonal α, off-diagonal β) by the three-term recurrence

    w = A v_i,  α_i = v_iᵀ w,  w ← w - α_i v_i - β_{i-1} v_{i-1},
    β_i = ‖w‖,  v_{i+1} = w / β_i.

The eigenvalues θ_j of T_m (Ritz values) converge to the extreme eigenvalues
of A, and fast. For λ1 of a PSD operator, power iteration's Rayleigh quotient
has an error falling like (λ2/λ1)^(2m) ≈ exp(-2m·g), g = (λ1 - λ2)/λ1, while
the Kaniel–Paige–Saad bound for Lanczos falls like C_(m-1)(1 + 2γ)^(-2) ≈
exp(-4m·√γ), γ = (λ1 - λ2)/(λ2 - λn), C the Chebyshev polynomial: the square
root of the relative gap instead of the gap. In floating point the plain
recurrence loses orthogonality exactly as Ritz values converge (Paige 1971,
1976), which produces spurious copies ("ghosts") of converged eigenvalues.
Here every new vector is instead orthogonalized against all previous ones
(full reorthogonalization), with two classical Gram–Schmidt passes: a single
pass can leave w visibly non-orthogonal when most of it lay in the span of
the basis (heavy cancellation, which is what happens near convergence), and
a second pass brings it to rounding level ("twice is enough", Kahan, in
Parlett, *The Symmetric Eigenvalue Problem*). With full reorthogonalization
the three-term update is subsumed by the projection against the whole basis;
α_i = v_iᵀ A v_i is computed before it.

The basis is a pre-allocated ``tf.Variable`` of shape [m_max, n] (float64 up
to ``float64_dimension_limit`` entries per vector, float32 beyond, to bound
memory at m_max·n·4 bytes); α and β are always float64. Reorthogonalization
reads only the rows filled so far, one block of rows at a time (block
Gram–Schmidt: classical within a block, modified across blocks), so that it
never copies more than one block, 4 rows or 64 MiB, out of the variable. Rows
are stored with a scatter update, in place (a strided-slice assignment would
switch the variable to copy-on-read and copy the whole basis). The Ritz
pairs of the small T_m come from a dense symmetric eigensolver on the m×m
tridiagonal matrix, on the CPU (m ≤ m_max, so this is negligible next to a
Hessian-vector product; ``tf.linalg.eigh_tridiagonal`` needs a static size
and runs its bisection as a graph loop of small ops, which is slower:
`benchmarks/tridiagonal_eigensolver.py` compares them).

Stopping rule
-------------
For a Ritz pair (θ_j, y_j = V_m s_j) the residual is exactly
‖A y_j - θ_j y_j‖ = |β_m · s_{m,j}|, the last component of the eigenvector of
T_m scaled by the next off-diagonal, so it costs nothing to monitor, and A
has an eigenvalue within that distance of θ_j (within residual²/gap once the
residual is below the gap to the rest of the spectrum). After at least
``max(min_iterations, k)`` steps the iteration stops as soon as every one of
the top-k Ritz values satisfies

    |β_m · s_{m,j}| ≤ tolerance · |θ_j|,

or after ``max_iterations`` steps (or n, the dimension), whichever comes
first. With ``criterion="eigenvalue"`` it also stops when, for every top-k
pair, the residual r_j is below half the gap δ_j = θ_j - θ_(j+1) to the next
Ritz value and r_j²/δ_j ≤ tolerance · |θ_j|. That is the Kato–Temple bound
(Parlett, *The Symmetric Eigenvalue Problem*, §10.7, §11.7): when no other
eigenvalue of A lies within δ of θ, A's eigenvalue near θ is within r²/δ of
it, so the eigenvalue converges like the square of the residual and needs
fewer steps than the residual itself. The Ritz gap only estimates the
spectral gap (interlacing puts θ_(j+1) at or below the eigenvalue it
approximates, so early on the Ritz gap can exceed the true one). The
warm-started runs of `SharpnessCallback` use this criterion. It also stops
on a lucky breakdown, β_m below ~1e-12 (float64 basis; 100 ε for float32)
times the largest |α|, β seen: the Krylov space is then
invariant and the Ritz values are eigenvalues of A to rounding. A breakdown
before k Ritz values exist (say a start vector that is itself an eigenvector,
with k > 1) continues from a fresh random vector orthogonal to the basis. A
NaN or infinite product (the Hessian of a diverged network) ends the run at
once, and every returned value, residual and vector is NaN.

Cost
----
One matvec per step, plus O(i·n) for the two reorthogonalization passes at
step i, plus an O(i³) eigensolve of T_i with i ≤ m_max (tiny). Memory: about
(m_max + c)·n entries, c = 8 to 14 (see `Lanczos`). `benchmarks/RESULTS.md`
gives the number of products that each tolerance takes on neural networks.

Why not power iteration
-----------------------
Power iteration uses the same matvec but keeps only the last vector, so it
needs more matvecs than Lanczos for the same accuracy on λ1 when λ2/λ1 is
close to 1, as on neural-network Hessians; its usual stopping rule (a small
relative change of the estimate) stops while the estimate is still creeping
up; and it converges to the largest *magnitude* eigenvalue, the wrong one for
an indefinite operator.

Use
---
Build a `Lanczos` once per problem size and call it repeatedly: the loop
and the matvec are traced into one ``tf.function`` on the first call and
reused as long as the same ``matvec`` is passed; a new start vector does not
retrace. Without an ``initial_vector`` the start is a stateless normal draw
from ``seed`` and a per-instance call counter, so TF's and Keras's global
random state are left untouched. A warm start (the previous top eigenvector,
possibly plus a little noise) cuts the number of matvecs when the operator
changes slowly. `lanczos` is a one-shot convenience that builds (and traces) a
new instance on every call.
"""

from __future__ import annotations

import contextlib
import numbers
import warnings
from typing import Callable, NamedTuple

import numpy as np
import tensorflow as tf

from analysis_tools._second_order import explained

__all__ = ["Lanczos", "LanczosResult", "compensated_dot", "lanczos"]


class LanczosResult(NamedTuple):
    """What `Lanczos` returns.

    Attributes:
        eigenvalues: [k] float64, the k largest algebraic Ritz values,
            descending.
        eigenvectors: [k, n] float64 unit Ritz vectors (row j belongs to
            ``eigenvalues[j]``; the sign is arbitrary), or None when
            ``return_vectors`` is False.
        residuals: [k] float64, the Ritz residual norms
            ‖A y_j - θ_j y_j‖ = |β_m · s_{m,j}|.
        iterations: scalar int32, the number of matvecs (the Krylov dimension
            m).
        alpha: [m_max] float64, the diagonal α_1 … α_m of the tridiagonal
            projection T_m = Vᵀ A V, zero past m.
        beta: [m_max] float64, β_1 … β_m (β_i = ‖r_i‖ couples v_i and
            v_(i+1); T_m's off-diagonal is β_1 … β_(m-1), β_m enters the
            residuals), zero past m. A zero β_i before m marks a restart after
            an early breakdown.
        asymmetry: scalar float64, the operator's measured asymmetry
            (`Lanczos.__call__`).

    Every field is a tensor, under `tf.function` too: `tridiagonal` gives
    T_m's diagonals, whose eigenvalues are the Ritz values and whose
    eigenvectors' squared first components are the Gauss quadrature weights
    of the start vector (stochastic Lanczos quadrature).
    """

    eigenvalues: tf.Tensor
    eigenvectors: tf.Tensor | None
    residuals: tf.Tensor
    iterations: tf.Tensor
    alpha: tf.Tensor | None = None
    beta: tf.Tensor | None = None
    asymmetry: tf.Tensor | None = None

    def tridiagonal(self):
        """(α_1 … α_m, β_1 … β_(m-1)): T_m's diagonal and off-diagonal, as tensors (sliced to m)."""
        m = self.iterations
        return self.alpha[:m], self.beta[: tf.maximum(m - 1, 0)]


# Reorthogonalization reads the basis in blocks of max(_BLOCK_ROWS rows, _BLOCK_BYTES) (at most
# m_max rows): few blocks for small n, where each block costs a loop iteration, and a transient
# copy of 4 rows for large n, where it costs memory.
_BLOCK_ROWS = 4
_BLOCK_BYTES = 64 * 2**20

BASIS_DEVICES = (None, "host", "accelerator")
# Where the float64 work goes: the host CPU.
_HOST = "/device:CPU:0"
# Compensated dot products of float32 vectors sum them in chunks of _CHUNK entries (a power of two).
_CHUNK = 1024
# Clears the low 12 of float32's 23 stored mantissa bits: the high part keeps 12 significant bits.
_HIGH_BITS = -4096  # 0xFFFFF000 as int32
# The relative asymmetry above which a call warns: rounding stays far below (4e-8 for a float32 matrix, 6e-9
# for a float64 DeepLabV3 with its float32 resizes); TensorFlow's wrong rule for bilinear resizing gave 0.37.
ASYMMETRY_WARNING = 1e-3
# A model that computes in 16 bits rounds every product to about bfloat16's ε = 7.8e-3 of its size: its
# asymmetry reaches 1e-3 to 2e-3 by rounding alone (the zoo's GPT-2 and BERT in mixed_bfloat16).
SIXTEEN_BIT_ASYMMETRY_WARNING = 5e-2
CRITERIA = ("residual", "eigenvalue")


def for_model(model, dimension, **options):
    """A `Lanczos` for an operator on `model`'s `dimension` weights: the one place operators build solvers.

    ``options`` go to `Lanczos`. The solver warns on asymmetry only above
    what the model's computation rounds to: a model with layers that compute
    in float16 or bfloat16 gives products whose asymmetry is rounding at the
    1e-3 level (`SIXTEEN_BIT_ASYMMETRY_WARNING`); others keep
    `ASYMMETRY_WARNING`.
    """
    solver = Lanczos(dimension, **options)
    sixteen = ("float16", "bfloat16")
    if any(getattr(layer, "compute_dtype", None) in sixteen for layer in model._flatten_layers(include_self=True)):
        solver.asymmetry_warning = SIXTEEN_BIT_ASYMMETRY_WARNING
    return solver


def default_basis_dtype(dimension, float64_dimension_limit=5_000_000):
    """The basis dtype `Lanczos` picks by default: float64 up to the limit, else float32."""
    return tf.float64 if dimension <= float64_dimension_limit else tf.float32


def _split(x):
    """x = high + low exactly, each with at most 12 significant bits (float32 in, float32 out)."""
    high = tf.bitcast(tf.bitwise.bitwise_and(tf.bitcast(x, tf.int32), tf.constant(_HIGH_BITS, tf.int32)), tf.float32)
    return high, x - high


def compensated_dot(x, y):
    """xᵀy of two float32 vectors to about float64 accuracy, with float32 arithmetic only where they live.

    The float64 result is formed on the host: a TPU has no float64. Each
    product is split exactly (Dekker's idea, by masking mantissa bits instead
    of multiplying, so that no fused multiply-add can change it): with
    x_i = h_i + l_i and y_i = h'_i + l'_i at 12 significant bits each,
    h_i h'_i is exact in float32 and the rest, h_i l'_i + l_i h'_i + l_i l'_i,
    is 2⁻¹¹ of it or less. The exact parts are summed in chunks of
    ``_CHUNK`` by a pairwise tree of error-free additions (Knuth's TwoSum:
    s = a + b, e = (a − (s − b')) + (b − b'), b' = s − a), whose errors
    collect, with the small rest, in a second float32 sum per chunk. Only
    those [chunks, 2] partial sums leave the device; the host adds them in
    float64. The error is about ε₃₂·2⁻¹¹·log₂(_CHUNK) ≈ 3e-10 of
    Σ|x_i y_i|, against ε₃₂·log₂(n) for a float32 reduction (Ogita, Rump & Oishi 2005,
    "Accurate sum and dot product", for the error-free transformations).
    Products below float32's normal range (≈1e-38) are lost, as in any
    float32 product.
    """
    x, y = tf.convert_to_tensor(x), tf.convert_to_tensor(y)
    if (
        x.dtype != tf.float32
        or y.dtype != tf.float32
        or x.shape.rank != 1
        or not x.shape.is_fully_defined()
        or x.shape != y.shape
    ):
        raise ValueError(
            "`compensated_dot` takes two float32 vectors of one static length, got "
            f"{x.dtype.name} {x.shape} and {y.dtype.name} {y.shape}."
        )
    n = int(x.shape[0])
    chunk = min(_CHUNK, 1 << max(n - 1, 0).bit_length())
    padded = -(-n // chunk) * chunk
    x_high, x_low = _split(tf.pad(x, [[0, padded - n]]))
    y_high, y_low = _split(tf.pad(y, [[0, padded - n]]))
    high = tf.reshape(x_high * y_high, [-1, chunk])
    low = tf.reshape(x_high * y_low + x_low * y_high + x_low * y_low, [-1, chunk])
    while chunk > 1:
        chunk //= 2
        a, b = high[:, :chunk], high[:, chunk:]
        total = a + b
        b_part = total - a
        low = low[:, :chunk] + low[:, chunk:] + ((a - (total - b_part)) + (b - b_part))
        high = total
    with tf.device(_HOST):
        return tf.reduce_sum(tf.cast(high, tf.float64)) + tf.reduce_sum(tf.cast(low, tf.float64))


def check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"`{name}` must be a bool, got {value!r}.")
    return bool(value)


def check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    return int(value)


class Lanczos:
    """Lanczos with full reorthogonalization for the top-k eigenpairs of a symmetric operator.

    Args:
        dimension: n, the length of the vectors the operator acts on.
        max_iterations: most matvecs (Krylov dimension) per call; the basis
            holds m_max = min(max_iterations, dimension) vectors.
        k: number of top (largest algebraic) eigenvalues to return;
            1 ≤ k ≤ m_max.
        tolerance: the relative accuracy at which the iteration stops
            (see ``criterion``).
        criterion: ``"residual"`` (the default) stops once every top-k Ritz
            residual is at most ``tolerance · |θ_j|``: A has an eigenvalue
            within that distance, and the Ritz vector has converged as well.
            ``"eigenvalue"`` certifies the eigenvalue alone, which takes
            fewer matvecs: it also stops once a residual r_j is below half
            the gap δ_j to the next Ritz value and r_j²/δ_j ≤ ``tolerance ·
            |θ_j|`` (the Kato–Temple bound, with the Ritz gap standing in for
            the spectral gap; see "Stopping rule" in the module docstring).
        min_iterations: fewest matvecs before the residual test may stop the
            iteration (a lucky breakdown may stop earlier). Defaults to
            min(10, m_max); at least k are always taken, at most m_max.
        basis_dtype: ``tf.float64`` or ``tf.float32`` for the stored basis.
            Defaults to float64 when dimension ≤ ``float64_dimension_limit``,
            else float32. α, β and the results are float64 either way.
        float64_dimension_limit: see ``basis_dtype``.
        return_vectors: also return the Ritz vectors.
        seed: integer seed of the random start vectors.
        basis_device: where the basis lives. None (the default) places it
            like any other variable (on the accelerator when there is one),
            except where TensorFlow sees TPU devices: a TPU has no float64,
            so there the default is the host; ``"host"`` keeps it, and the reorthogonalization, α, β and the Ritz
            vectors computed from it, in host memory (``/device:CPU:0``),
            while ``matvec`` runs wherever it runs. Each step then copies two
            vectors between the devices (v to the matvec, A v back).
            ``"accelerator"`` keeps a float32 basis (``basis_dtype`` defaults
            to, and must be, float32) on the default device, a TPU too: the
            float64 values (α, β, the norms, T and its eigenproblem, the
            Ritz vectors' normalization) are formed on the host. The
            arithmetic of any float32 basis follows its device: on a GPU or
            TPU it is never projected with a matmul (TF32 on Ampere and later
            GPUs, bfloat16 passes on a TPU) but with elementwise products and
            sums; on a TPU, which has no float64, its dot products are
            `compensated_dot`s (about 3e-10 of Σ|x_i y_i|); elsewhere they
            are float64 dots of float32 vectors, which are exact products.
            The eigenvalues then carry the float32 basis's rounding: 2e-6
            relative on the tests' 300 × 300 matrices, against 1e-10 for a
            float64 basis. On a TPU the default is the host because of that
            accuracy and because a float64 basis needs no compensation.
        basis: a ``tf.Variable`` of shape [m_max, n] and the basis dtype to
            hold the basis, in place of one allocated here. Solvers that never
            run at the same time may share one (its contents are scratch, read
            only inside a call): `HessianOperator.solver` does so.

    Memory. With b = 8 bytes (float64 basis) or 4 (float32), the solver adds

        m_max·n·b                  the basis (allocated by the constructor)
      + B·n·b                      during a step: one block of B basis rows read
                                   for reorthogonalization, B = 4 or as many
                                   rows as fit in 64 MiB, whichever is more
                                   (at most m_max)
      + 4·n·b                      the start vector, v, w and one temporary of
                                   a block update
      + 3·n·8 (float32 basis)      float64 copies of v and w for α and of w for
                                   β (free casts with a float64 basis); on a
                                   GPU or TPU also B·n·4 for the elementwise
                                   products, and on a TPU about 8·n·4 for a
                                   compensated dot instead of the copies

    that is, with B = 4 (n·b ≥ 16 MiB: n ≥ 2.1 M in float64, 4.2 M in
    float32), (m_max + 8)·n·8 bytes for a float64 basis and (m_max + 14)·n·4
    for a float32 one. The terms after the basis are transient and do not add
    up across steps (TensorFlow's CPU allocator statistics at n = 5·10⁶,
    m_max = 10, B = 4: a peak of 8.1 float64 and 14.4 float32 vectors beyond
    the basis). ``return_vectors`` adds k·n·(b + 16) at the end (the Ritz
    vectors in the basis dtype, then in float64, then normalized). What
    ``matvec`` allocates itself (a Hessian-vector product holds the model's
    activations and gradients) comes on top, on its own device. With
    ``basis_device="host"`` everything above is host memory.

    Call with ``matvec`` (a callable mapping an [n] tensor of the basis dtype
    to A v, shape [n], any float dtype) and optionally ``initial_vector`` (an
    [n] warm start, normalized here; a zero or non-finite one falls back to
    the random start).
    """

    #: The relative asymmetry above which a call warns; `for_model` raises it for 16-bit models.
    asymmetry_warning = ASYMMETRY_WARNING

    def __init__(
        self,
        dimension: int,
        max_iterations: int = 40,
        k: int = 1,
        tolerance: float = 1e-3,
        criterion: str = "residual",
        min_iterations: int | None = None,
        basis_dtype=None,
        float64_dimension_limit: int = 5_000_000,
        return_vectors: bool = False,
        seed: int = 0,
        basis_device=None,
        basis=None,
    ):
        n = check_positive_int("dimension", dimension)
        max_iterations = check_positive_int("max_iterations", max_iterations)
        k = check_positive_int("k", k)
        float64_dimension_limit = check_positive_int("float64_dimension_limit", float64_dimension_limit)
        m_max = min(max_iterations, n)
        if k > m_max:
            raise ValueError(f"`k` must be at most min(max_iterations, dimension) = {m_max}, got {k}.")
        tolerance = _check_tolerance(tolerance)
        criterion = _check_criterion(criterion)
        if min_iterations is None:
            min_iterations = min(10, m_max)
        else:
            min_iterations = check_positive_int("min_iterations", min_iterations)
        seed = _check_seed(seed)
        return_vectors = check_bool("return_vectors", return_vectors)
        if not any(basis_device is device or basis_device == device for device in BASIS_DEVICES):
            raise ValueError(f"`basis_device` must be one of {BASIS_DEVICES}, got {basis_device!r}.")
        if basis_device is None and tf.config.list_logical_devices("TPU"):
            basis_device = "host"  # float64 α, β, reorthogonalization: not on a TPU
        if basis_dtype is None:
            basis_dtype = (
                tf.float32 if basis_device == "accelerator" else default_basis_dtype(n, float64_dimension_limit)
            )
        else:
            try:
                basis_dtype = tf.as_dtype(basis_dtype)
            except TypeError as error:
                raise ValueError(f"`basis_dtype` must be tf.float32 or tf.float64, got {basis_dtype!r}.") from error
            if basis_dtype not in (tf.float32, tf.float64):
                raise ValueError(f"`basis_dtype` must be tf.float32 or tf.float64, got {basis_dtype!r}.")
            if basis_device == "accelerator" and basis_dtype != tf.float32:
                raise ValueError(
                    '`basis_device="accelerator"` keeps a float32 basis (a TPU has no float64), got '
                    f"`basis_dtype={basis_dtype.name}`; for a float64 basis on a GPU, leave `basis_device` None."
                )

        self.dimension = n
        self.max_iterations = m_max
        self.k = k
        self.tolerance = float(tolerance)
        self.criterion = criterion
        self.min_iterations = min(max(min_iterations, k), m_max)
        self.basis_dtype = basis_dtype
        self.return_vectors = bool(return_vectors)
        self.seed = int(seed)
        self.basis_device = basis_device
        # Lucky-breakdown threshold on β relative to the largest |α|, β seen.
        self._breakdown = max(1e-12, 100.0 * float(np.finfo(basis_dtype.as_numpy_dtype).eps))
        self._block_rows = min(m_max, max(_BLOCK_ROWS, _BLOCK_BYTES // (n * basis_dtype.size)))
        if basis is None:
            with self._on_basis_device():
                basis = tf.Variable(tf.zeros([m_max, n], basis_dtype), trainable=False, name="lanczos_basis")
        elif not isinstance(basis, tf.Variable) or basis.dtype != basis_dtype or tuple(basis.shape) != (m_max, n):
            raise ValueError(
                f"`basis` must be a tf.Variable of shape {(m_max, n)} and dtype {basis_dtype.name}, got {basis!r}."
            )
        self._basis = basis
        # What the basis's device computes exactly decides how a float32 basis is projected and dotted.
        self._device_type = tf.DeviceSpec.from_string(basis.device).device_type or "CPU"
        self._calls = tf.Variable(tf.constant(0, tf.int64), trainable=False, name="lanczos_calls")
        self._matvec = None
        self._function = None
        self.asymmetry = None

    def __call__(
        self,
        matvec: Callable[[tf.Tensor], tf.Tensor],
        initial_vector=None,
        min_iterations: int | None = None,
        certify_gap: bool = False,
        *,
        tolerance: float | None = None,
        criterion: str | None = None,
        seed: int | None = None,
        call: int | None = None,
    ) -> LanczosResult:
        """Runs Lanczos on ``matvec`` from ``initial_vector`` (random if None or zero).

        ``min_iterations`` overrides the instance's for this call (a warm start
        may stop earlier). With ``certify_gap`` the residual test must also
        pass the gap test: every top-k residual below half the distance from
        its Ritz value to the next one, so that the eigenvalue it brackets is
        separated from the rest of the Krylov spectrum.

        The result carries the run's T_m (`LanczosResult.tridiagonal`) and
        its measured asymmetry, in and out of `tf.function`.

        After an eager call, ``self.asymmetry`` also holds the run's measured
        asymmetry of the operator, max_i |v_(i-1)ᵀ A v_i − β_(i-1)| over the
        largest |α|, β (β_(i-1) = v_iᵀ A v_(i-1); one dot product a step): 0
        to rounding for a symmetric operator (about 1e-16 in float64, 1e-8 for
        a float32 product), and a warning above 1e-3 (`ASYMMETRY_WARNING`),
        where the Ritz values are no longer eigenvalues of anything (a wrong
        second-order rule, as TensorFlow's for bilinear resizing, measured
        0.37).

        ``tolerance``, ``criterion`` and ``seed`` override the instance's for
        this call, and ``call`` replaces the call counter (the index folded
        into the seed of the random start; the counter then does not move),
        so that one instance, traced once, serves callers that want
        different settings: ``call=0`` with ``seed=s`` starts where a new
        instance with seed s starts. None of them retraces.
        """
        if not callable(matvec):
            raise ValueError(f"`matvec` must be callable, got {matvec!r}.")
        tolerance = self.tolerance if tolerance is None else _check_tolerance(tolerance)
        criterion = self.criterion if criterion is None else _check_criterion(criterion)
        seed = self.seed if seed is None else _check_seed(seed)
        if call is None:
            call = self._calls.assign_add(1) - 1
        elif isinstance(call, bool) or not isinstance(call, numbers.Integral) or call < 0:
            raise ValueError(f"`call` must be a non-negative integer, got {call!r}.")
        if min_iterations is None:
            min_iterations = self.min_iterations
        else:
            min_iterations = min(max(check_positive_int("min_iterations", min_iterations), self.k), self.max_iterations)
        if self._function is None or not _same_callable(matvec, self._matvec):
            self._matvec = matvec
            self._function = tf.function(
                lambda v0, fewest, gap, tolerance, eigenvalue, seed: self._run(
                    matvec, v0, fewest, gap, tolerance, eigenvalue, seed
                ),
                input_signature=[
                    tf.TensorSpec([self.dimension], self.basis_dtype),
                    tf.TensorSpec([], tf.int32),
                    tf.TensorSpec([], tf.bool),
                    tf.TensorSpec([], tf.float64),
                    tf.TensorSpec([], tf.bool),
                    tf.TensorSpec([2], tf.int64),
                ],
            )
        if initial_vector is None:
            v0 = tf.zeros([self.dimension], self.basis_dtype)
        else:
            v0 = tf.convert_to_tensor(initial_vector)
            if not (v0.dtype.is_floating or v0.dtype.is_integer):
                raise ValueError(f"`initial_vector` must be real, got dtype {v0.dtype.name}.")
            if v0.shape.num_elements() not in (None, self.dimension):
                raise ValueError(f"`initial_vector` must have {self.dimension} elements, got shape {v0.shape}.")
            v0 = tf.reshape(tf.cast(v0, self.basis_dtype), [self.dimension])
        # XLA reports an op it cannot compile when the compiled product first runs, here.
        with explained("the operator's product"):
            eigenvalues, eigenvectors, residuals, iterations, alpha, beta, asymmetry = self._function(
                v0,
                tf.constant(min_iterations, tf.int32),
                tf.constant(bool(certify_gap)),
                tf.constant(tolerance, tf.float64),
                tf.constant(criterion == "eigenvalue"),
                tf.stack([tf.constant(seed, tf.int64), tf.cast(call, tf.int64)]),
            )
        if tf.executing_eagerly():
            self.asymmetry = float(asymmetry)
            if self.asymmetry > self.asymmetry_warning:
                warnings.warn(
                    f"The operator is not symmetric: |v_(i-1)ᵀ A v_i - v_iᵀ A v_(i-1)| reached {self.asymmetry:.1e} "
                    "of its largest |α|, β, so its Lanczos eigenvalues are not those of any symmetric matrix. "
                    "A Hessian-vector product is symmetric unless an op's second-order rule is not the "
                    "derivative of its gradient rule (find the layer: per-block operators narrow it down; and "
                    "report it), or its float32 computation is ill-conditioned enough that rounding shows at "
                    "this level: BatchNorm in training mode over a few examples is one such case (measured: "
                    '5 % off λ1 on a MobileNetV3), which mode="inference" or a float64 twin of the model '
                    "settles.",
                    stacklevel=2,
                )
        return LanczosResult(
            eigenvalues, eigenvectors if self.return_vectors else None, residuals, iterations, alpha, beta, asymmetry
        )

    def reset_seed(self):
        """Restart the sequence of random start vectors, as in a new instance with the same seed."""
        self._calls.assign(0)

    def _on_basis_device(self):
        """A device scope for the basis and the work on it: the host CPU, or no scope at all."""
        if self.basis_device == "host":
            return tf.device(_HOST)
        return contextlib.nullcontext()

    # The traced body -----------------------------------------------------------------------

    def _run(self, matvec, v0, min_iterations, certify_gap, tolerance, eigenvalue_criterion, seed):
        with self._on_basis_device():
            return self._iterate(matvec, v0, min_iterations, certify_gap, tolerance, eigenvalue_criterion, seed)

    def _iterate(self, matvec, v0, min_iterations, certify_gap, tolerance, eigenvalue_criterion, seed):
        """The Lanczos recurrence with full reorthogonalization, in one `tf.while_loop`.

        Step i multiplies the basis vector v_i by A, takes α_i = v_iᵀ A v_i,
        orthogonalizes A v_i against v_0 … v_i (`_Basis.orthogonalize`) and
        stores v_(i+1) = w / β_i; it stops once the top-k Ritz pairs of T_m
        meet `_converged`, at an invariant subspace with k Ritz values, or
        on a non-finite product (the result is then NaN).
        """
        n, m_max, k = self.dimension, self.max_iterations, self.k
        arithmetic = _Arithmetic(self.basis_dtype, self._device_type)
        basis = _Basis(self._basis, self._block_rows, arithmetic)
        dtype, on_host = arithmetic.dtype, arithmetic.on_host

        def random_vector(index):
            return tf.random.stateless_normal(
                [n], seed=tf.random.experimental.stateless_fold_in(seed, index), dtype=dtype
            )

        v0_norm = arithmetic.norm64(v0)
        with on_host():
            start_ok = tf.logical_and(v0_norm > 0, tf.math.is_finite(v0_norm))
        v = arithmetic.normalized(tf.cond(start_ok, lambda: v0, lambda: random_vector(0)))
        basis.store(tf.constant(0), v)

        def cond(i, v, alpha, beta, scale, asymmetry, done):
            return tf.logical_and(i < m_max, tf.logical_not(done))

        def body(i, v, alpha, beta, scale, asymmetry, done):
            with tf.device(None) if self.basis_device == "host" else contextlib.nullcontext():
                product = matvec(v)
            w = tf.reshape(tf.cast(product, dtype), [n])
            m = i + 1
            a = arithmetic.dot64(v, w)
            # Symmetry, for free: v_(i-1)ᵀ A v_i must equal β_(i-1) = v_iᵀ A v_(i-1).
            previous_coupling = arithmetic.dot64(basis.row(tf.maximum(i - 1, 0)), w)
            w = basis.orthogonalize(w, m)
            b = arithmetic.norm64(w)
            with on_host():
                alpha, beta, scale, asymmetry = _record_step(i, a, b, previous_coupling, alpha, beta, scale, asymmetry)
                breakdown = tf.logical_not(b > self._breakdown * scale)
                rule = (k, min_iterations, tolerance, eigenvalue_criterion, certify_gap)
                done = _stops(alpha, beta, m, breakdown, *rule)
                more = tf.logical_and(tf.logical_not(done), m < m_max)
                b_single = tf.cast(b, dtype)

            def restart():
                # Invariant subspace found before k Ritz values exist: continue from a
                # random vector orthogonal to it, with a zero coupling in T.
                with on_host():
                    zero = tf.constant(0.0, tf.float64)
                return arithmetic.normalized(basis.orthogonalize(random_vector(m), m)), zero

            v_next, b_next = tf.cond(
                tf.logical_and(breakdown, more), restart, lambda: (tf.math.divide_no_nan(w, b_single), b)
            )
            with on_host():
                beta = tf.tensor_scatter_nd_update(beta, [[i]], [b_next])

            def store_next():
                basis.store(m, v_next)
                return tf.constant(True)

            # Every loop output waits for the store, so the next step reads the new row.
            with tf.control_dependencies([tf.cond(more, store_next, lambda: tf.constant(False))]):
                v_next = tf.identity(v_next)
                with on_host():
                    m, alpha, beta, scale, asymmetry, done = (
                        tf.identity(x) for x in (m, alpha, beta, scale, asymmetry, done)
                    )
                return m, v_next, alpha, beta, scale, asymmetry, done

        with on_host():
            zeros = tf.zeros([m_max], tf.float64)
            state = [
                tf.constant(0),
                v,
                zeros,
                zeros,
                tf.constant(0.0, tf.float64),
                tf.constant(0.0, tf.float64),
                tf.constant(False),
            ]
        m, _, alpha, beta, scale, asymmetry, _ = tf.while_loop(cond, body, state, maximum_iterations=m_max)
        with on_host():
            asymmetry = tf.math.divide_no_nan(asymmetry, scale)
            values, residuals, s, _ = _top(alpha, beta, m, k)
        if self.return_vectors:
            vectors = basis.ritz_vectors(s, m, k, n)
        else:
            with on_host():
                vectors = tf.zeros([0, n], tf.float64)
        return values, vectors, residuals, m, alpha, beta, asymmetry


class _Arithmetic:
    """How a basis of one dtype, on one device type, takes its dot products and norms.

    A float32 basis keeps every float64 value (α, β, T and its eigenproblem,
    the norms) on the host. Off the CPU no matrix unit touches it: TF32 on
    GPUs and bfloat16 passes on TPUs would round its projections to 10 or 8
    bits (`elementwise`). Where there is no float64 (a TPU), its dot products
    are compensated float32 ones (`compensated`); elsewhere products of
    float32s are exact in float64.
    """

    def __init__(self, dtype, device_type):
        self.dtype = dtype
        self.single = dtype == tf.float32
        self.elementwise = self.single and device_type != "CPU"
        self.compensated = self.single and device_type == "TPU"

    def on_host(self):
        """The device scope of float64 work on a float32 basis: the host (else no scope)."""
        return tf.device(_HOST) if self.single else contextlib.nullcontext()

    def dot64(self, x, y):
        """xᵀy in float64 (compensated float32 on a TPU)."""
        if self.compensated:
            return compensated_dot(x, y)
        return tf.tensordot(tf.cast(x, tf.float64), tf.cast(y, tf.float64), 1)

    def norm64(self, x):
        square = self.dot64(x, x)
        with self.on_host():
            return tf.sqrt(square)

    def normalized(self, x):
        """x / ‖x‖ in the basis dtype, the norm taken in float64."""
        norm = self.norm64(x)
        if self.single:
            with self.on_host():
                norm = tf.cast(norm, self.dtype)
            return x / norm
        return tf.cast(tf.cast(x, tf.float64) / norm, self.dtype)


class _Basis:
    """The Lanczos basis variable, [m_max + 1, n], read a block of rows at a time."""

    def __init__(self, variable, block_rows, arithmetic):
        self.variable = variable
        self.block_rows = block_rows
        self.arithmetic = arithmetic

    def row(self, index):
        return self.variable.sparse_read(index[None])[0]

    def store(self, row, vector):
        """Writes `vector` into `row` in place (a strided-slice assignment would copy the basis)."""
        return self.variable.scatter_update(tf.IndexedSlices(vector[None], row[None]))

    def over_rows(self, m, step, x):
        """Runs ``x = step(rows, first, x)`` over the first m rows, a gather of at most `block_rows` at a time."""
        size = self.block_rows

        def block(start, x):
            # After the previous block's update, so that its rows are freed first.
            with tf.control_dependencies([x]):
                rows = self.variable.sparse_read(tf.range(start, tf.minimum(start + size, m)))
            return start + size, step(rows, start, x)

        # One block at a time: parallel iterations would gather every block at once.
        return tf.while_loop(lambda start, x: start < m, block, [tf.constant(0), x], parallel_iterations=1)[1]

    def orthogonalize(self, w, m):
        """Two block Gram–Schmidt passes of w against the first m rows."""
        elementwise = self.arithmetic.elementwise

        def project_out(rows, first, w):
            if elementwise:  # products and sums: full float32 on every device
                return w - tf.reduce_sum(rows * tf.reduce_sum(rows * w, axis=1)[:, None], axis=0)
            return w - tf.linalg.matvec(rows, tf.linalg.matvec(rows, w), transpose_a=True)

        for _ in range(2):
            w = self.over_rows(m, project_out, w)
        return w

    def ritz_vectors(self, s, m, k, n):
        """The k Ritz vectors V_m s_j, unit norm, in float64: [k, n]."""
        arithmetic = self.arithmetic
        with arithmetic.on_host():
            coefficients = tf.cast(tf.transpose(s), arithmetic.dtype)  # [k, m]

        def add_block(rows, first, y):
            block = coefficients[:, first : first + tf.shape(rows)[0]]
            if arithmetic.elementwise:  # as in the reorthogonalization
                return y + tf.reduce_sum(block[:, :, None] * rows[None], axis=1)
            return y + tf.matmul(block, rows)

        y = self.over_rows(m, add_block, tf.zeros([k, n], arithmetic.dtype))
        if arithmetic.single:
            norms = [arithmetic.norm64(y[j]) for j in range(k)]
            with arithmetic.on_host():
                return tf.cast(y, tf.float64) / tf.stack(norms)[:, None]
        y = tf.cast(y, tf.float64)
        return y / tf.norm(y, axis=1, keepdims=True)


def _record_step(i, a, b, previous_coupling, alpha, beta, scale, asymmetry):
    """T's entries after step i (α_i = a, β_i = b), the largest |entry| so far, and the largest asymmetry.

    The asymmetry of step i is |v_(i-1)ᵀ A v_i − β_(i-1)|, which a symmetric A
    makes a rounding error (`Lanczos.asymmetry` divides it by the scale).
    """
    coupling = tf.where(i > 0, tf.abs(previous_coupling - beta[tf.maximum(i - 1, 0)]), 0.0)
    alpha = tf.tensor_scatter_nd_update(alpha, [[i]], [a])
    beta = tf.tensor_scatter_nd_update(beta, [[i]], [b])
    return alpha, beta, tf.maximum(scale, tf.maximum(tf.abs(a), b)), tf.maximum(asymmetry, coupling)


def _stops(alpha, beta, m, breakdown, k, min_iterations, tolerance, eigenvalue_criterion, certify_gap):
    """Whether the run ends after m steps: an invariant subspace with k Ritz values, the stopping
    rule met (`_converged`, from `min_iterations` on), or a non-finite T (the result is then NaN, see `_top`)."""
    converged = tf.logical_and(
        m >= min_iterations,
        tf.cond(
            m >= min_iterations,
            lambda: _converged(_top(alpha, beta, m, k), tolerance, eigenvalue_criterion, certify_gap),
            lambda: tf.constant(False),
        ),
    )
    done = tf.logical_or(tf.logical_and(breakdown, m >= k), converged)
    return tf.logical_or(done, tf.logical_not(_finite(alpha, beta, m)))


def _finite(alpha, beta, m):
    return tf.logical_and(tf.reduce_all(tf.math.is_finite(alpha[:m])), tf.reduce_all(tf.math.is_finite(beta[:m])))


def _top(alpha, beta, m, k):
    """Top-k Ritz values of T_m (descending), their residuals, T_m eigenvectors [m, k] and gaps.

    The gap of each is its distance to the next Ritz value below (0 where
    there is none yet). All NaN when T_m is not finite (a NaN or inf
    product, e.g. from a diverged network), where eigh would fail. A
    ≤ m_max × m_max eigenproblem: on the host CPU, whatever device runs the
    product.
    """
    with tf.device(_HOST):
        ok = _finite(alpha, beta, m)
        a = tf.where(ok, alpha, 0.0)[:m]
        b = tf.where(ok, beta, 0.0)[: m - 1]
        theta, s = tf.linalg.eigh(tf.linalg.diag(a) + tf.linalg.diag(b, k=1) + tf.linalg.diag(b, k=-1))
        # m < k only when a non-finite product stopped the run early.
        index = tf.maximum(m - 1 - tf.range(k), 0)
        values = tf.gather(theta, index)
        last = tf.gather(s[m - 1], index)
        gaps = tf.where(index > 0, values - tf.gather(theta, tf.maximum(index - 1, 0)), 0.0)
        nan = tf.constant(np.nan, tf.float64)
        return (
            tf.where(ok, values, nan),
            tf.where(ok, tf.abs(beta[m - 1] * last), nan),
            tf.where(ok, tf.gather(s, index, axis=1), nan),
            tf.where(ok, gaps, nan),
        )


def _converged(top, tolerance, eigenvalue_criterion, certify_gap):
    """Whether every top-k Ritz pair of `top` (`_top`'s values, residuals, vectors, gaps) meets the stopping rule.

    Its residual is at most `tolerance` |θ|, or, with the "eigenvalue"
    criterion, r²/δ ≤ `tolerance` |θ| once r ≤ δ/2 (Kato–Temple: |λ - θ| ≤ r²/δ,
    δ the gap to the next Ritz value); with `certify_gap`, r ≤ δ/2 as well.
    """
    values, residuals, _, gaps = top
    bound = tolerance * tf.abs(values)
    separated = residuals <= 0.5 * gaps
    small = tf.logical_or(
        residuals <= bound,
        tf.logical_and(eigenvalue_criterion, tf.logical_and(separated, residuals**2 <= bound * gaps)),
    )
    return tf.reduce_all(tf.logical_and(small, tf.logical_or(tf.logical_not(certify_gap), separated)))


def _check_tolerance(tolerance):
    if (
        isinstance(tolerance, bool)
        or not isinstance(tolerance, numbers.Real)
        or not np.isfinite(tolerance)
        or tolerance <= 0
    ):
        raise ValueError(f"`tolerance` must be a positive finite number, got {tolerance!r}.")
    return float(tolerance)


def _check_criterion(criterion):
    if criterion not in CRITERIA:
        raise ValueError(f"`criterion` must be one of {CRITERIA}, got {criterion!r}.")
    return criterion


def _check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"`seed` must be an integer, got {seed!r}.")
    return int(seed)


def _same_callable(a, b):
    if a is b:
        return True
    try:
        return bool(a == b)
    except Exception:
        return False


def lanczos(
    matvec,
    dimension,
    max_iterations=40,
    k=1,
    tolerance=1e-3,
    initial_vector=None,
    return_vectors=False,
    seed=0,
    **kwargs,
) -> LanczosResult:
    """One-shot `Lanczos`: builds an instance (and traces it) and calls it once.

    ``kwargs`` go to `Lanczos` (``min_iterations``, ``basis_dtype``,
    ``float64_dimension_limit``). For repeated calls on the same problem,
    construct a `Lanczos` once and call it instead.
    """
    solver = Lanczos(
        dimension,
        max_iterations=max_iterations,
        k=k,
        tolerance=tolerance,
        return_vectors=return_vectors,
        seed=seed,
        **kwargs,
    )
    return solver(matvec, initial_vector=initial_vector)
