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
* `gradient_noise` (`analysis_tools.gradient_noise`): the mini-batch gradient
  noise g_B − ∇f at fixed parameters, and `empirical_variance_vs_sample_size`
  (Zhang et al. 2020, §2); `tail_index` (`analysis_tools.tail_index`): three
  tail-index estimators; `SymmetricAlphaStable` (`analysis_tools.alpha_stable`):
  an α-stable sampler, which TFP lacks; `fit_noise_distribution`
  (`analysis_tools.noise_fit`): Gaussian against heavy-tailed laws by
  likelihood; `GradientNoiseCallback` (`analysis_tools.noise_callback`): the
  noise over training inside `model.fit`.
"""

from analysis_tools import (
    alpha_stable,
    hessian,
    lanczos,
    noise_callback,
    noise_fit,
    preconditioners,
    radam_variance,
    thresholds,
    update_distribution,
    update_simulation,
    variance_adaptation,
)
from analysis_tools.alpha_stable import SymmetricAlphaStable
from analysis_tools.gradient_noise import empirical_variance_vs_sample_size, gradient_noise
from analysis_tools.hessian import HessianOperator
from analysis_tools.lanczos import Lanczos, LanczosResult
from analysis_tools.noise_callback import GradientNoiseCallback
from analysis_tools.noise_fit import fit_noise_distribution
from analysis_tools.preconditioners import preconditioner_of, stability_threshold_of
from analysis_tools.sharpness import (
    SharpnessCallback,
    hessian_eigenvalues,
    preconditioned_sharpness,
    sharpness,
    top_subspace_fraction,
)
from analysis_tools.tail_index import tail_index
from analysis_tools.update_callback import UpdateDistributionCallback
from analysis_tools.update_distribution import AdaptiveUpdate, fit_update_distribution
from analysis_tools.update_simulation import simulate_updates

__all__ = [
    "AdaptiveUpdate",
    "GradientNoiseCallback",
    "HessianOperator",
    "Lanczos",
    "LanczosResult",
    "SharpnessCallback",
    "SymmetricAlphaStable",
    "UpdateDistributionCallback",
    "alpha_stable",
    "empirical_variance_vs_sample_size",
    "fit_noise_distribution",
    "fit_update_distribution",
    "gradient_noise",
    "hessian",
    "hessian_eigenvalues",
    "lanczos",
    "noise_callback",
    "noise_fit",
    "preconditioned_sharpness",
    "preconditioner_of",
    "preconditioners",
    "radam_variance",
    "sharpness",
    "simulate_updates",
    "stability_threshold_of",
    "tail_index",
    "thresholds",
    "top_subspace_fraction",
    "update_distribution",
    "update_simulation",
    "variance_adaptation",
]
