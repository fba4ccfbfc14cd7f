"""Keras optimizers with an exposed preconditioner, momentum, second moment and stability threshold."""

from tf_adaptive._base import SecondMoment
from tf_adaptive.acclip import ACClip
from tf_adaptive.adafactor import Adafactor
from tf_adaptive.adagrad import Adagrad
from tf_adaptive.adam import Adam, Nadam, Padam
from tf_adaptive.clipped_sgd import CClip, GClip
from tf_adaptive.frozen import FrozenAdam
from tf_adaptive.laprop import LaProp
from tf_adaptive.momentum import HeavyBall, Nesterov
from tf_adaptive.radam import RAdam
from tf_adaptive.rmsprop import RMSProp
from tf_adaptive.sign import MSSD, SSD
from tf_adaptive.svag import MSVAG, SVAG

__version__ = "0.3.0"

__all__ = [
    "ACClip",
    "Adafactor",
    "Adagrad",
    "Adam",
    "CClip",
    "FrozenAdam",
    "GClip",
    "HeavyBall",
    "LaProp",
    "MSSD",
    "MSVAG",
    "Nadam",
    "Nesterov",
    "Padam",
    "RAdam",
    "RMSProp",
    "SSD",
    "SVAG",
    "SecondMoment",
]
