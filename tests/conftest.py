"""Test set-up: quiet logs, and two logical CPU devices for tf.distribute tests."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf

    _cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(_cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)


# The files with the longest tests (a minute each, some in a subprocess), started before the other slow ones:
# a long test that starts last decides when the suite ends.
_LONGEST_FIRST = (
    "tests/test_other_backends.py",
    "tests/test_readme.py",
    "tests/analysis_tools/test_zoo.py",
    "tests/examples/",
)


def _start_order(item):
    if item.get_closest_marker("slow") is None:
        return 2
    return 0 if item.nodeid.startswith(_LONGEST_FIRST) else 1


def pytest_collection_modifyitems(config, items):
    """The longest tests first, then the other `slow` ones (each in collection order), then the rest.

    The two workers take tests as they free up (`--dist worksteal`), so with the long tests
    started first, the short ones fill in at the end and the workers finish together.
    """
    items.sort(key=_start_order)
