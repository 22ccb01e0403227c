"""Argument checks shared by the optimizers and the learning-rate schedules."""
import math
import numbers


def check_real(owner, name, value, low=None, high=None, low_open=False, high_open=False):
    """``value`` as a Python float, or an error naming ``owner``, the argument and the range.

    >>> check_real("SGD", "momentum", 0.9, 0.0, 1.0)
    0.9
    """
    if type(value) is not float:  # the common case skips the (slower) abstract-class check
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{owner}: expected a number for `{name}`; got {name}={value!r} ({type(value).__name__}).")
        value = float(value)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if not math.isfinite(value) or too_low or too_high:
        raise ValueError(
            f"{owner}: received an invalid value for `{name}`, expected a finite number "
            f"{_describe_range(low, high, low_open, high_open)}. Received: {name}={value!r}"
        )
    return value


def _describe_range(low, high, low_open, high_open):
    """The allowed range in words: "> 0.0", ">= 0.0", "<= 1.0" or "in [0.0, 1.0)"."""
    if low is None and high is None:
        return "(any value)"
    if high is None:
        return (">" if low_open else ">=") + f" {float(low)!r}"
    if low is None:
        return ("<" if high_open else "<=") + f" {float(high)!r}"
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    return f"in {left}{float(low)!r}, {float(high)!r}{right}"


def check_optional_positive(owner, name, value):
    """None, or ``value`` as a float > 0 (the clipping thresholds, weight decay)."""
    return None if value is None else check_real(owner, name, value, 0.0, None, low_open=True)


def check_bool(owner, name, value):
    if not isinstance(value, bool):
        raise TypeError(f"{owner}: expected True or False for `{name}`; got {name}={value!r}.")
    return value


def check_positive_int(owner, name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{owner}: expected a positive integer for `{name}`; got {name}={value!r}.")
    return int(value)
