"""The spectral density of H or P⁻¹H by stochastic Lanczos quadrature (SLQ), and its plot.

The spectral density of a symmetric n × n operator A with eigenvalues λ_i is
φ(t) = (1/n) Σ_i δ(t − λ_i). Stochastic Lanczos quadrature (Golub and Meurant
2009; Ubaru, Chen and Saad, "Fast Estimation of tr(f(A)) via Stochastic
Lanczos Quadrature", SIAM J. Matrix Anal. Appl. 2017; Ghorbani, Krishnan and
Xiao, "An Investigation into Neural Net Optimization via Hessian Eigenvalue
Density", ICML 2019; PyHessian's `density`) estimates it from a few random
start vectors v_l (Rademacher, so E v vᵀ = I and ‖v‖² = n):

* m steps of Lanczos from v_l give the tridiagonal T_m; its eigenvalues
  θ_lj are the quadrature nodes and the squared first components τ_lj² of
  its unit eigenvectors the weights (they sum to 1). Gauss quadrature makes
  Σ_j τ_lj² f(θ_lj) = v_lᵀ f(A) v_l / n exactly for every polynomial f of
  degree ≤ 2m − 1, and E v_lᵀ f(A) v_l / n = tr f(A) / n.
* The density estimate is the average over the vectors of Σ_j τ_lj² δ(t − θ_lj),
  and for display each node is smoothed by a Gaussian of width σ.

So every moment (1/n) tr(A^p) with p ≤ 2m − 1 is estimated without bias, and
its standard error is the spread of the per-vector values over √(vectors):
`SpectralDensity.moment`. The first moment is the mean eigenvalue tr(A)/n.
The extreme nodes converge to the extreme eigenvalues (Lanczos), so the
outliers of a network's Hessian, and the top of P⁻¹H near the stability
threshold, show as isolated nodes with weight ≈ 1/n each (on a log scale,
which is how PyHessian plots it).

The Lanczos runs reuse `analysis_tools.Lanczos` (full reorthogonalization,
float64 basis up to 5 M parameters): each vector takes exactly m products,
fewer only at a lucky breakdown (the Krylov space is then invariant and the
quadrature exact). Cost: num_vectors × num_iterations products; memory, the
m × n basis.
"""

import dataclasses
import math

import numpy as np

from analysis_tools._tensors import check_count, rademacher, standard_error
from analysis_tools.curvature.hessian import operator_and_matvec
from analysis_tools.curvature.lanczos import Lanczos

__all__ = ["SpectralDensity", "plot_spectral_density", "slq", "slq_solver", "slq_with", "spectral_density"]


