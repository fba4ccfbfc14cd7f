"""`SharpnessTracker`: cheap estimates of the sharpness at every step of `model.fit`.

`SharpnessCallback` certifies λ1(H) and λ1(P⁻¹H) by Lanczos, at tens of
Hessian-vector products a measurement. This callback offers estimates cheap
enough to leave on, each named for what it measures:

* ``"update_curvature"`` (free; inside the compiled train step). The secant
  curvature along the update Δ_t = θ_{t+1} - θ_t, from the gradients the
  training computes anyway:

      preconditioned_update_curvature = ⟨g_{t+1} - g_t, Δ_t⟩ / ⟨Δ_t, P_t Δ_t⟩,
      update_curvature                = ⟨g_{t+1} - g_t, Δ_t⟩ / ⟨Δ_t, Δ_t⟩,

  with P_t the preconditioner of the update that made Δ_t
  (`preconditioner_of`). By the mean-value theorem the numerator is
  Δ_tᵀ H̄ Δ_t, H̄ the Hessian averaged over the segment, so on a quadratic
  the two are exactly the Rayleigh quotients of P⁻¹H in the P metric and
  of H along Δ_t: lower bounds of λ1(P⁻¹H) and λ1(H), equal to them only
  where the update lies along the top eigenvector (which, at the edge of
  stability, it nearly does: the oscillation runs along it). With
  mini-batches g_t and g_{t+1} are gradients of different batches, and the
  numerator carries their difference (gradient noise), not only curvature:
  then it is not a curvature of any one loss.
* ``"critical_sharpness"`` (forward passes only, on the probe set). The
  critical sharpness λ_c = 2/η_c of Kalra et al. (2026): η_c is the critical
  learning rate, the smallest η at which the last update's direction,
  θ_t + (η/η_t) Δ_t, raises the probe loss above L(θ_t). It is found by a
  line search of at most `num_forward_passes` loss evaluations: doubling or
  halving from the previous measurement's critical step (the actual step at
  the first) until the loss crosses L(θ_t), then the root
  of the parabola through L(θ_t) and the two bracketing points, refined
  (the bracket narrowed at the root) until two roots agree to `tolerance`
  or the budget is spent. On a quadratic, λ_c = Δᵀ H Δ / (-η_t gᵀ Δ) with
  g = ∇L(θ_t), and the parabola is exact. For gradient descent (Δ = -η g)
  that is gᵀHg / gᵀg, a Rayleigh quotient of H; for an adaptive update
  with momentum it is no Rayleigh quotient of P⁻¹H, and it crosses 2/η, not
  the frozen form's threshold, when the actual step starts to raise the
  loss. The losses are float32 sums: λ_c resolves loss changes down to
  about 1e-7 of L.
* ``"power_iteration"`` (`num_products` products per estimate, on the probe
  set). Warm-started power iteration on S H S, S = P^{-1/2} (and on H with
  `raw`), as Ramasinghe et al. (2026) track λ1(P⁻¹H) with a few products a
  step: each measurement starts from the previous one's vector. With
  ``num_products=1`` it is one power step, v ← S H S v / ‖S H S v‖, and the
  value logged is the Rayleigh quotient vᵀ S H S v of the vector it started
  from. With m = `num_products` ≥ 2 (the default, 3) the m products build
  the Krylov space K_m(S H S, v) instead, which holds the m-th power iterate,
  and the value is its top Ritz value (Lanczos with full
  reorthogonalization, m steps, no stopping test) and the next start its
  Ritz vector: for the same products, never below the power iterate's
  Rayleigh quotient. Either way the value, ``power_preconditioned_sharpness``
  (``power_sharpness`` for H), is a Rayleigh quotient of the probe's S H S
  at that step, so never above λ1(P⁻¹H), and ``..._residual`` bounds its
  distance to some eigenvalue (‖S H S y - ρ y‖ for the unit vector y).
  Where the top eigenvector turns faster than the products follow it, the
  value falls below λ1; the full-batch validation in
  `benchmarks/tracker_validation.py` measures how far. Power iteration finds
  the eigenvalue of largest magnitude, so a negative eigenvalue larger in
  magnitude than λ1 draws the one-product form away (its ρ then falls).
* ``"batch_sharpness"`` (a gradient and one product per problem, on one
  batch). The batch sharpness of Andreyev and Beneventano (2024), the
  curvature of a mini-batch loss L_B along its own gradient,
  ``batch_sharpness`` = g_Bᵀ H_B g_B / g_Bᵀ g_B, and its preconditioned form
  along the step direction u = P⁻¹ g_B in the P metric,
  ``preconditioned_batch_sharpness`` = uᵀ H_B u / uᵀ P u. Each measurement
  takes the next batch of `data` (of `batch_size` examples, in turn, the
  last partial batch left out), so their average over measurements
  estimates the expectation over batches that the paper finds settles at
  2/η under SGD (the edge of stochastic stability). It is neither λ1 of H
  nor of any batch's H_B: a Rayleigh quotient of H_B, never above λ1(H_B),
  and usually above λ1 of the full-batch H.

Every measurement is appended to ``self.records`` and logged to the epoch
logs (so `History`, `CSVLogger` and `TensorBoard` record it), and with
`log_dir` written to TensorBoard at its step, every `every_n_steps`
optimizer steps.
"""

