"""AdamW: Adam with decoupled weight decay (Loshchilov & Hutter, 2019)."""
from .adam import Adam


class AdamW(Adam):
    """Adam (see :class:`Adam` for epsilon) plus decoupled weight decay.

    Before each Adam update, ``param *= 1 - lr * weight_decay``, as in Keras and
    ``torch.optim.AdamW`` (whose default ``weight_decay`` is 0.01; Keras's and this one's 0.004).

    >>> import flowlearn as fl
    >>> w = fl.tensor([2.0], requires_grad=True)
    >>> w.grad = fl.tensor([0.0]).data
    >>> AdamW(learning_rate=0.5, weight_decay=0.1).step([w])
    >>> w.item()   # 2 * (1 - 0.5 * 0.1); a zero gradient moves nothing else
    1.899999976158142
    """

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, clipnorm=None, clipvalue=None, global_clipnorm=None):
        if weight_decay is None:
            raise ValueError("AdamW: expected a number for `weight_decay`; got weight_decay=None (use Adam).")
        super().__init__(learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, amsgrad=amsgrad,
                         clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm,
                         weight_decay=weight_decay)
