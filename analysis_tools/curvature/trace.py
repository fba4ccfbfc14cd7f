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

The standard error is the sample standard deviation of the Hutchinson terms
over √(their number): for Hutch++ that of the residual part, given the sketch
(the sketch's own randomness only shrinks the residual, it does not enter
the estimate's spread given Q). It is NaN with a single Hutchinson term.

Cost: `num_samples` products in all (each about two gradient evaluations
over the probe set, `HessianOperator`). Memory: one vector for Hutchinson;
Hutch++ holds the sketch (2k vectors of n float64, k = num_samples // 3).
"""

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from analysis_tools._tensors import check_count, rademacher, standard_error
from analysis_tools.curvature.hessian import operator_and_matvec

__all__ = ["TraceEstimate", "hessian_trace", "hutch_plus_plus", "hutchinson"]

TRACE_METHODS = ("hutchinson", "hutch++")


class TraceEstimate(NamedTuple):
    """A stochastic estimate of tr(A).

    Attributes:
        estimate: The estimate of tr(A) (float).
        standard_error: The standard error of its stochastic (Hutchinson)
            part, NaN when that part has a single term.
        num_products: The products A z it took.
        method: ``"hutchinson"`` or ``"hutch++"``.
        samples: The Hutchinson terms z_iᵀ A z_i (for Hutch++, of the residual
            operator), [num_terms] float64.
        sketch_trace: For Hutch++, tr(Qᵀ A Q), the exact part; 0.0 for Hutchinson.
    """

    estimate: float
    standard_error: float
    num_products: int
    method: str
    samples: np.ndarray
    sketch_trace: float


def _product(matvec, vector):
    """A v in float64 (a NaN or infinite product propagates to the estimate)."""
    return tf.cast(matvec(vector), tf.float64)


def _estimate(samples, sketch_trace, num_products, method):
    samples = np.asarray(samples, dtype=np.float64)
    error = standard_error(samples)
    return TraceEstimate(float(sketch_trace + np.mean(samples)), error, int(num_products), method, samples,
                         float(sketch_trace))


def hutchinson(matvec, dimension, num_samples=100, seed=0):
    """tr(A) ≈ (1/s) Σ z_iᵀ A z_i over s Rademacher vectors z_i (see the module docstring).

    Args:
        matvec: v ↦ A v for a flat float64 vector of length `dimension`; A symmetric.
        dimension: n.
        num_samples: s, the products (≥ 1).
        seed: Seed of the Rademacher vectors (NumPy's `default_rng`).

    Returns:
        A `TraceEstimate`.
    """
    dimension = check_count("dimension", dimension, 1)
    num_samples = check_count("num_samples", num_samples, 1)
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(num_samples):
        z = rademacher(rng, [dimension])
        samples.append(float(tf.reduce_sum(z * _product(matvec, z))))
    return _estimate(samples, 0.0, num_samples, "hutchinson")


def hutch_plus_plus(matvec, dimension, num_products=99, seed=0):
    """Hutch++ (Meyer et al. 2021, Algorithm 1) with `num_products` products of A in all.

    k = num_products // 3 products sketch A S, k more give tr(Qᵀ A Q) with
    Q = orth(A S), and the remaining r = num_products − 2k run Hutchinson on
    (I − QQᵀ) A (I − QQᵀ). k is at most n: the sketch then spans everything
    and the residual terms are 0 (to rounding).

    Args:
        matvec: v ↦ A v for a flat float64 vector of length `dimension`; A symmetric.
        dimension: n.
        num_products: The products in all (≥ 3).
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

    samples = []
    for _ in range(residual_terms):
        g = project_out(rademacher(rng, [dimension]))
        samples.append(float(tf.reduce_sum(g * project_out(_product(matvec, g)))))
    return _estimate(samples, sketch_trace, num_products, "hutch++")


def hessian_trace(model, data=None, loss=None, preconditioner=None, num_samples=100, method="hutch++", seed=0,
                  **operator_kwargs):
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
        num_samples: The Hessian-vector products in all (Hutch++ needs ≥ 3).
        method: ``"hutch++"`` (default) or ``"hutchinson"``.
        seed: Seed of the random vectors.
        **operator_kwargs: `batch_size`, `method` (as ``product_method``),
            `mode`, `dropout`, `include_regularization`, `jit_compile`,
            `strategy`, `variables` (a layer or block: the trace of its
            diagonal block); see `analysis_tools.HessianOperator`; and
            ``curvature=`` (`analysis_tools.curvature_operator`).

    Returns:
        A `TraceEstimate` (`.estimate`, `.standard_error`, `.num_products`).

    Raises:
        ValueError: If `method` is unknown or `num_samples` too small; as
            `analysis_tools.HessianOperator` for the model and the data.
    """
    if method not in TRACE_METHODS:
        raise ValueError(f"`method` must be one of {TRACE_METHODS}, got {method!r}.")
    check_count("num_samples", num_samples, 3 if method == "hutch++" else 1)
    operator, matvec = operator_and_matvec(model, data, loss, preconditioner, **operator_kwargs)
    if method == "hutchinson":
        return hutchinson(matvec, operator.dimension, num_samples, seed)
    return hutch_plus_plus(matvec, operator.dimension, num_samples, seed)
