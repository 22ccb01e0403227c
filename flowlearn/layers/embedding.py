"""Embedding: integer ids -> rows of a trainable table."""
from ..core import backend, initializers, ops
from . import _args, regularizers
from .base import Layer


class Embedding(Layer):
    """Map integer ids in ``[0, input_dim)`` to vectors of size ``output_dim``.

    (batch, ...) ids give (batch, ..., output_dim) vectors.

    Ids outside the range raise ValueError (rather than silently wrapping around as negative
    indices would). Float inputs holding whole numbers are accepted and cast.

    >>> import numpy as np, flowlearn as fl
    >>> layer = fl.layers.Embedding(1000, 16)
    >>> layer(np.array([[1, 2, 3], [4, 5, 999]])).shape
    (2, 3, 16)
    """

    _autocast = False  # ids stay integers

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform", embeddings_regularizer=None,
                 **kwargs):
        super().__init__(**kwargs)
        owner = "Embedding"
        self.input_dim = _args.positive_int(owner, "input_dim", input_dim)
        self.output_dim = _args.positive_int(owner, "output_dim", output_dim)
        self.embeddings_initializer = _args.initializer(owner, "embeddings_initializer", embeddings_initializer)
        self.embeddings_regularizer = _args.regularizer(owner, "embeddings_regularizer", embeddings_regularizer)
        self.embeddings = None

    def build(self, input_shape):
        self.embeddings = self.add_weight("embeddings", (self.input_dim, self.output_dim),
                                          self.embeddings_initializer, regularizer=self.embeddings_regularizer)

    def _ids(self, inputs):
        data = inputs.data
        xp = backend.array_module(data)
        if data.dtype.kind == "f":
            if data.size and not bool(xp.all(data == xp.floor(data))):
                raise ValueError(
                    f'Layer "{self.name}": expected integer ids; got non-integral values of dtype {data.dtype}.'
                )
            inputs = inputs.astype("int64")
        elif data.dtype.kind not in "iu":
            raise ValueError(f'Layer "{self.name}": expected integer ids; got dtype {data.dtype}.')
        if data.size:
            low, high = int(data.min()), int(data.max())
            if low < 0 or high >= self.input_dim:
                raise ValueError(
                    f'Layer "{self.name}": ids must be in [0, {self.input_dim}) (input_dim={self.input_dim}); '
                    f"got values in [{low}, {high}]."
                )
        return inputs

    def call(self, inputs, training=None):
        return ops.getitem(self.embeddings, self._ids(inputs))

    def compute_output_shape(self, input_shape):
        return tuple(self._checked_shape(input_shape)) + (self.output_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(
            input_dim=self.input_dim,
            output_dim=self.output_dim,
            embeddings_initializer=initializers.serialize(self.embeddings_initializer),
            embeddings_regularizer=regularizers.serialize(self.embeddings_regularizer),
        )
        return config
