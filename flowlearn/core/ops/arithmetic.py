"""Element-wise arithmetic with numpy broadcasting: add, sub, mul, div, floordiv, neg, pow, maximum,
minimum, where, clip, and the comparisons (which, like floordiv, record no gradient)."""
import numpy

__all__ = [
    "add", "sub", "mul", "div", "floordiv", "neg", "pow", "maximum", "minimum", "where", "clip",
    "equal", "not_equal", "less", "less_equal", "greater", "greater_equal",
]

from ..primitive import Primitive, apply
from ..tensor import as_tensor
from ._args import as_float
from ._broadcast import broadcast_pair, reduce_to_shape


class Add(Primitive):
    name = "add"
    saves_inputs = False

    @staticmethod
    def forward(xp, a, b):
        return a + b, (a.shape, a.dtype, b.shape, b.dtype)

    @staticmethod
    def backward(xp, grad, saved, needs):
        a_shape, a_dtype, b_shape, b_dtype = saved
        return (
            reduce_to_shape(grad, a_shape, a_dtype) if needs[0] else None,
            reduce_to_shape(grad, b_shape, b_dtype) if needs[1] else None,
        )


class Sub(Primitive):
    name = "sub"
    saves_inputs = False

    @staticmethod
    def forward(xp, a, b):
        return a - b, (a.shape, a.dtype, b.shape, b.dtype)

    @staticmethod
    def backward(xp, grad, saved, needs):
        a_shape, a_dtype, b_shape, b_dtype = saved
        return (
            reduce_to_shape(grad, a_shape, a_dtype) if needs[0] else None,
            reduce_to_shape(-grad, b_shape, b_dtype) if needs[1] else None,
        )


class Mul(Primitive):
    name = "mul"

    @staticmethod
    def forward(xp, a, b):
        return a * b, (a, b)

    @staticmethod
    def backward(xp, grad, saved, needs):
        a, b = saved
        return (
            reduce_to_shape(grad * b, a.shape, a.dtype) if needs[0] else None,
            reduce_to_shape(grad * a, b.shape, b.dtype) if needs[1] else None,
        )


class Div(Primitive):
    name = "div"

    @staticmethod
    def forward(xp, a, b):
        return a / b, (a, b)

    @staticmethod
    def backward(xp, grad, saved, needs):
        a, b = saved
        grad_a = grad / b
        return (
            reduce_to_shape(grad_a, a.shape, a.dtype) if needs[0] else None,
            reduce_to_shape(-grad_a * a / b, b.shape, b.dtype) if needs[1] else None,
        )


class FloorDiv(Primitive):
    name = "floordiv"
    differentiable = False  # piecewise constant: no useful gradient, as for the comparisons

    @staticmethod
    def forward(xp, a, b):
        return xp.floor_divide(a, b), None


class Neg(Primitive):
    name = "neg"
    saves_inputs = False

    @staticmethod
    def forward(xp, a):
        return -a, None

    @staticmethod
    def backward(xp, grad, saved, needs):
        return (-grad,)


class Pow(Primitive):
    name = "pow"

    @staticmethod
    def forward(xp, a, b):
        y = a**b
        return y, (a, b, y)

    @staticmethod
    def backward(xp, grad, saved, needs):
        a, b, y = saved
        grad_a = grad_b = None
        if needs[0]:
            grad_a = reduce_to_shape(grad * b * a ** (b - 1), a.shape, a.dtype)
        if needs[1]:
            # d(a^b)/db = a^b log a, taken as 0 where a == 0 (the limit for b > 0).
            safe_log = xp.log(xp.where(a > 0, a, 1))
            grad_b = reduce_to_shape(grad * y * safe_log, b.shape, b.dtype)
        return grad_a, grad_b


def _selected(xp, grad, saved, need_a, need_b):
    """Gradients of ``where(mask, a, b)`` for ``a`` and ``b``: ``grad`` where each was picked, 0 elsewhere.

    ``saved`` is ``(mask, a.shape, a.dtype, b.shape, b.dtype)``.
    """
    mask, a_shape, a_dtype, b_shape, b_dtype = saved
    return (
        reduce_to_shape(xp.where(mask, grad, 0), a_shape, a_dtype) if need_a else None,
        reduce_to_shape(xp.where(mask, 0, grad), b_shape, b_dtype) if need_b else None,
    )


class Maximum(Primitive):
    name = "maximum"
    saves_inputs = False  # backward reads the mask made in forward, not the inputs

    @staticmethod
    def forward(xp, a, b):
        # Ties pick the first operand (a >= b), as a subgradient must pick one side.
        return xp.maximum(a, b), (a >= b, a.shape, a.dtype, b.shape, b.dtype)

    @staticmethod
    def backward(xp, grad, saved, needs):
        return _selected(xp, grad, saved, needs[0], needs[1])


