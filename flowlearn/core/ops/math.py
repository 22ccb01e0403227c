"""Element-wise unary math: exp, log, sqrt, abs.

exp, log and sqrt cast integer inputs to the default float dtype first; abs keeps the input dtype.
The public ``abs`` shadows the builtin inside this module: use ``builtins.abs`` here if needed.
"""
__all__ = ["exp", "log", "sqrt", "abs"]

from ..primitive import Primitive, apply
from ..tensor import as_tensor
from ._args import as_float


class Exp(Primitive):
    name = "exp"
    saves_inputs = False  # backward reads no input values (see Primitive)

    @staticmethod
    def forward(xp, x):
        y = xp.exp(x)
        return y, y

    @staticmethod
    def backward(xp, grad, y, needs):
        return (grad * y,)


class Log(Primitive):
    name = "log"

    @staticmethod
    def forward(xp, x):
        return xp.log(x), x

    @staticmethod
    def backward(xp, grad, x, needs):
        return (grad / x,)


class Sqrt(Primitive):
    name = "sqrt"
    saves_inputs = False  # backward reads no input values (see Primitive)

    @staticmethod
    def forward(xp, x):
        y = xp.sqrt(x)
        return y, y

    @staticmethod
    def backward(xp, grad, y, needs):
        return (grad / (y + y),)


class Abs(Primitive):
    name = "abs"

    @staticmethod
    def forward(xp, x):
        return xp.abs(x), x

    @staticmethod
    def backward(xp, grad, x, needs):
        # sign(0) = 0: the subgradient PyTorch and TensorFlow pick at the kink.
        return (grad * xp.sign(x),)


def exp(x):
    """Element-wise ``e ** x``.

    >>> import flowlearn as fl
    >>> fl.tensor([0.0]).exp().tolist()
    [1.0]
    """
    return apply(Exp, (as_float(x),))


def log(x):
    """Element-wise natural logarithm (``-inf`` at 0, ``nan`` below).

    >>> import flowlearn as fl
    >>> fl.tensor([1.0]).log().tolist()
    [0.0]
    """
    return apply(Log, (as_float(x),))


def sqrt(x):
    """Element-wise square root; the gradient at 0 is ``inf``.

    >>> import flowlearn as fl
    >>> fl.tensor([4.0]).sqrt().tolist()
    [2.0]
    """
    return apply(Sqrt, (as_float(x),))


def abs(x):
    """Element-wise absolute value; the gradient at 0 is 0. Also ``abs(tensor)``.

    >>> import flowlearn as fl
    >>> abs(fl.tensor([-2.0, 3.0])).tolist()
    [2.0, 3.0]
    """
    return apply(Abs, (as_tensor(x),))
