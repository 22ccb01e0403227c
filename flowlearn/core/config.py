"""Process settings (the default float dtype) and thread-local modes (gradient recording, training).

Each flag is read in one place and flipped only through the context managers here, so a
``with no_grad():`` in one thread never changes what another thread records.
"""
import contextlib
import threading

import numpy

_FLOAT_DTYPES = ("float32", "float64")
_floatx = numpy.dtype("float32")


def floatx():
    """The dtype given to float data when no dtype is asked for (float32 unless changed)."""
    return _floatx


def set_floatx(dtype):
    """Set the default float dtype: "float32" (the default) or "float64".

    "float16" is refused: weights, gradients and optimizer state would all be float16, and without
    float32 master weights and loss scaling (which flowlearn does not implement) small gradients
    underflow to zero and small updates round away, so training stalls silently. Explicit float16
    tensors (``fl.tensor(x, dtype="float16")``) still work with the ops.
    """
    global _floatx
    name = numpy.dtype(dtype).name if dtype is not None else None
    if name == "float16":
        raise ValueError(
            "set_floatx: float16 is not supported as the default float dtype: flowlearn has no float32 master "
            "weights or loss scaling, so float16 training loses small gradients and updates. Received: "
            f"dtype={dtype!r}. Use 'float32' (the default) or 'float64'; fl.tensor(x, dtype='float16') still "
            "makes a float16 tensor for ops."
        )
    if name not in _FLOAT_DTYPES:
        raise ValueError(f"Received an invalid value for `dtype`: expected one of {_FLOAT_DTYPES}, got {dtype!r}.")
    _floatx = numpy.dtype(name)


class _Modes(threading.local):
    def __init__(self):
        self.grad_enabled = True
        self.training = False
        self.tape = None  # list that records every primitive while fl.trace runs


modes = _Modes()


def is_grad_enabled():
    """True when ops record the graph that backward walks."""
    return modes.grad_enabled


def is_training():
    """True inside ``training_mode(True)``: dropout drops, batch norm uses batch statistics."""
    return modes.training


@contextlib.contextmanager
def _flag(name, value):
    previous = getattr(modes, name)
    setattr(modes, name, value)
    try:
        yield
    finally:
        setattr(modes, name, previous)


def no_grad():
    """Context manager in which ops record nothing, as for inference.

    >>> import flowlearn as fl
    >>> x = fl.tensor([1.0, 2.0], requires_grad=True)
    >>> with fl.no_grad():
    ...     y = x * 2
    >>> y.requires_grad
    False
    """
    return _flag("grad_enabled", False)


def enable_grad():
    """Context manager that turns recording back on inside a ``no_grad`` block."""
    return _flag("grad_enabled", True)


def training_mode(training=True):
    """Context manager setting the training flag that dropout and batch normalization read."""
    return _flag("training", bool(training))
