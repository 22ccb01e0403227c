"""Activations: relu, leaky_relu, elu, selu, sigmoid, tanh, softplus, softmax, log_softmax, and
:func:`get_activation`, which turns a name ("relu", "linear", None, ...) into one of them.

All are stable for any finite input: nothing computes ``exp`` of a large positive number, so
inputs of +-1e4 give finite outputs and gradients without overflow warnings. Backward passes use
arithmetic on masks rather than ``xp.where``: on masks with random signs numpy's ``where`` is
about ten times slower than a multiply.
"""
import numpy

__all__ = [
    "relu", "leaky_relu", "elu", "selu", "sigmoid", "tanh", "softplus", "softmax", "log_softmax",
    "get_activation",
]

from ..primitive import Primitive, apply
from ..tensor import as_tensor
from ._args import float_input

# Klambauer et al. 2017, "Self-Normalizing Neural Networks" (the values Keras and PyTorch use).
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _normalize_axis(op, axis, ndim):
    """``axis`` as a non-negative Python int, or a ValueError naming ``op``."""
    if isinstance(axis, bool) or not isinstance(axis, (int, numpy.integer)):
        raise TypeError(f"{op}: expected an integer `axis`; got {axis!r}.")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{op}: expected `axis` in [{-ndim}, {ndim}) for an input of rank {ndim}; got axis={axis}.")
    return int(axis) % ndim


def _real(op, name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, numpy.integer, numpy.floating)):
        raise TypeError(f"{op}: expected a real number for `{name}`; got {value!r}.")
    return float(value)


_EXP_LIMIT = {}


def _exp_limit(dtype):
    """A ``t`` with ``1 / (1 + exp(t))`` finite and still a normal number in ``dtype`` (87 for float32)."""
    limit = _EXP_LIMIT.get(dtype)
    if limit is None:
        limit = _EXP_LIMIT[dtype] = float(numpy.floor(-numpy.log(numpy.finfo(dtype).tiny)))
    return limit


def _sigmoid(xp, x):
    # 1 / (1 + exp(-x)) keeps full relative precision for tiny outputs. Capping -x at the exp limit
    # avoids overflow and keeps outputs normal: subnormal numbers would slow every later op on CPUs.
    z = xp.negative(x, out=xp.empty_like(x))  # out=: for a 0-d x numpy would return a scalar, not an array
    xp.minimum(z, _exp_limit(x.dtype), out=z)
    xp.exp(z, out=z)
    z += 1
    return xp.divide(1, z, out=z)


class ReLU(Primitive):
    name = "relu"
    saves_inputs = False  # backward reads no input values (see Primitive)

    @staticmethod
    def forward(xp, x):
        y = xp.maximum(x, 0)
        return y, y

    @staticmethod
    def backward(xp, grad, y, needs):
        return (grad * (y > 0),)


class LeakyReLU(Primitive):
    name = "leaky_relu"

    @staticmethod
    def forward(xp, x, alpha):
        # max(x, alpha x) is x for x > 0 whenever alpha <= 1; larger slopes need the minimum.
        y = xp.maximum(x, x * alpha) if alpha <= 1 else xp.minimum(x, x * alpha)
        return y, x

    @staticmethod
    def backward(xp, grad, x, needs, alpha):
        slope = (x > 0) * x.dtype.type(1 - alpha)
        slope += alpha
        slope *= grad
        return (slope,)


class ELU(Primitive):
    name = "elu"

    @staticmethod
    def forward(xp, x, alpha=1.0, scale=1.0):
        # max(x, 0) + alpha * expm1(min(x, 0)) needs no select and never exponentiates x > 0.
        y = xp.minimum(x, 0, out=xp.empty_like(x))  # an array even for 0-d x (see _sigmoid)
        xp.expm1(y, out=y)
        y *= alpha
        y += xp.maximum(x, 0)
        if scale != 1.0:
            y *= scale
        return y, (x, y)

    @staticmethod
    def backward(xp, grad, saved, needs, alpha=1.0, scale=1.0):
        # The slope is scale for x > 0 and scale * alpha * exp(x) = y + scale * alpha elsewhere.
        x, y = saved
        positive = x > 0
        slope = y + scale * alpha
        slope *= ~positive
        slope += positive * x.dtype.type(scale)
        slope *= grad
        return (slope,)