import dataclasses
import math

import keras
import numpy as np
import tensorflow as tf

from analysis_tools._callback import StepMeasurementCallback
from analysis_tools._model_loss import ModelLoss
from analysis_tools._probe import ProbeLoss, ProbeSet, check_data
from analysis_tools._step_hook import StepHook
from analysis_tools.curvature.gauss_newton import curvature_operator
from analysis_tools.preconditioners import (
    _unwrap,
    last_learning_rate_of,
    preconditioner_needs_gradients,
    preconditioner_of,
    preconditioner_unavailable,
)

__all__ = ["SharpnessTracker", "TrackerRecord"]

ESTIMATORS = ("update_curvature", "critical_sharpness", "power_iteration", "batch_sharpness")
_PROBE_ESTIMATORS = ("critical_sharpness", "power_iteration", "batch_sharpness")
# Relative changes of a float32 loss below this are rounding: a root whose loss is this close to L(θ_t) is final.
_LOSS_RESOLUTION = 1e-6
_PROBE_OPTIONS = ("loss", "batch_size", "mode", "dropout", "include_regularization", "jit_compile", "differentiation")


@dataclasses.dataclass
class TrackerRecord:
    """One measurement of `SharpnessTracker`.

    Attributes:
        step: Optimizer steps completed when it was taken.
        values: The logged values (only those that apply).
        forward_passes: Loss evaluations the critical-sharpness line search took (0 without it).
        products: Hessian-vector products taken (power iteration and batch sharpness).
        notes: Why a value is NaN, by key (the line search that found no crossing).
    """

    step: int
    values: dict
    forward_passes: int = 0
    products: int = 0
    notes: dict = dataclasses.field(default_factory=dict)


