"""Runs an example script through its `__main__` entry point, as `python examples/<script>.py` does.

The script runs in the test's own interpreter rather than a subprocess: each
subprocess spent ~8 s importing TensorFlow, TFP and KerasHub before its first
step, fourteen times per suite. What a subprocess would give for free is done
here explicitly, so that one example cannot see another's state:

- `sys.argv` is the script's path and flags, and the script's folder is first
  on `sys.path` (its `import _common`);
- the absl flags the script defines are removed after it ends, and so are the
  modules it imported from `examples/`, so the next script defines its own;
- its exit status is the `SystemExit` that `absl.app.run` raises, and its
  standard output is captured.

`tests/test_wheel.py` still runs the quickstart in a fresh interpreter, from
outside the source tree.
"""

import contextlib
import io
import json
import os
import runpy
import sys

from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples")


def run_script(script, flags_):
    """Runs `examples/<script>.py <flags_>` in this interpreter; returns its standard output.

    Raises AssertionError with the end of the output if the script exits with
    a non-zero status (or an exception, which propagates as it would have
    ended the process).
    """
    path = os.path.join(EXAMPLES, f"{script}.py")
    defined = set(flags.FLAGS)
    modules = set(sys.modules)
    argv, search_path = sys.argv, list(sys.path)
    sys.argv = [path, *flags_]
    sys.path.insert(0, EXAMPLES)
    output = io.StringIO()
    status = 0
    try:
        with contextlib.redirect_stdout(output):
            runpy.run_path(path, run_name="__main__")
    except SystemExit as exit_:
        status = exit_.code
    finally:
        sys.argv, sys.path[:] = argv, search_path
        for name in set(flags.FLAGS) - defined:
            delattr(flags.FLAGS, name)
        for name in set(sys.modules) - modules:
            if os.path.dirname(getattr(sys.modules[name], "__file__", None) or "") == EXAMPLES:
                del sys.modules[name]
    stdout = output.getvalue()
    assert status in (0, None), f"{script} exited with {status}:\n{stdout[-3000:]}"
    return stdout


def run_example(script, output_dir, flags_, figures=(), results_file="results.json"):
    """Runs `examples/<script>.py --output_dir=<output_dir> <flags_>` and reads back what it wrote.

    Asserts that it exits with 0, that every name in `figures` is a PNG of more
    than 10 kB in `output_dir`, and that it printed its verdict table. Returns
    `(stdout, results)`, `results` being the parsed `results_file`.
    """
    stdout = run_script(script, [f"--output_dir={output_dir}", *flags_])
    for name in figures:
        assert os.path.getsize(os.path.join(output_dir, name)) > 10_000, name
    assert "Paper claim vs this run" in stdout, stdout[-3000:]
    with open(os.path.join(output_dir, results_file)) as handle:
        return stdout, json.load(handle)