class SELU(Primitive):
    name = "selu"

    @staticmethod
    def forward(xp, x):
        return ELU.forward(xp, x, alpha=_SELU_ALPHA, scale=_SELU_SCALE)

    @staticmethod
    def backward(xp, grad, saved, needs):
        return ELU.backward(xp, grad, saved, needs, alpha=_SELU_ALPHA, scale=_SELU_SCALE)


class Sigmoid(Primitive):
    name = "sigmoid"
    saves_inputs = False  # backward reads no input values (see Primitive)

    @staticmethod
    def forward(xp, x):
        y = _sigmoid(xp, x)
        return y, y

    @staticmethod
    def backward(xp, grad, y, needs):
        slope = 1 - y
        slope *= y
        slope *= grad
        return (slope,)


class Tanh(Primitive):
    name = "tanh"
    saves_inputs = False  # backward reads no input values (see Primitive)

    @staticmethod
    def forward(xp, x):
        y = xp.tanh(x, out=xp.empty_like(x))  # an array even for 0-d x (see _sigmoid)
        return y, y

    @staticmethod
    def backward(xp, grad, y, needs):
        slope = xp.multiply(y, y, out=xp.empty_like(y))
        xp.subtract(1, slope, out=slope)
        slope *= grad
        return (slope,)


class Softplus(Primitive):
    name = "softplus"

    @staticmethod
    def forward(xp, x):
        # log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)): the exponent is never positive.
        y = xp.abs(x, out=xp.empty_like(x))  # an array even for 0-d x (see _sigmoid)
        xp.negative(y, out=y)
        xp.exp(y, out=y)
        xp.log1p(y, out=y)
        y += xp.maximum(x, 0)
        return y, x

    @staticmethod
    def backward(xp, grad, x, needs):
        slope = _sigmoid(xp, x)
        slope *= grad
        return (slope,)


class Softmax(Primitive):
    name = "softmax"
    saves_inputs = False  # backward reads no input values (see Primitive)

    @staticmethod
    def forward(xp, x, axis):
        y = x - x.max(axis=axis, keepdims=True)
        xp.exp(y, out=y)
        y /= y.sum(axis=axis, keepdims=True)
        return y, y

    @staticmethod
    def backward(xp, grad, y, needs, axis):
        # dx = y * (g - sum(g * y)).
        gy = grad * y
        gy -= y * gy.sum(axis=axis, keepdims=True)
        return (gy,)


class LogSoftmax(Primitive):
    name = "log_softmax"
    saves_inputs = False  # backward reads no input values (see Primitive)

    @staticmethod
    def forward(xp, x, axis):
        y = x - x.max(axis=axis, keepdims=True)
        y -= xp.log(xp.exp(y).sum(axis=axis, keepdims=True))
        return y, y

    @staticmethod
    def backward(xp, grad, y, needs, axis):
        # dx = g - softmax(x) * sum(g), with softmax(x) = exp(y).
        p = xp.exp(y)
        p *= grad.sum(axis=axis, keepdims=True)
        return (xp.subtract(grad, p, out=p),)


def relu(x):
    """Rectified linear unit, ``max(x, 0)``; the gradient at 0 is 0.

    >>> import flowlearn as fl
    >>> fl.ops.relu(fl.tensor([-1.0, 2.0]))
    tensor([0., 2.], dtype=float32)
    """
    return apply(ReLU, (as_tensor(x),))


def leaky_relu(x, alpha=0.2):
    """``x`` for ``x > 0``, ``alpha * x`` elsewhere (Keras's default slope, 0.2).

    >>> import flowlearn as fl
    >>> fl.ops.leaky_relu(fl.tensor([-1.0, 2.0]))
    tensor([-0.2,  2. ], dtype=float32)
    """
    return apply(LeakyReLU, (float_input("leaky_relu", x),), alpha=_real("leaky_relu", "alpha", alpha))


