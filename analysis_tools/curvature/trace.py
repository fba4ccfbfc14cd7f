"""The trace of the Hessian, tr(H) or tr(P⁻¹H), by Hutchinson's estimator or Hutch++.

Both estimators see the operator only through products A z (A = H, or
P^{-1/2} H P^{-1/2}, whose trace is tr(P⁻¹H): the two matrices are similar).

* Hutchinson (1990), as in PyHessian (Yao et al. 2020, §3.2) and Cockpit's
  HessTrace: for Rademacher vectors z (entries ±1, E z zᵀ = I),
  E zᵀ A z = tr(A), so tr(A) ≈ (1/s) Σ_i z_iᵀ A z_i with s products. Its
  variance is 2 (‖A‖_F² − Σ_i A_ii²) / s: the error falls like 1/√s and is set
  by the whole Frobenius norm, which the few large outlier eigenvalues of a
  network's Hessian dominate.
* Hutch++ (Meyer, Musco, Musco and Woodruff, "Hutch++: Optimal Stochastic
  Trace Estimation", SOSA 2021, Algorithm 1): spend a third of the products
  on a sketch S (n × k Rademacher), Q = orth(A S), take the top of the
  spectrum exactly as tr(Qᵀ A Q) (another k products), and run Hutchinson
  only on the rest, (I − QQᵀ) A (I − QQᵀ), with the last third:

      tr(A) ≈ tr(Qᵀ A Q) + (1/r) Σ_i g_iᵀ (I − QQᵀ) A (I − QQᵀ) g_i.

  Unbiased, with a variance set by the Frobenius norm of A without its top
  k directions: for a spectrum with outliers (a network's Hessian), much
  smaller than Hutchinson's at the same number of products.

The standard error is that of the Hutchinson part, √(v / s) for s terms of
variance v: for Hutch++ the residual part's, given the sketch (given Q the
estimate is unbiased whatever Q is, so the sketch's randomness adds no
spread of its own). A Rademacher term zᵀ A z has variance
v = 2 (‖A‖_F² − Σ_i A_ii²), and both parts are estimated from the products'
vectors, not from the s scalar terms: ‖A‖_F² by the mean of ‖A z_i‖², and
Σ_i A_ii² by the mean over pairs i ≠ j of (z_i ⊙ A z_i) · (z_j ⊙ A z_j), both
unbiased (for Hutch++, A is the residual (I − QQᵀ) A (I − QQᵀ) and A z_i its
product). The terms' own sample variance, which a few large terms dominate,
under-covered on a trained classifier (Hutch++ with 30 products: |z| > 2 in
11 % of 400 seeds, |z| > 3 in 3 %); this one covers (6.5 %, 0.3 %;
`benchmarks/trace_coverage.py`, `benchmarks/RESULTS.md`). It is NaN with a
single Hutchinson term.

Cost: `num_products` products A z in all (each about two gradient
evaluations over the probe set, `HessianOperator`). Memory: one vector for
Hutchinson; Hutch++ holds the sketch (2k vectors of n float64,
k = num_products // 3).
"""

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from analysis_tools._deprecation import renamed, renamed_attribute
from analysis_tools._tensors import check_count, rademacher
from analysis_tools.curvature.hessian import operator_and_matvec

__all__ = ["TraceEstimate", "hessian_trace", "hutch_plus_plus", "hutchinson"]

TRACE_ESTIMATORS = ("hutchinson", "hutch++")


class TraceEstimate(NamedTuple):
    """A stochastic estimate of tr(A).

    Attributes:
        estimate: The estimate of tr(A) (float).
        standard_error: The standard error of its stochastic (Hutchinson)
            part, NaN when that part has a single term.
        num_products: The products A z it took.
        estimator: ``"hutchinson"`` or ``"hutch++"``.
        samples: The Hutchinson terms z_iᵀ A z_i (for Hutch++, of the residual
            operator), [num_terms] float64.
        sketch_trace: For Hutch++, tr(Qᵀ A Q), the exact part; 0.0 for Hutchinson.
    """

    estimate: float
    standard_error: float
    num_products: int
    estimator: str
    samples: np.ndarray
    sketch_trace: float

    method = renamed_attribute("method", "estimator")


def _product(matvec, vector):
    """A v in float64 (a NaN or infinite product propagates to the estimate)."""
    return tf.cast(matvec(vector), tf.float64)


class _Terms:
    """Hutchinson terms zᵀ A z, with the plug-in estimate of their variance (see the module docstring)."""

    def __init__(self, dimension):
        self.values = []
        self.frobenius = 0.0  # Σ_i ‖A z_i‖²
        self.diagonal = np.zeros(dimension)  # Σ_i z_i ⊙ A z_i
        self.diagonal_squares = 0.0  # Σ_i ‖z_i ⊙ A z_i‖²

    def add(self, z, product):
        """One term, from a Rademacher z and A z."""
        z, product = z.numpy(), product.numpy()
        self.values.append(float(z @ product))
        self.frobenius += float(product @ product)
        diagonal = z * product
        self.diagonal += diagonal
        self.diagonal_squares += float(diagonal @ diagonal)

    def standard_error(self):
        count = len(self.values)
        if count < 2:
            return float("nan")
        frobenius = self.frobenius / count
        diagonal = (float(self.diagonal @ self.diagonal) - self.diagonal_squares) / (count * (count - 1))
        return float(np.sqrt(max(2.0 * (frobenius - diagonal), 0.0) / count))

    def estimate(self, sketch_trace, num_products, estimator):
        samples = np.asarray(self.values, dtype=np.float64)
        return TraceEstimate(
            float(sketch_trace + np.mean(samples)),
            self.standard_error(),
            int(num_products),
            estimator,
            samples,
            float(sketch_trace),
        )


