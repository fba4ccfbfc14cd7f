"""Curvature of the training loss: the Hessian over a probe set, Lanczos, and the sharpness.

* `HessianOperator` (`hessian`): the loss over a fixed probe set as the
  linear operator v ↦ H v, and its preconditioned form P^{-1/2} H P^{-1/2}.
* `GGNOperator`, `EmpiricalFisherOperator`, `FisherOperator`
  (`gauss_newton`): the Gauss-Newton matrix and the Fisher matrices, the
  same kind of operator; `curvature_operator` picks one by name, and every
  function below takes ``curvature=``.
* `PreconditionedOperator`, `LinearCombination` (`composition`): operators
  made from operators, immutable: ``A.preconditioned(P)`` (P^{-1/2} A P^{-1/2},
  whose eigenvalues are those of P⁻¹A), ``A.block(...)``, ``A + B``,
  ``c * A``, ``A @ v``.
* `BlockDiagonalOperator`, `blockwise_eigenvalues` (`block_diagonal`): every
  block's diagonal block at once, one probe pass per set of block products,
  and their top eigenvalues by Lanczos in lockstep.
* `curvature_diagonal`, `hutchinson_diagonal`, `DiagonalEstimate`
  (`diagonal`): diag(A) of any of them, with a standard error per coordinate.
* `alignment`, `principal_angles`, `Alignment` (`agreement`): how well a
  preconditioner follows a curvature diagonal, and the angles between two
  eigenspaces.
* `Lanczos`, `LanczosResult` (`lanczos`): the `tf.function` Lanczos solver.
* `hessian_eigenvalues`, `sharpness`, `preconditioned_sharpness`,
  `top_subspace_fraction` (`eigenvalues`): λ1(H) and λ1(P⁻¹H), the top-k
  eigenvalues and the gradient's share of the top eigenspace.
* `hessian_trace`, `hutchinson`, `hutch_plus_plus`, `TraceEstimate`
  (`trace`): tr(H) and tr(P⁻¹H) by Hutchinson's estimator and Hutch++.
* `spectral_density`, `slq`, `SpectralDensity`, `plot_spectral_density`
  (`density`): the spectral density by stochastic Lanczos quadrature.
* Every function above takes `variables=` (layer or block names, layers or
  variables): the diagonal block of the Hessian of those weights.
  `model_blocks` lists a model's blocks (`analysis_tools._blocks`).
* `SharpnessCallback` (`callback`): the same inside `model.fit`, with what else it measures
  given as quantities (`quantities`: `Trace`, `Density`, `PreconditionerAlignment`,
  `PrincipalAngles`, `TopSubspaceFraction`, or a `Quantity` of your own).
* `SharpnessTracker`, `TrackerRecord` (`tracker`): cheap estimates to leave on at every step:
  the curvature along the update, the critical sharpness, warm-started power iteration.

Cohen et al., "Gradient Descent on Neural Networks Typically Occurs at the
Edge of Stability" (ICLR 2021) and "Adaptive Gradient Methods at the Edge of
Stability" (2022).
"""

from analysis_tools._blocks import model_blocks
from analysis_tools.curvature.agreement import Alignment, alignment, principal_angles
from analysis_tools.curvature.block_diagonal import BlockDiagonalOperator, blockwise_eigenvalues
from analysis_tools.curvature.callback import SharpnessCallback, SharpnessRecord
from analysis_tools.curvature.composition import LinearCombination, PreconditionedOperator
from analysis_tools.curvature.density import SpectralDensity, plot_spectral_density, slq, spectral_density
from analysis_tools.curvature.diagonal import DiagonalEstimate, curvature_diagonal, hutchinson_diagonal
from analysis_tools.curvature.eigenvalues import (
    hessian_eigenvalues,
    preconditioned_sharpness,
    sharpness,
    top_subspace_fraction,
)
from analysis_tools.curvature.gauss_newton import (
    EmpiricalFisherOperator,
    FisherOperator,
    GGNOperator,
    curvature_operator,
)
from analysis_tools.curvature.hessian import HessianOperator
from analysis_tools.curvature.lanczos import Lanczos, LanczosResult
from analysis_tools.curvature.trace import TraceEstimate, hessian_trace, hutch_plus_plus, hutchinson
from analysis_tools.curvature.tracker import SharpnessTracker, TrackerRecord

__all__ = [
    "Alignment",
    "BlockDiagonalOperator",
    "DiagonalEstimate",
    "EmpiricalFisherOperator",
    "FisherOperator",
    "GGNOperator",
    "HessianOperator",
    "Lanczos",
    "LanczosResult",
    "LinearCombination",
    "PreconditionedOperator",
    "SharpnessCallback",
    "SharpnessRecord",
    "SharpnessTracker",
    "SpectralDensity",
    "TraceEstimate",
    "TrackerRecord",
    "alignment",
    "blockwise_eigenvalues",
    "curvature_diagonal",
    "curvature_operator",
    "hessian_eigenvalues",
    "hessian_trace",
    "hutch_plus_plus",
    "hutchinson",
    "hutchinson_diagonal",
    "model_blocks",
    "plot_spectral_density",
    "preconditioned_sharpness",
    "principal_angles",
    "sharpness",
    "slq",
    "spectral_density",
    "top_subspace_fraction",
]