def elu(x, alpha=1.0):
    """Exponential linear unit: ``x`` for ``x > 0``, ``alpha * (exp(x) - 1)`` elsewhere.

    >>> import flowlearn as fl
    >>> fl.ops.elu(fl.tensor([0.0, 2.0]))
    tensor([0., 2.], dtype=float32)
    """
    return apply(ELU, (float_input("elu", x),), alpha=_real("elu", "alpha", alpha))


def selu(x):
    """Scaled ELU with the self-normalising constants (alpha 1.6733, scale 1.0507).

    >>> import flowlearn as fl
    >>> fl.ops.selu(fl.tensor([0.0]))
    tensor([0.], dtype=float32)
    """
    return apply(SELU, (float_input("selu", x),))


def sigmoid(x):
    """Logistic function ``1 / (1 + exp(-x))``, overflow-free for any finite input.

    >>> import flowlearn as fl
    >>> fl.ops.sigmoid(fl.tensor([0.0]))
    tensor([0.5], dtype=float32)
    """
    return apply(Sigmoid, (float_input("sigmoid", x),))


def tanh(x):
    """Hyperbolic tangent.

    >>> import flowlearn as fl
    >>> fl.ops.tanh(fl.tensor([0.0]))
    tensor([0.], dtype=float32)
    """
    return apply(Tanh, (float_input("tanh", x),))


def softplus(x):
    """``log(1 + exp(x))``, computed without overflow; its gradient is ``sigmoid(x)``.

    >>> import flowlearn as fl
    >>> fl.ops.softplus(fl.tensor([0.0])).item()  # log(2)
    0.6931471824645996
    """
    return apply(Softplus, (float_input("softplus", x),))


def softmax(x, axis=-1):
    """``exp(x) / sum(exp(x))`` along ``axis``, with the maximum subtracted first.

    >>> import flowlearn as fl
    >>> fl.ops.softmax(fl.tensor([[0.0, 0.0]]))
    tensor([[0.5, 0.5]], dtype=float32)
    """
    x = float_input("softmax", x)
    return apply(Softmax, (x,), axis=_normalize_axis("softmax", axis, x.ndim))


def log_softmax(x, axis=-1):
    """``x - logsumexp(x)`` along ``axis``: the log of :func:`softmax`, accurate for tiny probabilities.

    >>> import flowlearn as fl
    >>> fl.ops.log_softmax(fl.tensor([[0.0, 0.0]])).exp()
    tensor([[0.5, 0.5]], dtype=float32)
    """
    x = float_input("log_softmax", x)
    return apply(LogSoftmax, (x,), axis=_normalize_axis("log_softmax", axis, x.ndim))


def linear(x):
    """The identity: what ``activation=None`` or ``"linear"`` means (returns ``x`` itself)."""
    return x


_ACTIVATIONS = {
    "relu": relu, "leaky_relu": leaky_relu, "elu": elu, "selu": selu, "sigmoid": sigmoid, "tanh": tanh,
    "softplus": softplus, "softmax": softmax, "log_softmax": log_softmax, "linear": linear,
}


def get_activation(activation):
    """The activation function named ``activation``; callables are returned unchanged.

    ``None`` and ``"linear"`` give the identity. Each function's ``__name__`` is its name here, so
    ``get_activation(fn.__name__)`` round-trips a layer's config.

    >>> from flowlearn.core.ops import get_activation
    >>> get_activation("relu").__name__
    'relu'
    >>> get_activation(None).__name__
    'linear'
    """
    if activation is None:
        return linear
    if isinstance(activation, str):
        try:
            return _ACTIVATIONS[activation]
        except KeyError:
            raise ValueError(
                f"get_activation: unknown activation {activation!r}; expected one of {sorted(_ACTIVATIONS)}, "
                "None or a callable."
            ) from None
    if callable(activation):
        return activation
    raise TypeError(
        f"get_activation: expected an activation name, None or a callable; got {type(activation).__name__} "
        f"{activation!r}."
    )
