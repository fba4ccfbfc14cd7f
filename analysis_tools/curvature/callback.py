"""`SharpnessCallback`: λ1(H) and λ1(P⁻¹H) inside `model.fit` (Cohen et al. 2022, Figs. 1, 3, 8, 18).

Cohen et al., "Adaptive Gradient Methods at the Edge of Stability", 2022,
track the preconditioned sharpness λ1(P_t⁻¹ H_t) of full-batch training,
which rises to the stability threshold of the optimizer's frozen form and
hovers there (Fig. 1), and the raw sharpness λ1(H_t) (Fig. 8).
"""

import dataclasses

import numpy as np
import tensorflow as tf

from analysis_tools._blocks import layer_blocks
from analysis_tools._callback import StepMeasurementCallback
from analysis_tools._deprecation import renamed, renamed_attribute
from analysis_tools.curvature.agreement import alignment as alignment_of
from analysis_tools.curvature.agreement import principal_angles
from analysis_tools.curvature.block_diagonal import BlockDiagonalOperator, blockwise_eigenvalues
from analysis_tools.curvature.density import slq_with
from analysis_tools.curvature.diagonal import curvature_diagonal
from analysis_tools.curvature.eigenvalues import top_subspace_fraction
from analysis_tools.curvature.gauss_newton import CURVATURES, curvature_operator
from analysis_tools.curvature.trace import hutch_plus_plus
from analysis_tools.preconditioners import (
    clipped_fraction_of,
    stability_threshold_of,
)

__all__ = ["SharpnessCallback", "SharpnessRecord"]

# The solver mode of each problem (`HessianOperator.solver`).
_MODES = {"raw": False, "preconditioned": "scratch"}
_SHARPNESS_KEYS = {"raw": "sharpness", "preconditioned": "preconditioned_sharpness"}
_TRACE_KEYS = {"raw": "hessian_trace", "preconditioned": "preconditioned_hessian_trace"}
_SEEDS = {"raw": 0, "preconditioned": 1}  # of the random starts of each problem
# The options only one kind of operator takes.
_OWN_OPTIONS = {"differentiation": ("hessian",), "samples": ("fisher",), "label_seed": ("fisher",)}


def _key(curvature, key):
    """A logged key of `curvature`: the Hessian's as they are, another's named after it."""
    if curvature == "hessian":
        return key
    return key.replace("hessian", curvature) if "hessian" in key else f"{curvature}_{key}"


def _problem_name(curvature, kind):
    """A problem's name in `SharpnessRecord.eigenvalues`: "raw", "preconditioned", or "ggn:raw", ..."""
    return kind if curvature == "hessian" else f"{curvature}:{kind}"


@dataclasses.dataclass
class SharpnessRecord:
    """One measurement of `SharpnessCallback`.

    Attributes:
        step: The optimizer steps taken.
        values: What was logged (see `SharpnessCallback`).
        eigenvalues: {"raw" | "preconditioned" | "raw/<layer>" | "preconditioned/<layer>": top-k eigenvalues}
            for the Hessian; for another curvature c, the same names after ``"c:"`` (``"ggn:raw"``).
        iterations: The Lanczos products of each of those.
        densities: With `density`, {"raw" | "preconditioned": `SpectralDensity`} (of the first curvature).
        traces: With `trace`, {problem name (as in `eigenvalues`): `TraceEstimate`}.
    """

    step: int
    values: dict
    eigenvalues: dict
    iterations: dict
    densities: dict = dataclasses.field(default_factory=dict)
    traces: dict = dataclasses.field(default_factory=dict)


