"""Shape and layout: reshape, transpose, expand_dims, squeeze, concat, stack, pad, broadcast_to,
cast, and to_device (the copy between numpy and cupy that ``Tensor.to`` runs)."""
import math

import numpy

__all__ = [
    "reshape", "transpose", "expand_dims", "squeeze", "concat", "stack", "pad", "broadcast_to", "cast",
    "to_device",
]

from .. import backend
from ..primitive import Primitive, apply
from ..tensor import Tensor, as_tensor
from ._args import common_dtype, normalize_axes, normalize_axis, shape_tuple
from ._broadcast import reduce_to_shape


# -- reshape and friends: backward is a reshape back to the input shape -----------------------------
class Reshape(Primitive):
    name = "reshape"
    saves_inputs = False  # backward reads no input values (see Primitive)

    @staticmethod
    def forward(xp, x, shape):
        return x.reshape(shape), x.shape

    @staticmethod
    def backward(xp, grad, input_shape, needs, **attrs):
        return (grad.reshape(input_shape),)


class ExpandDims(Primitive):
    name = "expand_dims"
    saves_inputs = False  # backward reads no input values (see Primitive)

    @staticmethod
    def forward(xp, x, axis):
        return xp.expand_dims(x, axis), x.shape

    backward = Reshape.backward


class Squeeze(Primitive):
    name = "squeeze"
    saves_inputs = False  # backward reads no input values (see Primitive)

    @staticmethod
    def forward(xp, x, axis):
        return xp.squeeze(x, axis=axis), x.shape

    backward = Reshape.backward


def reshape(x, shape, *more):
    """``x`` with a new shape holding the same elements; one dimension may be -1 (inferred).

    Accepts ``reshape(x, (2, 3))`` and ``reshape(x, 2, 3)``. The -1 is kept in the recorded node,
    so a traced ``reshape(x, (-1, 784))`` still works for another batch size.

    >>> import flowlearn as fl
    >>> fl.tensor([1.0, 2.0, 3.0, 4.0]).reshape(2, -1).shape
    (2, 2)
    """
    x = as_tensor(x)
    shape = shape_tuple("reshape", "shape", (shape,) + more if more else shape)
    if shape != x.data.shape:
        _check_reshape(x.data.shape, shape)
    return apply(Reshape, (x,), shape=shape)


def _check_reshape(old, new):
    inferred = new.count(-1)
    if inferred > 1 or any(n < -1 for n in new):
        raise ValueError(
            f"reshape: expected a shape of non-negative sizes with at most one -1; got {new}."
        )
    size, known = math.prod(old), math.prod(n for n in new if n != -1)
    fits = (known != 0 and size % known == 0) if inferred else size == known
    if not fits:
        raise ValueError(
            f"reshape: cannot reshape a tensor of shape {old} ({size} elements) into shape {new}"
            f"{'' if inferred else f' ({known} elements)'}."
        )


def expand_dims(x, axis):
    """Insert a size-1 dimension at ``axis`` (an int or a tuple of ints, negative allowed).

    >>> import flowlearn as fl
    >>> fl.tensor([1.0, 2.0]).expand_dims(-1).shape
    (2, 1)
    """
    x = as_tensor(x)
    count = len(axis) if isinstance(axis, (tuple, list)) else 1
    axes = normalize_axes("expand_dims", axis, x.data.ndim + count)
    return apply(ExpandDims, (x,), axis=axes)


def squeeze(x, axis=None):
    """Remove size-1 dimensions: all of them (``axis=None``) or those named by ``axis``.

    >>> import flowlearn as fl
    >>> fl.tensor([[1.0], [2.0]]).squeeze(1).shape
    (2,)
    """
    x = as_tensor(x)
    shape = x.data.shape
    axes = normalize_axes("squeeze", axis, len(shape))
    if axes is not None:
        for a in axes:
            if shape[a] != 1:
                raise ValueError(f"squeeze: expected axis {a} to have size 1; got size {shape[a]} in shape {shape}.")
    return apply(Squeeze, (x,), axis=axes)


class Transpose(Primitive):
    name = "transpose"
    saves_inputs = False  # backward reads no input values (see Primitive)

    @staticmethod
    def forward(xp, x, axes):
        return (x.T if axes is None else x.transpose(axes)), None

    @staticmethod
    def backward(xp, grad, saved, needs, axes):
        if axes is None:
            return (grad.T,)
        inverse = [0] * len(axes)
        for position, axis in enumerate(axes):
            inverse[axis] = position
        return (grad.transpose(inverse),)


