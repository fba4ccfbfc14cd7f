"""Test set-up: quiet logs, and two logical CPU devices for tf.distribute tests."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf

    _cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )


def pytest_collection_modifyitems(config, items):
    """The `slow` tests first (in collection order), then the rest.

    The two workers take tests as they free up (`--dist worksteal`), so with the long tests
    started first, the short ones fill in at the end and the workers finish together.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
