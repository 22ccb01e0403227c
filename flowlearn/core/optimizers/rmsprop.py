"""RMSProp (Tieleman & Hinton, 2012), centered variant (Graves, 2013)."""
from ._checks import check_bool, check_real
from .optimizer import Optimizer


class RMSProp(Optimizer):
    """RMSProp with Keras's defaults and epsilon placement.

    Per parameter::

        v = rho * v + (1 - rho) * grad ** 2
        a = rho * a + (1 - rho) * grad                  # centered only
        step = lr * grad / sqrt(v - a ** 2 + epsilon)   # "- a ** 2" only when centered
        param -= step                                   # momentum == 0
        s = momentum * s + step; param -= s             # momentum > 0

    Epsilon sits *inside* the square root (Keras); ``torch.optim.RMSprop`` adds its ``eps``
    outside it and calls ``rho`` ``alpha`` (default 0.99 there, 0.9 here). PyTorch's momentum
    buffer holds ``s / lr``: the same updates for a constant learning rate.
    ``RMSprop`` (Keras's spelling) is another name for this class.

    >>> import flowlearn as fl
    >>> w = fl.tensor([1.0], requires_grad=True)
    >>> w.grad = fl.tensor([2.0]).data
    >>> RMSProp(learning_rate=0.01, epsilon=0.0).step([w])
    >>> round(w.item(), 5)   # 1 - 0.01 * 2 / sqrt(0.1 * 4)
    0.96838
    """

    elementwise_update = True

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, clipnorm=None,
                 clipvalue=None, global_clipnorm=None, weight_decay=None):
        super().__init__(learning_rate, clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm,
                         weight_decay=weight_decay)
        self.rho = check_real("RMSProp", "rho", rho, 0.0, 1.0, high_open=True)
        self.momentum = check_real("RMSProp", "momentum", momentum, 0.0, 1.0)
        self.epsilon = check_real("RMSProp", "epsilon", epsilon, 0.0)
        self.centered = check_bool("RMSProp", "centered", centered)

    def _slot_names(self):
        return ("velocity",) + (("average_gradient",) if self.centered else ()) + (
            ("momentum",) if self.momentum else ())

    def _update(self, xp, param, grad, slots, tmp, lr):
        velocity = slots["velocity"]
        xp.multiply(grad, grad, out=tmp)
        tmp -= velocity
        tmp *= 1.0 - self.rho
        velocity += tmp
        if self.centered:
            average = slots["average_gradient"]
            xp.subtract(grad, average, out=tmp)
            tmp *= 1.0 - self.rho
            average += tmp
            xp.multiply(average, average, out=tmp)
            xp.subtract(velocity, tmp, out=tmp)
            tmp += self.epsilon
        else:
            xp.add(velocity, self.epsilon, out=tmp)
        xp.sqrt(tmp, out=tmp)
        xp.divide(grad, tmp, out=tmp)
        tmp *= lr
        if self.momentum:
            accumulated = slots["momentum"]
            accumulated *= self.momentum
            accumulated += tmp
            param -= accumulated
        else:
            param -= tmp


RMSprop = RMSProp