@renamed(num_samples="num_products")
def hutchinson(matvec, dimension, num_products=100, seed=0):
    """tr(A) ≈ (1/s) Σ z_iᵀ A z_i over s Rademacher vectors z_i (see the module docstring).

    Args:
        matvec: v ↦ A v for a flat float64 vector of length `dimension`; A symmetric.
        dimension: n.
        num_products: s, the products A z_i, one per Rademacher vector (≥ 1).
        seed: Seed of the Rademacher vectors (NumPy's `default_rng`).

    Returns:
        A `TraceEstimate`.
    """
    dimension = check_count("dimension", dimension, 1)
    num_products = check_count("num_products", num_products, 1)
    rng = np.random.default_rng(seed)
    terms = _Terms(dimension)
    for _ in range(num_products):
        z = rademacher(rng, [dimension])
        terms.add(z, _product(matvec, z))
    return terms.estimate(0.0, num_products, "hutchinson")


def hutch_plus_plus(matvec, dimension, num_products=99, seed=0):
    """Hutch++ (Meyer et al. 2021, Algorithm 1) with `num_products` products of A in all.

    k = num_products // 3 products sketch A S, k more give tr(Qᵀ A Q) with
    Q = orth(A S), and the remaining r = num_products − 2k run Hutchinson on
    (I − QQᵀ) A (I − QQᵀ). k is at most n: the sketch then spans everything
    and the residual terms are 0 (to rounding).

    Args:
        matvec: v ↦ A v for a flat float64 vector of length `dimension`; A symmetric.
        dimension: n.
        num_products: The products A v in all, sketch included (≥ 3).
        seed: Seed of the sketch and the Rademacher vectors.

    Returns:
        A `TraceEstimate`.
    """
    dimension = check_count("dimension", dimension, 1)
    num_products = check_count("num_products", num_products, 3)
    rng = np.random.default_rng(seed)
    k = min(num_products // 3, dimension)
    residual_terms = num_products - 2 * k
    sketch = tf.stack([_product(matvec, rademacher(rng, [dimension])) for _ in range(k)], axis=1)
    q, _ = tf.linalg.qr(sketch)  # [n, k]; columns past the rank of A S are arbitrary unit vectors
    aq = tf.stack([_product(matvec, q[:, j]) for j in range(k)], axis=1)
    sketch_trace = float(tf.reduce_sum(q * aq))

    def project_out(v):
        return v - tf.linalg.matvec(q, tf.linalg.matvec(q, v, transpose_a=True))

    terms = _Terms(dimension)
    for _ in range(residual_terms):
        # g = (I − QQᵀ) z: zᵀ A' z with A' = (I − QQᵀ) A (I − QQᵀ), whose product with z is A' z.
        z = rademacher(rng, [dimension])
        terms.add(z, project_out(_product(matvec, project_out(z))))
    return terms.estimate(sketch_trace, num_products, "hutch++")


@renamed(num_samples="num_products", method="estimator")
def hessian_trace(
    model, data=None, loss=None, preconditioner=None, num_products=100, estimator="hutch++", seed=0, **operator_kwargs
):
    """tr(H), or tr(P⁻¹H) with a preconditioner, of the loss over the probe set `data`.

    Args:
        model: A built Keras model; its weights are read, never written. Or a
            `HessianOperator` built before (with `data` None and no operator
            options): its traced product is reused, not traced again.
        data: The probe set, (x, y) arrays or a `tf.data.Dataset` of (x, y).
        loss: Defaults to the model's compiled loss.
        preconditioner: Optional list of P tensors, one per trainable variable
            (`analysis_tools.preconditioners.preconditioner_of`): the trace is
            then tr(P⁻¹H) = Σ_i H_ii / P_i, estimated on P^{-1/2} H P^{-1/2}.
        num_products: The Hessian-vector products in all (Hutch++ needs ≥ 3).
        estimator: ``"hutch++"`` (default) or ``"hutchinson"``.
        seed: Seed of the random vectors.
        **operator_kwargs: `batch_size`, `differentiation`, `mode`,
            `dropout`, `include_regularization`, `jit_compile`, `strategy`,
            `variables` (a layer or block: the trace of its diagonal block);
            see `analysis_tools.HessianOperator`; and ``curvature=``
            (`analysis_tools.curvature.curvature_operator`).

    Returns:
        A `TraceEstimate` (`.estimate`, `.standard_error`, `.num_products`).

    Raises:
        ValueError: If `estimator` is unknown or `num_products` too small;
            as `analysis_tools.HessianOperator` for the model and the data.
    """
    if estimator not in TRACE_ESTIMATORS:
        raise ValueError(f"`estimator` must be one of {TRACE_ESTIMATORS}, got {estimator!r}.")
    check_count("num_products", num_products, 3 if estimator == "hutch++" else 1)
    operator, matvec = operator_and_matvec(model, data, loss, preconditioner, **operator_kwargs)
    if estimator == "hutchinson":
        return hutchinson(matvec, operator.dimension, num_products, seed)
    return hutch_plus_plus(matvec, operator.dimension, num_products, seed)
