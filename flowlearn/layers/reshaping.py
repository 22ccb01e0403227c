"""Layers that only rearrange values: Flatten and Reshape."""
import math

from ..core import ops
from . import _args
from .base import Layer


class Flatten(Layer):
    """Flatten every axis but the batch: (batch, ...) -> (batch, prod(...)).

    The reshape is recorded as ``(-1, features)``, so a traced graph accepts any batch size.

    >>> import numpy as np, flowlearn as fl
    >>> fl.layers.Flatten()(np.ones((2, 7, 7, 64))).shape
    (2, 3136)
    """

    def call(self, inputs, training=None):
        if inputs.ndim == 0:
            raise ValueError(f'Layer "{self.name}": expected input of rank >= 1; got shape ().')
        return ops.reshape(inputs, (-1, math.prod(inputs.shape[1:])))

    def compute_output_shape(self, input_shape):
        shape = self._checked_shape(input_shape)
        rest = shape[1:]
        return (shape[0], None if None in rest else math.prod(rest))


class Reshape(Layer):
    """Reshape each sample to ``target_shape`` (no batch dimension; one entry may be -1).

    >>> import numpy as np, flowlearn as fl
    >>> fl.layers.Reshape((28, 28, 1))(np.ones((2, 784))).shape
    (2, 28, 28, 1)
    >>> fl.layers.Reshape((-1, 2))(np.ones((2, 6))).shape
    (2, 3, 2)
    """

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        self.target_shape = _args.shape_tuple("Reshape", "target_shape", target_shape, allow_minus_one=True)

    def _resolve(self, sample_shape):
        """``target_shape`` with the -1 worked out for samples of ``sample_shape`` (None if unknown)."""
        if None in sample_shape:
            return tuple(None if d == -1 else d for d in self.target_shape)
        size, known = math.prod(sample_shape), math.prod(d for d in self.target_shape if d != -1)
        fits = size % known == 0 if -1 in self.target_shape else size == known
        if not fits:
            raise ValueError(
                f'Layer "{self.name}": cannot reshape samples of shape {tuple(sample_shape)} ({size} values) into '
                f"target_shape {self.target_shape}."
            )
        return tuple(size // known if d == -1 else d for d in self.target_shape)

    def call(self, inputs, training=None):
        return ops.reshape(inputs, (-1,) + self._resolve(inputs.shape[1:]))

    def compute_output_shape(self, input_shape):
        shape = self._checked_shape(input_shape)
        return (shape[0],) + self._resolve(shape[1:])

    def get_config(self):
        config = super().get_config()
        config["target_shape"] = list(self.target_shape)
        return config
