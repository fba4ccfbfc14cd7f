"""Curvature of the training loss: the Hessian over a probe set, Lanczos, and the sharpness.

* `HessianOperator` (`hessian`): the loss over a fixed probe set as the
  linear operator v ↦ H v, and its preconditioned form P^{-1/2} H P^{-1/2}.
* `Lanczos`, `LanczosResult` (`lanczos`): the `tf.function` Lanczos solver.
* `hessian_eigenvalues`, `sharpness`, `preconditioned_sharpness`,
  `top_subspace_fraction` (`eigenvalues`): λ1(H) and λ1(P⁻¹H), the top-k
  eigenvalues and the gradient's share of the top eigenspace.
* `SharpnessCallback` (`callback`): the same inside `model.fit`.

Cohen et al., "Gradient Descent on Neural Networks Typically Occurs at the
Edge of Stability" (ICLR 2021) and "Adaptive Gradient Methods at the Edge of
Stability" (2022).
"""

from analysis_tools.curvature.callback import SharpnessCallback, SharpnessRecord
from analysis_tools.curvature.eigenvalues import (
    hessian_eigenvalues,
    preconditioned_sharpness,
    sharpness,
    top_subspace_fraction,
)
from analysis_tools.curvature.hessian import HessianOperator
from analysis_tools.curvature.lanczos import Lanczos, LanczosResult

__all__ = [
    "HessianOperator",
    "Lanczos",
    "LanczosResult",
    "SharpnessCallback",
    "SharpnessRecord",
    "hessian_eigenvalues",
    "preconditioned_sharpness",
    "sharpness",
    "top_subspace_fraction",
]
