"""Weight regularizers: penalties on a weight's values that a model adds to the training loss.

Each regularizer is called on a weight Tensor and returns a scalar Tensor, so the penalty's gradient
flows into the weight along with the loss's. The penalties are Keras's: ``l1 * sum(|w|)`` and
``l2 * sum(w ** 2)`` (no factor 1/2).

>>> import flowlearn as fl
>>> w = fl.tensor([[1.0, -2.0]], requires_grad=True)
>>> round(fl.layers.regularizers.L1L2(l1=0.1, l2=0.01)(w).item(), 6)
0.35
"""
import math
import numbers

from ..core import ops
from ..core.serialization import Registry, Serializable

__all__ = ["Regularizer", "L1", "L2", "L1L2", "l1", "l2", "l1_l2", "get", "serialize"]


def _factor(owner, name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(
            f"{owner}: received an invalid value for `{name}`, expected a non-negative number. "
            f"Received: {name}={value!r}"
        )
    return float(value)


class Regularizer(Serializable):
    """Base class: ``regularizer(weight) -> scalar Tensor``; the config is the constructor arguments."""

    registry = Registry("regularizer")

    def __call__(self, weight):
        raise NotImplementedError

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    __hash__ = object.__hash__


def _l1_penalty(weight, factor):
    return ops.sum(ops.abs(weight)) * factor


def _l2_penalty(weight, factor):
    return ops.sum(weight * weight) * factor


class L1(Regularizer):
    """``l1 * sum(|w|)``: pushes weights to exactly zero (sparse weights)."""

    def __init__(self, l1=0.01):
        self.l1 = _factor("L1", "l1", l1)

    def __call__(self, weight):
        return _l1_penalty(weight, self.l1)


class L2(Regularizer):
    """``l2 * sum(w ** 2)``: weight decay."""

    def __init__(self, l2=0.01):
        self.l2 = _factor("L2", "l2", l2)

    def __call__(self, weight):
        return _l2_penalty(weight, self.l2)


class L1L2(Regularizer):
    """``l1 * sum(|w|) + l2 * sum(w ** 2)``; a zero factor skips its term."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _factor("L1L2", "l1", l1)
        self.l2 = _factor("L1L2", "l2", l2)

    def __call__(self, weight):
        if self.l1 and self.l2:
            return _l1_penalty(weight, self.l1) + _l2_penalty(weight, self.l2)
        if self.l1:
            return _l1_penalty(weight, self.l1)
        return _l2_penalty(weight, self.l2)


def l1(l1=0.01):
    """An :class:`L1` regularizer."""
    return L1(l1)


def l2(l2=0.01):
    """An :class:`L2` regularizer."""
    return L2(l2)


def l1_l2(l1=0.01, l2=0.01):
    """An :class:`L1L2` regularizer (both factors 0.01 by default, as in Keras)."""
    return L1L2(l1, l2)


# "l1_l2" names the function, whose factors both default to 0.01 (as in Keras); the class L1L2 defaults to 0.
Regularizer.registry.names.update(l1=L1, l2=L2, l1_l2=l1_l2, l1l2=l1_l2)


def get(identifier):
    """A regularizer from None, a name ("l1", "l2", "l1_l2"), a ``serialize`` dict, or an instance.

    Plain callables ``f(weight) -> scalar Tensor`` are accepted too, but cannot be saved in a config.
    """
    return Regularizer.registry.resolve(
        identifier,
        "Could not interpret regularizer {identifier!r}: expected a name, a dict, a Regularizer, a callable or None.",
    )


def serialize(regularizer):
    """``{"class_name", "config"}`` for a Regularizer; None stays None."""
    return Regularizer.registry.serialize(regularizer, "only L1, L2 and L1L2 can be saved in a config.")