class _UpdateSecant:
    """A `StepHook` listener: the secant ⟨g_{t+1} - g_t, Δ_t⟩ computed inside the train step.

    Before the update it forms ⟨g_{t+1}, Δ_t⟩ (all-reduced over the
    replicas, whose gradients Keras sums) and the two curvatures from the
    scalars the previous step left, then copies the weights; after it, it
    records Δ_{t+1} = θ after - θ before, ⟨g_{t+1}, Δ_{t+1}⟩, ⟨Δ, PΔ⟩ and
    ⟨Δ, Δ⟩. Per replica: Δ (one float32 copy of the trainable weights) and
    five scalars, in on-read variables, so that every replica keeps its own
    (identical) copy and the replicas exchange only the scalar dot products
    (and, for an optimizer whose P is made of the gradient itself, such as
    SSD's |g|, the gradient). Float32 throughout, static shapes: it runs under
    XLA and on a TPU.
    """

    def __init__(self, optimizer, variables, strategy, preconditioned):
        self.optimizer = optimizer
        self.variables = list(variables)
        self.preconditioned = preconditioned
        local = dict(
            trainable=False,
            synchronization=tf.VariableSynchronization.ON_READ,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )
        with strategy.scope(), tf.init_scope():
            self.update = [
                tf.Variable(tf.zeros(v.shape, tf.float32), name="tracker_update", **local) for v in self.variables
            ]
            # ⟨g_t, Δ_t⟩, ⟨Δ_t, P_t Δ_t⟩, ⟨Δ_t, Δ_t⟩, and 1 once Δ_t is known.
            self.state = tf.Variable(tf.zeros([4], tf.float32), name="tracker_state", **local)
            # (preconditioned, raw) curvature of the latest secant; NaN before the second step.
            self.estimates = tf.Variable(tf.fill([2], math.nan), name="tracker_estimates", **local)
        self._hook = StepHook.attach(optimizer, self)

    def remove(self):
        """Leaves the optimizer's `apply` (restored once no listener is left)."""
        self._hook.detach(self)

    @staticmethod
    def _dot(first, second):
        """Σ over the variables of ⟨first, second⟩ in float32 (None entries skipped)."""
        terms = [
            tf.reduce_sum(tf.cast(a, tf.float32) * tf.cast(b, tf.float32))
            for a, b in zip(first, second)
            if a is not None and b is not None
        ]
        return tf.add_n(terms) if terms else tf.zeros([], tf.float32)

    @staticmethod
    def _summed(value):
        """Σ over the replicas (Keras all-reduces the replicas' gradients with a sum)."""
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return value
        return context.all_reduce(tf.distribute.ReduceOp.SUM, value)

    def _ordered(self, gradients):
        # From the call's own argument, never kept on `self`: under a strategy the replicas trace
        # `before` and `after` in threads that interleave.
        return [gradients.get(id(v)) for v in self.variables]

    def before(self, gradients):
        previous, metric, raw_metric, known = tf.unstack(self.state.read_value())
        numerator = self._summed(self._dot(self._ordered(gradients), self.update)) - previous
        nan = tf.constant(math.nan, tf.float32)
        self.estimates.assign(
            tf.where(known > 0.0, tf.stack([numerator / metric, numerator / raw_metric]), tf.stack([nan, nan]))
        )
        for update, variable in zip(self.update, self.variables):
            update.assign(tf.cast(variable.value, tf.float32))

    def after(self, gradients):
        for update, variable in zip(self.update, self.variables):
            update.assign(tf.cast(variable.value, tf.float32) - update)
        ordered = self._ordered(gradients)
        along = self._summed(self._dot(ordered, self.update))
        if self.preconditioned:
            given = None
            if preconditioner_needs_gradients(self.optimizer):
                given = [g if g is None else self._summed(tf.convert_to_tensor(g)) for g in ordered]
            preconditioner = preconditioner_of(self.optimizer, self.variables, given)
            # P Δ with 0 where Δ = 0: a coordinate the optimizer does not move may have P = +inf (ACClip's).
            metric = self._dot(
                [tf.math.multiply_no_nan(tf.cast(p, tf.float32), u) for u, p in zip(self.update, preconditioner)],
                self.update,
            )
        else:
            metric = tf.constant(math.nan, tf.float32)
        raw_metric = self._dot(self.update, self.update)
        self.state.assign(tf.stack([along, metric, raw_metric, tf.ones([], tf.float32)]))


