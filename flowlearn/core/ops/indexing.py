"""Indexing: getitem (``tensor[index]``) with gradients, one_hot and argmax (no gradient).

A numpy index is split in two so that a recorded node stays JSON: the basic items go into the
``index`` attr (an int as itself, a slice as ``["slice", start, stop, step]``, None as None,
Ellipsis as ``"..."``) and every integer or boolean array becomes an extra, non-differentiable input
tensor, referenced from the attr as ``["array", k]``. Index arrays that are tensors (labels fed to a
traced graph, say) therefore stay connected to the graph.
"""
import operator

import numpy

__all__ = ["getitem", "one_hot", "argmax"]

from .. import backend
from ..config import floatx
from ..primitive import Primitive, apply
from ..tensor import Tensor, as_tensor
from ._args import normalize_axis


class GetItem(Primitive):
    name = "getitem"

    @staticmethod
    def forward(xp, x, *index_arrays, index):
        key = _decode(index, index_arrays)
        scatter = False
        for array in index_arrays:
            if array.dtype.kind != "b":
                scatter = True  # integer arrays may repeat an element: its gradients must add up
        return xp.asarray(x[key]), (x.shape, x.dtype, key, scatter)

    @staticmethod
    def backward(xp, grad, saved, needs, index):
        shape, dtype, key, scatter = saved
        grad_x = xp.zeros(shape, dtype=dtype)
        if scatter:
            xp.add.at(grad_x, key, grad)
        else:  # basic indices and boolean masks select each element at most once
            grad_x[key] = grad
        return (grad_x,) + (None,) * (len(needs) - 1)


def _decode(index, arrays):
    """The numpy index that the ``index`` attr and the index arrays stand for."""
    key = []
    for item in index:
        if item is None or type(item) is int:
            key.append(item)
        elif type(item) is str:
            key.append(Ellipsis)
        elif item[0] == "slice":
            key.append(slice(item[1], item[2], item[3]))
        else:
            key.append(arrays[item[1]])
    return tuple(key)


def _slice_bound(value):
    if value is None:
        return None
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"getitem: slice bounds must be integers or None; got {value!r}.") from None


def _encode(x, index):
    """The JSON ``index`` attr and the index-array tensors for a numpy-style ``index`` on ``x``."""
    if not isinstance(index, tuple):
        index = (index,)
    items, arrays = [], []
    xp = None
    for item in index:
        if item is None:
            items.append(None)
        elif item is Ellipsis:
            items.append("...")
        elif isinstance(item, slice):
            items.append(("slice", _slice_bound(item.start), _slice_bound(item.stop), _slice_bound(item.step)))
        elif isinstance(item, (int, numpy.integer)) and not isinstance(item, (bool, numpy.bool_)):
            items.append(int(item))
        else:
            if not isinstance(item, Tensor):
                xp = xp or backend.array_module(x.data)
                array = xp.asarray(item)
                if array.size == 0 and array.dtype.kind == "f":  # x[[]]: an empty list selects nothing
                    array = array.astype(numpy.intp)
                item = Tensor._from_array(array, False)
            if item.data.dtype.kind not in "biu":
                raise TypeError(
                    f"getitem: index arrays must be of integer or boolean dtype; got {item.data.dtype}. Valid index "
                    "items: int, slice, None, Ellipsis, integer or boolean arrays (lists, tensors)."
                )
            items.append(("array", len(arrays)))
            arrays.append(item)
    return tuple(items), arrays


def getitem(x, index):
    """``x[index]`` with numpy semantics; bound as ``Tensor.__getitem__``.

    Supports ints, slices (any step), None, Ellipsis, integer arrays (repeated indices add up their
    gradients), boolean masks, and tuples mixing them.

    >>> import flowlearn as fl
    >>> x = fl.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> x[[0, 0, 2]].sum().backward()
    >>> x.grad.tolist()
    [2.0, 0.0, 1.0]
    """
    x = as_tensor(x)
    items, arrays = _encode(x, index)
    try:
        return apply(GetItem, (x, *arrays), index=items)
    except IndexError as error:
        raise IndexError(f"getitem: {error} (indexing a tensor of shape {x.shape})") from None


class OneHot(Primitive):
    name = "one_hot"
    differentiable = False

    @staticmethod
    def forward(xp, indices, depth, dtype):
        return (indices[..., None] == xp.arange(depth)).astype(dtype), None


def one_hot(indices, depth, dtype=None):
    """One-hot encoding along a new last axis of size ``depth``; no gradient.

    ``dtype`` defaults to the default float dtype (float32). As in TensorFlow, an index outside
    ``[0, depth)`` (such as -1 for padding) gives a row of zeros.

    >>> import flowlearn as fl
    >>> fl.ops.one_hot([2, 0], depth=3).tolist()
    [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    """
    indices = as_tensor(indices)
    if indices.data.dtype.kind not in "iu":
        raise TypeError(f"one_hot: expected integer `indices`; got dtype {indices.data.dtype}.")
    if isinstance(depth, bool) or not isinstance(depth, (int, numpy.integer)) or depth < 1:
        raise ValueError(f"one_hot: expected `depth` to be a positive integer; got {depth!r}.")
    dtype = numpy.dtype(floatx() if dtype is None else dtype)
    return apply(OneHot, (indices,), depth=int(depth), dtype=dtype.name)


class ArgMax(Primitive):
    name = "argmax"
    differentiable = False

    @staticmethod
    def forward(xp, x, axis, keepdims):
        return xp.asarray(x.argmax(axis=axis, keepdims=keepdims)), None


def argmax(x, axis=None, keepdims=False):
    """Index of the largest element, over the flattened tensor (``axis=None``) or along ``axis``;
    the first one on ties. Returns an int64 tensor with no gradient.

    >>> import flowlearn as fl
    >>> fl.tensor([[1.0, 5.0], [3.0, 2.0]]).argmax(axis=1).tolist()
    [1, 0]
    """
    x = as_tensor(x)
    shape = x.data.shape
    if axis is not None:
        axis = normalize_axis("argmax", axis, len(shape))
    if x.data.size == 0 and (axis is None or shape[axis] == 0):
        raise ValueError(f"argmax: cannot take the argmax over an empty axis; got shape {shape} and axis={axis}.")
    return apply(ArgMax, (x,), axis=axis, keepdims=bool(keepdims))
