"""README.md and the user guide as a specification: every ```python block runs as written.

The blocks of README.md, then those of the guide's pages (`GUIDE`), are run in
order in one fresh namespace, as a reader runs them: the README's quickstart
defines the data (`x`, `y`, scikit-learn's bundled digits) and the `model`
that the later blocks measure. A failure names the file, the block and its
line. The optimizer table is checked against the classes.
"""

import inspect
import os
import re
import warnings

import keras
import pytest

import tf_adaptive

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
# The guide's pages with code, in the order the documentation's navigation gives them.
GUIDE = [
    os.path.join(ROOT, "docs", "guide", f"{page}.md") for page in ("optimizers", "curvature", "updates", "noise", "tpu")
]
_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _read(path=README):
    with open(path, encoding="utf-8") as file:
        return file.read()


def python_blocks(path=README):
    """(first line in the file, source) of every ```python block, in order."""
    text = _read(path)
    return [(text.count("\n", 0, match.start(1)) + 1, match.group(1)) for match in _PYTHON_BLOCK.finditer(text)]


def test_the_python_blocks_are_found():
    blocks = python_blocks()
    assert len(blocks) >= 4 and all(source.strip() for _, source in blocks)
    for page in GUIDE:
        assert python_blocks(page), page


def test_the_readme_is_a_short_user_guide():
    """At most ~250 lines, and no figure that goes stale: no test count, no run time of this machine."""
    text = _read()
    assert len(text.splitlines()) <= 250
    assert not re.search(r"\d+ (tests|passed)|\d+ (s|min|minutes|seconds)\b", text)


@pytest.mark.slow
def test_every_python_block_runs_as_written_in_order():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the measurement blocks need the TensorFlow backend")
    pytest.importorskip("sklearn")
    keras.utils.set_random_seed(0)
    namespace = {"__name__": "readme"}
    with warnings.catch_warnings():
        # The README speaks the current vocabulary: a deprecated name of analysis_tools fails the block.
        warnings.filterwarnings(
            "error", message=r"`[\w.]+` is deprecated; use", category=DeprecationWarning, module="readme"
        )
        for path in [README] + GUIDE:
            for number, (line, source) in enumerate(python_blocks(path), 1):
                # Padded so that a traceback gives the block's line numbers in the file.
                name = os.path.relpath(path, ROOT)
                code = compile("\n" * (line - 1) + source, f"{name} (python block {number})", "exec")
                exec(code, namespace)
    # What the blocks' comments promise.
    assert namespace["stability_threshold_of"](namespace["optimizer"]) == pytest.approx(38.0 / 1e-3)
    assert namespace["fit"].m == pytest.approx(10.0, rel=0.05)
    assert "preconditioned_sharpness" in namespace["history"].history


def _table_row(name):
    rows = [row for row in _read().splitlines() if row.startswith(f"| `{name}` |")]
    assert len(rows) == 1, name
    return [cell.strip() for cell in rows[0].strip("|").split(" | ")]


@pytest.mark.parametrize("name", ["HeavyBall", "Nesterov"])
def test_the_optimizer_table_names_the_momentum_argument(name):
    defaults = _table_row(name)[-1]
    assert "β=`momentum`=0.9" in defaults, defaults
    parameters = inspect.signature(getattr(tf_adaptive, name)).parameters
    assert parameters["momentum"].default == 0.9 and "beta" not in parameters
