"""Keras optimizers with an exposed preconditioner and stability threshold."""

from tf_adaptive.acclip import ACClip
from tf_adaptive.clipped_sgd import CClip, GClip
from tf_adaptive.radam import RAdam
from tf_adaptive.sign import MSSD, SSD
from tf_adaptive.svag import MSVAG, SVAG

__version__ = "0.1.0"

__all__ = ["ACClip", "CClip", "GClip", "MSSD", "MSVAG", "RAdam", "SSD", "SVAG"]
