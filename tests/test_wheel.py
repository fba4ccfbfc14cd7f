"""The distributions `python -m build` makes hold the whole package: the wheel runs the quickstart.

The wheel is installed (without its dependencies, which the test environment
has) into a fresh virtual environment that sees the system's site-packages,
and the README's quickstart block runs with that environment's Python from a
directory outside the source tree, so that a module or data file missing from
the wheel fails it. The sdist must carry the LICENSE and the changelog.
"""

import os
import pathlib
import re
import subprocess
import sys
import tarfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _quickstart():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.search(r"^```python\n(.*?)^```", text, re.DOTALL | re.MULTILINE).group(1)


@pytest.mark.slow
def test_the_built_wheel_runs_the_quickstart_outside_the_source_tree(tmp_path):
    dist = tmp_path / "dist"
    # No isolation: the build backend (setuptools) is taken from this environment, nothing is fetched.
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
    )
    wheels, sdists = list(dist.glob("*.whl")), list(dist.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1
    with tarfile.open(sdists[0]) as sdist:
        names = {pathlib.PurePath(name).name for name in sdist.getnames()}
    assert {"LICENSE", "CHANGELOG.md", "README.md", "setup.cfg"} <= names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--quiet", str(wheels[0])], check=True)
    script = tmp_path / "quickstart.py"
    script.write_text(
        _quickstart().replace("model.fit(x, y, epochs=15)", "model.fit(x, y, epochs=1, verbose=0)")
        + "\nimport analysis_tools\n"
        + "print(tf_adaptive.__file__, analysis_tools.__file__, optimizer.stability_threshold())\n"
    )
    environment = dict(os.environ, PYTHONPATH="", TF_CPP_MIN_LOG_LEVEL="2")
    run = subprocess.run([str(python), str(script)], cwd=tmp_path, capture_output=True, text=True, env=environment)
    assert run.returncode == 0, run.stderr[-3000:]
    paths = run.stdout.split()[-3:-1]
    # The installed copy, not the checkout (an editable install of the checkout may be on the system path).
    assert all(str(venv) in path for path in paths), run.stdout
