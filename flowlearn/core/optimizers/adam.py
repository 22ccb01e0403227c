"""Adam: adaptive moment estimation (Kingma & Ba, 2015)."""
import math

from ._checks import check_bool, check_real
from .optimizer import Optimizer


class Adam(Optimizer):
    """Adam with Keras's defaults and epsilon placement.

    Per parameter, with ``t`` the step number (1 for the first)::

        m = beta_1 * m + (1 - beta_1) * grad
        v = beta_2 * v + (1 - beta_2) * grad ** 2
        param -= lr * sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t) * m / (sqrt(v) + epsilon)

    Epsilon is "epsilon hat" of the paper (Keras, TensorFlow): it is added to the square root
    of the *uncorrected* ``v``. PyTorch adds its ``eps`` to ``sqrt(v / (1 - beta_2 ** t))``, so
    flowlearn's ``epsilon`` equals PyTorch's ``eps * sqrt(1 - beta_2 ** t)``; the two agree
    exactly for ``epsilon = eps = 0`` and differ negligibly whenever ``sqrt(v)`` dwarfs epsilon.
    Defaults differ too: Keras ``epsilon=1e-7``, PyTorch ``eps=1e-8``.

    ``amsgrad=True`` divides by the running maximum of ``v`` instead (as Keras and PyTorch do).

    >>> import flowlearn as fl
    >>> w = fl.tensor([1.0, -1.0], requires_grad=True)
    >>> w.grad = fl.tensor([3.0, -0.5]).data
    >>> Adam(learning_rate=0.1).step([w])
    >>> w.numpy().round(4)   # the first step moves each weight by about lr * sign(grad)
    array([ 0.9, -0.9], dtype=float32)
    """

    elementwise_update = True

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, clipnorm=None,
                 clipvalue=None, global_clipnorm=None, weight_decay=None):
        super().__init__(learning_rate, clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm,
                         weight_decay=weight_decay)
        owner = type(self).__name__
        self.beta_1 = check_real(owner, "beta_1", beta_1, 0.0, 1.0, high_open=True)
        self.beta_2 = check_real(owner, "beta_2", beta_2, 0.0, 1.0, high_open=True)
        self.epsilon = check_real(owner, "epsilon", epsilon, 0.0)
        self.amsgrad = check_bool(owner, "amsgrad", amsgrad)

    def _slot_names(self):
        return ("m", "v", "v_hat") if self.amsgrad else ("m", "v")

    def _prepare(self, lr, t):
        # Both bias corrections folded into one step size.
        return lr * math.sqrt(1.0 - self.beta_2 ** t) / (1.0 - self.beta_1 ** t)

    def _update(self, xp, param, grad, slots, tmp, alpha):
        m, v = slots["m"], slots["v"]
        # m += (1 - beta_1) * (grad - m): accurate in float32 even while m is far from grad.
        xp.subtract(grad, m, out=tmp)
        tmp *= 1.0 - self.beta_1
        m += tmp
        xp.multiply(grad, grad, out=tmp)
        tmp -= v
        tmp *= 1.0 - self.beta_2
        v += tmp
        if self.amsgrad:
            v = xp.maximum(slots["v_hat"], v, out=slots["v_hat"])
        xp.sqrt(v, out=tmp)
        tmp += self.epsilon
        xp.divide(m, tmp, out=tmp)
        tmp *= alpha
        param -= tmp
