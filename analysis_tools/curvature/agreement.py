"""Is Adam's P curvature? Alignment of a preconditioner with a curvature diagonal, and of two eigenspaces.

Adaptive methods are often said to approximate a curvature: Adam's
√v (P up to ε and bias correction) the square root of the diagonal of the
empirical Fisher, since v averages g² (Kingma and Ba 2015, §5), which
Kunstner et al. (2019, "Limitations of the empirical Fisher approximation",
§3-4) dispute. `alignment` measures how far a P is from a power of a
diagonal d (diag H, diag GGN, diag F, diag F_emp, from `curvature_diagonal`),
on the coordinates where d > 0:

* ``cosine``: ⟨P, d^power⟩ / (‖P‖ ‖d^power‖), 1 for P ∝ d^power;
* ``rank_correlation``: Spearman's ρ between P and d (the Pearson
  correlation of their ranks, average ranks for ties), invariant to any
  increasing map, so to the power;
* ``ratio_spread``: the standard deviation of log10(P / d^power), 0 when P
  is d^power up to one factor; 1 means P / d^power spreads over about a
  decade.

`principal_angles` compares two subspaces, e.g. the top-k eigenvectors of
two operators (H and the GGN, or H at two steps): the angles θ_i with
cos θ_i the singular values of QᵤᵀQᵥ (Björck and Golub 1973), ascending; 0
for a shared direction, π/2 for orthogonal ones.
"""

from typing import NamedTuple

import numpy as np

__all__ = ["Alignment", "alignment", "principal_angles"]


class Alignment(NamedTuple):
    """How well a preconditioner P follows a power of a curvature diagonal d (see the module docstring).

    Attributes:
        cosine: cos∠(P, d^power) over the coordinates used.
        rank_correlation: Spearman's ρ between P and d.
        ratio_spread: std of log10(P / d^power).
        coordinates: How many coordinates were used (d > 0 and P > 0,
            both finite).
        excluded: How many were not (d ≤ 0: a Hessian's negative diagonal
            entries, or zero curvature; and P = +inf, e.g. ACClip where
            its clipping threshold is 0, which has no curvature to follow).
    """

    cosine: float
    rank_correlation: float
    ratio_spread: float
    coordinates: int
    excluded: int


def _flat(values):
    if isinstance(values, (list, tuple)):
        return np.concatenate([np.ravel(np.asarray(v, np.float64)) for v in values])
    return np.ravel(np.asarray(values, np.float64))


def _ranks(values):
    """Ranks 0 … n-1, ties given their average rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=np.float64)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse]


def alignment(preconditioner, diagonal, power=0.5):
    """The `Alignment` of P with d^power (default 1/2: Adam's √v against a diagonal of g² averages).

    Args:
        preconditioner: P, one tensor per variable (`preconditioner_of`) or
            one flat vector.
        diagonal: d, in the same layout (a `DiagonalEstimate.estimate` is
            flat in the operator's order of variables, that of the model's
            trainable variables).
        power: The power of d that P is compared with.

    Returns:
        An `Alignment`; its statistics are NaN when fewer than two
        coordinates have d > 0, or when P or d is constant on them (no
        correlation to speak of).

    Raises:
        ValueError: If P and d differ in length.
    """
    p, d = _flat(preconditioner), _flat(diagonal)
    if p.shape != d.shape:
        raise ValueError(f"The preconditioner has {p.size} coordinates and the diagonal {d.size}.")
    used = np.isfinite(p) & np.isfinite(d) & (d > 0) & (p > 0)
    count = int(used.sum())
    nan = float("nan")
    if count < 2:
        return Alignment(nan, nan, nan, count, int(p.size - count))
    p, d = p[used], d[used]
    target = d**power
    cosine = float(p @ target / (np.linalg.norm(p) * np.linalg.norm(target)))
    rp, rd = _ranks(p), _ranks(d)
    rp, rd = rp - rp.mean(), rd - rd.mean()
    scale = np.sqrt((rp @ rp) * (rd @ rd))
    rank_correlation = float(rp @ rd / scale) if scale > 0 else nan
    ratio_spread = float(np.std(np.log10(p) - np.log10(target), ddof=1))
    return Alignment(cosine, rank_correlation, ratio_spread, count, int(used.size - count))


def principal_angles(first, second):
    """The principal angles (radians, ascending) between the row spaces of `first` [k, n] and `second` [l, n].

    Rows need not be orthonormal (they are orthonormalized); min(k, l)
    angles. Eigenvectors from `hessian_eigenvalues(..., return_vectors=True)`
    are rows.

    Raises:
        ValueError: If the two have different n, or a matrix has no rows or
            rank-deficient rows.
    """
    a, b = np.atleast_2d(np.asarray(first, np.float64)), np.atleast_2d(np.asarray(second, np.float64))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"The subspaces live in {a.shape[1]} and {b.shape[1]} dimensions.")
    bases = []
    for matrix in (a, b):
        if matrix.shape[0] == 0:
            raise ValueError("A subspace needs at least one vector.")
        q, r = np.linalg.qr(matrix.T)
        if np.min(np.abs(np.diag(r))) <= 1e-12 * np.max(np.abs(np.diag(r))):
            raise ValueError("The vectors of a subspace are linearly dependent.")
        bases.append(q)
    cosines = np.linalg.svd(bases[0].T @ bases[1], compute_uv=False)
    return np.arccos(np.clip(cosines, -1.0, 1.0))
