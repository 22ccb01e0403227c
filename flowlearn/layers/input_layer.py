"""InputLayer and Input: declare the shape (and dtype) of a model's input."""
import numpy

from . import _args
from .base import InputSpec, Layer


class InputLayer(Layer):
    """The entry point of a model: fixes the per-sample input ``shape`` (no batch dimension).

    It has no weights and passes its input through, after checking the shape and casting to
    ``dtype`` (float32 by default; use an integer dtype before an Embedding). A Sequential model
    builds itself from ``input_shape``.

    >>> import flowlearn as fl
    >>> layer = fl.layers.InputLayer((28, 28, 1))
    >>> layer.input_shape, layer.compute_output_shape((None, 28, 28, 1))
    ((28, 28, 1), (None, 28, 28, 1))
    """

    def __init__(self, shape, batch_size=None, dtype=None, name=None):
        super().__init__(name=name)
        owner = "InputLayer"
        self.input_shape = _args.shape_tuple(owner, "shape", shape, allow_none=True)
        self.batch_size = None if batch_size is None else _args.positive_int(owner, "batch_size", batch_size)
        if dtype is not None:
            try:
                dtype = numpy.dtype(dtype)
            except TypeError:
                dtype = None
            if dtype is None or dtype.kind not in "biuf":
                raise _args.invalid(owner, "dtype", "a numeric dtype such as 'float32' or 'int64'", dtype)
            self.dtype = dtype
        self.input_spec = InputSpec(shape=(self.batch_size,) + self.input_shape)
        self.built = True
        self.build_input_shape = (None,) + self.input_shape

    @property
    def shape(self):
        """The full input shape, batch dimension first (None unless ``batch_size`` was given)."""
        return (self.batch_size,) + self.input_shape

    def call(self, inputs, training=None):
        return inputs

    def compute_output_shape(self, input_shape):
        return self._checked_shape(input_shape)

    def get_config(self):
        return {"name": self.name, "shape": list(self.input_shape), "batch_size": self.batch_size,
                "dtype": self.dtype.name}


def Input(shape, batch_size=None, dtype=None, name=None):  # noqa: N802 (Keras's name)
    """An :class:`InputLayer` declaring a model's per-sample input ``shape``.

    >>> import flowlearn as fl
    >>> fl.layers.Input((784,)).shape
    (None, 784)
    """
    return InputLayer(shape, batch_size=batch_size, dtype=dtype, name=name)
