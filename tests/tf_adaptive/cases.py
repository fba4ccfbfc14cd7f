"""The optimizers under test, each with its NumPy reference and test hyperparameters."""

import dataclasses

import numpy as np

import tf_adaptive
from tests.reference import numpy_adam_family as family
from tests.reference import numpy_optimizers as reference
from tf_adaptive import thresholds

SHAPES = [(4, 3), (3,)]


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    cls: type
    reference: type
    hyperparameters: dict
    learning_rate: float
    momentum_type: str = thresholds.EMA_HEAVY_BALL

    @property
    def beta(self):
        """The momentum coefficient that sets the stability threshold."""
        for name in ("beta_1", "beta", "momentum"):
            if name in self.hyperparameters:
                return self.hyperparameters[name]
        return 0.0

    def make(self, **overrides):
        kwargs = dict(self.hyperparameters, learning_rate=self.learning_rate)
        kwargs.update(overrides)
        return self.cls(**kwargs)

    def make_for_any_shapes(self, **overrides):
        """`make`, without arguments tied to SHAPES (FrozenAdam's preconditioner arrays)."""
        if "preconditioner" in self.hyperparameters:
            overrides.setdefault("preconditioner", None)
        return self.make(**overrides)

    def make_reference(self, shapes=SHAPES):
        return self.reference(shapes, **self.hyperparameters)


CASES = [
    Case("ACClip", tf_adaptive.ACClip, reference.ACClip, dict(beta_1=0.9, beta_2=0.99, epsilon=1e-5, alpha=1.0), 0.01),
    Case(
        "ACClip-alpha1.5",
        tf_adaptive.ACClip,
        reference.ACClip,
        dict(beta_1=0.8, beta_2=0.9, epsilon=1e-3, alpha=1.5),
        0.01,
    ),
    Case("GClip", tf_adaptive.GClip, reference.GClip, dict(beta_1=0.8, threshold=0.6), 0.05),
    Case("CClip", tf_adaptive.CClip, reference.CClip, dict(beta_1=0.8, threshold=0.3), 0.05),
    Case("RAdam", tf_adaptive.RAdam, reference.RAdam, dict(beta_1=0.9, beta_2=0.99, epsilon=1e-8), 0.01),
    Case(
        "RAdam-no-sgd-phase",
        tf_adaptive.RAdam,
        reference.RAdam,
        dict(beta_1=0.9, beta_2=0.999, epsilon=1e-6, rectification_threshold=4.0, degenerated_to_sgd=False),
        0.01,
    ),
    Case("SSD", tf_adaptive.SSD, reference.SSD, {}, 0.01, thresholds.NONE),
    Case("MSSD", tf_adaptive.MSSD, reference.MSSD, dict(beta=0.8), 0.01),
    Case("SVAG", tf_adaptive.SVAG, reference.SVAG, dict(beta=0.8), 0.05, thresholds.NONE),
    Case("MSVAG", tf_adaptive.MSVAG, reference.MSVAG, dict(beta=0.8), 0.05),
]


def _frozen_preconditioner(shapes=SHAPES, seed=2):
    rng = np.random.default_rng(seed)
    return [rng.uniform(0.5, 2.0, size=s).astype("float32") for s in shapes]


CASES += [
    Case("Adam", tf_adaptive.Adam, family.Adam, dict(beta_1=0.9, beta_2=0.99, epsilon=1e-8), 0.01),
    Case(
        "Adam-amsgrad-uncorrected",
        tf_adaptive.Adam,
        family.Adam,
        dict(beta_1=0.8, beta_2=0.9, epsilon=1e-6, bias_correction=False, amsgrad=True),
        0.01,
    ),
    Case("Padam", tf_adaptive.Padam, family.Padam, dict(beta_1=0.9, beta_2=0.99, epsilon=1e-8, partial=0.25), 0.01),
    Case(
        "Padam-corrected",
        tf_adaptive.Padam,
        family.Padam,
        dict(beta_1=0.9, beta_2=0.99, epsilon=1e-8, partial=0.125, bias_correction=True, amsgrad=False),
        0.01,
    ),
    Case(
        "Nadam",
        tf_adaptive.Nadam,
        family.Nadam,
        dict(beta_1=0.9, beta_2=0.99, epsilon=1e-8),
        0.01,
        thresholds.EMA_NESTEROV,
    ),
    Case(
        "Nadam-uncorrected",
        tf_adaptive.Nadam,
        family.Nadam,
        dict(beta_1=0.8, beta_2=0.99, epsilon=1e-6, bias_correction=False),
        0.01,
        thresholds.EMA_NESTEROV,
    ),
    Case("RMSProp", tf_adaptive.RMSProp, family.RMSProp, dict(beta_2=0.9, epsilon=1e-7), 0.01, thresholds.NONE),
    Case(
        "Adagrad",
        tf_adaptive.Adagrad,
        family.Adagrad,
        dict(epsilon=1e-7, initial_accumulator_value=0.1),
        0.05,
        thresholds.NONE,
    ),
    Case(
        "Adafactor",
        tf_adaptive.Adafactor,
        family.Adafactor,
        dict(beta_1=0.9, decay_rate=0.8, epsilon_1=1e-30, epsilon=1e-7, clip_threshold=1.0),
        0.01,
    ),
    Case(
        "Adafactor-plain",
        tf_adaptive.Adafactor,
        family.Adafactor,
        dict(beta_1=0.0, decay_rate=0.8, epsilon_1=1e-30, epsilon=0.0, clip_threshold=None),
        0.01,
        thresholds.NONE,
    ),
    Case("LaProp", tf_adaptive.LaProp, family.LaProp, dict(beta_1=0.9, beta_2=0.99, epsilon=1e-8), 0.01),
    Case(
        "LaProp-uncorrected",
        tf_adaptive.LaProp,
        family.LaProp,
        dict(beta_1=0.8, beta_2=0.99, epsilon=1e-8, bias_correction=False),
        0.01,
    ),
    Case("HeavyBall", tf_adaptive.HeavyBall, family.HeavyBall, dict(momentum=0.9, ema=True), 0.05),
    Case(
        "HeavyBall-standard",
        tf_adaptive.HeavyBall,
        family.HeavyBall,
        dict(momentum=0.8, ema=False),
        0.01,
        thresholds.HEAVY_BALL,
    ),
    Case("HeavyBall-gd", tf_adaptive.HeavyBall, family.HeavyBall, dict(momentum=0.0, ema=False), 0.05, thresholds.NONE),
    Case(
        "Nesterov", tf_adaptive.Nesterov, family.Nesterov, dict(momentum=0.9, ema=True), 0.05, thresholds.EMA_NESTEROV
    ),
    Case(
        "Nesterov-standard",
        tf_adaptive.Nesterov,
        family.Nesterov,
        dict(momentum=0.8, ema=False),
        0.01,
        thresholds.NESTEROV,
    ),
    Case(
        "FrozenAdam",
        tf_adaptive.FrozenAdam,
        family.FrozenAdam,
        dict(beta_1=0.9, epsilon=1e-3, preconditioner=_frozen_preconditioner()),
        0.01,
    ),
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
