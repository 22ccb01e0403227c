"""Training callbacks (``flowlearn.callbacks.EarlyStopping``, ...), as ``keras.callbacks`` offers them.

The classes live in :mod:`flowlearn.layers.callbacks`; this module re-exports them, and adds
:class:`TensorBoard`, which lives in :mod:`flowlearn.io.tensorboard` beside its writer (layers never
import io; this top-level module may).
"""
from .layers.callbacks import *  # noqa: F401,F403
from .layers.callbacks import __all__ as _layer_callbacks
from .io.tensorboard import TensorBoard

__all__ = list(_layer_callbacks) + ["TensorBoard"]
