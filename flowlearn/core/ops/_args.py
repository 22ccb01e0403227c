"""Argument helpers shared by the op modules: integers, axes, shapes and dtypes, so that every op
reports a bad argument the same way."""
import operator

import numpy

from ..config import floatx
from ..tensor import as_tensor


def as_int(op, name, value):
    """``value`` as a Python int, or a TypeError naming ``op`` and the argument."""
    try:
        if isinstance(value, (bool, numpy.bool_)):
            raise TypeError  # an index, but almost surely a mistake for a size or an axis
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{op}: expected `{name}` to be an integer; got {value!r}.") from None


def normalize_axis(op, axis, ndim, name="axis"):
    """``axis`` (negative counts from the end) as an int in ``[0, ndim)``, or a ValueError naming ``op``."""
    index = as_int(op, name, axis)
    if not -ndim <= index < ndim:
        valid = f"an integer in [{-ndim}, {ndim - 1}]" if ndim else "no axis (the tensor is 0-d)"
        raise ValueError(f"{op}: `{name}`={axis} is out of range for a tensor of rank {ndim}; expected {valid}.")
    return index % ndim


def normalize_axes(op, axis, ndim):
    """None stays None (all axes); an int or a sequence becomes a sorted tuple of distinct axes."""
    if axis is None:
        return None
    if isinstance(axis, (tuple, list)):
        axes = tuple(sorted(normalize_axis(op, a, ndim) for a in axis))
        if len(set(axes)) != len(axes):
            raise ValueError(f"{op}: expected distinct axes; got axis={tuple(axis)}.")
        return axes
    return (normalize_axis(op, axis, ndim),)


def shape_tuple(op, name, shape):
    """An int or a sequence of ints as a tuple of Python ints."""
    if isinstance(shape, (tuple, list)):
        return tuple(as_int(op, name, n) for n in shape)
    return (as_int(op, name, shape),)


def float_input(op, x):
    """``x`` as a Tensor that must be float already: a TypeError naming ``op`` otherwise."""
    x = as_tensor(x)
    if x.data.dtype.kind != "f":
        raise TypeError(f"{op}: expected a float tensor; got dtype {x.dtype}. Cast with .astype('float32') first.")
    return x


def as_float(x):
    """``x`` as a float Tensor: integer and boolean tensors are cast to the default float dtype."""
    x = as_tensor(x)
    if x.data.dtype.kind != "f":
        x = x.astype(floatx())
    return x


def common_dtype(tensors):
    """``tensors`` cast to one dtype: the widest float among them when any is float (so an integer
    operand never drags float32 up to float64), else numpy's promotion of them all."""
    dtypes = {t.data.dtype for t in tensors}
    if len(dtypes) == 1:
        return tensors
    floats = [d for d in dtypes if d.kind == "f"]
    target = numpy.result_type(*(floats or dtypes))
    return [t if t.data.dtype == target else t.astype(target) for t in tensors]
