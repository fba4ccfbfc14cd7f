"""Every block at once: the block-diagonal part of a curvature, one probe pass per set of block products.

A per-block measurement of L blocks B_1 … B_L (layers, transformer blocks)
asks for the top eigenvalues of each diagonal block A_ℓ = A_{B_ℓ B_ℓ} of a
curvature A (the Hessian, the GGN, a Fisher). Run block by block, each
Lanczos step of each block is a product over the whole probe set: L·m passes
over the data for m steps.

`BlockDiagonalOperator` is D = diag(A_1, …, A_L), the blocks' coordinates
concatenated in the order given. One product D v is one pass over the probe
set: each batch is read once, and on it every block's product A_ℓ v_ℓ is
computed (each differentiating its own weights only, as an operator built
with ``variables=``). Memory holds one probe batch whatever L.

`blockwise_eigenvalues` runs the L Lanczos recurrences in lockstep on D. A
vector supported on block ℓ stays there (D is block-diagonal), so L
recurrences started on the L blocks are one recurrence on D whose inner
products and norms are taken per block (segmented): the Krylov space of each
block is exactly the one its own Lanczos would build, each step costs one
product D v (one probe pass), and a block whose eigenvalues have converged,
or whose Krylov space is exhausted, is frozen (its vector set to zero) while
the others go on. m steps cost m passes, not L·m.

Products D v run on the replicas in float32 or bfloat16 where the model is
(as every curvature product); the Lanczos coefficients α, β are float64, and
each block's small tridiagonal eigenproblem is solved on the host.
"""

import copy

import numpy as np
import tensorflow as tf

from analysis_tools._blocks import block_indices, layer_blocks
from analysis_tools._probe import ReplicaProgram
from analysis_tools._second_order import ExactResizeGradients, explained
from analysis_tools.curvature.lanczos import (
    LanczosResult,
    _check_seed,
    _check_tolerance,
    check_positive_int,
    default_basis_dtype,
)

__all__ = ["BlockDiagonalOperator", "blockwise_eigenvalues"]


