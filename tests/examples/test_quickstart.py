"""The README's main example runs on the embedded data and every optimizer learns."""

import math

import keras
import pytest

import tf_adaptive
from tests.examples.runner import run_script

OPTIMIZERS = [
    name for name in tf_adaptive.__all__ if issubclass(getattr(tf_adaptive, name), keras.optimizers.Optimizer)
]


@pytest.mark.slow
def test_quickstart_trains_every_optimizer_and_prints_the_table():
    # Without XLA: the table in half the time (every optimizer's XLA-compiled fit is
    # tests/tf_adaptive/test_execution.py's).
    stdout = run_script("quickstart", ["--epochs=3", "--nojit_compile"])
    rows = {}
    for line in stdout.splitlines():
        fields = line.rsplit(maxsplit=6)
        if len(fields) == 7 and fields[0] in ("keras Adam", *OPTIMIZERS):
            rows[fields[0]] = [None if f == "none" else float(f) for f in fields[1:]]
    assert len(rows) == 1 + len(OPTIMIZERS), stdout
    for name, (learning_rate, train_loss, test_loss, accuracy, threshold, seconds) in rows.items():
        # Cross-entropy at chance is ln 10 ≈ 2.30; every method must be well below it.
        assert train_loss < 0.5 * math.log(10.0), (name, train_loss)
        assert accuracy > 0.5, (name, accuracy)
        if name in ("SSD", "MSSD"):  # sign descent: no stability threshold
            assert threshold is None, name
        else:
            assert threshold > 0, name
    assert rows["keras Adam"][4] == pytest.approx(38.0 / 1e-3, rel=1e-4)  # (2 + 2β1)/((1 - β1)η)