class SharpnessCallback(StepMeasurementCallback):
    """Track λ1(H) and λ1(P⁻¹H) during `model.fit`, every `every_n_steps` optimizer steps.

    It measures at the start of the first step after every `every_n_steps`-th
    optimizer step (and at the end of an epoch, if one is due), on the weights
    the finished steps left, and adds the latest values to the epoch's logs (so
    `History`, `CSVLogger` and `TensorBoard` record them):

    * ``sharpness``: λ1(H) (when `raw`);
    * ``preconditioned_sharpness``: λ1(P⁻¹H) (when `preconditioned`);
    * ``stability_threshold``: the threshold of the optimizer's frozen form;
    * ``sharpness_ratio``: λ1(P⁻¹H) / threshold (or λ1(H) / threshold when not
      `preconditioned`), which the AEoS paper finds settles near 1. Neither
      key is logged for sign descent (SSD, M-SSD), which has no threshold
      (`stability_threshold_of` is None);
    * ``clipped_fraction``: for ACClip, CClip and GClip, the fraction of
      coordinates their latest update clipped. Their threshold is that of the
      unclipped method, which holds where this is 0.

    Epoch logs carry the latest measurement (so epochs before the first one
    have none of these keys).

    With `fraction_in_top_subspace` it also logs ``top_subspace_fraction``, the
    part of ‖P^{-1/2} g‖² in the top-k eigenvectors' span (Fig. 18). Every
    measurement is kept in `self.records` (step, values, top-k eigenvalues,
    Lanczos iterations). With `log_dir` it also writes TensorBoard scalars of
    its own, indexed by step.

    On request, on the same schedule (cost in Hessian-vector products, each
    about two gradient evaluations over the probe set):

    * `per_layer` or `blocks`: ``sharpness/<block>`` (and, when
      `preconditioned`, ``preconditioned_sharpness/<block>``), λ1 of the
      block's diagonal block H_BB (P_B⁻¹ H_BB), the other weights fixed
      (`HessianOperator.block`). The blocks share the network's probe set,
      loss and traced product (a block product is a full product restricted
      to the block, so L blocks add no tracing or compilation), and each
      block and quantity takes a Lanczos run like the full one (10 or more
      products cold, from `warm_min_iterations` warm).
    * `trace`: ``hessian_trace`` (when `raw`) and ``preconditioned_hessian_trace``
      (when `preconditioned`), tr(H) and tr(P⁻¹H) by Hutch++ with
      `trace_products` products each (`analysis_tools.hessian_trace`), and
      their standard errors ``..._standard_error``.
    * `curvature`: besides (or instead of) the Hessian, the Gauss-Newton
      matrix and the Fishers (`analysis_tools.curvature.curvature_operator`): with
      ``curvature=("hessian", "ggn")`` every quantity above is measured for
      each, the Hessian's under the names above, another's named after it:
      ``ggn_sharpness``, ``ggn_preconditioned_sharpness``,
      ``ggn_sharpness/<block>``, ``ggn_trace``, ``preconditioned_ggn_trace``.
      The first curvature named is the one ``sharpness_ratio``, the density
      and ``top_subspace_fraction`` describe, and `operator` returns.
    * `alignment`: how well the optimizer's P follows each curvature's
      diagonal d (`analysis_tools.curvature.alignment` of P with d^`alignment_power`):
      ``<curvature>_alignment_rank_correlation``, ``..._cosine`` and
      ``..._ratio_spread`` (``hessian_alignment_cosine``, ``ggn_...``). d is
      exact for the Fishers (per-example gradients, without regularization
      losses) and where `alignment_products` ≥ the parameter count (one
      product per unit vector), else Hutchinson's estimate from
      `alignment_products` products, whose noise lowers the correlations.
    * `track_angles`: with two curvatures or more, the largest principal
      angle (radians) between the top-k eigenspaces of each pair's raw
      problems, ``principal_angle/<first>_<second>`` (0: the same top-k
      directions; π/2: a direction of one orthogonal to the other's).
    * `lockstep`: every eigenvalue problem of a measurement (each curvature,
      raw and preconditioned, the network and each block) solved at once by
      `blockwise_eigenvalues`: each Lanczos step is one pass over the probe
      set that computes every problem's product on each batch, so a
      measurement of q problems costs as many passes as its slowest problem
      takes steps, not the sum over the problems. Each problem stops when its
      residuals are below `tolerance` (the residual criterion, stricter than
      the default certification) and starts cold (no warm start).
    * `density`: the SLQ spectral density (`analysis_tools.curvature.spectral_density`)
      of P⁻¹H (of H when not `preconditioned`), `density_vectors` ×
      `density_iterations` products, kept in the record and, with `log_dir`,
      written as a TensorBoard histogram ``spectral_density``: 10,000 values
      spread over the Ritz nodes in proportion to their quadrature weights.

    `on_train_begin` builds the Hessian operator, and so refuses, with a
    `ValueError` and before the first step, a model without trainable
    variables and a probe set that does not fit the model: inputs it cannot
    take, or targets whose shape a Keras loss would broadcast against the
    outputs (checked on one batch, without gradients).

    Nothing is trained or mutated: the Hessian is evaluated with
    `model.stateless_call`, the random start comes from a stateless generator,
    and the model's weights, BatchNorm statistics, seed generators and the
    optimizer's state are bit-identical with and without the callback.

    Each Lanczos run stops once its eigenvalues are certified to `tolerance`
    (`Lanczos` with ``criterion="eigenvalue"``): every top-k Ritz residual r
    is below half the gap δ to the next Ritz value and r²/δ ≤ tolerance·|θ|
    (the Kato–Temple bound), or r ≤ tolerance·|θ| outright. The eigenvalue converges
    like the square of the residual, so this takes fewer products than a
    residual test at the same tolerance. Each run after the first starts from
    the previous measurement's top-k Ritz vectors plus a fresh random
    direction (a twentieth of their norm, so that a new top eigenvector the
    previous ones miss still has a share of the start), and may stop after
    `warm_min_iterations` products (a cold start takes at least 10); a warm
    run must pass the gap test even when its residual alone is small. How
    much the warm start saves depends on how far the top eigenvector turns
    between measurements. Measure only what you read (`raw=False` halves the
    cost). `benchmarks/RESULTS.md` has the overhead on a transformer and the
    accuracy against a cold reference.

    Args:
        data: The probe set ((x, y) arrays or a `tf.data.Dataset`): the
            training set for a full-batch reproduction, or a fixed subset.
        every_n_steps: Measure after every N-th optimizer step (and never at step 0).
            A cold measurement costs 10–17 Hessian-vector products per
            eigenvalue (λ1(H), λ1(P⁻¹H)) on the probe set, a warm one from
            `warm_min_iterations`; each product costs about two gradient
            evaluations per probe batch, so the overhead is roughly that ÷ N.
        k: How many top eigenvalues to compute.
        raw: Whether to compute λ1(H).
        preconditioned: Whether to compute λ1(P⁻¹H).
        log_dir: Optional TensorBoard directory for the callback's own scalars.
        max_iterations: Lanczos steps at most.
        tolerance: The relative accuracy to which each top-k eigenvalue is certified
            (see above).
        warm_start: Whether to start each Lanczos run from the previous top-k vectors.
        warm_min_iterations: The fewest products of a warm-started run (it
            then stops only when certified, the gap test included).
        fraction_in_top_subspace: Whether to log ``top_subspace_fraction``.
        per_layer: False (default); True for the model's blocks
            (`analysis_tools.curvature.model_blocks`: nested models and stacks of
            blocks opened, so GPT-2's blocks are its ``transformer_layer_i``;
            a Functional cut where its graph narrows to one tensor and
            grouped into stages by name, so ResNet50's are ``conv1`` …
            ``conv5`` and ``predictions``); or a list of layer or block
            names (nested names and ``"outer/inner"`` paths are found too).
        blocks: Instead of `per_layer`, the blocks to measure, named by you:
            {name: what `variables=` takes (layer or block names, layers,
            variables)}; logged as ``sharpness/<name>``.
            `analysis_tools.curvature.model_blocks(model)` gives `per_layer=True`'s
            blocks in this form, to edit.
        trace: Whether to log the Hessian trace(s).
        trace_products: Hessian-vector products per trace (Hutch++, ≥ 3).
        density: Whether to compute the spectral density.
        density_vectors: SLQ start vectors per density.
        density_iterations: Lanczos steps per SLQ vector.
        track_angles: Whether to log the principal angles between the
            curvatures' top-k eigenspaces (needs two curvatures and `raw`).
        lockstep: Whether to solve every eigenvalue problem of a measurement
            at once, one probe pass per step (see above). Not with
            `fraction_in_top_subspace` (it has no Ritz vectors).
        alignment: Whether to log P's alignment with each curvature's diagonal.
        alignment_products: Products per diagonal where it is estimated.
        alignment_power: The power of d that P is compared with (1/2:
            Adam's √v against a diagonal of averaged g²).
        curvature: ``"hessian"`` (default), ``"ggn"``, ``"fisher"``,
            ``"empirical_fisher"``, or a tuple of them (see above).
        **operator_kwargs: `loss`, `batch_size`, `differentiation` (the
            Hessian's), `mode`, `dropout`, `include_regularization` (see
            `HessianOperator`); `samples`, `label_seed` (the Fisher's, see
            `FisherOperator`).
    """

    tol = renamed_attribute("tol", "tolerance")
    trace_samples = renamed_attribute("trace_samples", "trace_products")

    @renamed(tol="tolerance", trace_samples="trace_products", method="differentiation")
    def __init__(
        self,
        data,
        every_n_steps=100,
        k=1,
        raw=True,
        preconditioned=True,
        log_dir=None,
        max_iterations=40,
        tolerance=1e-3,
        warm_start=True,
        warm_min_iterations=3,
        fraction_in_top_subspace=False,
        per_layer=False,
        blocks=None,
        trace=False,
        trace_products=30,
        density=False,
        density_vectors=1,
        density_iterations=30,
        track_angles=False,
        lockstep=False,
        alignment=False,
        alignment_products=30,
        alignment_power=0.5,
        curvature="hessian",
        **operator_kwargs,
    ):
        super().__init__(every_n_steps=every_n_steps, log_dir=log_dir)
        if not (raw or preconditioned):
            raise ValueError("Nothing to measure: set `raw` or `preconditioned`.")
        self.data = data
        self.k = int(k)
        self.raw = bool(raw)
        self.preconditioned = bool(preconditioned)
        self.max_iterations = int(max_iterations)
        self.tolerance = float(tolerance)
        self.warm_start = bool(warm_start)
        if int(warm_min_iterations) < 1:
            raise ValueError(f"`warm_min_iterations` must be >= 1, got {warm_min_iterations}.")
        self.warm_min_iterations = int(warm_min_iterations)
        self.fraction_in_top_subspace = bool(fraction_in_top_subspace)
        if not (per_layer is True or per_layer is False or isinstance(per_layer, (list, tuple))):
            raise ValueError(f"`per_layer` must be True, False or a list of layer names, got {per_layer!r}.")
        self.per_layer = per_layer if isinstance(per_layer, bool) else list(per_layer)
        if blocks is not None:
            if not isinstance(blocks, dict) or not blocks:
                raise ValueError(
                    "`blocks` must be a non-empty dict {block name: layer names, layers or "
                    f"variables}}, got {blocks!r}."
                )
            if per_layer is not False:
                raise ValueError("Pass `per_layer` or `blocks`, not both: `blocks` names the blocks itself.")
            blocks = {str(name): selection for name, selection in blocks.items()}
        self.blocks = blocks
        self.trace = bool(trace)
        self.trace_products = int(trace_products)
        if self.trace and self.trace_products < 3:
            raise ValueError(f"`trace_products` must be >= 3 (Hutch++), got {trace_products}.")
        self.density = bool(density)
        self.density_vectors = int(density_vectors)
        self.density_iterations = int(density_iterations)
        if self.density and (self.density_vectors < 1 or self.density_iterations < 1):
            raise ValueError(
                "`density_vectors` and `density_iterations` must be >= 1, got "
                f"{density_vectors} and {density_iterations}."
            )
        self.lockstep = bool(lockstep)
        self.track_angles = bool(track_angles)
        if self.lockstep and self.fraction_in_top_subspace:
            raise ValueError("`fraction_in_top_subspace` needs Ritz vectors, which `lockstep` does not compute.")
        self.alignment = bool(alignment)
        self.alignment_products = int(alignment_products)
        if self.alignment and self.alignment_products < 1:
            raise ValueError(f"`alignment_products` must be >= 1, got {alignment_products}.")
        self.alignment_power = float(alignment_power)
        curvatures = (curvature,) if isinstance(curvature, str) else tuple(curvature)
        unknown = [c for c in curvatures if c not in CURVATURES]
        if not curvatures or unknown or len(set(curvatures)) != len(curvatures):
            raise ValueError(
                f"`curvature` must be one of {sorted(CURVATURES)} or a tuple of distinct ones, got {curvature!r}."
            )
        self.curvature = curvatures if len(curvatures) > 1 else curvatures[0]
        self._curvatures = curvatures
        for option, owners in _OWN_OPTIONS.items():
            if option in operator_kwargs and not set(owners) & set(curvatures):
                raise ValueError(
                    f"`{option}` is an option of the {' and '.join(owners)} operator, which "
                    f"`curvature={curvature!r}` does not measure."
                )
        if self.track_angles and (len(curvatures) < 2 or not self.raw or self.lockstep):
            raise ValueError(
                "`track_angles` compares the raw top-k eigenspaces of two curvatures or more, with "
                "Ritz vectors: name two in `curvature`, keep `raw`, and do not use `lockstep`."
            )
        self.operator_kwargs = operator_kwargs
        if "variables" in operator_kwargs:
            raise ValueError("`variables` is not an option of SharpnessCallback: use `per_layer`.")
        self._operator = None

    # ------------------------------------------------------------- set-up
    def _kinds(self):
        """The eigenvalue problems measured: "raw" (λ1(H)) and/or "preconditioned" (λ1(P⁻¹H))."""
        return [kind for kind in ("raw", "preconditioned") if (self.raw if kind == "raw" else self.preconditioned)]

    def _build(self):
        return_vectors = self.warm_start or self.fraction_in_top_subspace or self.track_angles
        if self.blocks is not None:
            selections = self.blocks
        elif self.per_layer is True:
            selections = dict(layer_blocks(self.model))
        else:
            selections = {name: name for name in self.per_layer or ()}
        # The operators' own solvers (`HessianOperator.solver`): the functions given
        # `self.operator` reuse their traced loops. Each problem keeps its own seed (`_SEEDS`
        # of its kind) and call count, so its random starts are those of a solver of its own.
        # P⁻¹A is measured on a new `preconditioned` operator each time; its solver runs in the loop of
        # mode "scratch", traced once, that every preconditioned operator of this one shares.
        self._operators, self._block_operators, self._solvers = {}, {}, {}
        for curvature in self._curvatures:
            options = {
                key: value
                for key, value in self.operator_kwargs.items()
                if curvature in _OWN_OPTIONS.get(key, (curvature,))
            }
            # One probe set for every curvature: the first operator's copy of the data and its stream.
            data = self._operators[self._curvatures[0]].probe if self._operators else self.data
            operator = self._operators[curvature] = curvature_operator(self.model, data, curvature=curvature, **options)
            blocks = self._block_operators[curvature] = {}
            sequential = not self.lockstep  # lockstep has no Lanczos of its own per problem
            for kind in self._kinds() if sequential else ():
                self._solvers[_problem_name(curvature, kind)] = operator.solver(
                    _MODES[kind], self.max_iterations, self.k, return_vectors
                )
            for name, selection in selections.items():
                # One probe set and loss for all: `block` refuses a selection with no trainable weights.
                blocks[name] = operator.block(selection)
                for kind in self._kinds() if sequential else ():
                    self._solvers[f"{_problem_name(curvature, kind)}/{name}"] = blocks[name].solver(
                        _MODES[kind], self.max_iterations, self.k, self.warm_start
                    )
        self._operator = self._operators[self._curvatures[0]]
        self._layer_operators = self._block_operators[self._curvatures[0]]
        if self.lockstep:
            # Every problem as blocks of one block-diagonal operator, built (and traced) once; the
            # preconditioned problems' S is set before each measurement.
            parts, curvatures = [], []  # curvatures: each block's, or None where it is not preconditioned
            for curvature, operator in self._operators.items():
                for kind in self._kinds():
                    name = _problem_name(curvature, kind)
                    parts.append(BlockDiagonalOperator(operator, {name: list(operator.variables)}))
                    if selections:
                        parts.append(
                            BlockDiagonalOperator(
                                operator, {f"{name}/{layer}": selection for layer, selection in selections.items()}
                            )
                        )
                    # The network and each block: one problem each.
                    curvatures += [curvature if kind == "preconditioned" else None] * (1 + len(selections))
            self._lockstep = BlockDiagonalOperator.stack(parts)
            self._lockstep_scaled = [(i, c) for i, c in enumerate(curvatures) if c is not None]
        if self.density:
            primary = "preconditioned" if self.preconditioned else "raw"
            self._density_solver = self._operator.solver(_MODES[primary], self.density_iterations)
        self._calls = {name: 0 for name in self._solvers}
        self._previous_vectors = {}

    def _problems(self, operator, preconditioner):
        """{kind: `operator` (H) or ``operator.preconditioned(P)`` (P^{-1/2} H P^{-1/2})}; nothing is stored in it."""
        return {kind: operator if kind == "raw" else operator.preconditioned(preconditioner) for kind in self._kinds()}

    def _solve_lockstep(self, problems):
        """{problem name: `LanczosResult`} of every problem at once (`lockstep`), P's S set first."""
        operator = self._lockstep
        for i, curvature in self._lockstep_scaled:
            scale = problems[curvature]["preconditioned"].preconditioner_scale
            operator.scales[i] = tf.gather(scale, operator.positions[i])
        return blockwise_eigenvalues(
            operator, k=self.k, max_iterations=self.max_iterations, tolerance=self.tolerance, seed=len(self.records)
        )

    def _diagonal(self, curvature, operator):
        """The curvature's diagonal for `alignment`: exact where that is cheap, else Hutchinson's."""
        if curvature in ("fisher", "empirical_fisher") and not (operator.include_regularization and self.model.losses):
            estimator = "per_example"
        elif self.alignment_products >= operator.dimension:
            estimator = "exact"
        else:
            estimator = "hutchinson"
        return curvature_diagonal(
            operator, estimator=estimator, num_products=self.alignment_products, seed=len(self.records)
        )

    @staticmethod
    def _solver_of(problem, shared):
        """`problem`'s solver of `shared`'s sizes: `shared` itself, or a preconditioned operator's wrapper of it."""
        return problem.solver(False, shared.max_iterations, shared.k, shared.return_vectors)

    @property
    def operator(self):
        """The operator of the whole network it measures with, of the first `curvature` (None before `on_train_begin`).

        Pass it to `analysis_tools.sharpness`, `preconditioned_sharpness`,
        `hessian_trace` or `spectral_density` in place of the model to measure
        more at the current weights without tracing and compiling the product
        again.
        """
        return self._operator

    @property
    def layer_operators(self):
        """{block name: its operator} (first curvature) with `per_layer` or `blocks` (empty without; None before
        `on_train_begin`)."""
        return getattr(self, "_layer_operators", None)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self._operator is None or self._operator.model is not self.model:
            self._build()

    def reset(self):
        """Forget every measurement and warm start, keeping the traced Hessian operator and solvers.

        Reusing one callback for several runs of the same model (restore the
        weights, compile a new optimizer, `fit`, `reset()`) traces and compiles
        the products once instead of once per run.
        """
        super().reset()
        self._previous_vectors = {}
        self._calls = {name: 0 for name in getattr(self, "_solvers", {})}  # a new callback's random starts

    # ---------------------------------------------------------- measuring
    def _solve(self, name, kind, problem):
        solver, matvec = self._solver_of(problem, self._solvers[name]), problem.matvec
        settings = dict(tolerance=self.tolerance, criterion="eigenvalue", seed=_SEEDS[kind], call=self._calls[name])
        self._calls[name] += 1
        previous = self._previous_vectors.get(name) if self.warm_start else None
        if previous is None:
            result = solver(matvec, **settings)
        else:
            # The previous top-k Ritz vectors (orthonormal) plus a fresh random direction.
            start = tf.reduce_sum(tf.cast(previous, tf.float64), axis=0)
            direction = tf.random.stateless_normal([solver.dimension], seed=[len(self.records), 7], dtype=tf.float64)
            start += 0.05 * tf.norm(start) * direction / tf.norm(direction)
            result = solver(matvec, start, min_iterations=self.warm_min_iterations, certify_gap=True, **settings)
        if result.eigenvectors is not None and np.all(np.isfinite(result.eigenvalues)):
            self._previous_vectors[name] = result.eigenvectors
        return result

    def measure(self):
        """Run one measurement now and return its `SharpnessRecord`.

        Its values: ``sharpness`` and ``preconditioned_sharpness`` (as
        configured); ``stability_threshold`` and ``sharpness_ratio`` only for
        an optimizer with a threshold (`stability_threshold_of` is ``None``
        for sign descent, whose step has length η at any curvature, and then
        neither is logged); ``clipped_fraction`` only for a clipping optimizer
        (ACClip, CClip, GClip; `clipped_fraction_of`), the fraction of
        coordinates its most recent update clipped. Their threshold is that
        of the unclipped method, so the ratio reads against it as is where
        ``clipped_fraction`` is 0 (there P = 1).
        """
        if self._operator is None:
            self._build()
        optimizer = self.model.optimizer
        step = self.optimizer_steps()
        values, eigenvalues, iterations = {}, {}, {}
        results = {}
        variables = self.model.trainable_variables
        preconditioner = self.preconditioner(variables) if self.preconditioned or self.alignment else None
        problems = {c: self._problems(self._operators[c], preconditioner) for c in self._curvatures}
        if self.lockstep:
            results.update(self._solve_lockstep(problems))
        for curvature, by_kind in problems.items():
            for kind, problem in by_kind.items():
                name = _problem_name(curvature, kind)
                if not self.lockstep:
                    results[name] = self._solve(name, kind, problem)
                values[_key(curvature, _SHARPNESS_KEYS[kind])] = float(results[name].eigenvalues[0])
        first = self._curvatures[0]
        threshold = stability_threshold_of(optimizer)
        clipped = clipped_fraction_of(optimizer, variables)
        if threshold is not None:
            values["stability_threshold"] = threshold
            top = values.get(_key(first, "preconditioned_sharpness"), values.get(_key(first, "sharpness")))
            values["sharpness_ratio"] = top / threshold
        if clipped is not None:
            values["clipped_fraction"] = clipped
        for curvature, blocks in self._block_operators.items():
            for layer, operator in blocks.items():
                for kind in self._kinds():
                    name = f"{_problem_name(curvature, kind)}/{layer}"
                    if not self.lockstep:
                        problem = operator if kind == "raw" else operator.preconditioned(preconditioner)
                        results[name] = self._solve(name, kind, problem)
                    values[f"{_key(curvature, _SHARPNESS_KEYS[kind])}/{layer}"] = float(results[name].eigenvalues[0])
        # What the density and the top-subspace fraction describe: P⁻¹A when measured, else A (A the first curvature).
        primary = "preconditioned" if self.preconditioned else "raw"
        traces, densities, histograms = {}, {}, {}
        if self.trace:
            for curvature, by_kind in problems.items():
                for kind, problem in by_kind.items():
                    key, name = _key(curvature, _TRACE_KEYS[kind]), _problem_name(curvature, kind)
                    traces[name] = hutch_plus_plus(
                        problem.matvec, problem.dimension, self.trace_products, len(self.records)
                    )
                    values[key] = traces[name].estimate
                    values[f"{key}_standard_error"] = traces[name].standard_error
        if self.track_angles:
            for i, first_curvature in enumerate(self._curvatures):
                for second in self._curvatures[i + 1 :]:
                    angles = principal_angles(
                        results[_problem_name(first_curvature, "raw")].eigenvectors,
                        results[_problem_name(second, "raw")].eigenvectors,
                    )
                    values[f"principal_angle/{first_curvature}_{second}"] = float(angles.max())
        if self.alignment:
            for curvature, operator in self._operators.items():
                measured = alignment_of(
                    preconditioner, self._diagonal(curvature, operator).estimate, self.alignment_power
                )
                for statistic in ("rank_correlation", "cosine", "ratio_spread"):
                    values[f"{curvature}_alignment_{statistic}"] = getattr(measured, statistic)
        if self.density:
            problem = problems[first][primary]
            densities[primary] = slq_with(
                self._solver_of(problem, self._density_solver),
                problem.matvec,
                self.density_vectors,
                np.random.default_rng([11, len(self.records)]),
                seed=11,
            )
            histograms["spectral_density"] = density_sample(densities[primary])
        if self.fraction_in_top_subspace:
            gradient, _ = self._operator.gradient()
            scale = problems[first]["preconditioned"].preconditioner_scale if self.preconditioned else None
            values["top_subspace_fraction"], _ = top_subspace_fraction(
                gradient, results[_problem_name(first, primary)].eigenvectors, scale
            )
        for name, result in results.items():
            eigenvalues[name] = np.asarray(result.eigenvalues)
            iterations[name] = int(result.iterations)
        record = SharpnessRecord(step, values, eigenvalues, iterations, densities, traces)
        self.records.append(record)
        self.mark_measured(step)
        self.publish(step, values, histograms=histograms)
        if self._writer is not None:
            self._writer.flush()
        return record


def density_sample(density, size=10_000):
    """`size` values spread over a `SpectralDensity`'s nodes in proportion to their weights (for a histogram).

    Each node gets round(size · weight / vectors) copies; non-finite nodes
    (a diverged network) are left out, and an all-NaN density gives no values.
    """
    nodes = np.concatenate(density.nodes)
    counts = np.rint(size * np.concatenate(density.weights) / density.num_vectors).astype(np.int64)
    keep = np.isfinite(nodes)
    return np.repeat(nodes[keep], counts[keep])