class BlockDiagonalOperator:
    """D = diag(A_{B_1B_1}, …, A_{B_LB_L}) of a curvature operator A, one probe pass per product.

    Args:
        operator: A curvature operator (`HessianOperator`, `GGNOperator`,
            `EmpiricalFisherOperator`, `FisherOperator`) of the whole network
            or of a block; or such an operator preconditioned
            (``A.preconditioned(P)``), whose blocks are then
            S_ℓ A_{B_ℓB_ℓ} S_ℓ with S = P^{-1/2} restricted to each block.
        blocks: {name: selection} (a selection is what ``variables=`` takes: a
            layer or block name, a layer, variables, or a list of them), or a
            list of selections (named by position); None: the model's
            blocks (`analysis_tools.curvature.model_blocks`). The blocks must not share
            variables.

    `stack` puts several of them (other curvatures, the preconditioned form,
    other blocks) into one: every problem of a measurement, one probe pass
    per set of products.

    Attributes:
        names: The blocks' names, in the order of D's coordinates.
        dimensions: Each block's parameter count.
        dimension: Σ dimensions.
        segments: [dimension] int32, the block of each coordinate.
        positions: Per block, the positions of its coordinates in the flat
            vector of `operator` (to map a block's vector back).
        operators: Per block, the block's own operator (what ``variables=``
            builds), sharing `operator`'s probe set and loss; its ``matvec``
            is one product over the probe set.
        scales: Per block, its S (flat float64) or None.
        num_passes: Passes over the probe set made by `matvec` so far.

    Raises:
        ValueError: If a selection names nothing trainable, leaves the
            operator's block, or two blocks share variables; or if `operator`
            is neither a curvature operator nor one preconditioned.
    """

    def __init__(self, operator, blocks=None):
        from analysis_tools.curvature.composition import PreconditionedOperator
        from analysis_tools.curvature.hessian import HessianOperator  # a sibling that imports this one's users

        base, scale = operator, None
        if isinstance(operator, PreconditionedOperator):
            base, scale = operator.base, operator.preconditioner_scale
        if not isinstance(base, HessianOperator) or base._within is not None:
            raise ValueError(
                "BlockDiagonalOperator takes a curvature operator (HessianOperator, GGNOperator, a "
                "Fisher) built for the network or a block, or one preconditioned; got "
                f"{type(base).__name__}" + (" made with `block()`" if isinstance(base, HessianOperator) else "") + "."
            )
        if blocks is None:
            blocks = dict(layer_blocks(base.model))
        elif not isinstance(blocks, dict):
            blocks = {str(i): selection for i, selection in enumerate(blocks)}
        if not blocks:
            raise ValueError("`blocks` is empty.")
        local = {position: i for i, position in enumerate(base._block)}
        offsets = np.cumsum([0] + base.sizes)
        names, parts, positions, scales, seen = [], [], [], [], {}
        for name, selection in blocks.items():
            selected = block_indices(base.model, base._loss.variables, selection, base._purpose)
            for p in selected:
                path = base._loss.variables[p].path
                if p not in local:
                    raise ValueError(f"Block {name!r}: {path} is not in the operator's block.")
                if p in seen:
                    raise ValueError(f"Blocks {seen[p]!r} and {name!r} share {path}: blocks must be disjoint.")
                seen[p] = name
            part = copy.copy(base)
            part._restrict(selected)  # its own variables: its product differentiates them alone
            part._replica_product = ReplicaProgram(part._replica_hvp, part.jit_compile, part._product_name)
            part._hvp = tf.function(part._hessian_vector_product, reduce_retracing=True)
            names.append(str(name))
            parts.append(part)
            positions.append(np.concatenate([np.arange(offsets[local[p]], offsets[local[p] + 1]) for p in selected]))
            scales.append(None if scale is None else tf.gather(scale, positions[-1]))
        self._set(base, names, parts, positions, scales)

    @classmethod
    def stack(cls, operators):
        """diag(D_1, …, D_q): the blocks of several `BlockDiagonalOperator`s, one probe pass for all.

        Their block names must differ (name them so: ``{"ggn/head": "head"}``),
        and they must share one probe set: operators of one model built on
        the same ``probe`` (see `HessianOperator`'s ``data``), or one
        operator's blocks and preconditioned blocks.

        Raises:
            ValueError: If names repeat, or the probe sets differ.
        """
        operators = list(operators)
        if not operators or not all(isinstance(o, BlockDiagonalOperator) for o in operators):
            raise ValueError("`stack` takes a non-empty list of BlockDiagonalOperators.")
        names = [name for o in operators for name in o.names]
        if len(set(names)) != len(names):
            raise ValueError(f"Block names repeat across the operators: {names}.")
        if any(o.probe is not operators[0].probe for o in operators):
            raise ValueError("The operators stream different probe sets: build them on one operator's `probe`.")
        stacked = cls.__new__(cls)
        stacked._set(
            operators[0].base,
            names,
            [p for o in operators for p in o.operators],
            [p for o in operators for p in o.positions],
            [s for o in operators for s in o.scales],
        )
        return stacked

    def _set(self, base, names, parts, positions, scales):
        self.base, self.model = base, base.model
        self.names, self.operators, self.positions, self.scales = names, parts, positions, scales
        self.curvatures = [part.curvature for part in parts]
        self.dimensions = [part.dimension for part in parts]
        self.dimension = int(sum(self.dimensions))
        self.segments = np.repeat(np.arange(len(names), dtype=np.int32), self.dimensions)
        self.probe = base.probe
        self.num_passes = 0
        self._replica_products = ReplicaProgram(
            self._replica_block_products, base.jit_compile, f"{base._product_name} per block"
        )
        self._products = tf.function(self._block_products, reduce_retracing=True)

    def _replica_block_products(self, trainable, non_trainable, vectors, x, y, mask, first):
        """Every block's share of its product on this replica's share of a batch."""
        with explained(self.base._product_name), ExactResizeGradients():
            # A block whose Lanczos has stopped has a zero vector: its product is skipped, not computed.
            return tuple(
                tf.cond(
                    tf.reduce_any(tf.not_equal(v, 0.0)),
                    lambda part=part, v=v: part._share_product(trainable, non_trainable, v, x, y, mask, first),
                    lambda v=v: tf.zeros_like(v),
                )
                for part, v in zip(self.operators, vectors)
            )

    def _block_products(self, trainable, non_trainable, vectors):
        return self.probe.sum(
            self._replica_products,
            tuple(tf.zeros([d], tf.float64) for d in self.dimensions),
            trainable,
            non_trainable,
            vectors,
        )

    @tf.autograph.experimental.do_not_convert
    def matvec(self, vector):
        """D v for a flat `vector` of length `dimension` (blocks concatenated): one pass over the probe set."""
        vector = tf.convert_to_tensor(vector)
        parts = tf.split(tf.cast(tf.reshape(vector, [-1]), tf.float64), self.dimensions)
        parts = tuple(v if scale is None else scale * v for v, scale in zip(parts, self.scales))
        trainable, non_trainable = self.base._current_values()
        with explained(self.base._product_name):
            products = self._products(trainable, non_trainable, tuple(tf.cast(v, self.base.dtype) for v in parts))
        self.num_passes += 1
        products = [p if scale is None else scale * p for p, scale in zip(products, self.scales)]
        return tf.cast(tf.concat(products, axis=0), vector.dtype)

    def split(self, flat):
        """A flat vector of D → {block name: its part}."""
        return dict(zip(self.names, tf.split(tf.reshape(flat, [-1]), self.dimensions)))


