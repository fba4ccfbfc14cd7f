"""The optimizers under test, each with its NumPy reference and test hyperparameters."""

import dataclasses

import numpy as np

import tf_adaptive
from tests.reference import numpy_optimizers as reference

SHAPES = [(4, 3), (3,)]


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    cls: type
    reference: type
    hyperparameters: dict
    learning_rate: float

    def make(self, **overrides):
        kwargs = dict(self.hyperparameters, learning_rate=self.learning_rate)
        kwargs.update(overrides)
        return self.cls(**kwargs)

    def make_reference(self, shapes=SHAPES):
        return self.reference(shapes, **self.hyperparameters)


CASES = [
    Case("ACClip", tf_adaptive.ACClip, reference.ACClip,
         dict(beta_1=0.9, beta_2=0.99, epsilon=1e-5, alpha=1.0), 0.01),
    Case("ACClip-alpha1.5", tf_adaptive.ACClip, reference.ACClip,
         dict(beta_1=0.8, beta_2=0.9, epsilon=1e-3, alpha=1.5), 0.01),
    Case("GClip", tf_adaptive.GClip, reference.GClip, dict(beta_1=0.8, threshold=0.6), 0.05),
    Case("CClip", tf_adaptive.CClip, reference.CClip, dict(beta_1=0.8, threshold=0.3), 0.05),
    Case("RAdam", tf_adaptive.RAdam, reference.RAdam,
         dict(beta_1=0.9, beta_2=0.99, epsilon=1e-8), 0.01),
    Case("RAdam-no-sgd-phase", tf_adaptive.RAdam, reference.RAdam,
         dict(beta_1=0.9, beta_2=0.999, epsilon=1e-6, rectification_threshold=4.0,
              degenerated_to_sgd=False), 0.01),
    Case("SSD", tf_adaptive.SSD, reference.SSD, {}, 0.01),
    Case("MSSD", tf_adaptive.MSSD, reference.MSSD, dict(beta=0.8), 0.01),
    Case("SVAG", tf_adaptive.SVAG, reference.SVAG, dict(beta=0.8), 0.05),
    Case("MSVAG", tf_adaptive.MSVAG, reference.MSVAG, dict(beta=0.8), 0.05),
]

ONE_PER_CLASS = [case for case in CASES if "-" not in case.id]


def gradient_stream(steps, shapes=SHAPES, seed=0):
    """Heavy-tailed gradients around a fixed mean: signal and noise for every method."""
    rng = np.random.default_rng(seed)
    means = [rng.normal(size=s) for s in shapes]
    for _ in range(steps):
        yield [(mu + 0.5 * rng.standard_t(3, size=mu.shape)).astype("float32") for mu in means]


def initial_values(shapes=SHAPES, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s).astype("float32") for s in shapes]
