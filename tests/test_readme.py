"""README.md as a specification: every ```python block runs as written, and the optimizer table is right.

The blocks are run in order in one fresh namespace, as a reader runs them: the
quickstart defines the data (`x`, `y`, scikit-learn's bundled digits) and the
`model` that the later blocks measure. A failure names the block and its line
in README.md.
"""

import inspect
import os
import re
import warnings

import keras
import pytest

import tf_adaptive

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _readme():
    with open(README, encoding="utf-8") as file:
        return file.read()


def python_blocks():
    """(first line in README.md, source) of every ```python block, in order."""
    text = _readme()
    return [(text.count("\n", 0, match.start(1)) + 1, match.group(1)) for match in _PYTHON_BLOCK.finditer(text)]


def test_the_python_blocks_are_found():
    blocks = python_blocks()
    assert len(blocks) >= 5 and all(source.strip() for _, source in blocks)


@pytest.mark.slow
def test_every_python_block_runs_as_written_in_order():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the measurement blocks need the TensorFlow backend")
    pytest.importorskip("sklearn")
    keras.utils.set_random_seed(0)
    namespace = {"__name__": "readme"}
    with warnings.catch_warnings():
        # The README speaks the current vocabulary: a deprecated name of analysis_tools fails the block.
        warnings.filterwarnings("error", message=r"`\w+` is deprecated; use", category=DeprecationWarning,
                                module="readme")
        for number, (line, source) in enumerate(python_blocks(), 1):
            # Padded so that a traceback gives the block's line numbers in README.md.
            code = compile("\n" * (line - 1) + source, f"README.md (python block {number})", "exec")
            exec(code, namespace)
    # What the blocks' comments promise.
    assert namespace["stability_threshold_of"](namespace["optimizer"]) == pytest.approx(38.0 / 1e-3)
    assert namespace["fit"].m == pytest.approx(10.0, rel=0.05)
    assert "preconditioned_sharpness" in namespace["history"].history


def _table_row(name):
    rows = [row for row in _readme().splitlines() if row.startswith(f"| `{name}` |")]
    assert len(rows) == 1, name
    return [cell.strip() for cell in rows[0].strip("|").split(" | ")]


@pytest.mark.parametrize("name", ["HeavyBall", "Nesterov"])
def test_the_optimizer_table_names_the_momentum_argument(name):
    defaults = _table_row(name)[-1]
    assert "β=`momentum`=0.9" in defaults, defaults
    parameters = inspect.signature(getattr(tf_adaptive, name)).parameters
    assert parameters["momentum"].default == 0.9 and "beta" not in parameters
