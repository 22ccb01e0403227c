"""Tensor operators and methods, bound to the ops (kept here so tensor.py needs no op imports)."""
from ..tensor import Tensor


def _swap(function):
    def reflected(self, other):
        return function(other, self)

    return reflected


def install():
    from .. import ops

    def bind(method, function_name, reflected=False):
        function = getattr(ops, function_name)
        setattr(Tensor, method, _swap(function) if reflected else function)

    for method, name in [
        ("__add__", "add"), ("__sub__", "sub"), ("__mul__", "mul"), ("__truediv__", "div"),
        ("__floordiv__", "floordiv"), ("__pow__", "pow"), ("__matmul__", "matmul"),
        ("__eq__", "equal"), ("__ne__", "not_equal"), ("__lt__", "less"), ("__le__", "less_equal"),
        ("__gt__", "greater"), ("__ge__", "greater_equal"),
        ("__neg__", "neg"), ("__abs__", "abs"), ("__getitem__", "getitem"),
        ("sum", "sum"), ("mean", "mean"), ("max", "max"), ("min", "min"), ("logsumexp", "logsumexp"),
        ("reshape", "reshape"), ("transpose", "transpose"), ("expand_dims", "expand_dims"),
        ("squeeze", "squeeze"), ("astype", "cast"), ("exp", "exp"), ("log", "log"), ("sqrt", "sqrt"),
        ("clip", "clip"), ("argmax", "argmax"), ("relu", "relu"), ("sigmoid", "sigmoid"), ("tanh", "tanh"),
        ("broadcast_to", "broadcast_to"),
    ]:
        bind(method, name)
    for method, name in [
        ("__radd__", "add"), ("__rsub__", "sub"), ("__rmul__", "mul"), ("__rtruediv__", "div"),
        ("__rfloordiv__", "floordiv"), ("__rpow__", "pow"), ("__rmatmul__", "matmul"),
    ]:
        bind(method, name, reflected=True)
    Tensor.T = property(lambda self: ops.transpose(self))
    Tensor.__hash__ = object.__hash__  # defining __eq__ above would otherwise unset it
