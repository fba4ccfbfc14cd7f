"""Benchmarks that compare this checkout with an earlier revision of it, side by side in one run."""

import json
import os
import subprocess
import sys
import tempfile

from absl import flags

flags.DEFINE_string("baseline", None, "The git revision to compare with.")
flags.DEFINE_integer("rounds", 3, "Alternating runs of each version.")
flags.DEFINE_string("child", None, "Internal: a setting to measure with the code on sys.path.")


def compare(script, measure, settings):
    """The main of a comparing script: `against_baseline` with the flags, or, in a child, one measurement.

    In a child (``--child=<setting>``) prints ``measure(setting)`` as JSON
    and returns None.
    """
    options = flags.FLAGS
    if options.child:
        print(json.dumps(measure(options.child)))
        return None
    if not options.baseline:
        raise SystemExit("Pass --baseline=<git revision>.")
    return against_baseline(script, options.baseline, settings, options.rounds)


def against_baseline(script, baseline, settings, rounds):
    """Runs ``script --child=<setting>`` on this checkout and on a baseline revision, alternately.

    The baseline is extracted with ``git archive``; each run is a fresh
    interpreter with that tree first on ``PYTHONPATH``, and must print its
    results as one JSON object on its last line. Returns
    ``{setting: {"this": [...], "baseline": [...]}}``, ``rounds`` results each.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def run(code, setting):
        env = dict(os.environ, PYTHONPATH=code + os.pathsep + os.path.join(root, "benchmarks"))
        output = subprocess.run(
            [sys.executable, os.path.abspath(script), f"--child={setting}"],
            cwd=code,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return json.loads(output.strip().splitlines()[-1])

    results = {}
    with tempfile.TemporaryDirectory() as tree:
        archive = subprocess.run(["git", "archive", baseline], cwd=root, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
        for setting in settings:
            results[setting] = {"this": [], "baseline": []}
            for _ in range(rounds):
                results[setting]["baseline"].append(run(tree, setting))
                results[setting]["this"].append(run(root, setting))
    return results


def median(values):
    values = sorted(values)
    return values[len(values) // 2]
