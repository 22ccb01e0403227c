"""Matrix products: matmul with numpy semantics (1-D operands, broadcast batch dimensions)."""
import numpy

__all__ = ["matmul"]

from ..primitive import Primitive, apply
from ..tensor import Tensor, as_tensor
from ._broadcast import reduce_to_shape
from ._args import common_dtype
from ._gemm import gemm


class MatMul(Primitive):
    name = "matmul"

    @staticmethod
    def forward(xp, a, b):
        if a.ndim > 2 and b.ndim == 2:
            # One GEMM over the flattened batch beats numpy's loop of per-matrix GEMMs.
            return gemm(xp, a.reshape(-1, a.shape[-1]), b).reshape(a.shape[:-1] + b.shape[-1:]), (a, b)
        if a.ndim == 2 and b.ndim == 2:
            return gemm(xp, a, b), (a, b)
        return a @ b, (a, b)

    @staticmethod
    def backward(xp, grad, saved, needs):
        a, b = saved
        if a.ndim == 2 and b.ndim == 2:  # the dense-layer case: keep it to two GEMMs and no checks
            return (gemm(xp, grad, b.T) if needs[0] else None, gemm(xp, a.T, grad) if needs[1] else None)
        return _backward_general(xp, grad, a, b, needs)


def _backward_general(xp, grad, a, b, needs):
    # Treat 1-D operands as matrices (a row for a, a column for b) so one code path serves all.
    a2 = a.reshape(1, -1) if a.ndim == 1 else a
    b2 = b.reshape(-1, 1) if b.ndim == 1 else b
    batch = numpy.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    g = grad.reshape(batch + (a2.shape[-2], b2.shape[-1]))
    grad_a = grad_b = None
    if b2.ndim == 2 and a2.ndim > 2:
        # Weights shared across the batch: flatten it away, one GEMM each.
        k, n = b2.shape
        g_flat = g.reshape(-1, n)
        if needs[0]:
            grad_a = gemm(xp, g_flat, b2.T).reshape(a.shape)
        if needs[1]:
            grad_b = gemm(xp, a2.reshape(-1, k).T, g_flat).reshape(b.shape)
        return grad_a, grad_b
    if needs[0]:
        grad_a = reduce_to_shape(g @ xp.swapaxes(b2, -1, -2), a2.shape, a.dtype).reshape(a.shape)
    if needs[1]:
        grad_b = reduce_to_shape(xp.swapaxes(a2, -1, -2) @ g, b2.shape, b.dtype).reshape(b.shape)
    return grad_a, grad_b


def matmul(a, b):
    """Matrix product ``a @ b`` with numpy semantics.

    2-D operands multiply as matrices; a 1-D ``a`` acts as a row and a 1-D ``b`` as a column (the
    added dimension is dropped from the result); leading (batch) dimensions broadcast. Gradients
    are summed over broadcast batch dimensions. Operands of different dtypes are brought to the
    widest float dtype among them first.

    >>> import flowlearn as fl
    >>> x = fl.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    >>> (x @ x.T).tolist()
    [[5.0, 11.0], [11.0, 25.0]]
    """
    if not isinstance(a, Tensor):
        a = as_tensor(a, like=b if isinstance(b, Tensor) else None)
    if not isinstance(b, Tensor):
        b = as_tensor(b, like=a)
    sa, sb = a.data.shape, b.data.shape
    if len(sa) == 2 and len(sb) == 2 and sa[1] == sb[0] and a.data.dtype == b.data.dtype:
        return apply(MatMul, (a, b))
    _check_shapes(sa, sb)
    if a.data.dtype != b.data.dtype:
        a, b = common_dtype([a, b])
    return apply(MatMul, (a, b))


def _check_shapes(sa, sb):
    if not sa or not sb:
        raise ValueError(f"matmul: expected operands with at least 1 dimension; got shapes {sa} and {sb}")
    if sa[-1] != (sb[0] if len(sb) == 1 else sb[-2]):
        raise ValueError(f"matmul: inner dimensions do not match; got shapes {sa} and {sb}")
    try:
        numpy.broadcast_shapes(sa[:-2], sb[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch dimensions do not broadcast; got shapes {sa} and {sb}") from None