class SharpnessTracker(StepMeasurementCallback):
    """Cheap sharpness estimates during `model.fit`, at every step or every `every_n_steps` (see the module docstring).

    Logged keys, per estimator (only those that apply: the preconditioned
    ones need an optimizer whose P `preconditioner_of` reads):

    * ``"update_curvature"``: ``update_curvature`` and
      ``preconditioned_update_curvature``. The value logged at step t is
      that of the update before the latest (its second gradient is the one
      the latest step computed). NaN until two updates are made after the
      tracker is attached: after a restore from a checkpoint, the first
      step's value is NaN, and the next ones are those of the uninterrupted
      run.
    * ``"critical_sharpness"``: ``critical_sharpness``. NaN (with the reason
      in the record) when the line search does not bracket the critical step
      within `num_forward_passes`, or before the first update.
    * ``"power_iteration"``: ``power_preconditioned_sharpness`` and its
      ``power_preconditioned_sharpness_residual`` (with `preconditioned`);
      ``power_sharpness`` and ``power_sharpness_residual`` (with `raw`).

    * ``"batch_sharpness"``: ``batch_sharpness`` (with `raw`) and
      ``preconditioned_batch_sharpness`` (with `preconditioned`).

    Of these, only the power iteration's values estimate λ1; the others are
    curvatures along one direction and a critical learning rate, which
    coincide with λ1 only where the update follows the top eigenvector.

    Args:
        data: The probe set of the critical sharpness and the power iteration,
            as for `HessianOperator` ((x, y) arrays or a finite dataset);
            for the batch sharpness, (x, y) arrays, taken `batch_size`
            examples at a time.
            Not needed (and refused) with ``estimators=("update_curvature",)``.
        estimators: A name or a tuple of names from ``"update_curvature"``,
            ``"critical_sharpness"``, ``"power_iteration"`` and
            ``"batch_sharpness"``. Default:
            ``("update_curvature",)``, which costs no forward or backward pass.
        every_n_steps: Measure (and log) after every N-th optimizer step. The
            update curvature is computed at every step regardless; this is how
            often it is read.
        raw: Also estimate λ1(H) by power iteration, and the raw batch
            sharpness (one more product each).
        preconditioned: Estimate λ1(P⁻¹H) by power iteration, the
            preconditioned batch sharpness, and log the preconditioned
            curvatures.
        num_products: Hessian-vector products per power-iteration
            measurement and problem: 1 for a power step, m ≥ 2 for m Lanczos
            steps from the previous vector (see the module docstring).
        num_forward_passes: The line search's budget of probe-loss evaluations
            (at least 3).
        tolerance: The line search stops once two successive parabola roots
            agree to this relative tolerance (or the budget is spent); on a
            quadratic the first root is exact and the search takes 4
            evaluations.
        seed: Seed of the power iteration's first vectors.
        log_dir: Optional TensorBoard directory.
        **probe_options: For the probe-set estimators: `loss`, `batch_size`,
            `mode`, `dropout`, `include_regularization`, `jit_compile` (as for
            `HessianOperator`), and `differentiation` (power iteration).

    Raises:
        ValueError: For an unknown estimator, no estimator, data missing for
            (or given without) a probe-set estimator, `num_forward_passes` < 3,
            neither `raw` nor `preconditioned` with power iteration, an
            unknown option; at the start of training, an optimizer with
            gradient accumulation (its update is not made at every `apply`),
            or ``"critical_sharpness"`` with a `keras.optimizers.MultiOptimizer`
            (it has no single learning rate η_t for λ_c = 2/η_c).
    """

    def __init__(
        self,
        data=None,
        estimators=("update_curvature",),
        every_n_steps=1,
        raw=True,
        preconditioned=True,
        num_products=3,
        num_forward_passes=6,
        tolerance=1e-3,
        seed=0,
        log_dir=None,
        **probe_options,
    ):
        super().__init__(every_n_steps=every_n_steps, log_dir=log_dir)
        estimators = (estimators,) if isinstance(estimators, str) else tuple(estimators)
        unknown = [name for name in estimators if name not in ESTIMATORS]
        if not estimators or unknown or len(set(estimators)) != len(estimators):
            raise ValueError(f"`estimators` must be one or more distinct names of {ESTIMATORS}, got {estimators!r}.")
        needs_data = [name for name in estimators if name in _PROBE_ESTIMATORS]
        if needs_data and data is None:
            raise ValueError(f"{needs_data} measure on a probe set: pass `data`.")
        if data is not None and not needs_data:
            raise ValueError(
                "`data` is a probe set for 'critical_sharpness' or 'power_iteration', which "
                f"`estimators={estimators!r}` does not include."
            )
        if int(num_forward_passes) < 3:
            raise ValueError(f"`num_forward_passes` must be >= 3 (L(θ_t) and a bracket), got {num_forward_passes}.")
        for name in ("power_iteration", "batch_sharpness"):
            if name in estimators and not (raw or preconditioned):
                raise ValueError(f"{name!r} needs `raw` or `preconditioned`.")
        if "batch_sharpness" in estimators and isinstance(data, tf.data.Dataset):
            raise ValueError("'batch_sharpness' takes the batches of (x, y) arrays in turn, not of a dataset.")
        extra = sorted(set(probe_options) - set(_PROBE_OPTIONS))
        if extra:
            raise ValueError(f"Unknown options {extra}; the probe-set options are {list(_PROBE_OPTIONS)}.")
        if probe_options and not needs_data:
            raise ValueError(
                f"{sorted(probe_options)} are options of the probe-set estimators, which "
                f"`estimators={estimators!r}` does not include."
            )
        self.data = data
        self.estimators = estimators
        self.raw = bool(raw)
        self.preconditioned = bool(preconditioned)
        if int(num_products) < 1:
            raise ValueError(f"`num_products` must be >= 1, got {num_products}.")
        self.num_products = int(num_products)
        self.num_forward_passes = int(num_forward_passes)
        if not 0.0 < float(tolerance) < 1.0:
            raise ValueError(f"`tolerance` must be in (0, 1), got {tolerance}.")
        self.tolerance = float(tolerance)
        self.seed = int(seed)
        self.probe_options = probe_options
        self._secant = None
        self._built_for = None
        self._vectors = {}
        self._critical_scale = None

    # ------------------------------------------------------------- set-up
    def _uses_p(self):
        return self.preconditioned and preconditioner_unavailable(self.model.optimizer) is None

    def _build(self):
        """The in-step hook on the optimizer (again for a new optimizer), the probe programs (again for a new model)."""
        model = self.model
        optimizer = _unwrap(model.optimizer)
        if getattr(optimizer, "gradient_accumulation_steps", None):
            raise ValueError(
                "SharpnessTracker does not support `gradient_accumulation_steps`: the optimizer's "
                "`apply` then accumulates, and the weights move only every k-th call."
            )
        if "critical_sharpness" in self.estimators and isinstance(optimizer, keras.optimizers.MultiOptimizer):
            raise ValueError(
                "'critical_sharpness' needs one learning rate η_t (λ_c = 2/η_c); a MultiOptimizer "
                "has one per sub-optimizer."
            )
        new_model = self._built_for is None or self._built_for[0] is not model
        self._built_for = (model, optimizer)
        self._variables = list(model.trainable_variables)
        if self._secant is not None:
            self._secant.remove()
        if "update_curvature" in self.estimators or "critical_sharpness" in self.estimators:
            # Critical sharpness reads Δ_t from the same in-step record.
            self._secant = _UpdateSecant(optimizer, self._variables, model.distribute_strategy, self._uses_p())
            model.make_train_function(force=True)  # trace the train step again, with the hook
        if new_model and any(name in self.estimators for name in _PROBE_ESTIMATORS):
            self._build_probe(model)
        if "critical_sharpness" in self.estimators:
            # It reads this hook's Δ: traced again around the probe's compiled replica program.
            self._shifted = tf.function(self._shifted_loss, reduce_retracing=True)
        self._vectors = {}
        self._critical_scale = None
        self._batch_index = 0
        # Nothing is known of the updates before the hook: the first measurement is due a full period on.
        self.mark_measured(max(self._last_step, self.optimizer_steps()))

    def _build_probe(self, model):
        """The probe set, its loss and operators: traced once per model, whatever optimizer trains it."""
        strategy = model.distribute_strategy
        options = {key: value for key, value in self.probe_options.items() if key != "differentiation"}
        model_loss = ModelLoss(
            model,
            options.get("loss"),
            options.get("mode", "train"),
            options.get("dropout", True),
            options.get("include_regularization", True),
            "its loss",
        )
        check_data(model_loss, self.data, options.get("batch_size"), "the probe set")
        self._probe = ProbeSet(self.data, options.get("batch_size"), strategy)
        self._model_loss = model_loss
        if "critical_sharpness" in self.estimators:
            self._probe_loss = ProbeLoss(model_loss, self._probe, options.get("jit_compile", True))
        operator_options = {key: value for key, value in self.probe_options.items() if key != "batch_size"}
        if "power_iteration" in self.estimators:
            self._operator = curvature_operator(model, self._probe, curvature="hessian", **operator_options)
        if "batch_sharpness" in self.estimators:
            size = self._probe.batch_size
            count = self._probe.num_examples // size
            self._batches = [
                tf.nest.map_structure(lambda a, i=i: a[i * size : (i + 1) * size], tuple(self.data))
                for i in range(count)
            ]
            self._batch_probe = ProbeSet(self._batches[0], size, strategy)
            self._batch_operator = curvature_operator(model, self._batch_probe, curvature="hessian", **operator_options)

    def detach(self):
        """Removes the in-step listeners from the optimizer (the next `fit` traces its train step again)."""
        hooked = self._secant is not None or (self._reader is not None and self._reader.hooked)
        if self._secant is not None:
            self._secant.remove()
            self._secant = None
        if self._reader is not None:
            self._reader.remove()
            self._reader = None
        if hooked and self.model is not None:
            self.model.make_train_function(force=True)
        self._built_for = None

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self._built_for != (self.model, _unwrap(self.model.optimizer)):
            self._build()

    def reset(self):
        """Forget every measurement and warm start; the hook and traced programs are kept."""
        super().reset()
        self._vectors = {}
        self._critical_scale = None
        self._batch_index = 0
        if self._secant is not None:
            self._secant.state.assign(tf.zeros([4], tf.float32))
            self._secant.estimates.assign(tf.fill([2], math.nan))

    # ---------------------------------------------------------- estimators
    def _update_curvature(self, values):
        preconditioned, raw = (float(v) for v in self._secant.estimates.numpy())
        values["update_curvature"] = raw
        if self._secant.preconditioned:
            values["preconditioned_update_curvature"] = preconditioned

    def _shifted_loss(self, scale):
        """L(θ + (scale - 1) Δ) over the probe set, θ the current weights and Δ the last update."""
        trainable, non_trainable = self._model_loss.values()
        shifted = [w + tf.cast((scale - 1.0) * u, w.dtype) for w, u in zip(trainable, self._secant.update)]
        return self._probe_loss._loss(shifted, non_trainable)

    def _critical_sharpness(self, values, notes):
        """The line search of the critical sharpness; returns the loss evaluations it took."""
        values["critical_sharpness"] = math.nan
        state = self._secant.state.numpy()
        if state[3] == 0.0:
            notes["critical_sharpness"] = "no update made since the tracker was attached"
            return 0
        evaluations = {}

        def loss(scale):
            if scale not in evaluations:
                with tf.name_scope("critical_sharpness"):
                    evaluations[scale] = float(self._shifted(tf.constant(scale, tf.float32)))
            return evaluations[scale]

        start = loss(0.0)
        low, high = None, None  # the last scale with L ≤ L(θ_t), the first with L > L(θ_t)
        # From the previous measurement's critical step (it moves slowly), else from the actual step.
        scale = self._critical_scale or 1.0
        while len(evaluations) < self.num_forward_passes:
            if not loss(scale) <= start:  # a non-finite loss counts as risen
                high = scale
                if low is not None:
                    break
                scale /= 2.0
            else:
                low = scale
                if high is not None:
                    break
                scale *= 2.0
        if low is None or high is None or not math.isfinite(start):
            tried = sorted(s for s in evaluations if s > 0.0)
            if not math.isfinite(start):
                reason = "the probe loss at θ_t is not finite"
            elif low is None:
                reason = (
                    f"the probe loss rose above L(θ_t) at every step length tried, down to {tried[0]:g} times "
                    "the update: the update does not descend the probe loss (η_c is below that, if any)"
                )
            else:
                reason = (
                    f"the probe loss stayed at or below L(θ_t) at every step length tried, up to "
                    f"{tried[-1]:g} times the update: η_c is above that"
                )
            notes["critical_sharpness"] = f"{reason} ({len(evaluations)} evaluations)"
            return len(evaluations)
        previous = None
        while True:
            linear, quadratic = _parabola(start, low, loss(low), high, loss(high))
            root = -linear / quadratic if quadratic > 0.0 else math.nan
            if not low <= root <= high:  # not a parabola through a crossing: bisect
                root = 0.5 * (low + high)
            settled = previous is not None and abs(root - previous) <= self.tolerance * root
            if settled or len(evaluations) >= self.num_forward_passes or root in evaluations:
                break
            value = loss(root)
            if abs(value - start) <= _LOSS_RESOLUTION * abs(start):  # on the crossing, as far as float32 tells
                break
            if not value <= start:
                high = root
            else:
                low = root
            previous = root
        self._critical_scale = root
        rate = float(keras.ops.convert_to_numpy(last_learning_rate_of(self.model.optimizer)))
        values["critical_sharpness"] = 2.0 / (rate * root)
        return len(evaluations)

    def _power_iteration(self, values):
        """A warm-started power step, or `num_products` Lanczos steps, per problem; returns the products taken."""
        problems = {}
        if self.preconditioned and self._uses_p():
            problems["power_preconditioned_sharpness"] = self._operator.preconditioned(
                self.preconditioner(self._operator.variables)
            )
        if self.raw:
            problems["power_sharpness"] = self._operator
        for key, problem in problems.items():
            vector = self._vectors.get(key)
            if vector is None:
                vector = tf.random.stateless_normal(
                    [problem.dimension], seed=[self.seed, int(key == "power_sharpness")], dtype=tf.float64
                )
                vector /= tf.norm(vector)
            if self.num_products > 1:
                values[key], values[f"{key}_residual"], self._vectors[key] = self._krylov(problem, vector)
                continue
            product = problem.matvec(vector)
            values[key] = float(tf.tensordot(vector, product, 1))
            values[f"{key}_residual"] = float(tf.norm(product - values[key] * vector))
            norm = float(tf.norm(product))
            if np.isfinite(norm) and norm > 0.0:  # else the next measurement starts from the same vector
                self._vectors[key] = product / norm
        return len(problems) * self.num_products

    def _krylov(self, problem, vector):
        """(top Ritz value, its residual norm, its Ritz vector) of `num_products` Lanczos steps from `vector`."""
        solver = problem.solver(False, self.num_products, 1, True)
        # A tolerance no run meets: exactly `num_products` steps.
        result = solver(problem.matvec, vector, min_iterations=self.num_products, tolerance=1e-300)
        ritz = tf.cast(result.eigenvectors[0], tf.float64)
        return float(result.eigenvalues[0]), float(result.residuals[0]), ritz / tf.norm(ritz)

    def _batch_sharpness(self, values):
        """The Rayleigh quotients of the next batch's H_B along its gradient; returns the products taken."""
        self._batch_probe.refill(self._batches[self._batch_index % len(self._batches)])
        self._batch_index += 1
        operator = self._batch_operator
        gradient, _ = operator.gradient()
        problems = {}
        if self.raw:
            problems["batch_sharpness"] = (operator, gradient)
        if self.preconditioned and self._uses_p():
            # u = P⁻¹ g in the coordinates w = P^{1/2} u = S g of S H S, S = P^{-1/2}: uᵀHu / uᵀPu = wᵀSHSw / wᵀw.
            scaled = operator.preconditioned(self.preconditioner(operator.variables))
            problems["preconditioned_batch_sharpness"] = (scaled, scaled.preconditioner_scale * gradient)
        for key, (problem, direction) in problems.items():
            values[key] = float(
                tf.tensordot(direction, problem.matvec(direction), 1) / tf.tensordot(direction, direction, 1)
            )
        return len(problems)

    def measure(self):
        """Read or run every estimator now; returns the `TrackerRecord` (also appended to `records`)."""
        step = self.optimizer_steps()
        values, notes = {}, {}
        passes = products = 0
        if "update_curvature" in self.estimators:
            self._update_curvature(values)
        if "critical_sharpness" in self.estimators:
            passes = self._critical_sharpness(values, notes)
        if "power_iteration" in self.estimators:
            products += self._power_iteration(values)
        if "batch_sharpness" in self.estimators:
            products += self._batch_sharpness(values)
        record = TrackerRecord(step, values, passes, products, notes)
        self.records.append(record)
        self.mark_measured(step)
        self.publish(step, values)
        return record


def _parabola(start, low, low_value, high, high_value):
    """(b, c) of L(s) = L(0) + b s + c s² through (0, start), (low, low_value) and (high, high_value)."""
    slope_low = (low_value - start) / low
    slope_high = (high_value - start) / high
    quadratic = (slope_high - slope_low) / (high - low)
    return slope_low - quadratic * low, quadratic