def transpose(x, axes=None, *more):
    """Permute dimensions: reverse them (``axes=None``, as ``.T`` does) or order them by ``axes``.

    Accepts ``transpose(x, (1, 0, 2))`` and ``transpose(x, 1, 0, 2)``.

    >>> import flowlearn as fl
    >>> fl.tensor([[1.0, 2.0, 3.0]]).T.shape
    (3, 1)
    """
    x = as_tensor(x)
    if axes is not None:
        ndim = x.data.ndim
        axes = (axes,) + more if more else axes
        axes = tuple(normalize_axis("transpose", a, ndim, "axes") for a in shape_tuple("transpose", "axes", axes))
        if sorted(axes) != list(range(ndim)):
            raise ValueError(
                f"transpose: expected `axes` to be a permutation of the {ndim} axes of a tensor of shape "
                f"{x.shape}; got {axes}."
            )
    return apply(Transpose, (x,), axes=axes)


# -- joining ----------------------------------------------------------------------------------------
class Concat(Primitive):
    name = "concat"

    @staticmethod
    def forward(xp, *arrays, axis):
        return xp.concatenate(arrays, axis=axis), [a.shape[axis] for a in arrays]

    @staticmethod
    def backward(xp, grad, sizes, needs, axis):
        lead = (slice(None),) * axis
        grads, start = [], 0
        for size, need in zip(sizes, needs):
            grads.append(grad[lead + (slice(start, start + size),)] if need else None)
            start += size
        return tuple(grads)


class Stack(Primitive):
    name = "stack"

    @staticmethod
    def forward(xp, *arrays, axis):
        return xp.stack(arrays, axis=axis), None

    @staticmethod
    def backward(xp, grad, saved, needs, axis):
        lead = (slice(None),) * axis
        return tuple(grad[lead + (i,)] if need else None for i, need in enumerate(needs))


def _join_inputs(op, tensors):
    """The tensors to join, on one dtype: the widest float among them when any is float."""
    if isinstance(tensors, Tensor) or not isinstance(tensors, (list, tuple)):
        raise TypeError(f"{op}: expected a list or tuple of tensors; got {type(tensors).__name__}.")
    if not tensors:
        raise ValueError(f"{op}: expected at least one tensor; got an empty sequence.")
    like = next((t for t in tensors if isinstance(t, Tensor)), None)
    return common_dtype([as_tensor(t, like=like) for t in tensors])


def concat(tensors, axis=0):
    """Join tensors along an existing axis; all other dimensions must match.

    >>> import flowlearn as fl
    >>> fl.ops.concat([fl.tensor([[1.0, 2.0]]), fl.tensor([[3.0, 4.0]])], axis=0).shape
    (2, 2)
    """
    tensors = _join_inputs("concat", tensors)
    first = tensors[0].shape
    axis = normalize_axis("concat", axis, len(first))
    for i, t in enumerate(tensors[1:], 1):
        shape = t.shape
        if len(shape) != len(first) or shape[:axis] + shape[axis + 1:] != first[:axis] + first[axis + 1:]:
            raise ValueError(
                f"concat: all tensors must have the same shape except along axis {axis}; "
                f"got shapes {first} (tensor 0) and {shape} (tensor {i})."
            )
    return apply(Concat, tuple(tensors), axis=axis)


def stack(tensors, axis=0):
    """Join tensors of one shape along a new axis.

    >>> import flowlearn as fl
    >>> fl.ops.stack([fl.tensor([1.0, 2.0]), fl.tensor([3.0, 4.0])], axis=1).shape
    (2, 2)
    """
    tensors = _join_inputs("stack", tensors)
    first = tensors[0].shape
    axis = normalize_axis("stack", axis, len(first) + 1)
    for i, t in enumerate(tensors[1:], 1):
        if t.shape != first:
            raise ValueError(
                f"stack: all tensors must have the same shape; got shapes {first} (tensor 0) and {t.shape} (tensor {i})."
            )
    return apply(Stack, tuple(tensors), axis=axis)


# -- padding and broadcasting -----------------------------------------------------------------------
class Pad(Primitive):
    name = "pad"

    @staticmethod
    def forward(xp, x, pad_width, constant_values):
        shape = tuple(n + before + after for n, (before, after) in zip(x.shape, pad_width))
        # Fill + one strided copy beats xp.pad, which goes through a generic per-axis routine.
        if constant_values == 0:
            out = xp.zeros(shape, dtype=x.dtype)
        else:
            out = xp.full(shape, constant_values, dtype=x.dtype)
        out[_interior(x.shape, pad_width)] = x
        return out, x.shape

    @staticmethod
    def backward(xp, grad, shape, needs, pad_width, constant_values):
        return (grad[_interior(shape, pad_width)],)


def _interior(shape, pad_width):
    return tuple(slice(before, before + n) for n, (before, _) in zip(shape, pad_width))


