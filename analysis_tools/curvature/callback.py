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
from analysis_tools._deprecation import renamed, renamed_attribute, warn_renamed
from analysis_tools.curvature.block_diagonal import BlockDiagonalOperator, blockwise_eigenvalues
from analysis_tools.curvature.gauss_newton import CURVATURES, curvature_operator
from analysis_tools.curvature.quantities import (
    MODES,
    Density,
    Measurement,
    PreconditionerAlignment,
    PrincipalAngles,
    Quantity,
    TopSubspaceFraction,
    Trace,
    density_sample,
    logged_key,
    problem_name,
    solver_like,
)
from analysis_tools.preconditioners import (
    clipped_fraction_of,
    stability_threshold_of,
)

__all__ = ["SharpnessCallback", "SharpnessRecord", "density_sample"]

_SHARPNESS_KEYS = {"raw": "sharpness", "preconditioned": "preconditioned_sharpness"}
_SEEDS = {"raw": 0, "preconditioned": 1}  # of the random starts of each problem
# The options only one kind of operator takes.
_OWN_OPTIONS = {"differentiation": ("hessian",), "samples": ("fisher",), "label_seed": ("fisher",)}


@dataclasses.dataclass
class SharpnessRecord:
    """One measurement of `SharpnessCallback`.

    Attributes:
        step: The optimizer steps taken.
        values: What was logged (see `SharpnessCallback`).
        eigenvalues: {"raw" | "preconditioned" | "raw/<block>" | "preconditioned/<block>": top-k eigenvalues}
            for the Hessian; for another curvature c, the same names after ``"c:"`` (``"ggn:raw"``).
        iterations: The Lanczos products of each of those.
        densities: With `Density`, {"raw" | "preconditioned": `SpectralDensity`} (of the first curvature).
        traces: With `Trace`, {problem name (as in `eigenvalues`): `TraceEstimate`}.
    """

    step: int
    values: dict
    eigenvalues: dict
    iterations: dict
    densities: dict = dataclasses.field(default_factory=dict)
    traces: dict = dataclasses.field(default_factory=dict)


