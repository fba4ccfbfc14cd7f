"""The training loss over a fixed probe set, as a symmetric linear operator.

The sharpness of Cohen et al. ("Gradient Descent on Neural Networks Typically
Occurs at the Edge of Stability", 2021; "Adaptive Gradient Methods at the Edge
of Stability", 2022, §2) is the top eigenvalue of the Hessian H of the
*full-batch* training loss. `HessianOperator` fixes that loss:

    L(θ) = Σ_b (n_b / N) · loss(y_b, f_θ(x_b)) + R(θ)

over the probe batches b (n_b examples each, N in all), with R the model's
regularization losses (`model.losses`), which the optimizer differentiates
too. It exposes v ↦ H v on the flat vector of the trainable variables (in the
order of `model.trainable_variables`), and its preconditioned form
v ↦ P^{-1/2} H P^{-1/2} v, whose eigenvalues are those of P⁻¹H (the two
matrices are similar).

Side-effect free. The loss is evaluated with `model.stateless_call` at the
weights read when a product runs (`analysis_tools._model_loss`):

* ``mode="train"`` (the default): layers run in training mode. BatchNorm
  normalizes with each probe batch's own statistics and its moving averages are
  not updated; Dropout draws its masks from the captured seed state, so every
  product applies the same masks (the same operator every time). Use
  ``dropout=False`` to switch Dropout off while BatchNorm stays in training mode.
* ``mode="inference"``: BatchNorm uses its moving statistics and Dropout is off
  (PyHessian's convention; a different Hessian).

The model's variables, BatchNorm statistics, seed generators and the optimizer
are never written.

The probe set is streamed. It is a `tf.data.Dataset` of (x, y) batches (arrays
are batched in their order, without shuffling) that every product iterates
inside one `tf.function`: the model is traced once whatever the number of
batches, no probe data is embedded in the traced function, and memory stays
that of one batch, so a probe set that does not fit in memory (a generator or
TFRecord files) works too. It must yield the same examples in the same order
on every pass (no reshuffling), or the operator changes between products.

Each batch's product is one XLA-compiled function (``jit_compile=True``, the
default): reverse-over-reverse differentiation (two nested `GradientTape`s,
about 2× the cost of a gradient) or, with
``differentiation="forward_over_reverse"``, a `tf.autodiff.ForwardAccumulator`
over a `GradientTape`.

Under a `tf.distribute` strategy (the model's, or the one in scope) the probe
batches are split across the replicas by `analysis_tools._probe.Replicas`:
every batch, the partial last one too, is padded to one static size with a
mask, and each replica takes a static share of it. Every replica computes
its share of the product (and of the gradient and the loss) inside
`strategy.run`, each example's loss weighted by its mask over N, and the
shares are summed with an all-reduce. This is the `TPUStrategy` pattern:
what runs on the replicas is one XLA-compiled function, traced once, with
static shapes and no float64 for a float32 model. The regularization losses
are added once, on the first batch, split evenly over the replicas. Padding
would enter BatchNorm's batch statistics in training mode: such a model with
a padded probe set is refused with a ValueError.

Per layer or block (``variables=``): H is then the diagonal block
H_BB = ∂²L/∂θ_B² of the chosen variables θ_B, the other weights held fixed,
and vectors have the block's length. Only θ_B is differentiated (both tapes
watch it alone), so a block's product costs at most a full one: the
backward passes stop at the block's lowest layer. For P⁻¹H, P is restricted
to the block (P_B⁻¹ H_BB: the preconditioned dynamics of the block alone).

In float32 and 16-bit models the product is computed, and all-reduced, in
float32; each batch's result is added in float64 on the host and returned in
the dtype of the input vector (the Lanczos basis is float64), so the result
is the float32 curvature to float32's rounding (`benchmarks/precision.py`
compares it with float64 twins of the zoo's models). A model
whose float32 computation is badly conditioned gives the float32 Hessian of
that computation: on MobileNetV3Small with training-mode BatchNorm over 4
examples, λ1 differs from the float64 one by 5 % (and Lanczos warns of the
asymmetry that rounding leaves), while in ``mode="inference"`` it agrees
to 8e-8 and λ1(P⁻¹H) to 2e-7. Measure such a model in inference mode, or
compare with a float64 twin, before trusting more digits than that.
"""