@dataclasses.dataclass
class SpectralDensity:
    """Stochastic Lanczos quadrature nodes and weights, one set per random vector.

    Attributes:
        nodes: The Ritz values θ_lj of each vector l, a list of [m_l] float64
            arrays (m_l = the Lanczos steps it took, ascending).
        weights: The Gauss weights τ_lj², a list of [m_l] arrays, each summing to 1.
        dimension: n, the operator's dimension.
        num_products: The products in all.
    """

    nodes: list
    weights: list
    dimension: int
    num_products: int

    @property
    def num_vectors(self):
        return len(self.nodes)

    def moment(self, power=1):
        """((1/n) tr(A^power) estimate, its standard error): the mean over vectors of Σ_j τ_j² θ_j^power.

        Exact per vector (Gauss quadrature) for power ≤ 2m − 1; unbiased over
        the Rademacher vectors. The standard error is the per-vector values'
        standard deviation over √(vectors), NaN with one vector.
        """
        values = np.array([np.sum(w * t**power) for t, w in zip(self.nodes, self.weights)])
        return float(np.mean(values)), standard_error(values)

    @property
    def mean_eigenvalue(self):
        """(tr(A)/n estimate, standard error): the first moment."""
        return self.moment(1)

    @property
    def support(self):
        """(smallest, largest) node over every vector: estimates of λ_min and λ_max."""
        return float(min(t.min() for t in self.nodes)), float(max(t.max() for t in self.nodes))

    def default_sigma(self):
        """The default smoothing width: 1 % of the range of the nodes (a positive floor for a point mass)."""
        low, high = self.support
        return max(0.01 * (high - low), 1e-12 * max(abs(low), abs(high), 1.0))

    def density(self, grid, sigma=None):
        """The Gaussian-smoothed density on `grid`: (1/L) Σ_l Σ_j τ_lj² N(t; θ_lj, σ²).

        It integrates to 1 over the real line. `sigma` defaults to
        `default_sigma()`. Returns a float64 array shaped like `grid`, all NaN
        when a node is NaN (a diverged network).
        """
        grid = np.asarray(grid, dtype=np.float64)
        if not all(np.all(np.isfinite(t)) for t in self.nodes):
            return np.full(grid.shape, np.nan)
        sigma = self.default_sigma() if sigma is None else float(sigma)
        if not sigma > 0:
            raise ValueError(f"`sigma` must be positive, got {sigma}.")
        nodes = np.concatenate(self.nodes)
        weights = np.concatenate(self.weights) / self.num_vectors
        z = (grid[..., None] - nodes) / sigma
        return np.sum(weights * np.exp(-0.5 * z**2), axis=-1) / (sigma * math.sqrt(2.0 * math.pi))


def slq(matvec, dimension, num_vectors=5, num_iterations=60, seed=0):
    """Stochastic Lanczos quadrature of the symmetric operator `matvec` (see the module docstring).

    Args:
        matvec: v ↦ A v for a flat float64 vector of length `dimension`.
        dimension: n.
        num_vectors: Rademacher start vectors (≥ 1).
        num_iterations: Lanczos steps m per vector (capped at n).
        seed: Seed of the start vectors.

    Returns:
        A `SpectralDensity`. A NaN or infinite product (a diverged network)
        gives NaN nodes, and every moment and density is then NaN.
    """
    num_vectors = check_count("num_vectors", num_vectors)
    num_iterations = check_count("num_iterations", num_iterations)
    solver = slq_solver(check_count("dimension", dimension), num_iterations, seed)
    return slq_with(solver, matvec, num_vectors, np.random.default_rng(seed), seed=seed)


def slq_solver(dimension, num_iterations, seed=0):
    """The `Lanczos` of SLQ: min(num_iterations, dimension) steps from every start vector.

    Every vector runs the full m steps: the residual test starts only at
    min_iterations = m (a lucky breakdown may still stop it earlier).
    """
    steps = min(int(num_iterations), int(dimension))
    return Lanczos(int(dimension), max_iterations=steps, k=1, min_iterations=steps, seed=seed)


def slq_with(solver, matvec, num_vectors, rng, seed=None):
    """SLQ with a given `Lanczos` and NumPy generator: m = `solver.max_iterations` steps per vector.

    One solver serves every call (its traced loop is reused), as in
    `SharpnessCallback` and `spectral_density` on a `HessianOperator`
    (`HessianOperator.solver`); `slq` builds one per call. Every vector runs
    the full m steps (the residual test starts only at m; a lucky breakdown
    may still stop it earlier). `seed` (with the vector's index as the call)
    seeds the random restart after such a breakdown; None uses the solver's.
    """
    dimension = solver.dimension
    nodes, weights, products = [], [], 0
    for index in range(int(num_vectors)):
        start = rademacher(rng, dimension)
        seeding = {} if seed is None else {"seed": seed, "call": index}
        result = solver(matvec, start, min_iterations=solver.max_iterations, **seeding)
        alpha, beta = (t.numpy() for t in result.tridiagonal())
        products += int(result.iterations)
        if not (np.all(np.isfinite(alpha)) and np.all(np.isfinite(beta))):
            nodes.append(np.full(len(alpha), np.nan))
            weights.append(np.full(len(alpha), 1.0 / len(alpha)))
            continue
        theta, vectors = np.linalg.eigh(np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1))
        nodes.append(theta)
        weights.append(vectors[0] ** 2)
    return SpectralDensity(nodes, weights, dimension, products)


