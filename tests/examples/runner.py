"""Runs an example script in a subprocess, as a user would, and reads back what it wrote."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_example(script, output_dir, flags, figures=(), results_file="results.json", timeout=300):
    """Runs `examples/<script>.py --output_dir=<output_dir> <flags>` from the repository root.

    Asserts that it exits with 0, that every name in `figures` is a PNG of more
    than 10 kB in `output_dir`, and that it printed its verdict table. Returns
    `(stdout, results)`, `results` being the parsed `results_file`.
    """
    result = subprocess.run(
        [sys.executable, os.path.join("examples", f"{script}.py"), f"--output_dir={output_dir}", *flags],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env=dict(os.environ, PYTHONPATH=ROOT),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for name in figures:
        assert os.path.getsize(os.path.join(output_dir, name)) > 10_000, name
    assert "Paper claim vs this run" in result.stdout, result.stdout[-3000:]
    with open(os.path.join(output_dir, results_file)) as handle:
        return result.stdout, json.load(handle)
