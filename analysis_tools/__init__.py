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
* `AdaptiveUpdate`, `fit_update_distribution` (`analysis_tools.update_distribution`):
  the law of the normalized update Δθ/η (Zhang and Ziyin 2021, Theorem 1) as
  a TFP distribution, its moments and its maximum-likelihood fit;
  `simulate_updates` (`analysis_tools.update_simulation`) and
  `UpdateDistributionCallback` (`analysis_tools.update_callback`) measure it.
* `analysis_tools.radam_variance`: the variance of Adam's adaptive learning
  rate and RAdam's rectification (Liu et al. 2020, Eq. 4);
  `analysis_tools.variance_adaptation`: Balles and Hennig's variance
  adaptation factors.
"""

from analysis_tools import (
    hessian,
    lanczos,
    preconditioners,
    radam_variance,
    thresholds,
    update_distribution,
    update_simulation,
    variance_adaptation,
)
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
from analysis_tools.update_callback import UpdateDistributionCallback
from analysis_tools.update_distribution import AdaptiveUpdate, fit_update_distribution
from analysis_tools.update_simulation import simulate_updates

__all__ = [
    "AdaptiveUpdate",
    "HessianOperator",
    "Lanczos",
    "LanczosResult",
    "SharpnessCallback",
    "UpdateDistributionCallback",
    "fit_update_distribution",
    "hessian",
    "hessian_eigenvalues",
    "lanczos",
    "preconditioned_sharpness",
    "preconditioner_of",
    "preconditioners",
    "radam_variance",
    "sharpness",
    "stability_threshold_of",
    "thresholds",
    "simulate_updates",
    "top_subspace_fraction",
    "update_distribution",
    "update_simulation",
    "variance_adaptation",
]
