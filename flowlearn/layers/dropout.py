"""Dropout: randomly zero a fraction of the inputs in training; the identity in inference."""
import numbers

import numpy

from ..core import ops
from . import _args, seeding
from .base import Layer


class Dropout(Layer):
    """Zero each input with probability ``rate`` in training and scale the rest by ``1 / (1 - rate)``.

    Outside training it returns its input unchanged. Masks come from the layer's own generator when
    ``seed`` is given, else from the generator a container assigned (``layer._rng``), else from the
    module generator that :func:`flowlearn.layers.set_random_seed` reseeds.

    >>> import numpy as np, flowlearn as fl
    >>> layer = fl.layers.Dropout(0.5, seed=0)
    >>> x = np.ones((2, 4), dtype="float32")
    >>> bool((layer(x).numpy() == x).all())  # inference: identity
    True
    >>> sorted(set(layer(x, training=True).numpy().ravel().tolist()))
    [0.0, 2.0]
    """

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = _args.number_in("Dropout", "rate", rate, 0.0, 1.0, high_open=True)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
            raise _args.invalid("Dropout", "seed", "a non-negative integer or None", seed)
        self.seed = None if seed is None else int(seed)
        self._seed_rng = None if seed is None else numpy.random.default_rng(self.seed)

    def _mask_rng(self):
        if self._seed_rng is not None:
            return self._seed_rng
        return self._rng if self._rng is not None else seeding.dropout_rng()

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        return ops.dropout(inputs, self.rate, training=True, rng=self._mask_rng())

    def compute_output_shape(self, input_shape):
        return self._checked_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, seed=self.seed)
        return config
