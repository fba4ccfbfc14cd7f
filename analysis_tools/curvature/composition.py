"""Operators made from operators: P^{-1/2} A P^{-1/2}, blocks, sums and scalings.

Every curvature operator (`HessianOperator`, `GGNOperator`, the Fishers) is
a symmetric linear map v ↦ A v on the flat vector of its trainable variables,
and composes like curvlinops' operators: the result is a new, immutable
operator, and the operands are left as they were.

* ``A.preconditioned(P)``: S A S with S = P^{-1/2} (P diagonal and positive,
  one tensor per variable, e.g. from `analysis_tools.preconditioner_of`).
  S A S is symmetric and similar to P⁻¹A (P⁻¹A = S (S A S) S⁻¹), so its
  eigenvalues are those of P⁻¹A (Cohen et al. 2022, §2: the preconditioned
  sharpness λ1(P⁻¹H)); its trace is tr(P⁻¹A) = Σ_i A_ii / P_i.
* ``A.block(variables)``: the diagonal block A_BB of a layer or block.
  ``A.preconditioned(P).block(B)`` is ``A.block(B).preconditioned(P_B)``.
* ``A + B``, ``A - B``, ``c * A``, ``-A``, ``A / c``: sums and scalings of
  operators over the same variables (``H - GGN`` is the part of the Hessian
  that the Gauss-Newton matrix leaves out, the residual term
  Σ_n Σ_k ∂ℓ/∂f_k ∇²f_k).
* ``A @ v``: the product A v, as ``A.matvec(v)``.

Composition shares what is expensive: a preconditioned operator or a block of
a curvature operator runs that operator's traced, XLA-compiled product, and
their Lanczos solvers run in that operator's one traced loop (P^{-1/2} enters
it through a variable assigned before each run). A sum runs its terms'
products and has a Lanczos loop of its own.

Every estimator takes these as it takes any operator: `hessian_eigenvalues`
(and `sharpness`), `hessian_trace`, `curvature_diagonal`,
`spectral_density`, or the plain `Lanczos`, `hutchinson`,
`hutch_plus_plus`, `slq` with ``operator.matvec``.
"""

import numbers

import tensorflow as tf

from analysis_tools.curvature.lanczos import check_bool, check_positive_int, for_model

__all__ = ["Composable", "PreconditionedOperator", "LinearCombination"]


class Composable:
    """The algebra every operator shares (see the module docstring).

    A subclass has ``matvec``, ``dimension``, ``variables``, ``flatten`` and
    ``unflatten``.
    """

    def __matmul__(self, vector):
        if isinstance(vector, Composable):
            raise TypeError(
                "`A @ B` of two operators is not symmetric in general; compose with "
                "`preconditioned`, `block`, sums and scalings, or multiply vectors: `A @ v`."
            )
        return self.matvec(vector)

    def __add__(self, other):
        if not isinstance(other, Composable):
            return NotImplemented
        return LinearCombination([(1.0, self), (1.0, other)])

    def __sub__(self, other):
        if not isinstance(other, Composable):
            return NotImplemented
        return LinearCombination([(1.0, self), (-1.0, other)])

    def __mul__(self, scalar):
        if isinstance(scalar, bool) or not isinstance(scalar, numbers.Real):
            return NotImplemented
        return LinearCombination([(float(scalar), self)])

    __rmul__ = __mul__

    def __truediv__(self, scalar):
        if isinstance(scalar, bool) or not isinstance(scalar, numbers.Real):
            return NotImplemented
        if scalar == 0:
            raise ZeroDivisionError("An operator divided by 0.")
        return LinearCombination([(1.0 / float(scalar), self)])

    def __neg__(self):
        return LinearCombination([(-1.0, self)])

    def preconditioned(self, preconditioner):
        """S A S with S = P^{-1/2}: a new `PreconditionedOperator`, whose eigenvalues are those of P⁻¹A.

        Args:
            preconditioner: P, positive: one tensor per variable of this
                operator (for a block, the model's full list is accepted
                too and restricted to the block). P = +inf is allowed: S = 0
                there, the coordinate of a weight the optimizer does not
                move (ACClip's P where its clipping threshold τ is 0).

        Raises:
            ValueError: If P does not match the variables, or is NaN or not
                positive in some coordinate.
        """
        return PreconditionedOperator(self, preconditioner)


