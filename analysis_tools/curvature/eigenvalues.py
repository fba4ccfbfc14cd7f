"""Sharpness λ1(H) and preconditioned sharpness λ1(P⁻¹H), as functions and as a `model.fit` callback.

Cohen et al., "Adaptive Gradient Methods at the Edge of Stability", 2022:
during full-batch training an adaptive method's preconditioned sharpness
λ1(P_t⁻¹ H_t) rises to, and then hovers at, the stability threshold of its
frozen-preconditioner form (38/η for Adam at β1 = 0.9; Fig. 1), while the raw
sharpness λ1(H_t) may keep rising (Fig. 8). The eigenvalues come from Lanczos
(`analysis_tools.lanczos`) on the Hessian of the loss over a fixed probe set
(`analysis_tools.hessian`), preconditioned as P^{-1/2} H P^{-1/2}, which has
the eigenvalues of P⁻¹H and is symmetric. P comes from
`analysis_tools.preconditioners.preconditioner_of`, so it works for
tf_adaptive's optimizers and Keras's built-ins alike.
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from analysis_tools.hessian import HessianOperator
from analysis_tools.lanczos import Lanczos
from analysis_tools.preconditioners import preconditioner_of, stability_threshold_of

_OPERATOR_ARGS = ("loss", "batch_size", "method", "mode", "dropout", "include_regularization")


def _split_kwargs(kwargs):
    operator_kwargs = {k: kwargs.pop(k) for k in _OPERATOR_ARGS if k in kwargs}
    return operator_kwargs, kwargs


def hessian_eigenvalues(
    model,
    data,
    loss=None,
    preconditioner=None,
    k=1,
    max_iterations=40,
    tol=1e-3,
    return_vectors=False,
    initial_vector=None,
    seed=0,
    **operator_kwargs,
):
    """The top-k algebraic eigenvalues of H, or of P⁻¹H when `preconditioner` is given.

    Args:
        model: A built Keras model; its weights are read, never written.
        data: The probe set, (x, y) arrays or a `tf.data.Dataset` of (x, y).
        loss: Defaults to the model's compiled loss.
        preconditioner: Optional list of P tensors, one per trainable variable
            (e.g. from `analysis_tools.preconditioners.preconditioner_of`).
        k: How many eigenvalues.
        max_iterations: The most Hessian-vector products (Lanczos steps).
        tol: Stop when every top-k Ritz residual is below `tol` × |eigenvalue|.
        return_vectors: Also return the Ritz vectors (in the symmetric basis:
            for P⁻¹H, the right eigenvector is P^{-1/2} times it).
        initial_vector: Optional warm start (a flat vector of the parameter count).
        seed: Seed of the random start vector.
        **operator_kwargs: `batch_size`, `method`, `mode`, `dropout`,
            `include_regularization`: see `analysis_tools.hessian.HessianOperator`.

    Returns:
        A `analysis_tools.lanczos.LanczosResult` (eigenvalues descending,
        float64; eigenvectors or None; residuals; iterations).
    """
    operator = HessianOperator(model, data, loss=loss, **operator_kwargs)
    matvec = operator.matvec
    if preconditioner is not None:
        operator.set_preconditioner(preconditioner)
        matvec = operator.preconditioned_matvec
    solver = Lanczos(
        operator.dimension, max_iterations=max_iterations, k=k, tolerance=tol,
        return_vectors=return_vectors, seed=seed,
    )
    return solver(matvec, initial_vector)


def sharpness(model, data, loss=None, **kwargs):
    """λ1(H): the largest eigenvalue of the Hessian of the loss over `data` (a float)."""
    return float(hessian_eigenvalues(model, data, loss=loss, k=1, **kwargs).eigenvalues[0])


def preconditioned_sharpness(model, optimizer, data, loss=None, gradients=None, **kwargs):
    """λ1(P⁻¹H) with P the preconditioner of `optimizer`'s most recent update (a float).

    `optimizer` is a tf_adaptive optimizer or a supported Keras built-in;
    `gradients` is needed only where P depends on the last gradient (Keras's
    Adafactor).
    """
    preconditioner = preconditioner_of(optimizer, model.trainable_variables, gradients=gradients)
    result = hessian_eigenvalues(model, data, loss=loss, preconditioner=preconditioner, k=1, **kwargs)
    return float(result.eigenvalues[0])


def top_subspace_fraction(gradient, eigenvectors, preconditioner_scale=None):
    """The fraction of ‖P^{-1/2} g‖² in the span of the top eigenvectors (AEoS Fig. 18).

    Args:
        gradient: Flat gradient g.
        eigenvectors: [k, n] orthonormal eigenvectors of P^{-1/2} H P^{-1/2}
            (or of H when there is no preconditioner).
        preconditioner_scale: Flat P^{-1/2}, or None for P = I.

    Returns:
        (fraction in [0, 1], ‖P^{-1/2} g‖²) as floats.
    """
    g = tf.cast(gradient, tf.float64)
    if preconditioner_scale is not None:
        g = g * tf.cast(preconditioner_scale, tf.float64)
    total = float(tf.reduce_sum(tf.square(g)))
    if total == 0.0:
        return 0.0, 0.0
    coefficients = tf.linalg.matvec(tf.cast(eigenvectors, tf.float64), g)
    return float(tf.reduce_sum(tf.square(coefficients))) / total, total


@dataclasses.dataclass
class SharpnessRecord:
    """One measurement of `SharpnessCallback`."""

    step: int
    values: dict
    eigenvalues: dict
    iterations: dict


class SharpnessCallback(keras.callbacks.Callback):
    """Track λ1(H) and λ1(P⁻¹H) during `model.fit`, every `every_n_steps` optimizer steps.

    It measures at the start of the first step after every `every_n_steps`-th
    optimizer step (and at the end of an epoch, if one is due), on the weights
    the finished steps left, and adds the latest values to the epoch's logs (so
    `History`, `CSVLogger` and `TensorBoard` record them):

    * ``sharpness``: λ1(H) (when `raw`);
    * ``preconditioned_sharpness``: λ1(P⁻¹H) (when `preconditioned`);
    * ``stability_threshold``: the threshold of the optimizer's frozen form;
    * ``sharpness_ratio``: λ1(P⁻¹H) / threshold (or λ1(H) / threshold when not
      `preconditioned`), which the AEoS paper finds settles near 1.

    Epoch logs carry the latest measurement (so epochs before the first one
    have none of these keys).

    With `fraction_in_top_subspace` it also logs ``top_subspace_fraction``, the
    part of ‖P^{-1/2} g‖² in the top-k eigenvectors' span (Fig. 18). Every
    measurement is kept in `self.records` (step, values, top-k eigenvalues,
    Lanczos iterations). With `log_dir` it also writes TensorBoard scalars of
    its own, indexed by step.

    Nothing is trained or mutated: the Hessian is evaluated with
    `model.stateless_call`, the random start comes from a stateless generator,
    and the model's weights, BatchNorm statistics, seed generators and the
    optimizer's state are bit-identical with and without the callback. The
    top eigenvector of each measurement warm-starts the next (`warm_start`).

    Args:
        data: The probe set ((x, y) arrays or a `tf.data.Dataset`): the
            training set for a full-batch reproduction, or a fixed subset.
        every_n_steps: Measure after every N-th optimizer step (and never at step 0).
            A measurement costs about 10–17 Hessian-vector products on the
            probe set, i.e. 20–35 training steps of the same batch size, so the
            overhead is roughly that ÷ N (benchmarks/RESULTS.md: +33–39 % at
            N = 100 and +6–10 % at N = 400 on a model with 2 ms steps).
        k: How many top eigenvalues to compute.
        raw: Whether to compute λ1(H).
        preconditioned: Whether to compute λ1(P⁻¹H).
        log_dir: Optional TensorBoard directory for the callback's own scalars.
        max_iterations: Lanczos steps at most.
        tol: Lanczos relative residual tolerance.
        warm_start: Whether to start each Lanczos run from the previous top vector.
        fraction_in_top_subspace: Whether to log ``top_subspace_fraction``.
        **operator_kwargs: `loss`, `batch_size`, `method`, `mode`, `dropout`,
            `include_regularization` (see `HessianOperator`).
    """

    def __init__(
        self,
        data,
        every_n_steps=100,
        k=1,
        raw=True,
        preconditioned=True,
        log_dir=None,
        max_iterations=40,
        tol=1e-3,
        warm_start=True,
        fraction_in_top_subspace=False,
        **operator_kwargs,
    ):
        super().__init__()
        if int(every_n_steps) < 1:
            raise ValueError(f"`every_n_steps` must be >= 1, got {every_n_steps}.")
        if not (raw or preconditioned):
            raise ValueError("Nothing to measure: set `raw` or `preconditioned`.")
        self.data = data
        self.every_n_steps = int(every_n_steps)
        self.k = int(k)
        self.raw = bool(raw)
        self.preconditioned = bool(preconditioned)
        self.log_dir = log_dir
        self.max_iterations = int(max_iterations)
        self.tol = float(tol)
        self.warm_start = bool(warm_start)
        self.fraction_in_top_subspace = bool(fraction_in_top_subspace)
        self.operator_kwargs = operator_kwargs
        self.records = []
        self._operator = None
        self._latest = {}
        self._steps_before_epoch = 0
        self._batches_begun = 0
        self._writer = None

    # ------------------------------------------------------------- set-up
    def _build(self):
        self._operator = HessianOperator(self.model, self.data, **self.operator_kwargs)
        return_vectors = self.warm_start or self.fraction_in_top_subspace
        self._solvers = {
            name: Lanczos(
                self._operator.dimension, max_iterations=self.max_iterations, k=self.k,
                tolerance=self.tol, return_vectors=return_vectors, seed=seed,
            )
            for seed, name in enumerate(("raw", "preconditioned"))
            if (self.raw if name == "raw" else self.preconditioned)
        }
        self._previous_vectors = {}
        if self.log_dir is not None:
            self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_train_begin(self, logs=None):
        if self._operator is None or self._operator.model is not self.model:
            self._build()
        self._steps_before_epoch = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self._batches_begun = 0

    # ---------------------------------------------------------- measuring
    def _solve(self, name, matvec):
        initial = self._previous_vectors.get(name) if self.warm_start else None
        result = self._solvers[name](matvec, initial)
        if result.eigenvectors is not None:
            self._previous_vectors[name] = result.eigenvectors[0]
        return result

    def measure(self):
        """Run one measurement now and return its `SharpnessRecord`."""
        if self._operator is None:
            self._build()
        optimizer = self.model.optimizer
        step = int(keras.ops.convert_to_numpy(optimizer.iterations))
        values, eigenvalues, iterations = {}, {}, {}
        results = {}
        if self.raw:
            results["raw"] = self._solve("raw", self._operator.matvec)
            values["sharpness"] = float(results["raw"].eigenvalues[0])
        threshold = stability_threshold_of(optimizer)
        if self.preconditioned:
            self._operator.set_preconditioner(
                preconditioner_of(optimizer, self.model.trainable_variables)
            )
            results["preconditioned"] = self._solve("preconditioned", self._operator.preconditioned_matvec)
            values["preconditioned_sharpness"] = float(results["preconditioned"].eigenvalues[0])
        values["stability_threshold"] = threshold
        top = values.get("preconditioned_sharpness", values.get("sharpness"))
        values["sharpness_ratio"] = top / threshold
        if self.fraction_in_top_subspace:
            name = "preconditioned" if self.preconditioned else "raw"
            gradient, _ = self._operator.gradient()
            scale = self._operator.preconditioner_scale if self.preconditioned else None
            values["top_subspace_fraction"], _ = top_subspace_fraction(
                gradient, results[name].eigenvectors, scale
            )
        for name, result in results.items():
            eigenvalues[name] = np.asarray(result.eigenvalues)
            iterations[name] = int(result.iterations)
        record = SharpnessRecord(step, values, eigenvalues, iterations)
        self.records.append(record)
        if self._writer is not None:
            with self._writer.as_default(step=step):
                for key, value in values.items():
                    tf.summary.scalar(key, value)
            self._writer.flush()
        return record

    def _due(self):
        """Whether a multiple of `every_n_steps` optimizer steps has passed since the last measurement.

        Reads `optimizer.iterations` (a device sync) only once the batch count
        says a measurement may be due, so most steps cost a Python comparison.
        """
        last = self.records[-1].step if self.records else 0
        if self._steps_before_epoch + self._batches_begun <= last:
            return False
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        return step // self.every_n_steps > last // self.every_n_steps

    def _measure_if_due(self, logs):
        if self._due():
            self._latest = dict(self.measure().values)
        if logs is not None and self._latest:
            logs.update(self._latest)

    def on_epoch_begin(self, epoch, logs=None):
        self._steps_before_epoch = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self._batches_begun = 0

    def on_train_batch_begin(self, batch, logs=None):
        # Measured at the start of the next step, on the weights the previous
        # steps left. Keras runs `*_batch_begin` hooks in line and keeps
        # dispatching steps asynchronously, which a `*_batch_end` hook stops.
        # `batch` is the index of the first step of this execution, so with
        # steps_per_execution > 1 the count stays right.
        self._batches_begun = batch
        if self._steps_before_epoch + batch >= self._next_candidate():
            self._measure_if_due(None)

    def _next_candidate(self):
        last = self.records[-1].step if self.records else 0
        return (last // self.every_n_steps + 1) * self.every_n_steps

    def on_epoch_end(self, epoch, logs=None):
        self._batches_begun = float("inf")  # the epoch's steps are all done: read the counter
        self._measure_if_due(logs)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.flush()
