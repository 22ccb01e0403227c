"""Stochastic gradient descent, with optional (Nesterov) momentum."""
from ._checks import check_bool, check_real
from .optimizer import Optimizer


class SGD(Optimizer):
    """Gradient descent with momentum, as in Keras.

    Without momentum: ``param -= lr * grad``. With momentum ``mu``, a velocity ``v`` (zero at first)
    is kept per parameter::

        v = mu * v - lr * grad
        param += v                          # nesterov=False
        param += mu * v - lr * grad         # nesterov=True

    For a constant learning rate this is exactly ``torch.optim.SGD(lr, momentum=mu,
    nesterov=...)`` (PyTorch keeps ``v / -lr``). When the learning rate changes, Keras (and
    flowlearn) keep the old rate inside ``v`` while PyTorch applies the new rate to it.

    ``GradientDescent`` is another name for this class. The clipping and ``weight_decay``
    arguments are those of :class:`Optimizer`.

    >>> import flowlearn as fl
    >>> w = fl.tensor([1.0], requires_grad=True)
    >>> opt = SGD(learning_rate=0.1, momentum=0.9)
    >>> for _ in range(2):
    ...     w.grad = fl.tensor([1.0]).data
    ...     opt.step([w])
    >>> round(w.item(), 4)   # 1 - 0.1 - (0.9 * 0.1 + 0.1)
    0.71
    """

    elementwise_update = True

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, weight_decay=None):
        super().__init__(learning_rate, clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm,
                         weight_decay=weight_decay)
        self.momentum = check_real("SGD", "momentum", momentum, 0.0, 1.0)
        self.nesterov = check_bool("SGD", "nesterov", nesterov)

    def _slot_names(self):
        return ("momentum",) if self.momentum else ()

    def _update(self, xp, param, grad, slots, tmp, lr):
        xp.multiply(grad, lr, out=tmp)
        if not self.momentum:
            param -= tmp
            return
        velocity = slots["momentum"]
        velocity *= self.momentum
        velocity -= tmp
        if self.nesterov:
            param -= tmp
            xp.multiply(velocity, self.momentum, out=tmp)
            param += tmp
        else:
            param += velocity


GradientDescent = SGD
