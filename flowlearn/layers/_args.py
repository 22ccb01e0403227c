"""Argument checks shared by the layers' constructors.

Every message names the layer, the argument, what was expected and what was received, in the form
Keras users know: "Dense: received an invalid value for `units`, expected a positive integer.
Received: units=0".
"""
import numbers

import numpy

from ..core import initializers
from . import regularizers


def invalid(owner, name, expected, value):
    return ValueError(
        f"{owner}: received an invalid value for `{name}`, expected {expected}. Received: {name}={value!r}"
    )


def positive_int(owner, name, value):
    """``value`` as a Python int >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise invalid(owner, name, "a positive integer", value)
    return int(value)


def int_tuple(owner, name, value, length=2):
    """An int or a sequence of ``length`` ints, each >= 1, as a tuple of Python ints."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value_tuple = (value,) * length
    elif isinstance(value, (tuple, list)) and len(value) == length:
        value_tuple = tuple(value)
    else:
        raise invalid(owner, name, f"a positive integer or a tuple of {length} positive integers", value)
    if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1 for v in value_tuple):
        raise invalid(owner, name, f"a positive integer or a tuple of {length} positive integers", value)
    return tuple(int(v) for v in value_tuple)


def choice(owner, name, value, options):
    """``value`` (a string, case-insensitive) as one of ``options``."""
    lowered = value.lower() if isinstance(value, str) else value
    if lowered not in options:
        raise invalid(owner, name, f"one of {options}", value)
    return lowered


def number_in(owner, name, value, low, high, *, high_open=False, low_open=False):
    """``value`` as a float in [low, high] (open at either end when asked)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and numpy.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise invalid(owner, name, f"a number in {interval}", value)
    return float(value)


def shape_tuple(owner, name, value, *, allow_none=False, allow_minus_one=False):
    """A shape without the batch dimension: a tuple of positive ints (None or -1 where allowed)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, (tuple, list)):
        raise invalid(owner, name, "a tuple of positive integers", value)

    def ok(dim):
        if dim is None:
            return allow_none
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
            return False
        return dim >= 1 or (allow_minus_one and dim == -1)

    if not all(ok(d) for d in value) or (allow_minus_one and sum(d == -1 for d in value) > 1):
        kinds = "positive integers" + (" or None" if allow_none else "")
        kinds += " (at most one -1)" if allow_minus_one else ""
        raise invalid(owner, name, f"a tuple of {kinds}", value)
    return tuple(None if d is None else int(d) for d in value)


def boolean(owner, name, value):
    if not isinstance(value, (bool, numpy.bool_)):
        raise invalid(owner, name, "True or False", value)
    return bool(value)


def initializer(owner, name, identifier):
    """An initializer from a name, a config dict or an instance; a bad one names the argument."""
    if identifier is None:
        raise invalid(owner, name, "an initializer name such as 'zeros', a config dict or an Initializer", None)
    try:
        return initializers.get(identifier)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{owner}: received an invalid value for `{name}` ({identifier!r}): {error}") from None


def regularizer(owner, name, identifier):
    """A regularizer (or None) from a name, a config dict or an instance; a bad one names the argument."""
    try:
        return regularizers.get(identifier)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{owner}: received an invalid value for `{name}` ({identifier!r}): {error}") from None
