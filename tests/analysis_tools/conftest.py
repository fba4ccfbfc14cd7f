"""The measurement subpackages run on TensorFlow; elsewhere only the backend-agnostic tests run.

`analysis_tools.curvature`, `.updates` and `.noise` differentiate and sample
with TensorFlow and TFP, so their tests are collected on the TensorFlow
backend only. `test_preconditioners.py` (written in `keras.ops`) runs on
every backend.
"""

import keras

collect_ignore_glob = (
    [] if keras.backend.backend() == "tensorflow" else ["curvature/*", "updates/*", "noise/*"]
)
