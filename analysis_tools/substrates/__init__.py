"""The package's TFP distributions on TFP's other substrates: `analysis_tools.substrates.jax`.

TensorFlow Probability runs its distributions on JAX and NumPy through
substrates, copies of its TensorFlow source whose imports are rewritten to a
TensorFlow-API shim over the other framework. This package does the same
for its own two laws, `AdaptiveUpdate` (Zhang and Ziyin, Theorem 1) and
`SymmetricAlphaStable`, so that a user of Keras on JAX can fit the update
law and the noise law with `jax.grad` and `jax.jit`:

    from analysis_tools.substrates import jax as substrate
    law = substrate.AdaptiveUpdate(5.0)                  # a tfp.substrates.jax distribution
    law.log_prob(x), law.cdf(x), law.quantile(p), law.sample(10, seed=jax.random.PRNGKey(0))

There is one source for each law (`analysis_tools/updates/law.py`,
`analysis_tools/noise/alpha_stable.py`); `load` rewrites its imports when the
substrate is first used (`_substrate.py`). Seeds follow the substrate's
rules: JAX needs an explicit `jax.random.PRNGKey` (or an int) for `sample`.
"""

import importlib

SUBSTRATES = ("jax",)
__all__ = []  # the substrates are modules: `from analysis_tools.substrates import jax`


def __getattr__(name):
    if name in SUBSTRATES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
