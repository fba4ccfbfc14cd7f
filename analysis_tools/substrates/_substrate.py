"""Loads a module of this package on one of TFP's substrates by rewriting its imports.

TFP builds its JAX and NumPy substrates from its TensorFlow source the same
way (its `rewrite.py`): `import tensorflow as tf` becomes its TensorFlow-API
shim for the framework, and its own internal imports their substrate copies.
The modules loaded here import nothing else of this package, so the rewrite
is of three import lines.
"""

import importlib
import inspect
import sys
import types

_IMPORTS = {
    "jax": (
        (
            "import tensorflow as tf\n",
            "from tensorflow_probability.python.internal.backend.jax.compat import v2 as tf\n",
        ),
        ("import tensorflow_probability as tfp\n", "from tensorflow_probability.substrates import jax as tfp\n"),
        # The modules, not `...internal.reparameterization`, which TFP's substrates share with TensorFlow.
        (
            "from tensorflow_probability.python.internal import ",
            "from tensorflow_probability.substrates.jax.internal import ",
        ),
    ),
}


def _import_tfp_jax():
    """`tensorflow_probability.substrates.jax`, on the installed JAX.

    TFP 0.25 reads `jax.interpreters.xla.pytype_aval_mappings`, which JAX 0.4.36
    moved to `jax.core` (`jax._src.core`); without the old name the substrate
    does not import at all. The name is given back where it is missing.
    """
    import jax.interpreters.xla as xla

    if not hasattr(xla, "pytype_aval_mappings"):
        from jax._src import core

        xla.pytype_aval_mappings = core.pytype_aval_mappings
    return importlib.import_module("tensorflow_probability.substrates.jax")


def load(module_name, substrate):
    """The module `module_name` (of this package) with its imports rewritten for `substrate`."""
    if substrate not in _IMPORTS:
        raise ValueError(f"`substrate` must be one of {sorted(_IMPORTS)}, got {substrate!r}.")
    name = f"{module_name}._{substrate}"
    if name in sys.modules:
        return sys.modules[name]
    _import_tfp_jax()
    source = inspect.getsource(importlib.import_module(module_name))
    for old, new in _IMPORTS[substrate]:
        if old not in source:
            raise RuntimeError(f"{module_name} has no {old.strip()!r} to rewrite for the {substrate} substrate.")
        source = source.replace(old, new)
    module = types.ModuleType(name)
    module.__file__ = f"<{module_name} on {substrate}>"
    sys.modules[name] = module
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module
