"""Optimizers that update Tensors in place from their gradients, and learning-rate schedules.

One optimizer per module (``sgd``, ``adam``, ``adamw``, ``rmsprop``, ``adagrad``), all built on
:class:`Optimizer`. Keras defaults and formulas; each class documents where PyTorch differs.

>>> import flowlearn as fl
>>> from flowlearn.core import optimizers
>>> w = fl.tensor([3.0], requires_grad=True)
>>> opt = optimizers.get("adam", learning_rate=0.1)
>>> for _ in range(200):
...     _ = opt.minimize(lambda: (w * w).sum(), [w])
>>> abs(w.item()) < 0.05
True
"""
from . import schedules
from .adagrad import Adagrad
from .adam import Adam
from .adamw import AdamW
from .optimizer import Optimizer, serialize
from .rmsprop import RMSProp, RMSprop
from .sgd import SGD, GradientDescent

__all__ = [
    "Optimizer", "SGD", "GradientDescent", "Adam", "AdamW", "RMSProp", "RMSprop", "Adagrad",
    "schedules", "get", "serialize", "deserialize",
]

Optimizer.registry.names.update(
    sgd=SGD, gradient_descent=SGD, adam=Adam, adamw=AdamW, rmsprop=RMSProp, adagrad=Adagrad,
)


def deserialize(config, **overrides):
    """The optimizer described by ``{"class_name": ..., "config": ...}`` (see :func:`serialize`).

    ``overrides`` replace entries of the config, e.g. ``deserialize(config, learning_rate=0.1)``.
    """
    return Optimizer.registry.from_dict(config, **overrides)


def get(identifier, **overrides):
    """An Optimizer from a name, a config dict or an instance.

    Names (any case): "sgd", "gradient_descent", "adam", "adamw", "rmsprop", "adagrad".
    ``overrides`` are constructor arguments, e.g. ``get("sgd", learning_rate=0.1, momentum=0.9)``.
    An instance is returned as is.

    >>> get("Adam", learning_rate=0.01).learning_rate
    0.01
    """
    if isinstance(identifier, Optimizer):
        if overrides:
            raise TypeError(
                f"get(): arguments {sorted(overrides)} only apply when the optimizer is given by name; "
                f"got an instance of {type(identifier).__name__}."
            )
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier, **overrides)
    if isinstance(identifier, str):
        return Optimizer.registry.find(identifier)(**overrides)
    raise TypeError(
        f"get(): expected an optimizer name, a config dict or an Optimizer instance; got {type(identifier).__name__}."
    )