import copy

import numpy as np
import tensorflow as tf

from analysis_tools._blocks import block_indices
from analysis_tools._deprecation import renamed, renamed_attribute, renamed_constants
from analysis_tools._model_loss import MODES, ModelLoss, trainable_variables_of
from analysis_tools._probe import FullGradient, ProbeSet, ReplicaProgram, check_data, probe_dataset, probe_share
from analysis_tools._second_order import ExactResizeGradients, explained
from analysis_tools.curvature.composition import Composable, _flat_scale, scaled_product
from analysis_tools.curvature.lanczos import check_bool, check_positive_int, default_basis_dtype, for_model

DIFFERENTIATIONS = ("reverse_over_reverse", "forward_over_reverse")
__all__ = ["DIFFERENTIATIONS", "HessianOperator", "MODES", "operator_and_matvec", "probe_dataset"]
__getattr__ = renamed_constants(globals(), METHODS="DIFFERENTIATIONS")


class HessianOperator(Composable):
    """v ↦ H v for the training loss over a fixed probe set (see the module docstring).

    Args:
        model: A built Keras model.
        data: The probe set: an (x, y) pair of arrays, or a finite
            `tf.data.Dataset` of (x, y) batches that yields the same batches on
            every pass. Streamed on every product, never cached. Or the
            ``probe`` of another operator of the same model: this one then
            shares its copy of the arrays and its stream (one probe set for
            the Hessian, the GGN and the Fishers of one model).
        loss: A loss (string, `keras.losses.Loss` or callable y_true, y_pred →
            mean). Defaults to the model's compiled loss.
        batch_size: Batch size for array data; default one batch. With
            BatchNorm in training mode the Hessian depends on it: use the
            training batch size. Under a strategy it is the global batch size.
        differentiation: How the product is differentiated:
            ``"reverse_over_reverse"`` (default; two nested `GradientTape`s)
            or ``"forward_over_reverse"`` (a `ForwardAccumulator` over a
            `GradientTape`). The same H v to rounding.
        mode: ``"train"`` (default) or ``"inference"``.
        dropout: With ``mode="train"``, whether Dropout layers stay active
            (fixed masks). Defaults to `True`.
        include_regularization: Whether `model.losses` are part of L. Defaults to `True`.
        jit_compile: Whether each batch's product (and gradient) is compiled by
            XLA. Defaults to `True`; results equal the uncompiled ones to
            rounding.
        strategy: The `tf.distribute.Strategy` to split the probe set over;
            default the model's (``model.distribute_strategy``), which is the
            default single-device strategy outside a strategy scope.
        variables: The block to differentiate: None (default, every trainable
            variable), or one or a list of layer names, layers or trainable
            variables of the model. H is then the block's diagonal block of
            the Hessian, the other weights fixed (see the module docstring).

    Raises:
        ValueError: If `differentiation` or `mode` is unknown; the model is
            not built or has no trainable variables; there is no loss; or the
            probe set does not fit the model: its inputs cannot be fed to it,
            or its targets do not have the shape a Keras loss compares with
            the outputs, so that they would be broadcast (checked on one
            batch, symbolically where possible, before any product); or
            `variables` names no layer or variable of the model, or nothing
            trainable.

    Attributes:
        differentiation: As the argument (None for the operators whose
            product is always forward over reverse: `GGNOperator` and the Fishers).
        variables: The trainable variables of the block (all of them without
            `variables=`), in the model's order: the order of the flat vectors.
        dimension: The length of the flat vectors (the block's parameters).
        num_examples: N, the probe examples.
        num_batches: The probe batches.
        examples_per_replica: After a product, the examples each replica
            processed in it (a list, one int per replica).
    """

    curvature = "hessian"
    _purpose = "its Hessian"
    _product_name = "a Hessian-vector product"
    method = renamed_attribute("method", "differentiation")

    @renamed(method="differentiation")
    def __init__(
        self,
        model,
        data,
        loss=None,
        batch_size=None,
        differentiation="reverse_over_reverse",
        mode="train",
        dropout=True,
        include_regularization=True,
        jit_compile=True,
        strategy=None,
        variables=None,
    ):
        if differentiation not in DIFFERENTIATIONS:
            raise ValueError(f"`differentiation` must be one of {DIFFERENTIATIONS}, got {differentiation!r}.")
        self._loss = ModelLoss(model, loss, mode, dropout, include_regularization, self._purpose)
        shared = data if isinstance(data, ProbeSet) else None
        if shared is not None:
            if batch_size not in (None, shared.batch_size):
                raise ValueError(f"`batch_size` {batch_size} differs from the shared probe set's {shared.batch_size}.")
            data, batch_size = shared.source, shared.batch_size
        check_data(self._loss, data, batch_size, "the probe set")
        self.model = model
        self.differentiation = differentiation
        self.mode = mode
        self.jit_compile = bool(jit_compile)
        self.include_regularization = self._loss.include_regularization
        self.loss = self._loss.loss
        self.strategy = strategy or getattr(model, "distribute_strategy", None) or tf.distribute.get_strategy()
        if shared is not None and shared.strategy is not self.strategy:
            raise ValueError("The shared probe set is split over another strategy's replicas.")
        # Operators given another's `probe` share its copy of the data and its stream.
        self.probe = shared or ProbeSet(data, batch_size, self.strategy)
        self.num_examples, self.num_batches = self.probe.num_examples, self.probe.num_batches
        self._gradient = FullGradient(self._loss, self.probe, self.jit_compile)
        self._restrict(block_indices(model, self._loss.variables, variables, self._purpose))
        self._replica_product = ReplicaProgram(self._replica_hvp, self.jit_compile, self._product_name)
        self._hvp = tf.function(self._hessian_vector_product, reduce_retracing=True)

    def _restrict(self, block):
        """Sets the block (positions in the model's trainable variables; None for all) and its fresh state."""
        self._block = list(range(len(self._loss.variables))) if block is None else block
        self.variables = [self._loss.variables[i] for i in self._block]
        self.shapes = [self._loss.shapes[i] for i in self._block]
        self.sizes = [self._loss.sizes[i] for i in self._block]
        self.dimension = sum(self.sizes)
        offsets = np.cumsum([0] + self._loss.sizes)
        self._gather = (
            None if block is None else np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in self._block])
        )
        self.dtype = self._loss.dtype
        self.num_replicas = self.probe.num_replicas
        self._scale = None
        self._scratch_scale = None
        self._within = None
        self._block_weights = None
        self._solvers, self._bases = {}, {}

    def block(self, variables):
        """The operator of the diagonal block H_BB of `variables` (what `variables=` selects), over the same data.

        H_BB v = (H [v; 0])_B: the block's products are this operator's own,
        on the vector padded with zeros outside the block, so every block
        shares this operator's traced and compiled product, its probe set (one
        copy of the data, counted and checked once) and its loss. Measuring L
        blocks then traces and compiles one product, not L (each a copy of
        the network's double-backward graph: tens of seconds and hundreds of
        megabytes on a keras.applications network), at the price of a full
        product for each block product. Their Lanczos solvers share one traced
        loop too (`solver`). An operator built with `variables=`
        differentiates its block alone instead: cheaper products, its own
        trace.

        Raises:
            ValueError: As `variables=` of the constructor, or if `variables`
                are not all in this operator's block.
        """
        selected = block_indices(self.model, self._loss.variables, variables, self._purpose)
        local = {position: i for i, position in enumerate(self._block)}
        outside = [self._loss.variables[p].path for p in selected if p not in local]
        if outside:
            raise ValueError(
                f"`variables`: {outside} are not in this operator's block; take the block from "
                "an operator of the whole network."
            )
        offsets = np.cumsum([0] + self.sizes)
        positions = np.concatenate([np.arange(offsets[local[p]], offsets[local[p] + 1]) for p in selected])
        block = copy.copy(self)
        block._restrict(selected)
        block._within = (self, tf.constant(positions, tf.int64))
        block._replica_product = block._hvp = None
        return block

    # ------------------------------------------------------------------ values
    def _current_values(self):
        """The trainable values now (float, `self.dtype`) and the frozen non-trainable ones."""
        return self._loss.values()

    def _flatten(self, tensors, dtype):
        return tf.concat([tf.reshape(tf.cast(t, dtype), [-1]) for t in tensors], axis=0)

    def _unflatten(self, flat):
        parts = tf.split(tf.cast(flat, self.dtype), self.sizes)
        return [tf.reshape(p, s) for p, s in zip(parts, self.shapes)]

    # ---------------------------------------------------- one replica, one batch
    def _replica_hvp(self, trainable, non_trainable, vector, x, y, mask, first):
        """(this replica's share of H v on its share of a batch, flat in the model's dtype,)."""
        with explained(self._product_name), ExactResizeGradients():
            return (self._share_product(trainable, non_trainable, vector, x, y, mask, first),)

    def _share_product(self, trainable, non_trainable, vector, x, y, mask, first):
        """A replica's share of the product on its share (x, y) of a batch (`mask`: its real examples), flat."""

        def share():
            return probe_share(self._loss, self.probe, trainable, non_trainable, x, y, mask, first)

        tangents = self._unflatten(vector)
        # The block's values (every value without `variables=`): the only ones differentiated.
        block = [trainable[i] for i in self._block]
        if self.differentiation == "forward_over_reverse":
            with tf.autodiff.ForwardAccumulator(block, tangents) as accumulator:
                with tf.GradientTape() as tape:
                    tape.watch(block)
                    loss = share()
                # Dense: embeddings give IndexedSlices, which the accumulator cannot track.
                grads = self._loss.gradients(tape, loss, block, self._block)
            parts = accumulator.jvp(grads, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        else:
            with tf.GradientTape() as outer:
                outer.watch(block)
                with tf.GradientTape() as inner:
                    inner.watch(block)
                    loss = share()
                grads = self._loss.gradients(inner, loss, block, self._block)
                inner_product = tf.add_n([tf.reduce_sum(g * t) for g, t in zip(grads, tangents)])
            parts = outer.gradient(inner_product, block, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return self._flatten(parts, self.dtype)

    def _hessian_vector_product(self, trainable, non_trainable, vector):
        (product,) = self.probe.sum(
            self._replica_product, (tf.zeros([self.dimension], tf.float64),), trainable, non_trainable, vector
        )
        return product

    # ------------------------------------------------------------------ public
    @tf.autograph.experimental.do_not_convert
    def matvec(self, vector):
        """H v at the model's current weights, for a flat `vector` of length `dimension`.

        The weights are read when the product runs, so one traced function
        serves the whole of training. Returned in the dtype of `vector`.

        The vector enters the replicas in the model's dtype (float32 for a
        float32 or 16-bit model: no float64 on the replicas, as on a TPU),
        each batch's product is all-reduced in it, and the batches' results
        are added in float64 on the host; so callers that hold their vectors
        in float32 (Lanczos's basis above `float64_dimension_limit`
        parameters) and in float64 share one traced, XLA-compiled function.
        A float32 product agrees with the float64 one to about 1e-7 of ‖H v‖
        per batch.
        """
        vector = tf.convert_to_tensor(vector)
        if self._within is not None:  # a block of `block()`: the parent's product, restricted
            parent, positions = self._within
            return tf.cast(tf.gather(parent.matvec(self._in_parent(vector)), positions), vector.dtype)
        trainable, non_trainable = self._current_values()
        with explained(self._product_name):
            product = self._hvp(trainable, non_trainable, tf.cast(vector, self.dtype))
        return tf.cast(product, vector.dtype)

    @property
    def unused_variables(self):
        """The paths of the block's trainable variables the loss does not depend on (often none).

        Such a variable (a KerasHub DINOv2's mask token) has no gradient, and
        Keras's `fit` skips it; here its coordinates are directions of zero
        gradient and zero curvature: their rows and columns of H are 0, so
        they add eigenvalues 0 and nothing else. Found from the traced
        gradient (or by tracing one, which runs nothing).
        """
        unused = set(self._loss.unconnected_variables(self.probe.batch_spec()))
        return [v.path for v in self.variables if v.path in unused]

    @property
    def stopped_gradients(self):
        """The names of the forward pass's `stop_gradient` ops on weight-dependent values (often none).

        With such ops (D-FINE detaches its refined boxes), H is the Hessian of
        the loss with the stopped values held at their current values, the
        function whose gradient Keras's `fit` follows, not of the loss as
        computed; see `ModelLoss.stopped_gradients`. Found like
        `unused_variables`.
        """
        return self._loss.stopped_gradients(self.probe.batch_spec())

    @property
    def examples_per_replica(self):
        """The examples each replica processed in the last product (or gradient), one int per replica."""
        return self.probe.examples_per_replica

    def set_preconditioner(self, preconditioner):
        """Store P (one tensor per trainable variable) for `preconditioned_matvec`.

        The stateful form of `preconditioned` (which returns a new operator
        and leaves this one as it is), kept for code written against it. With
        a block (`variables=`), P may be given for every trainable variable
        of the model (it is restricted to the block) or for the block's alone.

        Raises:
            ValueError: As `preconditioned`.
        """
        scale = _flat_scale(self, preconditioner)
        if self._scale is None:
            with tf.init_scope():
                self._scale = tf.Variable(scale, trainable=False, name="preconditioner_scale")
        else:
            self._scale.assign(scale)

    @property
    def _model_variable_count(self):
        return len(self._loss.variables)

    def _assign_scratch_scale(self, scale):
        """Sets the S that `_scratch_preconditioned_matvec` (the solvers of `preconditioned` views) reads."""
        if self._scratch_scale is None:
            with tf.init_scope():
                self._scratch_scale = tf.Variable(scale, trainable=False, name="view_preconditioner_scale")
        else:
            self._scratch_scale.assign(scale)

    @tf.autograph.experimental.do_not_convert
    def _scratch_preconditioned_matvec(self, vector):
        """S H S v with the S a preconditioned view assigned before running its solver here."""
        return scaled_product(self.matvec, self._scratch_scale, vector)

    def _scratch_solver(self, max_iterations, k, return_vectors):
        """The solver that the `preconditioned` views of this operator share (one traced loop per size)."""
        return self.solver("scratch", max_iterations, k, return_vectors)

    @tf.autograph.experimental.do_not_convert
    def preconditioned_matvec(self, vector):
        """P^{-1/2} H P^{-1/2} v, with the P of the last `set_preconditioner`; same eigenvalues as P⁻¹H."""
        if self._scale is None:
            raise ValueError("Call `set_preconditioner` first.")
        return scaled_product(self.matvec, self._scale, vector)

    def solver(self, preconditioned=False, max_iterations=40, k=1, return_vectors=False):
        """This operator's `Lanczos` of H (or of P^{-1/2} H P^{-1/2}) of these sizes: built once, then kept.

        Every curvature function given this operator in place of a model, and
        `SharpnessCallback` on the operator it builds, takes its solvers from
        here, so a Lanczos loop is traced once per operator and shape, not
        once per call: λ1 measured again, with another tolerance or seed, or
        by another function, reuses it (tracing a loop around a product
        takes seconds, more on a large network). The tolerance, criterion, seed and call
        index are arguments of each call (see `Lanczos.__call__`).

        The solvers of one length m = min(max_iterations, dimension) share one
        basis variable (m × dimension; float64 up to 5 M parameters, else
        float32): they never run at once, and the basis is scratch. A block's
        solver (of `block()`) is no loop of its own: every block runs in its
        parent's one network-length loop, masked to the block (see
        `_masked_solver`), so measuring L blocks traces one loop per problem,
        not L (the cost on InceptionV3's 22 blocks is in `benchmarks/RESULTS.md`).

        Args:
            preconditioned: For `preconditioned_matvec` (else `matvec`); the
                solver's traced loop calls that product.
            max_iterations: m_max.
            k: How many eigenpairs.
            return_vectors: Whether calls return the Ritz vectors.
        """
        m = min(check_positive_int("max_iterations", max_iterations), self.dimension)
        return_vectors = check_bool("return_vectors", return_vectors)
        mode = preconditioned if preconditioned == "scratch" else bool(preconditioned)
        key = (mode, m, check_positive_int("k", k), return_vectors)
        if key not in self._solvers:
            if self._within is None:
                self._solvers[key] = self._lanczos(m, k, return_vectors)
            else:
                shared = self._within[0]._masked_solver(bool(mode), max_iterations, k, return_vectors)
                self._solvers[key] = _BlockSolver(self, shared, mode, m)
        return self._solvers[key]

    def _lanczos(self, m, k, return_vectors):
        """A new `Lanczos` of this operator's length, on the basis its solvers of length m share."""
        basis = self._bases.get((m, default_basis_dtype(self.dimension)))
        solver = for_model(
            self.model, self.dimension, max_iterations=m, k=k, return_vectors=return_vectors, basis=basis
        )
        self._bases[(m, solver.basis_dtype)] = solver._basis
        return solver

    def _in_parent(self, vector):
        """A block's vector in its parent's coordinates (float64, zero outside the block)."""
        parent, positions = self._within
        return tf.scatter_nd(positions[:, None], tf.reshape(tf.cast(vector, tf.float64), [-1]), [parent.dimension])

    def _masked_solver(self, preconditioned, max_iterations, k, return_vectors):
        """The one Lanczos, over this operator's whole length, that every block of `block()` runs in.

        Its product is M H M v (raw) or S H S v (preconditioned) with M the
        0/1 mask of the block being measured and S its P^{-1/2}, zero outside
        it: variables, assigned before each run, so one traced loop serves
        every block. Started inside the block, the Krylov space stays there
        exactly (the product is zero outside it), so the Ritz values are
        those of H_BB (or P_B^{-1/2} H_BB P_B^{-1/2}); a block smaller than the
        loop ends at its dimension with a breakdown.
        """
        m = min(max_iterations, self.dimension)  # arguments checked by the block's `solver`
        key = ("masked", preconditioned, m, k, return_vectors)
        if key not in self._solvers:
            if self._block_weights is None:
                with tf.init_scope():
                    self._block_weights = tf.Variable(
                        tf.zeros([self.dimension], tf.float64), trainable=False, name="block_weights"
                    )
            self._solvers[key] = self._lanczos(m, k, return_vectors)
        return self._solvers[key]

    @tf.autograph.experimental.do_not_convert
    def _weighted_matvec(self, vector):
        """W H W v with W the diagonal of `_block_weights` (a block's mask, or its P^{-1/2} in the block)."""
        return scaled_product(self.matvec, self._block_weights, vector)

    @property
    def preconditioner_scale(self):
        """The flat float64 P^{-1/2} last set (a `tf.Variable`), or None."""
        return self._scale

    def gradient(self):
        """(flat float64 gradient of L at the current weights, L); with a block, the block's part."""
        trainable, non_trainable = self._current_values()
        flat, loss = self._gradient(trainable, non_trainable)
        if self._gather is not None:
            flat = tf.gather(flat, self._gather)
        return flat, loss

    def flatten(self, tensors):
        """Per-variable tensors → one flat float64 vector, in the operator's order."""
        return self._flatten(tensors, tf.float64)

    def unflatten(self, flat):
        """One flat vector → per-variable tensors (in the operator's dtype)."""
        return self._unflatten(flat)


class _BlockSolver:
    """A block's Lanczos: its parent's one masked loop (`HessianOperator._masked_solver`), in block coordinates.

    Called like a `Lanczos` with the block's `matvec` or
    `preconditioned_matvec` (any other product gets a `Lanczos` of the
    block's own, traced for it). Start vectors and Ritz vectors are scattered
    into, and gathered out of, the parent's coordinates; the random start is
    drawn in the block from the seed and the call index.
    """

    def __init__(self, block, shared, mode, max_iterations):
        # mode: False (H_BB), True (the stored P: `set_preconditioner`) or "scratch" (a `preconditioned` view's S).
        self._block, self._shared, self._mode = block, shared, mode
        self.dimension = block.dimension
        self.max_iterations = max_iterations
        self.k, self.return_vectors = shared.k, shared.return_vectors
        self.basis_dtype = shared.basis_dtype
        self.seed = shared.seed
        self._calls = 0
        self._own = None

    @property
    def asymmetry(self):
        return self._shared.asymmetry

    def reset_seed(self):
        self._calls = 0

    def __call__(
        self,
        matvec,
        initial_vector=None,
        min_iterations=None,
        certify_gap=False,
        *,
        tolerance=None,
        criterion=None,
        seed=None,
        call=None,
    ):
        block = self._block
        parent, positions = block._within
        product = {
            False: block.matvec,
            True: block.preconditioned_matvec,
            "scratch": block._scratch_preconditioned_matvec,
        }[self._mode]
        if matvec != product:
            if self._own is None:
                self._own = block._lanczos(self.max_iterations, self.k, self.return_vectors)
            return self._own(
                matvec,
                initial_vector,
                min_iterations,
                certify_gap,
                tolerance=tolerance,
                criterion=criterion,
                seed=seed,
                call=call,
            )
        if self._mode:
            scale = block._scale if self._mode is True else block._scratch_scale
            if scale is None:
                raise ValueError("Call `set_preconditioner` first.")
            weights = tf.convert_to_tensor(scale)
        else:
            weights = tf.ones([block.dimension], tf.float64)
        parent._block_weights.assign(block._in_parent(weights))
        seed = self.seed if seed is None else seed
        if call is None:
            call, self._calls = self._calls, self._calls + 1
        given = None if initial_vector is None else np.asarray(initial_vector, np.float64)
        # A zero or non-finite start falls back to a random one, as in `Lanczos`, but drawn inside the block.
        if given is None or not (np.all(np.isfinite(given)) and np.any(given)):
            initial_vector = tf.random.stateless_normal([block.dimension], seed=[seed, call], dtype=tf.float64)
        result = self._shared(
            parent._weighted_matvec,
            block._in_parent(initial_vector),
            min_iterations,
            certify_gap,
            tolerance=tolerance,
            criterion=criterion,
            seed=seed,
            call=call,
        )
        vectors = result.eigenvectors
        if vectors is not None:
            vectors = tf.gather(vectors, positions, axis=1)
            vectors /= tf.norm(vectors, axis=1, keepdims=True)
        return result._replace(eigenvectors=vectors)


@renamed(product_method="differentiation")
def operator_and_matvec(model, data, loss=None, preconditioner=None, **operator_kwargs):
    """(operator, its ``matvec``): the operator every curvature function measures.

    What every curvature function builds: `operator_kwargs` go to the
    operator (``differentiation=`` among them). ``curvature=`` ("hessian",
    the default, "ggn", "fisher" or "empirical_fisher") picks the operator's
    class (`curvature_operator`), so that every curvature function measures
    any of them.

    `model` may instead be an operator built earlier (a `HessianOperator`,
    `GGNOperator`, Fisher, block, preconditioned operator or sum; then `data`
    is None and the operator's own probe set, loss and options hold): its
    traced, compiled product is reused, so a session that measures λ1,
    λ1(P⁻¹H), the trace and the density of one model pays the tracing and
    XLA compilation once, not once per quantity (tens of seconds on a large
    network).

    With `preconditioner`, the operator returned is
    ``operator.preconditioned(preconditioner)``, S A S with S = P^{-1/2}: a
    new operator; one passed in is not changed.

    Raises:
        ValueError: If an operator comes with `data`, `loss` or operator options.
    """
    if isinstance(model, Composable):
        if operator_kwargs.get("curvature", getattr(model, "curvature", None)) == getattr(model, "curvature", None):
            operator_kwargs.pop("curvature", None)
        given = (
            sorted(operator_kwargs) + (["data"] if data is not None else []) + (["loss"] if loss is not None else [])
        )
        if given:
            raise ValueError(
                f"An operator fixes its probe set, loss and options; got {given} as well. Pass the "
                "model instead, or build another operator."
            )
        operator = model
    else:
        if data is None:
            raise ValueError("Pass the probe set `data` ((x, y) arrays or a tf.data.Dataset of (x, y) batches).")
        from analysis_tools.curvature.gauss_newton import curvature_operator  # it builds on this module

        operator = curvature_operator(model, data, loss=loss, **operator_kwargs)
    if preconditioner is not None:
        operator = operator.preconditioned(preconditioner)
    return operator, operator.matvec


def trainable_variables_for(model, purpose):
    """The model's trainable variables, for a model or an operator (all of its model's)."""
    while isinstance(model, Composable) and not isinstance(model, HessianOperator):
        model = model._root  # a composed operator: the curvature operator it is made from
    if isinstance(model, HessianOperator):
        return list(model._loss.variables)
    return trainable_variables_of(model, purpose)
