"""Adagrad (Duchi, Hazan & Singer, 2011)."""
from ._checks import check_real
from .optimizer import Optimizer


class Adagrad(Optimizer):
    """Adagrad with Keras's defaults and epsilon placement.

    Per parameter, with the accumulator starting at ``initial_accumulator_value``::

        acc += grad ** 2
        param -= lr * grad / sqrt(acc + epsilon)

    Epsilon sits *inside* the square root (Keras); ``torch.optim.Adagrad`` adds its ``eps``
    outside it and starts the accumulator at 0 unless given ``initial_accumulator_value=0.1``.

    >>> import flowlearn as fl
    >>> w = fl.tensor([1.0], requires_grad=True)
    >>> w.grad = fl.tensor([0.3]).data
    >>> Adagrad(learning_rate=0.1, epsilon=0.0).step([w])
    >>> round(w.item(), 4)   # 1 - 0.1 * 0.3 / sqrt(0.1 + 0.09)
    0.9312
    """

    elementwise_update = True

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, clipnorm=None,
                 clipvalue=None, global_clipnorm=None, weight_decay=None):
        super().__init__(learning_rate, clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm,
                         weight_decay=weight_decay)
        self.initial_accumulator_value = check_real("Adagrad", "initial_accumulator_value",
                                                    initial_accumulator_value, 0.0)
        self.epsilon = check_real("Adagrad", "epsilon", epsilon, 0.0)

    def _slot_names(self):
        return ("accumulator",)

    def _initial_slot_value(self, name):
        return self.initial_accumulator_value

    def _update(self, xp, param, grad, slots, tmp, lr):
        accumulator = slots["accumulator"]
        xp.multiply(grad, grad, out=tmp)
        accumulator += tmp
        xp.add(accumulator, self.epsilon, out=tmp)
        xp.sqrt(tmp, out=tmp)
        xp.divide(grad, tmp, out=tmp)
        tmp *= lr
        param -= tmp
