"""Broadcasting shared by every binary op: one shape check on the way in, one reduction on the way back."""
import math

import numpy

from .. import backend
from ..tensor import Tensor, as_tensor
from ._gemm import gemm


def broadcast_pair(op_name, a, b):
    """Both operands as Tensors, checked to broadcast together (error names the op and both shapes)."""
    if not isinstance(a, Tensor):
        a = as_tensor(a, like=b if isinstance(b, Tensor) else None)
    if not isinstance(b, Tensor):
        b = as_tensor(b, like=a)
    if a.data.dtype != b.data.dtype:
        a, b = _promote_integers(a, b)
    if a.data.shape != b.data.shape:
        try:
            numpy.broadcast_shapes(a.data.shape, b.data.shape)
        except ValueError:
            raise ValueError(
                f"{op_name}: operands could not be broadcast together; got shapes {a.shape} and {b.shape}."
            ) from None
    return a, b


def _promote_integers(a, b):
    # Integer or boolean data meeting a float tensor takes the float's dtype (as in PyTorch), where
    # numpy would widen int64 + float32 to float64 and silently double the memory of everything after.
    a_float, b_float = a.data.dtype.kind == "f", b.data.dtype.kind == "f"
    if a_float and not b_float:
        b = Tensor._from_array(b.data.astype(a.data.dtype), False)
    elif b_float and not a_float:
        a = Tensor._from_array(a.data.astype(b.data.dtype), False)
    return a, b


# Below this many rows numpy's sum is as fast as a BLAS call; below this many columns numpy's
# pairwise summation (more accurate for long single sums) is kept.
_GEMV_MIN_ROWS = 4096
_GEMV_MIN_COLUMNS = 8


def reduce_to_shape(grad, shape, dtype):
    """Sum ``grad`` over the axes that broadcasting expanded so it matches ``shape`` (and ``dtype``)."""
    if grad.shape != shape:
        grad = _sum_leading_rows(grad, shape)
    if grad.shape != shape:
        extra = grad.ndim - len(shape)
        if extra:
            grad = grad.sum(axis=tuple(range(extra)))
        axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
        if axes:
            grad = grad.sum(axis=axes, keepdims=True)
    if grad.dtype != dtype:
        grad = grad.astype(dtype)
    return grad


def _sum_leading_rows(grad, shape):
    """The sum of ``grad`` down to ``shape`` as one matrix-vector product, where that applies.

    It applies when ``shape`` (leading ones aside) is the trailing part of ``grad``'s shape: a bias
    gradient, (N, H, W, C) -> (C,). numpy sums over a leading axis one row at a time (1.3 ms for
    100x28x28x32); a ones vector times the (rows, C) matrix runs on BLAS in 0.2 ms. Both accumulate
    in the array's own float type. Returns ``grad`` unchanged where the fast path does not apply.
    """
    kept = tuple(shape)
    while kept and kept[0] == 1:
        kept = kept[1:]
    if len(kept) >= grad.ndim or grad.shape[grad.ndim - len(kept):] != kept:
        return grad
    columns = math.prod(kept)
    if grad.dtype.kind != "f" or not grad.flags.c_contiguous or columns < _GEMV_MIN_COLUMNS:
        return grad
    rows = grad.size // columns
    if rows < _GEMV_MIN_ROWS:
        return grad
    xp = backend.array_module(grad)
    ones = xp.ones((1, rows), dtype=grad.dtype)
    return gemm(xp, ones, grad.reshape(rows, columns)).reshape(shape)