def _flat_scale(operator, preconditioner):
    """P^{-1/2} flat in float64, in `operator`'s order of variables; P checked."""
    preconditioner = list(preconditioner)
    every = getattr(operator, "_model_variable_count", None)
    positions = getattr(operator, "_block", None)
    if every is not None and positions is not None and len(preconditioner) == every != len(operator.variables):
        preconditioner = [preconditioner[i] for i in positions]
    if len(preconditioner) != len(operator.variables):
        raise ValueError(
            f"`preconditioner` has {len(preconditioner)} tensors for {len(operator.variables)} trainable variables."
        )
    for p, v in zip(preconditioner, operator.variables):
        if tuple(tf.convert_to_tensor(p).shape) != tuple(v.shape):
            raise ValueError(
                f"`preconditioner`: the tensor for {v.path} has shape "
                f"{tuple(tf.convert_to_tensor(p).shape)}, the variable {tuple(v.shape)}."
            )
    flat = tf.concat([tf.reshape(tf.cast(p, tf.float64), [-1]) for p in preconditioner], axis=0)
    if not bool(tf.reduce_all(flat > 0.0)):  # NaN fails the comparison; +inf passes (S = 0)
        raise ValueError(
            "The preconditioner must be positive (+inf allowed) in every coordinate; it is NaN or not positive in some."
        )
    return tf.math.rsqrt(flat)


def scaled_product(matvec, scale, vector):
    """S A S v for a diagonal S (flat float64) and A given by `matvec`: in float64, returned in `vector`'s dtype."""
    vector = tf.convert_to_tensor(vector)
    scale = tf.convert_to_tensor(scale)
    product = matvec(scale * tf.cast(vector, tf.float64))
    return tf.cast(scale * tf.cast(product, tf.float64), vector.dtype)


class _Derived(Composable):
    """What an operator made from others shares: its variables, flat layout and solvers come from a root."""

    def __init__(self, root):
        self._root = root
        self.model = root.model
        self.variables = root.variables
        self.shapes, self.sizes = root.shapes, root.sizes
        self.dimension = root.dimension
        self.dtype = root.dtype
        self.num_examples = root.num_examples
        self._solvers = {}

    def flatten(self, tensors):
        """Per-variable tensors → one flat float64 vector, in the operator's order."""
        return self._root.flatten(tensors)

    def unflatten(self, flat):
        """One flat vector → per-variable tensors."""
        return self._root.unflatten(flat)

    def gradient(self):
        """(flat float64 gradient of the loss at the current weights, the loss), as the root operator's."""
        return self._root.gradient()

    def solver(self, preconditioned=False, max_iterations=40, k=1, return_vectors=False):
        """A `Lanczos` for this operator's ``matvec`` (built once per size, then kept; see `HessianOperator.solver`).

        ``preconditioned=True`` is refused: precondition the operator instead
        (`preconditioned`).
        """
        if preconditioned:
            raise ValueError(
                f"{type(self).__name__} has no stored preconditioner: use `.preconditioned(P)`, "
                "whose solver is `solver()`."
            )
        m = min(check_positive_int("max_iterations", max_iterations), self.dimension)
        key = (m, check_positive_int("k", k), check_bool("return_vectors", return_vectors))
        if key not in self._solvers:
            self._solvers[key] = self._new_solver(*key)
        return self._solvers[key]

    def _new_solver(self, m, k, return_vectors):
        return for_model(self.model, self.dimension, max_iterations=m, k=k, return_vectors=return_vectors)


class PreconditionedOperator(_Derived):
    """S A S with S = P^{-1/2} diagonal: the symmetric form of P⁻¹A (see the module docstring).

    Immutable: P is fixed when it is built (``A.preconditioned(P)``), and A
    is not changed. For a curvature operator or its block, the product is
    S (A (S v)) with A's own compiled product, and `solver` runs in A's one
    traced Lanczos loop, so that a new P each training step costs no tracing.

    Attributes:
        base: A.
        preconditioner_scale: S, flat float64 (a constant tensor).
        curvature: A's curvature ("hessian", "ggn", ...).
    """

    def __init__(self, base, preconditioner):
        if not isinstance(base, Composable):
            raise TypeError(f"`base` must be an operator, got {type(base).__name__}.")
        super().__init__(base)
        self.base = base
        self.preconditioner_scale = _flat_scale(base, preconditioner)
        self.curvature = getattr(base, "curvature", None)

    @classmethod
    def _of_scale(cls, base, scale):
        operator = cls.__new__(cls)
        _Derived.__init__(operator, base)
        operator.base, operator.preconditioner_scale = base, scale
        operator.curvature = getattr(base, "curvature", None)
        return operator

    @tf.autograph.experimental.do_not_convert
    def matvec(self, vector):
        """S A S v, in the dtype of `vector`."""
        return scaled_product(self.base.matvec, self.preconditioner_scale, vector)

    def block(self, variables):
        """(S A S)_BB = S_B A_BB S_B: the block of A, preconditioned with P restricted to it."""
        block = self.base.block(variables)
        positions = block._within[1] if getattr(block, "_within", None) is not None else None
        if positions is None:
            raise TypeError(f"{type(self.base).__name__} has no blocks.")
        return PreconditionedOperator._of_scale(block, tf.gather(self.preconditioner_scale, positions))

    def per_example_diagonal(self):
        """The base's per-example diagonal rows (the Fishers), times S² = 1/P."""
        return self.base.per_example_diagonal() * tf.square(self.preconditioner_scale)[None, :]

    def _new_solver(self, m, k, return_vectors):
        shared = getattr(self.base, "_scratch_solver", None)
        if shared is None:
            return super()._new_solver(m, k, return_vectors)
        return _ScratchSolver(self, shared(m, k, return_vectors))