def spectral_density(
    model, data=None, loss=None, preconditioner=None, num_vectors=5, num_iterations=60, seed=0, **operator_kwargs
):
    """The spectral density of H, or of P⁻¹H with a preconditioner, by SLQ over the probe set `data`.

    Args:
        model: A built Keras model; its weights are read, never written. Or a
            `HessianOperator` built before (with `data` None and no operator
            options): its traced product, and its Lanczos loop of this
            size (`HessianOperator.solver`), are reused, not traced again.
        data: The probe set, (x, y) arrays or a `tf.data.Dataset` of (x, y).
        loss: Defaults to the model's compiled loss.
        preconditioner: Optional list of P tensors, one per trainable variable:
            the density is then that of P⁻¹H (computed on P^{-1/2} H P^{-1/2},
            which has its eigenvalues).
        num_vectors: Rademacher start vectors, `num_iterations` products
            each. The standard errors of the moments fall like 1/√(vectors);
            the nodes of the outliers are there from one.
        num_iterations: Lanczos steps per vector: the resolution (2m − 1 exact
            moments per vector). PyHessian's default is 100.
        seed: Seed of the start vectors.
        **operator_kwargs: `batch_size`, `differentiation`, `mode`, `dropout`,
            `include_regularization`, `jit_compile`, `strategy`, `variables`
            (see `analysis_tools.HessianOperator`), and ``curvature=``
            (`analysis_tools.curvature.curvature_operator`).

    Returns:
        A `SpectralDensity` (`.nodes`, `.weights`, `.density(grid)`, `.moment(p)`).

    Raises:
        ValueError: As `slq` and `analysis_tools.HessianOperator`.
    """
    operator, matvec = operator_and_matvec(model, data, loss, preconditioner, **operator_kwargs)
    num_vectors = check_count("num_vectors", num_vectors)
    solver = operator.solver(False, check_count("num_iterations", num_iterations))
    return slq_with(solver, matvec, num_vectors, np.random.default_rng(seed), seed=seed)


def plot_spectral_density(density, ax=None, threshold=None, sigma=None, grid_size=1000, label=None, **plot_kwargs):
    """Plots a `SpectralDensity` on a log density axis (PyHessian's figures), optionally with the threshold.

    Args:
        density: A `SpectralDensity`.
        ax: A matplotlib Axes (default: the current one).
        threshold: Optional stability threshold (e.g. `stability_threshold_of(optimizer)`,
            38/η for Adam at β1 = 0.9), drawn as a dashed vertical line: on the
            P⁻¹H spectrum, the outlier that sits at it is the edge of stability.
            None draws nothing (sign descent has no threshold).
        sigma: Smoothing width (default `density.default_sigma()`).
        grid_size: Points of the grid, which spans the nodes (and the threshold)
            with 5 % margins.
        label: Legend label of the curve.
        **plot_kwargs: Passed to `ax.semilogy`.

    Returns:
        The Axes.

    Raises:
        ValueError: If the density's nodes are not finite.
    """
    import matplotlib.pyplot as plt

    low, high = density.support
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError("The density has non-finite nodes (the Hessian of a diverged network): nothing to plot.")
    ax = plt.gca() if ax is None else ax
    if threshold is not None:
        low, high = min(low, threshold), max(high, threshold)
    margin = 0.05 * (high - low if high > low else max(abs(high), 1.0))
    grid = np.linspace(low - margin, high + margin, int(grid_size))
    values = density.density(grid, sigma)
    floor = 1e-8 * max(float(np.max(values)), 1e-300)  # log axis: keep the empty stretches finite
    ax.semilogy(grid, np.maximum(values, floor), label=label, **plot_kwargs)
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"stability threshold {threshold:.4g}")
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density (smoothed SLQ)")
    return ax
