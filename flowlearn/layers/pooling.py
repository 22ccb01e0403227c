"""Pooling layers on NHWC images: MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D."""
from ..core import ops
from . import _args
from .base import InputSpec, Layer
from .convolution import conv_output_size


class _Pooling2D(Layer):
    """Window pooling: ``pool_size`` windows every ``strides`` (default: ``pool_size``) pixels."""

    _pool = None  # the op, set by subclasses

    def __init__(self, pool_size=2, strides=None, padding="valid", **kwargs):
        super().__init__(**kwargs)
        owner = type(self).__name__
        self.pool_size = _args.int_tuple(owner, "pool_size", pool_size)
        self.strides = self.pool_size if strides is None else _args.int_tuple(owner, "strides", strides)
        self.padding = _args.choice(owner, "padding", padding, ("valid", "same"))
        self.input_spec = InputSpec(ndim=4)

    def call(self, inputs, training=None):
        return type(self)._pool(inputs, pool_size=self.pool_size, strides=self.strides, padding=self.padding)

    def compute_output_shape(self, input_shape):
        shape = self._checked_shape(input_shape)
        sizes = [conv_output_size(n, k, s, 1, self.padding)
                 for n, k, s in zip(shape[1:3], self.pool_size, self.strides)]
        if any(n is not None and n < 1 for n in sizes):
            raise ValueError(
                f'Layer "{self.name}": pool_size {self.pool_size} does not fit in inputs of shape {shape} '
                "with padding='valid'."
            )
        return (shape[0], *sizes, shape[3])

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=list(self.pool_size), strides=list(self.strides), padding=self.padding)
        return config


class MaxPooling2D(_Pooling2D):
    """Maximum over each window.

    >>> import numpy as np, flowlearn as fl
    >>> fl.layers.MaxPooling2D(2)(np.ones((2, 28, 28, 32))).shape
    (2, 14, 14, 32)
    """

    _pool = staticmethod(ops.max_pool2d)


class AveragePooling2D(_Pooling2D):
    """Mean over each window (with "same" padding, over its unpadded elements, as TensorFlow).

    >>> import numpy as np, flowlearn as fl
    >>> fl.layers.AveragePooling2D(3, strides=1, padding="same")(np.ones((2, 5, 5, 4))).shape
    (2, 5, 5, 4)
    """

    _pool = staticmethod(ops.avg_pool2d)


class GlobalAveragePooling2D(Layer):
    """Mean over height and width: (batch, h, w, c) -> (batch, c).

    >>> import numpy as np, flowlearn as fl
    >>> fl.layers.GlobalAveragePooling2D()(np.ones((2, 7, 7, 64))).shape
    (2, 64)
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.input_spec = InputSpec(ndim=4)

    def call(self, inputs, training=None):
        return ops.mean(inputs, axis=(1, 2))

    def compute_output_shape(self, input_shape):
        shape = self._checked_shape(input_shape)
        return (shape[0], shape[3])
