"""Training callbacks (``flowlearn.callbacks.EarlyStopping``, ...), as ``keras.callbacks`` offers them.

The classes live in :mod:`flowlearn.layers.callbacks`; this module re-exports them.
"""
from .layers.callbacks import *  # noqa: F401,F403
from .layers.callbacks import __all__  # noqa: F401
