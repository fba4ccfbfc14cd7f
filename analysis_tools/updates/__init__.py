"""The law of an adaptive optimizer's update, and the papers' variance analyses.

* `AdaptiveUpdate` (`law`): the law of the normalized update Δθ/η of Zhang
  and Ziyin, "On the Distributional Properties of Adaptive Gradients" (UAI
  2021), Theorem 1, as a TFP distribution.
* `moments`: its variance, Var|Δθ| (Corollaries 1, 2), the Gaussian limit
  and the effective sample size of an exponential average (Eq. 12).
* `goodness_of_fit`: Kolmogorov–Smirnov and Wasserstein-1 against any scalar law.
* `fit_update_distribution` (`fitting`): the maximum-likelihood m, and
  mixtures of shifted laws by EM.
* `simulate_updates` (`simulation`): an optimizer's updates on synthetic gradients.
* `radam_variance`: the variance of Adam's adaptive learning rate and RAdam's
  rectification (Liu et al., ICLR 2020, Eq. 4).
* `variance_adaptation`: Balles and Hennig's variance adaptation factors
  (ICML 2018, §4).
* `UpdateDistributionCallback` (`callback`): the update law inside `model.fit`.
"""

from analysis_tools.updates.callback import (
    UpdateDistributionCallback,
    UpdateHistogram,
    UpdateRecord,
    reference_law_of,
)
from analysis_tools.updates.fitting import MixtureFit, UpdateDistributionFit, fit_update_distribution
from analysis_tools.updates.goodness_of_fit import (
    KSTest,
    kolmogorov_survival_function,
    ks_statistic,
    wasserstein_1,
)
from analysis_tools.updates.law import AdaptiveUpdate
from analysis_tools.updates.moments import (
    abs_update_mean,
    abs_update_variance,
    effective_sample_size,
    gaussian_limit,
    update_variance,
)
from analysis_tools.updates.radam_variance import (
    adaptive_lr_mean,
    adaptive_lr_variance,
    adaptive_lr_variance_first_order,
    rectification,
    sma_length,
    sma_length_limit,
)
from analysis_tools.updates.simulation import (
    GRADIENT_LAWS,
    adagrad_normalization,
    count_modes,
    find_modes,
    simulate_updates,
)
from analysis_tools.updates.variance_adaptation import (
    variance_adaptation_adam,
    variance_adaptation_sgd,
    variance_adaptation_sign,
)

__all__ = [
    "AdaptiveUpdate",
    "GRADIENT_LAWS",
    "KSTest",
    "MixtureFit",
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
    "count_modes",
    "effective_sample_size",
    "find_modes",
    "fit_update_distribution",
    "gaussian_limit",
    "kolmogorov_survival_function",
    "ks_statistic",
    "rectification",
    "reference_law_of",
    "simulate_updates",
    "sma_length",
    "sma_length_limit",
    "update_variance",
    "variance_adaptation_adam",
    "variance_adaptation_sgd",
    "variance_adaptation_sign",
    "wasserstein_1",
]
