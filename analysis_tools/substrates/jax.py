"""`AdaptiveUpdate` and `SymmetricAlphaStable` as `tfp.substrates.jax` distributions (package docstring)."""

from analysis_tools.substrates._substrate import load

AdaptiveUpdate = load("analysis_tools.updates.law", "jax").AdaptiveUpdate
SymmetricAlphaStable = load("analysis_tools.noise.alpha_stable", "jax").SymmetricAlphaStable

__all__ = ["AdaptiveUpdate", "SymmetricAlphaStable"]
