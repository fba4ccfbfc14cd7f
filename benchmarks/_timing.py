"""What several benchmark scripts share: a `SharpnessCallback` that times its measurements."""

import time

from analysis_tools import SharpnessCallback


class TimedSharpnessCallback(SharpnessCallback):
    """`SharpnessCallback` that also records how long each `measure()` takes (``seconds``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seconds = []

    def measure(self):
        start = time.perf_counter()
        record = super().measure()
        self.seconds.append(time.perf_counter() - start)
        return record
