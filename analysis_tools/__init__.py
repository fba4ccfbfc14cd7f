"""Measurement tools for adaptive optimizers: sharpness, update laws, gradient noise.

The stability thresholds live in `tf_adaptive.thresholds` (one source of
truth, shared with the optimizers) and are re-exported here.
"""

from tf_adaptive import thresholds

__all__ = ["thresholds"]
