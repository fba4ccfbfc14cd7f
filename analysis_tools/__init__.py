"""Measurement tools for adaptive optimizers: sharpness, update laws, gradient noise.

* `hessian_eigenvalues`, `sharpness`, `preconditioned_sharpness` and
  `SharpnessCallback` (`analysis_tools.sharpness`): λ1(H) and λ1(P⁻¹H) of the
  training loss, by Lanczos on Hessian-vector products, as functions and
  inside `model.fit`.
* `analysis_tools.hessian`: the loss over a probe set as a linear operator.
* `analysis_tools.lanczos`: the `tf.function` Lanczos solver.
* `analysis_tools.preconditioners`: the diagonal preconditioner P_t, the
  momentum and the stability threshold of tf_adaptive's optimizers and of
  Keras's built-ins.
* `analysis_tools.thresholds`: the stability thresholds and growth factors
  (shared with the optimizers in `tf_adaptive`).
"""

from analysis_tools import hessian, lanczos, preconditioners, thresholds
from analysis_tools.hessian import HessianOperator
from analysis_tools.lanczos import Lanczos, LanczosResult
from analysis_tools.preconditioners import preconditioner_of, stability_threshold_of
from analysis_tools.sharpness import (
    SharpnessCallback,
    hessian_eigenvalues,
    preconditioned_sharpness,
    sharpness,
    top_subspace_fraction,
)

__all__ = [
    "HessianOperator",
    "Lanczos",
    "LanczosResult",
    "SharpnessCallback",
    "hessian",
    "hessian_eigenvalues",
    "lanczos",
    "preconditioned_sharpness",
    "preconditioner_of",
    "preconditioners",
    "sharpness",
    "stability_threshold_of",
    "thresholds",
    "top_subspace_fraction",
]
