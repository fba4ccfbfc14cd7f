"""The diagonal of a curvature matrix, diag(A), from products A v alone.

* ``estimator="hutchinson"`` (Bekas, Kokiopoulou and Saad, "An estimator for
  the diagonal of a matrix", Appl. Numer. Math. 2007, eq. 2; BackPACK's and
  AdaHessian's Hessian diagonal): for Rademacher vectors z (E z zᵀ = I),
  E[z ⊙ A z] = diag(A), so diag(A) ≈ (1/s) Σ_i z_i ⊙ A z_i over s products.
  Coordinate j's term is A_jj + Σ_{k≠j} z_j z_k A_jk, so its variance is
  Σ_{k≠j} A_jk² / s: the off-diagonal mass of row j. Each coordinate gets the
  standard error of its s terms (their sample standard deviation over √s;
  NaN with one product).
* ``estimator="exact"``: A e_j for every unit vector e_j, n products; for
  small models and for checking the estimator.
* ``estimator="per_example"``, for the empirical Fisher and the Fisher
  (`EmpiricalFisherOperator`, `FisherOperator`): from per-example
  gradients, one vectorized Jacobian per batch (about n_b gradients, no
  products). The empirical Fisher's diagonal (1/N) Σ_n (∇ℓ_n)² is then
  exact (standard error 0). The Fisher's is the mean over its ``samples``
  draws of (1/w) Σ_n u_n², u_n a draw's per-example gradient: unbiased for
  diag F, exactly the operator's where an example has one loss term, with
  the standard error of the mean over the draws (NaN for one draw).

`A` is any operator (`HessianOperator`, `GGNOperator`, the Fishers, their
blocks); with a preconditioner, the diagonal of P^{-1/2} A P^{-1/2}, which is
diag(A) / P.

Memory: the running sum and sum of squares of the terms (two float64
vectors of n), not the terms themselves.
"""

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from analysis_tools._tensors import check_count, rademacher
from analysis_tools.curvature.hessian import operator_and_matvec

__all__ = ["DiagonalEstimate", "curvature_diagonal", "exact_diagonal", "hutchinson_diagonal"]

DIAGONAL_ESTIMATORS = ("hutchinson", "exact", "per_example")


class DiagonalEstimate(NamedTuple):
    """An estimate of diag(A).

    Attributes:
        estimate: diag(A), [n] float64.
        standard_error: Per coordinate, [n] float64: the spread of its
            Hutchinson terms over √(their number), NaN with a single term, 0
            for the exact diagonal.
        num_products: The products A v it took.
        estimator: ``"hutchinson"``, ``"exact"`` or ``"per_example"``.
    """

    estimate: np.ndarray
    standard_error: np.ndarray
    num_products: int
    estimator: str


def hutchinson_diagonal(matvec, dimension, num_products=100, seed=0):
    """diag(A) ≈ (1/s) Σ z_i ⊙ A z_i over s Rademacher vectors (see the module docstring).

    Args:
        matvec: v ↦ A v for a flat float64 vector of length `dimension`.
        dimension: n.
        num_products: s (≥ 1).
        seed: Seed of the Rademacher vectors (NumPy's `default_rng`).

    Returns:
        A `DiagonalEstimate`.
    """
    dimension = check_count("dimension", dimension, 1)
    num_products = check_count("num_products", num_products, 1)
    rng = np.random.default_rng(seed)
    total = np.zeros(dimension)
    squares = np.zeros(dimension)
    for _ in range(num_products):
        z = rademacher(rng, [dimension])
        term = (z * tf.cast(matvec(z), tf.float64)).numpy()
        total += term
        squares += term * term
    mean = total / num_products
    if num_products == 1:
        error = np.full(dimension, np.nan)
    else:
        variance = np.maximum(squares - num_products * mean * mean, 0.0) / (num_products - 1)
        error = np.sqrt(variance / num_products)
    return DiagonalEstimate(mean, error, num_products, "hutchinson")


def exact_diagonal(matvec, dimension):
    """diag(A) from the n products A e_j: exact, for small n."""
    dimension = check_count("dimension", dimension, 1)
    diagonal = np.empty(dimension)
    for j in range(dimension):
        unit = tf.one_hot(j, dimension, dtype=tf.float64)
        diagonal[j] = float(tf.cast(matvec(unit), tf.float64)[j])
    return DiagonalEstimate(diagonal, np.zeros(dimension), dimension, "exact")


def curvature_diagonal(
    model,
    data=None,
    loss=None,
    preconditioner=None,
    num_products=100,
    estimator="hutchinson",
    seed=0,
    **operator_kwargs,
):
    """diag(A) of the curvature A over the probe set `data`, or of P^{-1/2} A P^{-1/2} (= diag(A) / P).

    Args:
        model: A built Keras model, or an operator built before (then `data`
            is None): `HessianOperator`, `GGNOperator`, a Fisher, a block.
        data: The probe set, (x, y) arrays or a `tf.data.Dataset` of (x, y).
        loss: Defaults to the model's compiled loss.
        preconditioner: Optional list of P tensors, one per trainable variable.
        num_products: For ``estimator="hutchinson"``, the products (≥ 1).
        estimator: ``"hutchinson"`` (default), ``"exact"`` (n products) or
            ``"per_example"`` (the Fishers; see the module docstring).
        seed: Seed of the Rademacher vectors.
        **operator_kwargs: As `hessian_trace`'s, ``curvature=`` among them.

    Returns:
        A `DiagonalEstimate`, flat in the operator's order of variables
        (`operator.unflatten` gives one tensor per variable).

    Raises:
        ValueError: If `estimator` is unknown or `num_products` < 1, or
            ``"per_example"`` meets another curvature; and as the operator.
    """
    if estimator not in DIAGONAL_ESTIMATORS:
        raise ValueError(f"`estimator` must be one of {DIAGONAL_ESTIMATORS}, got {estimator!r}.")
    check_count("num_products", num_products, 1)
    operator, matvec = operator_and_matvec(model, data, loss, preconditioner, **operator_kwargs)
    if estimator == "per_example":
        if operator.curvature not in ("empirical_fisher", "fisher"):
            raise ValueError(
                f"estimator='per_example' needs the empirical Fisher or the Fisher, not "
                f"{type(operator).__name__}'s curvature; use 'hutchinson' or 'exact'."
            )
        rows = operator.per_example_diagonal().numpy()  # a preconditioned operator's are divided by P
        if rows.shape[0] == 1:
            error = (
                np.zeros(rows.shape[1]) if operator.curvature == "empirical_fisher" else np.full(rows.shape[1], np.nan)
            )
        else:
            error = rows.std(axis=0, ddof=1) / np.sqrt(rows.shape[0])
        return DiagonalEstimate(rows.mean(axis=0), error, 0, "per_example")
    if estimator == "exact":
        return exact_diagonal(matvec, operator.dimension)
    return hutchinson_diagonal(matvec, operator.dimension, num_products, seed)