def _normalize_pad_width(pad_width, ndim):
    """numpy's pad_width forms (n, (b, a), ((b, a),), ((b0, a0), (b1, a1), ...)) as one pair per axis."""
    expected = (
        "an int, a (before, after) pair, or one (before, after) pair per axis"
    )
    try:
        widths = numpy.asarray(pad_width)
        if widths.dtype.kind not in "iu" or widths.ndim > 2:
            raise ValueError
        widths = numpy.broadcast_to(widths, (ndim, 2))
    except ValueError:
        raise ValueError(
            f"pad: expected `pad_width` to be {expected} for a tensor of rank {ndim}; got {pad_width!r}."
        ) from None
    if (widths < 0).any():
        raise ValueError(f"pad: expected non-negative pad widths; got {pad_width!r}.")
    return tuple((int(b), int(a)) for b, a in widths)


def pad(x, pad_width, constant_values=0):
    """Pad with a constant, numpy style: ``pad_width`` is ``n``, ``(before, after)`` or one pair per axis.

    >>> import flowlearn as fl
    >>> fl.ops.pad(fl.tensor([[1.0]]), ((0, 1), (2, 0))).tolist()
    [[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]
    """
    x = as_tensor(x)
    pad_width = _normalize_pad_width(pad_width, x.data.ndim)
    if not isinstance(constant_values, (int, float)) or isinstance(constant_values, bool):
        constant_values = numpy.asarray(constant_values).item()
    return apply(Pad, (x,), pad_width=pad_width, constant_values=constant_values)


class BroadcastTo(Primitive):
    name = "broadcast_to"
    saves_inputs = False  # backward reads no input values (see Primitive)

    @staticmethod
    def forward(xp, x, *batch_source, shape):
        if batch_source:  # added by fl.trace: the leading size is the batch size of the replay
            shape = (batch_source[0].shape[0],) + tuple(shape[1:])
        return xp.broadcast_to(x, shape), (x.shape, x.dtype)

    @staticmethod
    def backward(xp, grad, saved, needs, shape):
        return (reduce_to_shape(grad, *saved),) + (None,) * (len(needs) - 1)


def broadcast_to(x, shape):
    """``x`` repeated along size-1 (or missing leading) dimensions to ``shape``, as numpy broadcasts.

    >>> import flowlearn as fl
    >>> fl.tensor([1.0, 2.0]).broadcast_to((3, 2)).shape
    (3, 2)
    """
    x = as_tensor(x)
    shape = shape_tuple("broadcast_to", "shape", shape)
    old = x.data.shape
    extra = len(shape) - len(old)
    if extra < 0 or any(n != 1 and n != m for n, m in zip(old, shape[extra:])):
        raise ValueError(f"broadcast_to: cannot broadcast a tensor of shape {old} to shape {shape}.")
    return apply(BroadcastTo, (x,), shape=shape)


# -- dtype and device -------------------------------------------------------------------------------
class Cast(Primitive):
    name = "cast"
    saves_inputs = False  # backward reads no input values (see Primitive)

    @staticmethod
    def forward(xp, x, dtype):
        return x.astype(dtype), x.dtype

    @staticmethod
    def backward(xp, grad, input_dtype, needs, **attrs):
        return (grad.astype(input_dtype),)


class CastNoGrad(Primitive):
    """Casts to integer or boolean types: the output cannot carry a gradient."""

    name = "cast_no_grad"
    differentiable = False
    forward = Cast.forward


def cast(x, dtype):
    """``x`` converted to ``dtype``; gradients flow back (cast to the input dtype) for float targets only.

    Bound as ``Tensor.astype``. Casting to the dtype ``x`` already has returns ``x``.

    >>> import flowlearn as fl
    >>> fl.tensor([1.5, 2.5]).astype("int32").tolist()
    [1, 2]
    """
    x = as_tensor(x)
    try:
        target = numpy.dtype(dtype)
    except TypeError:
        raise TypeError(f"cast: expected a numpy dtype or dtype name; got {dtype!r}.") from None
    if target.kind not in "biuf":
        raise TypeError(f"cast: expected a boolean, integer or float dtype; got {target}.")
    if target == x.data.dtype:
        return x
    return apply(Cast if target.kind == "f" else CastNoGrad, (x,), dtype=target.name)


class ToDevice(Primitive):
    name = "to_device"

    @staticmethod
    def forward(xp, x, device):
        return backend.to_device(x, device), backend.device_of(x)

    @staticmethod
    def backward(xp, grad, source, needs, device):
        return (backend.to_device(grad, source),)


def to_device(x, device):
    """A copy of ``x`` on ``device`` ("cpu" or "gpu"); the gradient is copied back. Used by ``Tensor.to``.

    >>> import flowlearn as fl
    >>> fl.ops.to_device(fl.tensor([1.0]), "cpu").device
    'cpu'
    """
    x = as_tensor(x)
    return apply(ToDevice, (x,), device=backend.check_device(device))