def _legacy_options(options):
    """The quantities and blocks that the keywords of release 0.2 ask for, popped from `options`, with warnings.

    ``trace=True, trace_products=n`` is ``Trace(num_products=n)``,
    ``density=True, density_vectors=v, density_iterations=m`` is
    ``Density(num_vectors=v, num_iterations=m)``, ``alignment=True,
    alignment_products=n, alignment_power=p`` is
    ``PreconditionerAlignment(num_products=n, power=p)``, ``track_angles=True``
    is ``PrincipalAngles()``, ``fraction_in_top_subspace=True`` is
    ``TopSubspaceFraction()``, and ``per_layer`` is ``blocks``.
    """
    quantities, blocks = [], None
    if "trace_samples" in options:  # renamed to trace_products in 0.2
        warn_renamed("trace_samples", "quantities=[Trace(num_products=...)]")
        options.setdefault("trace_products", options.pop("trace_samples"))
    legacy = (
        (Trace, "trace", {"trace_products": "num_products"}),
        (Density, "density", {"density_vectors": "num_vectors", "density_iterations": "num_iterations"}),
        (PreconditionerAlignment, "alignment", {"alignment_products": "num_products", "alignment_power": "power"}),
        (PrincipalAngles, "track_angles", {}),
        (TopSubspaceFraction, "fraction_in_top_subspace", {}),
    )
    for kind, switch, fields in legacy:
        settings = {new: options.pop(old) for old, new in fields.items() if old in options}
        if switch in options or settings:
            arguments = ", ".join(f"{name}={value!r}" for name, value in settings.items())
            warn_renamed(
                ", ".join([switch] + [old for old in fields if fields[old] in settings]),
                f"quantities=[{kind.__name__}({arguments})]",
            )
            if options.pop(switch, False):
                quantities.append(kind(**settings))
    if "per_layer" in options:
        warn_renamed("per_layer", "blocks")
        per_layer = options.pop("per_layer")
        if not (per_layer is True or per_layer is False or isinstance(per_layer, (list, tuple))):
            raise ValueError(f"`per_layer` must be True, False or a list of layer names, got {per_layer!r}.")
        blocks = per_layer or None
    return quantities, blocks


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

    Cohen et al., "Adaptive Gradient Methods at the Edge of Stability", 2022,
    track λ1(P_t⁻¹ H_t) of full-batch training, which rises to the stability
    threshold of the optimizer's frozen form and hovers there (Fig. 1), and
    the raw sharpness λ1(H_t) (Fig. 8). Epoch logs carry the latest
    measurement (so epochs before the first one have none of these keys).
    Every measurement is kept in `self.records` (`SharpnessRecord`). With
    `log_dir` it also writes TensorBoard scalars of its own, indexed by step.

    What else it measures, on the same schedule and operators:

    * `blocks`: ``sharpness/<block>`` (and, when `preconditioned`,
      ``preconditioned_sharpness/<block>``), λ1 of the block's diagonal block
      H_BB (P_B⁻¹ H_BB), the other weights fixed (`HessianOperator.block`).
      The blocks share the network's probe set, loss and traced product, so L
      blocks add no tracing or compilation; each takes a Lanczos run like the
      full one.
    * `curvature`: besides (or instead of) the Hessian, the Gauss-Newton
      matrix and the Fishers (`analysis_tools.curvature.curvature_operator`):
      with ``curvature=("hessian", "ggn")`` every quantity is measured for
      each, the Hessian's under the names above, another's named after it
      (``ggn_sharpness``, ``ggn_preconditioned_sharpness``,
      ``ggn_sharpness/<block>``). The first curvature named is the one
      ``sharpness_ratio`` and the density describe, and `operator` returns.
    * `quantities`: the quantities of `analysis_tools.curvature.quantities`,
      each with its options: `Trace` (tr(H), tr(P⁻¹H) by Hutch++), `Density`
      (SLQ), `PreconditionerAlignment` (P against each curvature's diagonal),
      `PrincipalAngles` (between curvatures' top-k eigenspaces) and
      `TopSubspaceFraction` (Fig. 18). Each costs products of its own, each
      about two gradient evaluations over the probe set.
    * `lockstep`: every eigenvalue problem of a measurement (each curvature,
      raw and preconditioned, the network and each block) solved at once by
      `blockwise_eigenvalues`: each Lanczos step is one pass over the probe
      set that computes every problem's product on each batch, so q problems
      cost as many passes as the slowest takes steps, not the sum. Each
      problem stops when its residuals are below `tolerance` (stricter than
      the default certification) and starts cold. No Ritz vectors, so not
      with `PrincipalAngles` or `TopSubspaceFraction`.

    `on_train_begin` builds the operators, and so refuses, with a
    `ValueError` and before the first step, a model without trainable
    variables and a probe set that does not fit the model: inputs it cannot
    take, or targets whose shape a Keras loss would broadcast against the
    outputs (checked on one batch, without gradients).

    Nothing is trained or mutated: the curvature is evaluated with
    `model.stateless_call`, the random starts come from stateless generators,
    and the model's weights, BatchNorm statistics, seed generators and the
    optimizer's state are bit-identical with and without the callback.

    Each Lanczos run stops once its eigenvalues are certified to `tolerance`
    (`Lanczos` with ``criterion="eigenvalue"``): every top-k Ritz residual r
    is below half the gap δ to the next Ritz value and r²/δ ≤ tolerance·|θ|
    (the Kato–Temple bound), or r ≤ tolerance·|θ| outright. Each run after
    the first starts from the previous measurement's top-k Ritz vectors plus
    a fresh random direction (a twentieth of their norm, so that a new top
    eigenvector the previous ones miss still has a share of the start), and
    may stop after `warm_min_iterations` products (a cold start takes at
    least 10); a warm run must pass the gap test even when its residual alone
    is small. Measure only what you read (`raw=False` halves the cost).

    Args:
        data: The probe set ((x, y) arrays or a `tf.data.Dataset`): the
            training set for a full-batch reproduction, or a fixed subset.
        every_n_steps: Measure after every N-th optimizer step (and never at step 0).
            A cold measurement costs 10–17 curvature-vector products per
            eigenvalue problem, a warm one from `warm_min_iterations`; each
            costs about two gradient evaluations per probe batch, so the
            overhead is roughly that ÷ N.
        k: How many top eigenvalues to compute.
        raw: Whether to compute λ1(H).
        preconditioned: Whether to compute λ1(P⁻¹H).
        log_dir: Optional TensorBoard directory for the callback's own scalars.
        curvature: ``"hessian"`` (default), ``"ggn"``, ``"fisher"``,
            ``"empirical_fisher"``, or a tuple of them (see above).
        blocks: None (default: the network only); True for the model's blocks
            (`analysis_tools.curvature.model_blocks`: nested models and stacks
            opened, so GPT-2's blocks are its ``transformer_layer_i``; a
            Functional cut where its graph narrows to one tensor and grouped
            into stages by name, so ResNet50's are ``conv1`` … ``conv5`` and
            ``predictions``); a list of layer or block names (nested names and
            ``"outer/inner"`` paths are found too); or {name: what
            `variables=` takes (layer or block names, layers, variables)},
            logged as ``sharpness/<name>`` (``model_blocks(model)`` gives
            True's blocks in this form, to edit).
        quantities: `Quantity` instances (`analysis_tools.curvature.quantities`),
            at most one of each class.
        max_iterations: Lanczos steps at most.
        tolerance: The relative accuracy to which each top-k eigenvalue is certified
            (see above).
        warm_start: Whether to start each Lanczos run from the previous top-k vectors.
        warm_min_iterations: The fewest products of a warm-started run (it
            then stops only when certified, the gap test included).
        lockstep: Whether to solve every eigenvalue problem of a measurement
            at once, one probe pass per step (see above).
        **operator_kwargs: `loss`, `batch_size`, `differentiation` (the
            Hessian's), `mode`, `dropout`, `include_regularization` (see
            `HessianOperator`); `samples`, `label_seed` (the Fisher's, see
            `FisherOperator`). The keywords of release 0.2 (``per_layer``,
            ``trace``, ``density``, ``alignment``, ``track_angles``,
            ``fraction_in_top_subspace`` and their options) still work, with a
            `DeprecationWarning` that gives the quantity to pass instead.
    """

    tol = renamed_attribute("tol", "tolerance")

    @property
    def trace_products(self):
        """Deprecated: the `Trace` quantity's ``num_products`` (None without one)."""
        warn_renamed("trace_products", "Trace.num_products")
        return next((q.num_products for q in self.quantities if isinstance(q, Trace)), None)

    trace_samples = trace_products

    @renamed(tol="tolerance", method="differentiation")
    def __init__(
        self,
        data,
        every_n_steps=100,
        k=1,
        raw=True,
        preconditioned=True,
        log_dir=None,
        *,
        curvature="hessian",
        blocks=None,
        quantities=(),
        max_iterations=40,
        tolerance=1e-3,
        warm_start=True,
        warm_min_iterations=3,
        lockstep=False,
        **operator_kwargs,
    ):
        super().__init__(every_n_steps=every_n_steps, log_dir=log_dir)
        if not (raw or preconditioned):
            raise ValueError("Nothing to measure: set `raw` or `preconditioned`.")
        legacy_quantities, legacy_blocks = _legacy_options(operator_kwargs)
        if legacy_blocks is not None:
            if blocks is not None:
                raise ValueError("Pass `per_layer` or `blocks`, not both: `per_layer` is the old name of `blocks`.")
            blocks = legacy_blocks
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
        self.lockstep = bool(lockstep)
        self.blocks = self._checked_blocks(blocks)
        curvatures = (curvature,) if isinstance(curvature, str) else tuple(curvature)
        unknown = [c for c in curvatures if c not in CURVATURES]
        if not curvatures or unknown or len(set(curvatures)) != len(curvatures):
            raise ValueError(
                f"`curvature` must be one of {sorted(CURVATURES)} or a tuple of distinct ones, got {curvature!r}."
            )
        self.curvature = curvatures if len(curvatures) > 1 else curvatures[0]
        self.curvatures = curvatures
        for option, owners in _OWN_OPTIONS.items():
            if option in operator_kwargs and not set(owners) & set(curvatures):
                raise ValueError(
                    f"`{option}` is an option of the {' and '.join(owners)} operator, which "
                    f"`curvature={curvature!r}` does not measure."
                )
        if "variables" in operator_kwargs:
            raise ValueError("`variables` is not an option of SharpnessCallback: use `blocks`.")
        self.operator_kwargs = operator_kwargs
        if isinstance(quantities, Quantity):  # one quantity, not in a list
            quantities = (quantities,)
        elif not isinstance(quantities, (list, tuple)):
            raise ValueError(f"`quantities` must be a list of quantities (Trace(), ...), got {quantities!r}.")
        self.quantities = self._checked_quantities(tuple(quantities) + tuple(legacy_quantities))
        self._operator = None

    # ------------------------------------------------------------- set-up
    @staticmethod
    def _checked_blocks(blocks):
        """None, True, a list of names, or a non-empty {name: selection}; `ValueError` otherwise."""
        if blocks is None or blocks is False:
            return None
        if blocks is True:
            return True
        if isinstance(blocks, dict):
            if not blocks:
                raise ValueError("`blocks` must not be empty.")
            return {str(name): selection for name, selection in blocks.items()}
        if isinstance(blocks, (list, tuple)) and blocks and all(isinstance(name, str) for name in blocks):
            return list(blocks)
        raise ValueError(
            "`blocks` must be True (the model's blocks), a non-empty list of layer or block names, or a "
            f"non-empty dict {{block name: layer names, layers or variables}}, got {blocks!r}."
        )

    def _checked_quantities(self, quantities):
        kinds = [type(quantity) for quantity in quantities]
        for quantity in quantities:
            if not isinstance(quantity, Quantity):
                raise ValueError(
                    "`quantities` takes instances of analysis_tools.curvature.quantities (Trace(), Density(), "
                    f"...), got {quantity!r}."
                )
            if kinds.count(type(quantity)) > 1:
                raise ValueError(f"`quantities` names {type(quantity).__name__} twice: their logged keys would clash.")
            quantity.check(self)
        return quantities

    @property
    def primary_kind(self):
        """The problem that the density and the top-subspace fraction describe: "preconditioned" when measured."""
        return "preconditioned" if self.preconditioned else "raw"

    @property
    def operators(self):
        """{curvature: its operator of the whole network} (None before `on_train_begin`)."""
        return getattr(self, "_operators", None) if self._operator is not None else None

    def _kinds(self):
        """The eigenvalue problems measured: "raw" (λ1(H)) and/or "preconditioned" (λ1(P⁻¹H))."""
        return [kind for kind in ("raw", "preconditioned") if (self.raw if kind == "raw" else self.preconditioned)]

    def _selections(self):
        """{block name: selection} of the blocks measured (empty without `blocks`)."""
        if self.blocks is None:
            return {}
        if self.blocks is True:
            return dict(layer_blocks(self.model))
        if isinstance(self.blocks, list):
            return {name: name for name in self.blocks}
        return self.blocks

    def _build(self):
        return_vectors = self.warm_start or any(quantity.needs_vectors for quantity in self.quantities)
        selections = self._selections()
        # The operators' own solvers (`HessianOperator.solver`): the functions given
        # `self.operator` reuse their traced loops. Each problem keeps its own seed (`_SEEDS`
        # of its kind) and call count, so its random starts are those of a solver of its own.
        # P⁻¹A is measured on a new `preconditioned` operator each time; its solver runs in the loop of
        # mode "scratch", traced once, that every preconditioned operator of this one shares.
        self._operators, self._block_operators, self._solvers = {}, {}, {}
        sequential = not self.lockstep  # lockstep has no Lanczos of its own per problem
        for curvature in self.curvatures:
            options = {
                key: value
                for key, value in self.operator_kwargs.items()
                if curvature in _OWN_OPTIONS.get(key, (curvature,))
            }
            # One probe set for every curvature: the first operator's copy of the data and its stream.
            data = self._operators[self.curvatures[0]].probe if self._operators else self.data
            operator = self._operators[curvature] = curvature_operator(self.model, data, curvature=curvature, **options)
            blocks = self._block_operators[curvature] = {}
            for kind in self._kinds() if sequential else ():
                self._solvers[problem_name(curvature, kind)] = operator.solver(
                    MODES[kind], self.max_iterations, self.k, return_vectors
                )
            for name, selection in selections.items():
                # One probe set and loss for all: `block` refuses a selection with no trainable weights.
                blocks[name] = operator.block(selection)
                for kind in self._kinds() if sequential else ():
                    self._solvers[f"{problem_name(curvature, kind)}/{name}"] = blocks[name].solver(
                        MODES[kind], self.max_iterations, self.k, self.warm_start
                    )
        self._operator = self._operators[self.curvatures[0]]
        self._layer_operators = self._block_operators[self.curvatures[0]]
        if self.lockstep:
            self._build_lockstep(selections)
        self._calls = {name: 0 for name in self._solvers}
        self._previous_vectors = {}

    def _build_lockstep(self, selections):
        """Every problem as blocks of one block-diagonal operator, built (and traced) once.

        The preconditioned problems' S is set before each measurement (`_solve_lockstep`).
        """
        parts, curvatures = [], []  # curvatures: each block's, or None where it is not preconditioned
        for curvature, operator in self._operators.items():
            for kind in self._kinds():
                name = problem_name(curvature, kind)
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
        """{block name: its operator} (first curvature) with `blocks` (empty without; None before `on_train_begin`)."""
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
        solver, matvec = solver_like(problem, self._solvers[name]), problem.matvec
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

    def _eigenvalue_problems(self, measurement, preconditioner):
        """Solves every eigenvalue problem (network and blocks) into ``measurement.results`` and logs λ1 of each."""
        results, values = measurement.results, measurement.values
        if self.lockstep:
            results.update(self._solve_lockstep(measurement.problems))
        for curvature, by_kind in measurement.problems.items():
            for kind, problem in by_kind.items():
                name = problem_name(curvature, kind)
                if not self.lockstep:
                    results[name] = self._solve(name, kind, problem)
                values[logged_key(curvature, _SHARPNESS_KEYS[kind])] = float(results[name].eigenvalues[0])
        for curvature, blocks in self._block_operators.items():
            for layer, operator in blocks.items():
                for kind in self._kinds():
                    name = f"{problem_name(curvature, kind)}/{layer}"
                    if not self.lockstep:
                        problem = operator if kind == "raw" else operator.preconditioned(preconditioner)
                        results[name] = self._solve(name, kind, problem)
                    values[f"{logged_key(curvature, _SHARPNESS_KEYS[kind])}/{layer}"] = float(
                        results[name].eigenvalues[0]
                    )

    def _threshold_values(self, values, variables):
        """``stability_threshold`` and ``sharpness_ratio`` where the optimizer has one; ``clipped_fraction``."""
        optimizer = self.model.optimizer
        threshold = stability_threshold_of(optimizer)
        clipped = clipped_fraction_of(optimizer, variables)
        if threshold is not None:
            first = self.curvatures[0]
            values["stability_threshold"] = threshold
            top = values.get(logged_key(first, "preconditioned_sharpness"), values.get(logged_key(first, "sharpness")))
            values["sharpness_ratio"] = top / threshold
        if clipped is not None:
            values["clipped_fraction"] = clipped

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
        ``clipped_fraction`` is 0 (there P = 1). Then each of `quantities`.
        """
        if self._operator is None:
            self._build()
        step = self.optimizer_steps()
        variables = self.model.trainable_variables
        needs_preconditioner = self.preconditioned or any(q.needs_preconditioner for q in self.quantities)
        preconditioner = self.preconditioner(variables) if needs_preconditioner else None
        problems = {c: self._problems(self._operators[c], preconditioner) for c in self.curvatures}
        measurement = Measurement(len(self.records), problems, {}, preconditioner)
        self._eigenvalue_problems(measurement, preconditioner)
        self._threshold_values(measurement.values, variables)
        for quantity in self.quantities:
            quantity.measure(self, measurement)
        eigenvalues = {name: np.asarray(result.eigenvalues) for name, result in measurement.results.items()}
        iterations = {name: int(result.iterations) for name, result in measurement.results.items()}
        record = SharpnessRecord(
            step, measurement.values, eigenvalues, iterations, measurement.densities, measurement.traces
        )
        self.records.append(record)
        self.mark_measured(step)
        self.publish(step, measurement.values, histograms=measurement.histograms)
        if self._writer is not None:
            self._writer.flush()
        return record
