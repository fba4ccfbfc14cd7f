"""What several benchmarks share: the peak RSS, a median time, and measurement callbacks timing their measurements."""

import resource
import sys
import time

from analysis_tools import SharpnessCallback, SharpnessTracker


def median_seconds(function, repeats):
    """The median wall time of `repeats` calls of `function()`, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def peak_rss_mb():
    """The process's peak resident set size so far, in MB (ru_maxrss: kB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


class _Timed:
    """Mixed into a measurement callback: records how long each `measure()` takes (``seconds``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seconds = []

    def measure(self):
        start = time.perf_counter()
        record = super().measure()
        self.seconds.append(time.perf_counter() - start)
        return record


class TimedSharpnessCallback(_Timed, SharpnessCallback):
    """`SharpnessCallback` that also records how long each `measure()` takes (``seconds``)."""


class TimedSharpnessTracker(_Timed, SharpnessTracker):
    """`SharpnessTracker` that also records how long each `measure()` takes (``seconds``)."""
