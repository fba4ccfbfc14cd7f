"""Measurement tools for adaptive optimizers: curvature, the law of the update, gradient noise.

Three subpackages, one per study, and two shared modules:

* `analysis_tools.curvature`: the Hessian of the loss over a probe set as an
  operator, Lanczos, the sharpness λ1(H) and preconditioned sharpness
  λ1(P⁻¹H), per layer as well, the Hessian trace (Hutchinson, Hutch++), the
  spectral density (SLQ), `SharpnessCallback` (Cohen et al. 2021, 2022), and
  `SharpnessTracker`, cheap estimates to leave on at every step.
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

The top level holds the names a user imports first; everything else is
imported from its subpackage (`analysis_tools.curvature.GGNOperator`). The
names the top level held in 0.2.0 still resolve, with a
`DeprecationWarning` that names the new path, for one release.
"""

import importlib

from analysis_tools import _deprecation, curvature, noise, preconditioners, thresholds, updates
from analysis_tools.curvature import (
    GGNOperator,
    HessianOperator,
    Lanczos,
    SharpnessCallback,
    SharpnessTracker,
    hessian_eigenvalues,
    hessian_trace,
    preconditioned_sharpness,
    sharpness,
)
from analysis_tools.noise import GradientNoiseCallback, gradient_noise, tail_index
from analysis_tools.preconditioners import preconditioner_of
from analysis_tools.updates import AdaptiveUpdate, UpdateDistributionCallback

__all__ = [
    "AdaptiveUpdate",
    "GGNOperator",
    "GradientNoiseCallback",
    "HessianOperator",
    "Lanczos",
    "SharpnessCallback",
    "SharpnessTracker",
    "UpdateDistributionCallback",
    "gradient_noise",
    "hessian_eigenvalues",
    "hessian_trace",
    "preconditioned_sharpness",
    "preconditioner_of",
    "sharpness",
    "tail_index",
]

# Where each name the top level exported in 0.2.0, and no longer does, lives now (of thresholds, the top
# level exported the two functions, not the constants).
_MOVED = {
    name: module.__name__
    for module in (curvature, updates, noise, preconditioners)
    for name in module.__all__
    if name not in __all__
}
_MOVED.update(asymptotic_growth_factor=thresholds.__name__, stability_threshold=thresholds.__name__)


def __getattr__(name):
    """Serves a name that moved to a subpackage in 0.3.0, with a `DeprecationWarning`."""
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    _deprecation.warn_renamed(f"analysis_tools.{name}", f"{_MOVED[name]}.{name}")
    return getattr(importlib.import_module(_MOVED[name]), name)


def __dir__():
    return sorted(set(globals()) - set(_MOVED))