def blockwise_eigenvalues(operator, k=1, max_iterations=40, tolerance=1e-3, seed=0):
    """The top-k eigenvalues of every diagonal block of a curvature, by L Lanczos in lockstep.

    Each step is one product D v of the `BlockDiagonalOperator` (one pass
    over the probe set for all L blocks); see the module docstring. Block ℓ
    stops when each of its top-k Ritz residuals r_j = |β_m s_{m,j}| is at
    most ``tolerance · |θ_j|`` (A_ℓ has an eigenvalue within r_j of θ_j), or
    when its Krylov space is exhausted (a block of fewer than
    `max_iterations` parameters: its Ritz values are then its eigenvalues);
    the run ends when every block has stopped or after `max_iterations`
    steps. Full reorthogonalization, per block.

    Args:
        operator: A `BlockDiagonalOperator`, or a curvature operator (then
            its model's blocks, `analysis_tools.curvature.model_blocks`).
        k: How many eigenvalues per block (a block with fewer parameters
            gives as many as it has, the rest NaN).
        max_iterations: The most steps (products D v).
        tolerance: The relative residual at which a block stops.
        seed: Seed of the random start (one normal vector, normalized per
            block).

    Returns:
        {block name: `LanczosResult`} (eigenvalues descending, float64;
        eigenvectors None; residuals; iterations: the block's Krylov
        dimension; α, β: its tridiagonal T_m; asymmetry NaN: not measured).
        The number of passes over the probe set is
        ``operator.num_passes`` (it grows by the steps taken).
    """
    if not isinstance(operator, BlockDiagonalOperator):
        operator = BlockDiagonalOperator(operator)
    k = check_positive_int("k", k)
    m_max = check_positive_int("max_iterations", max_iterations)
    tolerance = _check_tolerance(tolerance)
    seed = _check_seed(seed)
    n, count = operator.dimension, len(operator.names)
    segments = tf.constant(operator.segments)
    dtype = default_basis_dtype(n)
    f64 = tf.float64

    def per_block(values):  # Σ over each block's coordinates
        return tf.math.unsorted_segment_sum(tf.cast(values, f64), segments, count)

    def spread(values):  # a value per block → per coordinate
        return tf.gather(values, segments)

    basis = np.zeros([m_max, n], dtype.as_numpy_dtype)
    v = tf.random.stateless_normal([n], seed=[seed, 0], dtype=f64)
    v /= spread(tf.sqrt(per_block(v * v)))
    alpha, beta = np.zeros([count, m_max]), np.zeros([count, m_max])
    lengths = np.zeros(count, np.int64)  # each block's Krylov dimension so far
    active = np.ones(count, bool)
    previous = tf.zeros([n], f64)
    scale = np.zeros(count)
    for i in range(m_max):
        basis[i] = v.numpy()
        w = tf.cast(operator.matvec(tf.cast(v, dtype)), f64)
        a = per_block(w * v).numpy()
        w = w - spread(a) * v - spread(beta[:, i - 1] if i else np.zeros(count)) * previous
        rows = tf.constant(basis[: i + 1], f64)
        for _ in range(2):  # full reorthogonalization, per block
            coefficients = tf.transpose(tf.math.unsorted_segment_sum(tf.transpose(rows * w), segments, count))
            w = w - tf.reduce_sum(rows * tf.gather(coefficients, segments, axis=1), axis=0)  # [i+1, n] rows
        b = tf.sqrt(per_block(w * w)).numpy()
        alpha[active, i], beta[active, i] = a[active], b[active]
        lengths[active] += 1
        scale = np.maximum(scale, np.maximum(np.abs(a), b))
        for block in np.flatnonzero(active):
            m = lengths[block]
            exhausted = b[block] <= 1e-10 * max(scale[block], np.finfo(float).tiny)
            if exhausted or (m >= k and _converged(alpha[block, :m], beta[block, :m], k, tolerance)):
                active[block] = False
        if not active.any():
            break
        keep = spread(tf.constant(active.astype(np.float64)))
        previous = v * keep
        v = tf.math.divide_no_nan(w, spread(tf.constant(np.where(active, b, 0.0)))) * keep
    results = {}
    for block, name in enumerate(operator.names):
        m = int(lengths[block])
        theta, s = np.linalg.eigh(_tridiagonal(alpha[block, :m], beta[block, :m]))
        top = min(k, m)
        values = np.full(k, np.nan)
        values[:top] = theta[::-1][:top]
        residuals = np.full(k, np.nan)
        residuals[:top] = np.abs(beta[block, m - 1] * s[m - 1, ::-1][:top])
        results[name] = LanczosResult(
            tf.constant(values),
            None,
            tf.constant(residuals),
            tf.constant(m, tf.int32),
            tf.constant(alpha[block]),
            tf.constant(beta[block]),
            tf.constant(np.nan, f64),
        )
    return results


def _tridiagonal(alpha, beta):
    return np.diag(alpha) + np.diag(beta[:-1], 1) + np.diag(beta[:-1], -1)


def _converged(alpha, beta, k, tolerance):
    """Whether the top-k Ritz residuals |β_m s_{m,j}| of T_m are all ≤ tolerance · |θ_j|."""
    theta, s = np.linalg.eigh(_tridiagonal(alpha, beta))
    top = theta[::-1][:k]
    residuals = np.abs(beta[-1] * s[-1, ::-1][:k])
    return bool(np.all(residuals <= tolerance * np.maximum(np.abs(top), np.finfo(float).tiny)))
