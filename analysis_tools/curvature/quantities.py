"""What `SharpnessCallback` measures besides the top eigenvalues: one small class per quantity.

``SharpnessCallback(data, quantities=[Trace(), Density()])`` measures tr(H)
and tr(P⁻¹H) and the spectral density on the callback's schedule, with the
operators, probe set and preconditioner of the callback's own measurement, so
that each quantity adds only its own products. Each class holds its options
(validated when it is made), says what it needs from the callback
(`check`), and turns one measurement into logged values (`measure`):

* `Trace`: tr(A) and tr(P⁻¹A) of each curvature A by Hutch++ (Meyer et al.
  2021, Alg. 1), with their standard errors.
* `Density`: the spectral density of P⁻¹A (of A when the callback does not
  measure the preconditioned problem) by stochastic Lanczos quadrature (Ubaru
  et al. 2017; Ghorbani et al. 2019), kept in the record and written as a
  TensorBoard histogram.
* `PreconditionerAlignment`: how well the optimizer's P follows each
  curvature's diagonal d (`analysis_tools.curvature.alignment`).
* `PrincipalAngles`: the largest principal angle between the top-k
  eigenspaces of each pair of curvatures (Björck and Golub 1973).
* `TopSubspaceFraction`: the share of ‖P^{-1/2} g‖² in the top-k
  eigenvectors' span (Cohen et al. 2022, Fig. 18; Gur-Ari et al. 2018).

The logged keys of a curvature other than the Hessian are named after it, as
the callback's own: ``ggn_trace``, ``preconditioned_ggn_trace``.

A quantity of your own subclasses `Quantity`: its `measure(callback,
measurement)` reads the `Measurement` (the problems, their Lanczos results,
P) and writes into ``measurement.values`` (logged) and
``measurement.histograms`` (TensorBoard).
"""

import dataclasses

import numpy as np

from analysis_tools.curvature.agreement import alignment
from analysis_tools.curvature.agreement import principal_angles as principal_angles_of
from analysis_tools.curvature.density import slq_with
from analysis_tools.curvature.diagonal import curvature_diagonal
from analysis_tools.curvature.eigenvalues import top_subspace_fraction
from analysis_tools.curvature.trace import hutch_plus_plus

__all__ = [
    "Density",
    "Measurement",
    "PreconditionerAlignment",
    "PrincipalAngles",
    "Quantity",
    "TopSubspaceFraction",
    "Trace",
]

# The solver mode of each problem (`HessianOperator.solver`).
MODES = {"raw": False, "preconditioned": "scratch"}
_TRACE_KEYS = {"raw": "hessian_trace", "preconditioned": "preconditioned_hessian_trace"}


def logged_key(curvature, key):
    """A logged key of `curvature`: the Hessian's as they are, another's named after it."""
    if curvature == "hessian":
        return key
    return key.replace("hessian", curvature) if "hessian" in key else f"{curvature}_{key}"


def problem_name(curvature, kind):
    """A problem's name in `SharpnessRecord.eigenvalues`: "raw", "preconditioned", or "ggn:raw", ..."""
    return kind if curvature == "hessian" else f"{curvature}:{kind}"


def solver_like(problem, shared):
    """`problem`'s solver of `shared`'s sizes: `shared` itself, or a preconditioned operator's wrapper of it."""
    return problem.solver(False, shared.max_iterations, shared.k, shared.return_vectors)


def _positive(name, value, smallest=1):
    if isinstance(value, bool) or int(value) != value or value < smallest:
        raise ValueError(f"`{name}` must be an integer >= {smallest}, got {value!r}.")
    return int(value)


@dataclasses.dataclass
class Measurement:
    """One measurement of `SharpnessCallback`, as its quantities see it.

    Attributes:
        index: How many measurements came before this one (the seed of its random draws).
        problems: {curvature: {"raw": A, "preconditioned": A.preconditioned(P)}}, the kinds measured.
        results: {problem name: `LanczosResult`} of every eigenvalue problem
            (``"raw"``, ``"preconditioned"``, ``"ggn:raw"``, ``"raw/<block>"``, ...).
        preconditioner: P (a list of tensors), or None where nothing needs it.
        values: The logged values so far; a quantity adds its own.
        histograms: {name: values} written as TensorBoard histograms.
        traces: {problem name: `TraceEstimate`} (`Trace`).
        densities: {"raw" | "preconditioned": `SpectralDensity`} (`Density`).
    """

    index: int
    problems: dict
    results: dict
    preconditioner: object
    values: dict = dataclasses.field(default_factory=dict)
    histograms: dict = dataclasses.field(default_factory=dict)
    traces: dict = dataclasses.field(default_factory=dict)
    densities: dict = dataclasses.field(default_factory=dict)


