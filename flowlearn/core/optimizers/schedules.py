"""Learning-rate schedules: callables from the optimizer's step count to a learning rate.

An optimizer given a schedule uses ``lr = schedule(optimizer.iterations)`` for each step, where
``iterations`` counts the steps already taken (0 for the first one), as in Keras.

>>> from flowlearn.core.optimizers import schedules
>>> schedule = schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=True)
>>> [schedule(step) for step in (0, 9, 10, 25)]
[0.1, 0.1, 0.05, 0.025]
"""
import math

from ..serialization import Registry, Serializable
from ._checks import check_bool, check_positive_int, check_real

__all__ = ["LearningRateSchedule", "Constant", "ExponentialDecay", "StepDecay", "serialize", "deserialize"]


class LearningRateSchedule(Serializable):
    """Base class: subclasses define ``__call__(step) -> float``.

    The config is the constructor arguments; subclasses register under their class name, so
    :func:`deserialize` rebuilds them from ``{"class_name": ..., "config": ...}``.
    """

    registry = Registry("learning-rate schedule")

    def __call__(self, step):
        raise NotImplementedError


def _initial(owner, value):
    return check_real(owner, "initial_learning_rate", value, 0.0)


class Constant(LearningRateSchedule):
    """The same learning rate at every step.

    >>> Constant(0.01)(1000)
    0.01
    """

    def __init__(self, learning_rate):
        self.learning_rate = check_real("Constant", "learning_rate", learning_rate, 0.0)

    def __call__(self, step):
        return self.learning_rate


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)`` (TensorFlow's formula).

    With ``staircase=True`` the exponent is ``floor(step / decay_steps)``: the rate drops by
    ``decay_rate`` every ``decay_steps`` steps.

    >>> ExponentialDecay(1.0, decay_steps=2, decay_rate=0.25)(1)
    0.5
    """

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False):
        self.initial_learning_rate = _initial("ExponentialDecay", initial_learning_rate)
        self.decay_steps = check_real("ExponentialDecay", "decay_steps", decay_steps, 0.0, low_open=True)
        self.decay_rate = check_real("ExponentialDecay", "decay_rate", decay_rate, 0.0, low_open=True)
        self.staircase = check_bool("ExponentialDecay", "staircase", staircase)

    def __call__(self, step):
        exponent = step / self.decay_steps
        if self.staircase:
            exponent = math.floor(exponent)
        return self.initial_learning_rate * self.decay_rate ** exponent


class StepDecay(LearningRateSchedule):
    """``initial_learning_rate * gamma ** (step // step_size)`` (PyTorch's StepLR, counted in steps).

    >>> [StepDecay(0.1, step_size=3, gamma=0.5)(step) for step in (0, 2, 3, 6)]
    [0.1, 0.1, 0.05, 0.025]
    """

    def __init__(self, initial_learning_rate, step_size, gamma=0.1):
        self.initial_learning_rate = _initial("StepDecay", initial_learning_rate)
        self.step_size = check_positive_int("StepDecay", "step_size", step_size)
        self.gamma = check_real("StepDecay", "gamma", gamma, 0.0, low_open=True)

    def __call__(self, step):
        return self.initial_learning_rate * self.gamma ** (int(step) // self.step_size)


def serialize(schedule):
    """``{"class_name": ..., "config": ...}``: plain JSON that :func:`deserialize` turns back into ``schedule``."""
    return LearningRateSchedule.registry.serialize(
        schedule, "expected a LearningRateSchedule; subclass flowlearn.core.optimizers.schedules.LearningRateSchedule."
    )


def deserialize(config):
    """The schedule described by ``{"class_name": ..., "config": ...}`` (see :func:`serialize`)."""
    return LearningRateSchedule.registry.from_dict(config)