class _ScratchSolver:
    """A preconditioned operator's Lanczos: its base's one traced loop, with S assigned to the base's scratch S.

    Called like a `Lanczos`. With the operator's own ``matvec`` it assigns
    S and runs the base's loop on the base's scratch product; any other
    product gets a `Lanczos` of its own.
    """

    def __init__(self, operator, shared):
        self._operator, self._shared = operator, shared
        self.dimension, self.max_iterations = shared.dimension, shared.max_iterations
        self.k, self.return_vectors, self.basis_dtype = shared.k, shared.return_vectors, shared.basis_dtype
        self.seed = shared.seed
        self._own = None

    @property
    def asymmetry(self):
        return (self._own or self._shared).asymmetry

    def reset_seed(self):
        self._shared.reset_seed()

    def __call__(self, matvec, *args, **kwargs):
        operator = self._operator
        if matvec != operator.matvec:
            if self._own is None:
                self._own = for_model(
                    operator.model,
                    self.dimension,
                    max_iterations=self.max_iterations,
                    k=self.k,
                    return_vectors=self.return_vectors,
                    basis_dtype=self.basis_dtype,
                )
            return self._own(matvec, *args, **kwargs)
        base = operator.base
        base._assign_scratch_scale(operator.preconditioner_scale)
        return self._shared(base._scratch_preconditioned_matvec, *args, **kwargs)


class LinearCombination(_Derived):
    """Σ_i c_i A_i over operators of the same variables (``A + B``, ``c * A``, ``A - B``).

    Its product runs each term's product; its solver is a `Lanczos` of its
    own, traced on first use.

    Attributes:
        terms: The (c_i, A_i), flattened (a sum of sums is one sum).
        curvature: A description, e.g. ``"hessian - ggn"``.
    """

    def __init__(self, terms):
        flat = []
        for coefficient, operator in terms:
            if isinstance(operator, LinearCombination):
                flat.extend((coefficient * c, a) for c, a in operator.terms)
            else:
                flat.append((float(coefficient), operator))
        first = flat[0][1]
        for _, operator in flat[1:]:
            if operator.dimension != first.dimension or [v.path for v in operator.variables] != [
                v.path for v in first.variables
            ]:
                raise ValueError(
                    f"Operators over different variables cannot be added: {first.dimension} and "
                    f"{operator.dimension} parameters."
                )
        super().__init__(first)
        self.terms = tuple(flat)
        self.curvature = " ".join(
            (("- " if c < 0 else "+ ") if i else ("-" if c < 0 else ""))
            + (f"{abs(c):g}·" if abs(c) != 1 else "")
            + str(getattr(a, "curvature", type(a).__name__))
            for i, (c, a) in enumerate(flat)
        )

    @tf.autograph.experimental.do_not_convert
    def matvec(self, vector):
        """Σ_i c_i A_i v, in the dtype of `vector` (the terms are added in float64)."""
        vector = tf.convert_to_tensor(vector)
        wide = tf.cast(vector, tf.float64)
        total = tf.add_n([c * tf.cast(a.matvec(wide), tf.float64) for c, a in self.terms])
        return tf.cast(total, vector.dtype)

    def block(self, variables):
        """Σ_i c_i (A_i)_BB."""
        return LinearCombination([(c, a.block(variables)) for c, a in self.terms])

    def gradient(self):
        raise ValueError(f"`{self.curvature}` is not the curvature of one loss: it has no gradient.")
