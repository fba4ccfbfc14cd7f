"""Measurement tools for adaptive optimizers: curvature, the law of the update, gradient noise.

Three subpackages, one per study, and two shared modules:

* `analysis_tools.curvature`: the Hessian of the loss over a probe set as an
  operator, Lanczos, the sharpness λ1(H) and preconditioned sharpness
  λ1(P⁻¹H), per layer as well, the Hessian trace (Hutchinson, Hutch++), the
  spectral density (SLQ), and `SharpnessCallback` (Cohen et al. 2021, 2022).
* `analysis_tools.updates`: the law of the normalized update Δθ/η
  (`AdaptiveUpdate`, Zhang and Ziyin 2021, Theorem 1), its moments and fits,
  simulation, RAdam's variance analysis (Liu et al. 2020), Balles and
  Hennig's variance adaptation factors, and `UpdateDistributionCallback`.
* `analysis_tools.noise`: the mini-batch gradient noise, tail indices, the
  α-stable law, noise fits, and `GradientNoiseCallback` (Zhang et al. 2020;
  Simsekli et al. 2019).
* `analysis_tools.preconditioners`: the diagonal preconditioner P_t, the
  momentum u_t, the second moment and the stability threshold of
  tf_adaptive's optimizers and of Keras's built-ins.
* `analysis_tools.thresholds`: the stability thresholds and growth factors
  (shared with the optimizers in `tf_adaptive`).

Every public function and class is importable from here.
"""

from analysis_tools.curvature import (
    HessianOperator,
    Lanczos,
    LanczosResult,
    SharpnessCallback,
    SharpnessRecord,
    SpectralDensity,
    TraceEstimate,
    hessian_eigenvalues,
    hessian_trace,
    hutch_plus_plus,
    hutchinson,
    model_blocks,
    plot_spectral_density,
    preconditioned_sharpness,
    sharpness,
    slq,
    spectral_density,
    top_subspace_fraction,
)
from analysis_tools.noise import (
    EmpiricalVariance,
    FittedLaw,
    GradientNoise,
    GradientNoiseCallback,
    NoiseFit,
    NoiseRecord,
    SymmetricAlphaStable,
    TailFit,
    TailIndex,
    empirical_variance_vs_sample_size,
    fit_noise_distribution,
    gradient_noise,
    standardized_coordinates,
    tail_index,
)
from analysis_tools.preconditioners import (
    clipped_fraction_of,
    last_learning_rate_of,
    momentum_of,
    preconditioner_of,
    second_moment_of,
    stability_threshold_of,
)
from analysis_tools.thresholds import asymptotic_growth_factor, stability_threshold
from analysis_tools.updates import (
    AdaptiveUpdate,
    KSTest,
    MixtureFit,
    UpdateDistributionCallback,
    UpdateDistributionFit,
    UpdateHistogram,
    UpdateRecord,
    abs_update_mean,
    abs_update_variance,
    adagrad_normalization,
    adaptive_lr_mean,
    adaptive_lr_variance,
    adaptive_lr_variance_first_order,
    count_modes,
    effective_sample_size,
    find_modes,
    fit_update_distribution,
    gaussian_limit,
    kolmogorov_survival_function,
    ks_statistic,
    rectification,
    reference_law_of,
    simulate_updates,
    sma_length,
    sma_length_limit,
    update_variance,
    variance_adaptation_adam,
    variance_adaptation_sgd,
    variance_adaptation_sign,
    wasserstein_1,
)

__all__ = [
    "AdaptiveUpdate",
    "EmpiricalVariance",
    "FittedLaw",
    "GradientNoise",
    "GradientNoiseCallback",
    "HessianOperator",
    "KSTest",
    "Lanczos",
    "LanczosResult",
    "MixtureFit",
    "NoiseFit",
    "NoiseRecord",
    "SharpnessCallback",
    "SharpnessRecord",
    "SpectralDensity",
    "SymmetricAlphaStable",
    "TailFit",
    "TailIndex",
    "TraceEstimate",
    "UpdateDistributionCallback",
    "UpdateDistributionFit",
    "UpdateHistogram",
    "UpdateRecord",
    "abs_update_mean",
    "abs_update_variance",
    "adagrad_normalization",
    "adaptive_lr_mean",
    "adaptive_lr_variance",
    "adaptive_lr_variance_first_order",
    "asymptotic_growth_factor",
    "clipped_fraction_of",
    "count_modes",
    "effective_sample_size",
    "empirical_variance_vs_sample_size",
    "find_modes",
    "fit_noise_distribution",
    "fit_update_distribution",
    "gaussian_limit",
    "gradient_noise",
    "hessian_eigenvalues",
    "hessian_trace",
    "hutch_plus_plus",
    "hutchinson",
    "kolmogorov_survival_function",
    "ks_statistic",
    "last_learning_rate_of",
    "model_blocks",
    "momentum_of",
    "plot_spectral_density",
    "preconditioned_sharpness",
    "preconditioner_of",
    "rectification",
    "reference_law_of",
    "second_moment_of",
    "sharpness",
    "simulate_updates",
    "slq",
    "sma_length",
    "sma_length_limit",
    "spectral_density",
    "stability_threshold",
    "stability_threshold_of",
    "standardized_coordinates",
    "tail_index",
    "top_subspace_fraction",
    "update_variance",
    "variance_adaptation_adam",
    "variance_adaptation_sgd",
    "variance_adaptation_sign",
    "wasserstein_1",
]