class Minimum(Maximum):
    name = "minimum"

    @staticmethod
    def forward(xp, a, b):
        return xp.minimum(a, b), (a <= b, a.shape, a.dtype, b.shape, b.dtype)


class Where(Primitive):
    name = "where"

    @staticmethod
    def forward(xp, condition, a, b):
        return xp.where(condition, a, b), (condition, a.shape, a.dtype, b.shape, b.dtype)

    @staticmethod
    def backward(xp, grad, saved, needs):
        return (None,) + _selected(xp, grad, saved, needs[1], needs[2])


class Clip(Primitive):
    name = "clip"

    @staticmethod
    def forward(xp, a, low=None, high=None):
        return xp.clip(a, low, high), a

    @staticmethod
    def backward(xp, grad, a, needs, low=None, high=None):
        inside = xp.ones(a.shape, dtype=bool)
        if low is not None:
            inside &= a >= low
        if high is not None:
            inside &= a <= high
        return (grad * inside,)


_COMPARISONS = {
    "equal": "__eq__",
    "not_equal": "__ne__",
    "less": "__lt__",
    "less_equal": "__le__",
    "greater": "__gt__",
    "greater_equal": "__ge__",
}


class Compare(Primitive):
    name = "compare"
    differentiable = False

    @staticmethod
    def forward(xp, a, b, op):
        return getattr(a, _COMPARISONS[op])(b), None


def add(a, b):
    """Element-wise ``a + b`` with broadcasting."""
    return apply(Add, broadcast_pair("add", a, b))


def sub(a, b):
    """Element-wise ``a - b`` with broadcasting."""
    return apply(Sub, broadcast_pair("sub", a, b))


def mul(a, b):
    """Element-wise ``a * b`` with broadcasting."""
    return apply(Mul, broadcast_pair("mul", a, b))


def div(a, b):
    """Element-wise ``a / b`` with broadcasting (true division).

    Integer and boolean operands give the default float dtype (:func:`flowlearn.floatx`), as every
    other op that needs floats does, not numpy's float64.

    >>> import flowlearn as fl
    >>> (fl.tensor([1, 2]) / fl.tensor([2, 2])).dtype
    dtype('float32')
    """
    a, b = broadcast_pair("div", a, b)
    if a.data.dtype.kind != "f":  # after broadcast_pair, one float operand makes both float
        a, b = as_float(a), as_float(b)
    return apply(Div, (a, b))


def floordiv(a, b):
    """Element-wise ``a // b`` with broadcasting: integers stay integers; records no gradient.

    >>> import flowlearn as fl
    >>> fl.tensor([7, -7]) // 2
    tensor([ 3, -4])
    """
    return apply(FloorDiv, broadcast_pair("floordiv", a, b))


def neg(a):
    """Element-wise ``-a``."""
    return apply(Neg, (as_tensor(a),))


def pow(a, b):
    """Element-wise ``a ** b`` with broadcasting (either side may be a tensor)."""
    return apply(Pow, broadcast_pair("pow", a, b))


def maximum(a, b):
    """Element-wise maximum; on ties the gradient goes to ``a``."""
    return apply(Maximum, broadcast_pair("maximum", a, b))


def minimum(a, b):
    """Element-wise minimum; on ties the gradient goes to ``a``."""
    return apply(Minimum, broadcast_pair("minimum", a, b))


def where(condition, a, b):
    """Pick ``a`` where ``condition`` is true, else ``b`` (all three broadcast together)."""
    a, b = broadcast_pair("where", a, b)
    condition = as_tensor(condition, like=a)
    try:
        numpy.broadcast_shapes(condition.shape, a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"where: condition of shape {condition.shape} does not broadcast with operands of shapes "
            f"{a.shape} and {b.shape}."
        ) from None
    if condition.dtype.kind != "b":
        condition = as_tensor(condition.data != 0, like=condition)
    return apply(Where, (condition, a, b))


def clip(a, low=None, high=None):
    """Limit values to ``[low, high]``; the gradient is 1 inside the range and 0 outside."""
    if low is None and high is None:
        raise ValueError("clip: expected at least one of `low` and `high`; got neither.")
    a = as_tensor(a)
    return apply(Clip, (a,), low=None if low is None else float(low), high=None if high is None else float(high))


def _comparison(op):
    def compare(a, b):
        return apply(Compare, broadcast_pair(op, a, b), op=op)

    compare.__name__ = op
    compare.__doc__ = f"Element-wise ``{op}`` comparison; returns a boolean tensor with no gradient."
    return compare


equal = _comparison("equal")
not_equal = _comparison("not_equal")
less = _comparison("less")
less_equal = _comparison("less_equal")
greater = _comparison("greater")
greater_equal = _comparison("greater_equal")
