"""Runs an example script in a process of its own, as `python examples/<script>.py` does, and reads back what it wrote.

Each script runs through its `__main__` entry point in a child forked from a
`multiprocessing` fork server that has imported TensorFlow, TFP, KerasHub and
the package once: a fresh interpreter per script spent ~8 s on those imports
before its first step. The child is still a process of its own: its flags,
modules, Keras state and memory end with it, and leave the test's worker as
they found it.

`tests/test_wheel.py` runs the quickstart in a fresh interpreter, from
outside the source tree.
"""

import contextlib
import json
import multiprocessing
import os
import runpy
import sys
import tempfile
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples")
# Imported once by the fork server, before any TensorFlow runtime exists to be forked.
PRELOAD = [
    "tensorflow",
    "keras",
    "tensorflow_probability",
    "keras_hub",
    "matplotlib.pyplot",
    "sklearn",
    "tf_adaptive",
    "analysis_tools",
]
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(PRELOAD)


def _main(path, argv, stdout, stderr):
    """The child: `path` as `__main__` with `argv`, its standard output and error written to two files."""
    sys.argv = [path, *argv]
    sys.path.insert(0, os.path.dirname(path))
    status = 0
    with open(stdout, "w") as out, open(stderr, "w") as err:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                runpy.run_path(path, run_name="__main__")
            except SystemExit as exit_:
                status = exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 1
            except BaseException:
                traceback.print_exc()
                status = 1
    os._exit(status)  # the script's status, without the fork server's clean-up


def run_script(script, argv, timeout=900):
    """Runs `examples/<script>.py <argv>` in a child process; returns its standard output.

    Raises AssertionError with the end of the output if the script exits with
    a non-zero status or takes more than `timeout` seconds.
    """
    path = os.path.join(EXAMPLES, f"{script}.py")
    with tempfile.TemporaryDirectory() as folder:
        stdout, stderr = os.path.join(folder, "stdout"), os.path.join(folder, "stderr")
        process = _CONTEXT.Process(target=_main, args=(path, list(argv), stdout, stderr))
        process.start()
        process.join(timeout)
        if process.exitcode is None:
            process.kill()
            process.join()
        printed, errors = (_read(name) for name in (stdout, stderr))
    assert process.exitcode == 0, f"{script} exited with {process.exitcode}:\n{printed[-2000:]}\n{errors[-3000:]}"
    return printed


def _read(name):
    """The text of file `name`, or "" if the child ended before writing it."""
    if not os.path.exists(name):
        return ""
    with open(name) as handle:
        return handle.read()


def run_example(script, output_dir, argv, figures=(), results_file="results.json", timeout=900):
    """Runs `examples/<script>.py --output_dir=<output_dir> <argv>` and reads back what it wrote.

    Asserts that it exits with 0, that every name in `figures` is a PNG of more
    than 10 kB in `output_dir`, and that it printed its verdict table. Returns
    `(stdout, results)`, `results` being the parsed `results_file`.
    """
    printed = run_script(script, [f"--output_dir={output_dir}", *argv], timeout=timeout)
    for name in figures:
        assert os.path.getsize(os.path.join(output_dir, name)) > 10_000, name
    assert "Paper claim vs this run" in printed, printed[-3000:]
    with open(os.path.join(output_dir, results_file)) as handle:
        return printed, json.load(handle)
