"""Reductions over axes: sum, mean, max, min, logsumexp.

Each takes ``axis`` (None for all axes, an int or a tuple of ints; negative counts from the end)
and ``keepdims``. The recorded attrs hold the axes as a sorted tuple of non-negative ints.
"""
import builtins
import math

__all__ = ["sum", "mean", "max", "min", "logsumexp"]

from ..primitive import Primitive, apply
from ..tensor import as_tensor
from ._args import as_float, normalize_axes


def _kept_shape(shape, axes):
    """The shape of a reduction over ``axes`` with keepdims=True."""
    if axes is None:
        return (1,) * len(shape)
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def _squeeze(xp, y, axes, keepdims):
    """A keepdims=True reduction result in the shape the caller asked for."""
    if keepdims:
        return y
    return xp.squeeze(y, axis=axes)


def _kept_grad(grad, shape, axes, keepdims):
    """The output gradient reshaped so that it broadcasts against the input."""
    return grad if keepdims else grad.reshape(_kept_shape(shape, axes))


class Sum(Primitive):
    """Also serves mean through ``_method`` (Mean only rescales the gradient)."""

    name = "sum"
    _method = "sum"
    saves_inputs = False  # backward reads no input values (see Primitive)

    @classmethod
    def forward(cls, xp, x, axis, keepdims):
        return xp.asarray(getattr(x, cls._method)(axis=axis, keepdims=keepdims)), x.shape

    @staticmethod
    def backward(xp, grad, shape, needs, axis, keepdims):
        # A read-only broadcast view: gradient arrays are never written after they are produced.
        return (xp.broadcast_to(_kept_grad(grad, shape, axis, keepdims), shape),)


class Mean(Sum):
    name = "mean"
    _method = "mean"

    @staticmethod
    def backward(xp, grad, shape, needs, axis, keepdims):
        count = math.prod(shape) if axis is None else math.prod(shape[a] for a in axis)
        grad = _kept_grad(grad, shape, axis, keepdims) * (1.0 / builtins.max(count, 1))
        return (xp.broadcast_to(grad, shape),)


class Max(Primitive):
    """Also serves min through ``_method``; the public names ``max``/``min`` shadow the builtins here."""

    name = "max"
    _method = "max"

    @classmethod
    def forward(cls, xp, x, axis, keepdims):
        y = getattr(x, cls._method)(axis=axis, keepdims=True)
        return _squeeze(xp, y, axis, keepdims), (x, y)

    @staticmethod
    def backward(xp, grad, saved, needs, axis, keepdims):
        # Ties share the gradient evenly, as torch.amax does: the result is symmetric in its inputs.
        x, y = saved
        winners = x == y
        count = winners.sum(axis=axis, keepdims=True, dtype=x.dtype)
        return (winners * (_kept_grad(grad, x.shape, axis, keepdims) / count),)


class Min(Max):
    name = "min"
    _method = "min"


class LogSumExp(Primitive):
    name = "logsumexp"

    @staticmethod
    def forward(xp, x, axis, keepdims):
        shift = x.max(axis=axis, keepdims=True)
        # Slices that are all -inf (or hold +inf) would give inf - inf = nan; shift them by 0 instead.
        shift = xp.where(xp.isfinite(shift), shift, 0)
        e = xp.exp(x - shift)
        total = e.sum(axis=axis, keepdims=True)
        y = xp.log(total) + shift
        return _squeeze(xp, y, axis, keepdims), (e, total)

    @staticmethod
    def backward(xp, grad, saved, needs, axis, keepdims):
        e, total = saved
        # total is 0 only for all -inf slices, whose e is all 0: divide by 1 there, not 0 (nan).
        total = xp.where(total > 0, total, 1)
        return (e * (_kept_grad(grad, e.shape, axis, keepdims) / total),)


def _reduce(cls, x, axis, keepdims, needs_elements=False):
    axes = normalize_axes(cls.name, axis, x.data.ndim)
    if needs_elements and x.data.size == 0:
        shape = x.data.shape
        if axes is None or 0 in [shape[a] for a in axes]:
            raise ValueError(
                f"{cls.name}: cannot reduce over an empty axis (no identity); got shape {shape} and axis={axis}."
            )
    return apply(cls, (x,), axis=axes, keepdims=bool(keepdims))


def sum(x, axis=None, keepdims=False):
    """Sum of elements over ``axis`` (all axes by default).

    >>> import flowlearn as fl
    >>> fl.tensor([[1.0, 2.0], [3.0, 4.0]]).sum(axis=-1).tolist()
    [3.0, 7.0]
    """
    return _reduce(Sum, as_tensor(x), axis, keepdims)


def mean(x, axis=None, keepdims=False):
    """Mean over ``axis`` (all axes by default); integer inputs are cast to the default float dtype.

    >>> import flowlearn as fl
    >>> fl.tensor([[1.0, 2.0], [3.0, 4.0]]).mean(axis=0).tolist()
    [2.0, 3.0]
    """
    return _reduce(Mean, as_float(x), axis, keepdims)


def max(x, axis=None, keepdims=False):
    """Largest element over ``axis``. The gradient is shared evenly among tied maxima (as ``torch.amax``).

    >>> import flowlearn as fl
    >>> fl.tensor([[1.0, 5.0], [3.0, 4.0]]).max(axis=1).tolist()
    [5.0, 4.0]
    """
    return _reduce(Max, as_tensor(x), axis, keepdims, needs_elements=True)


def min(x, axis=None, keepdims=False):
    """Smallest element over ``axis``. The gradient is shared evenly among tied minima (as ``torch.amin``).

    >>> import flowlearn as fl
    >>> fl.tensor([[1.0, 5.0], [3.0, 4.0]]).min(axis=1).tolist()
    [1.0, 3.0]
    """
    return _reduce(Min, as_tensor(x), axis, keepdims, needs_elements=True)


def logsumexp(x, axis=None, keepdims=False):
    """``log(sum(exp(x)))`` over ``axis``, computed after subtracting the maximum so large values
    do not overflow. Its gradient is the softmax of ``x`` over ``axis``.

    >>> import flowlearn as fl
    >>> round(fl.tensor([1000.0, 1000.0]).logsumexp().item(), 3)
    1000.693
    """
    return _reduce(LogSumExp, as_float(x), axis, keepdims, needs_elements=True)
