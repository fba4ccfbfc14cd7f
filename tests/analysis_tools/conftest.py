"""The measurement subpackages run on TensorFlow; elsewhere only the backend-agnostic tests run.

`analysis_tools.curvature`, `.updates` and `.noise` differentiate and sample
with TensorFlow and TFP, and the callback base refuses other backends in its
constructor, so their tests are collected on the TensorFlow backend only
(`tests/test_analysis_tools_backend.py` checks the refusal on JAX).
`test_preconditioners.py` (written in `keras.ops`) runs on every backend; the
model zoo (`test_zoo.py`) measures with TensorFlow too.
"""

import keras

collect_ignore_glob = (
    []
    if keras.backend.backend() == "tensorflow"
    else [
        "curvature/*",
        "updates/*",
        "noise/*",
        "test_callback_base.py",
        "test_zoo.py",
        "test_second_order.py",
        "test_vocabulary.py",
        "test_replica_programs.py",
        "test_step_hook.py",
        "test_substrates.py",
    ]
)