class Quantity:
    """Base of the quantities: options, what they need of the callback, and the measurement itself.

    Subclasses are frozen dataclasses of their options and override `measure`.
    """

    #: Whether the callback must keep the top-k Ritz vectors of its problems.
    needs_vectors = False
    #: Whether the callback must read the optimizer's P even when it does not measure λ1(P⁻¹A).
    needs_preconditioner = False

    def check(self, callback):
        """Raises `ValueError` where the callback's settings cannot give this quantity."""

    def measure(self, callback, measurement):
        """Adds this quantity's values to ``measurement`` (see `Measurement`)."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Trace(Quantity):
    """tr(A) and tr(P⁻¹A) of each curvature by Hutch++, with standard errors.

    Logged as ``hessian_trace`` (when the callback measures the raw problem)
    and ``preconditioned_hessian_trace`` (the preconditioned one), each with
    ``..._standard_error``; another curvature's as ``ggn_trace``,
    ``preconditioned_ggn_trace``. The estimate is
    `analysis_tools.curvature.hutch_plus_plus` (Meyer et al. 2021, Alg. 1);
    tr(P⁻¹A) = tr(P^{-1/2} A P^{-1/2}).

    Args:
        num_products: Curvature-vector products per trace (≥ 3).
    """

    num_products: int = 30

    def __post_init__(self):
        object.__setattr__(self, "num_products", _positive("num_products", self.num_products, 3))

    def measure(self, callback, measurement):
        for curvature, by_kind in measurement.problems.items():
            for kind, problem in by_kind.items():
                key, name = logged_key(curvature, _TRACE_KEYS[kind]), problem_name(curvature, kind)
                estimate = hutch_plus_plus(problem.matvec, problem.dimension, self.num_products, measurement.index)
                measurement.traces[name] = estimate
                measurement.values[key] = estimate.estimate
                measurement.values[f"{key}_standard_error"] = estimate.standard_error


@dataclasses.dataclass(frozen=True)
class Density(Quantity):
    """The spectral density of P⁻¹A (of A when not `preconditioned`), A the first curvature, by SLQ.

    Kept in ``SharpnessRecord.densities`` and, with the callback's `log_dir`,
    written as the TensorBoard histogram ``spectral_density`` (`density_sample`).
    Costs `num_vectors` × `num_iterations` products
    (`analysis_tools.curvature.spectral_density`; Ubaru et al. 2017).

    Args:
        num_vectors: SLQ start vectors.
        num_iterations: Lanczos steps per start vector.
    """

    num_vectors: int = 1
    num_iterations: int = 30

    def __post_init__(self):
        object.__setattr__(self, "num_vectors", _positive("num_vectors", self.num_vectors))
        object.__setattr__(self, "num_iterations", _positive("num_iterations", self.num_iterations))

    def measure(self, callback, measurement):
        kind = callback.primary_kind
        problem = measurement.problems[callback.curvatures[0]][kind]
        shared = callback.operator.solver(MODES[kind], self.num_iterations)
        density = slq_with(
            solver_like(problem, shared),
            problem.matvec,
            self.num_vectors,
            np.random.default_rng([11, measurement.index]),
            seed=11,
        )
        measurement.densities[kind] = density
        measurement.histograms["spectral_density"] = density_sample(density)


@dataclasses.dataclass(frozen=True)
class PreconditionerAlignment(Quantity):
    """How well the optimizer's P follows each curvature's diagonal d: `alignment(P, d ** power)`.

    Logged as ``<curvature>_alignment_rank_correlation``, ``..._cosine`` and
    ``..._ratio_spread`` (``hessian_alignment_cosine``, ``ggn_...``; see
    `analysis_tools.curvature.Alignment`). d is exact for the Fishers
    (per-example gradients, where the operator adds no regularization
    losses) and where `num_products` ≥ the parameter count (one product per
    unit vector), else Hutchinson's estimate from `num_products` products,
    whose noise lowers the correlations.

    Args:
        num_products: Products per diagonal where it is estimated.
        power: The power of d that P is compared with (1/2: Adam's √v against
            a diagonal of averaged g²).
    """

    num_products: int = 30
    power: float = 0.5
    needs_preconditioner = True

    def __post_init__(self):
        object.__setattr__(self, "num_products", _positive("num_products", self.num_products))
        object.__setattr__(self, "power", float(self.power))

    def _diagonal(self, callback, curvature, operator, index):
        if curvature in ("fisher", "empirical_fisher") and not (
            operator.include_regularization and callback.model.losses
        ):
            estimator = "per_example"
        elif self.num_products >= operator.dimension:
            estimator = "exact"
        else:
            estimator = "hutchinson"
        return curvature_diagonal(operator, estimator=estimator, num_products=self.num_products, seed=index)

    def measure(self, callback, measurement):
        for curvature, operator in callback.operators.items():
            diagonal = self._diagonal(callback, curvature, operator, measurement.index).estimate
            measured = alignment(measurement.preconditioner, diagonal, self.power)
            for statistic in ("rank_correlation", "cosine", "ratio_spread"):
                measurement.values[f"{curvature}_alignment_{statistic}"] = getattr(measured, statistic)


@dataclasses.dataclass(frozen=True)
class PrincipalAngles(Quantity):
    """The largest principal angle (radians) between the raw top-k eigenspaces of each pair of curvatures.

    Logged as ``principal_angle/<first>_<second>``: 0 where both have the same
    top-k directions, π/2 where a direction of one is orthogonal to the
    other's span (`analysis_tools.curvature.principal_angles`). Needs two
    curvatures or more, the raw problem, and Ritz vectors (not `lockstep`).
    """

    needs_vectors = True

    def check(self, callback):
        if len(callback.curvatures) < 2 or not callback.raw or callback.lockstep:
            raise ValueError(
                "`PrincipalAngles` compares the raw top-k eigenspaces of two curvatures or more, with "
                "Ritz vectors: name two in `curvature`, keep `raw`, and do not use `lockstep`."
            )

    def measure(self, callback, measurement):
        curvatures = callback.curvatures
        for i, first in enumerate(curvatures):
            for second in curvatures[i + 1 :]:
                angles = principal_angles_of(
                    measurement.results[problem_name(first, "raw")].eigenvectors,
                    measurement.results[problem_name(second, "raw")].eigenvectors,
                )
                measurement.values[f"principal_angle/{first}_{second}"] = float(angles.max())


@dataclasses.dataclass(frozen=True)
class TopSubspaceFraction(Quantity):
    """The share of ‖P^{-1/2} g‖² in the span of the top-k eigenvectors of P⁻¹A (of A when not `preconditioned`).

    Logged as ``top_subspace_fraction`` (Cohen et al. 2022, Fig. 18), A the
    first curvature and g the full-batch gradient over the probe set
    (`analysis_tools.curvature.top_subspace_fraction`). Needs Ritz vectors
    (not `lockstep`).
    """

    needs_vectors = True

    def check(self, callback):
        if callback.lockstep:
            raise ValueError("`TopSubspaceFraction` needs Ritz vectors, which `lockstep` does not compute.")

    def measure(self, callback, measurement):
        kind = callback.primary_kind
        first = callback.curvatures[0]
        gradient, _ = callback.operator.gradient()
        scale = measurement.problems[first]["preconditioned"].preconditioner_scale if kind == "preconditioned" else None
        eigenvectors = measurement.results[problem_name(first, kind)].eigenvectors
        measurement.values["top_subspace_fraction"], _ = top_subspace_fraction(gradient, eigenvectors, scale)


def density_sample(density, size=10_000):
    """`size` values spread over a `SpectralDensity`'s nodes in proportion to their weights (for a histogram).

    Each node gets round(size · weight / vectors) copies; non-finite nodes
    (a diverged network) are left out, and an all-NaN density gives no values.
    """
    nodes = np.concatenate(density.nodes)
    counts = np.rint(size * np.concatenate(density.weights) / density.num_vectors).astype(np.int64)
    keep = np.isfinite(nodes)
    return np.repeat(nodes[keep], counts[keep])
