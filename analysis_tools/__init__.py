"""Measurement tools for adaptive optimizers: sharpness, update laws, gradient noise.

`analysis_tools.thresholds` holds the stability thresholds (shared with the
optimizers in `tf_adaptive`).
"""

from analysis_tools import thresholds

__all__ = ["thresholds"]
