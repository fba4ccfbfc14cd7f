"""Measurement tools for adaptive optimizers: sharpness, update laws, gradient noise.

* `analysis_tools.preconditioners`: the diagonal preconditioner P_t, the
  momentum and the stability threshold of tf_adaptive's optimizers and of
  Keras's built-ins.
* `analysis_tools.thresholds`: the stability thresholds and growth factors
  (shared with the optimizers in `tf_adaptive`).
"""

from analysis_tools import preconditioners, thresholds

__all__ = ["preconditioners", "thresholds"]
