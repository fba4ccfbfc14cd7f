"""Gradient noise: its samples, its tail index, the α-stable law and likelihood fits.

Zhang et al., "Why are adaptive methods good for attention models?" (NeurIPS
2020), §2 and App. H; Simsekli et al., "A Tail-Index Analysis of Stochastic
Gradient Noise in Deep Neural Networks" (ICML 2019); McCandlish et al., "An
Empirical Model of Large-Batch Training" (2018).

* `gradient_noise`, `empirical_variance_vs_sample_size` (`sampling`): the
  mini-batch noise g_B − ∇f at fixed weights, with its simple noise scale
  B_simple = tr Σ / |G|² (McCandlish et al., eq. 2.8), and Fig. 2c/f.
* `tail_index` (`tail_estimators`): three tail-index estimators.
* `SymmetricAlphaStable` (`alpha_stable`): an α-stable sampler, which TFP lacks.
* `fit_noise_distribution` (`fitting`): Gaussian against heavy-tailed laws by likelihood.
* `GradientNoiseCallback` (`callback`): the noise over training inside `model.fit`.
"""

from analysis_tools.noise.alpha_stable import SymmetricAlphaStable
from analysis_tools.noise.callback import GradientNoiseCallback, NoiseRecord, standardized_coordinates
from analysis_tools.noise.fitting import FittedLaw, NoiseFit, TailFit, fit_noise_distribution
from analysis_tools.noise.sampling import (
    EmpiricalVariance,
    GradientNoise,
    empirical_variance_vs_sample_size,
    gradient_noise,
)
from analysis_tools.noise.tail_estimators import TailIndex, tail_index

__all__ = [
    "EmpiricalVariance",
    "FittedLaw",
    "GradientNoise",
    "GradientNoiseCallback",
    "NoiseFit",
    "NoiseRecord",
    "SymmetricAlphaStable",
    "TailFit",
    "TailIndex",
    "empirical_variance_vs_sample_size",
    "fit_noise_distribution",
    "gradient_noise",
    "standardized_coordinates",
    "tail_index",
]
