"""Convolution layers on NHWC images: Conv2D and its transpose, Conv2DTranspose."""
from ..core import ops
from . import _args
from ._kernel import _KernelLayer


def conv_output_size(size, kernel, stride, dilation, padding):
    """Spatial size after a convolution or pooling window (None stays None), as TensorFlow computes it."""
    if size is None:
        return None
    if padding == "same":
        return -(-size // stride)
    return (size - dilation * (kernel - 1) - 1) // stride + 1


class _Conv2DBase(_KernelLayer):
    """What Conv2D and Conv2DTranspose share: filters, window, strides and padding."""

    _input_rank = {"ndim": 4}

    def __init__(self, filters, kernel_size, strides=1, padding="valid", activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, **kwargs):
        super().__init__(activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                         bias_regularizer, **kwargs)
        owner = type(self).__name__
        self.filters = _args.positive_int(owner, "filters", filters)
        self.kernel_size = _args.int_tuple(owner, "kernel_size", kernel_size)
        self.strides = _args.int_tuple(owner, "strides", strides)
        self.padding = _args.choice(owner, "padding", padding, ("valid", "same"))

    def _kernel_shape(self, channels):
        raise NotImplementedError

    def _weight_shapes(self, channels):
        return self._kernel_shape(channels), (self.filters,)

    def _convolve(self, inputs):
        raise NotImplementedError

    def _pre_activation(self, inputs):
        outputs = self._convolve(inputs)
        if self.bias is not None:
            outputs = outputs + self.bias
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=list(self.kernel_size), strides=list(self.strides),
                      padding=self.padding)
        return config


class Conv2D(_Conv2DBase):
    """2-D convolution of NHWC images with an HWIO kernel ``(kh, kw, in_channels, filters)``.

    Parameters
    ----------
    filters : int
        Output channels.
    kernel_size, strides, dilation_rate : int or (int, int)
    padding : {"valid", "same"}
        "same" keeps ``ceil(size / stride)`` as TensorFlow does.
    activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer
        As for :class:`Dense`.

    >>> import numpy as np, flowlearn as fl
    >>> fl.layers.Conv2D(32, 5, padding="same", activation="relu")(np.ones((2, 28, 28, 1))).shape
    (2, 28, 28, 32)
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", dilation_rate=1, activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(filters, kernel_size, strides, padding, activation, use_bias, kernel_initializer,
                         bias_initializer, kernel_regularizer, bias_regularizer, **kwargs)
        self.dilation_rate = _args.int_tuple("Conv2D", "dilation_rate", dilation_rate)

    def _kernel_shape(self, channels):
        return self.kernel_size + (channels, self.filters)

    def _convolve(self, inputs, activation=None):
        # The bias, and a ReLU activation, go into the conv2d op itself, which applies them to each
        # slice of its product while it is in cache (see flowlearn.core.ops.conv2d).
        return ops.conv2d(inputs, self.kernel, strides=self.strides, padding=self.padding,
                          dilation=self.dilation_rate, bias=self.bias, activation=activation)

    def _pre_activation(self, inputs):
        return self._convolve(inputs)

    def call(self, inputs, training=None):
        if self.activation == "relu":
            return self._convolve(inputs, activation="relu")
        return super().call(inputs, training)

    def compute_output_shape(self, input_shape):
        shape = self._checked_shape(input_shape)
        batch, height, width = shape[:3]
        sizes = [conv_output_size(n, k, s, d, self.padding)
                 for n, k, s, d in zip((height, width), self.kernel_size, self.strides, self.dilation_rate)]
        if any(n is not None and n < 1 for n in sizes):
            raise ValueError(
                f'Layer "{self.name}": kernel {self.kernel_size} (dilation {self.dilation_rate}) does not fit in '
                f"inputs of shape {shape} with padding='valid'."
            )
        return (batch, *sizes, self.filters)

    def get_config(self):
        config = super().get_config()
        config["dilation_rate"] = list(self.dilation_rate)
        return config


class Conv2DTranspose(_Conv2DBase):
    """Transposed convolution ("deconvolution"): upsamples NHWC images, as Keras Conv2DTranspose.

    The kernel is ``(kh, kw, filters, in_channels)``, the layout of the conv2d it transposes.
    Output sizes: ``(size - 1) * stride + kernel`` with "valid", ``size * stride`` with "same".

    >>> import numpy as np, flowlearn as fl
    >>> fl.layers.Conv2DTranspose(8, 3, strides=2, padding="same")(np.ones((2, 7, 7, 16))).shape
    (2, 14, 14, 8)
    """

    def _kernel_shape(self, channels):
        return self.kernel_size + (self.filters, channels)

    def _convolve(self, inputs):
        return ops.conv2d_transpose(inputs, self.kernel, strides=self.strides, padding=self.padding)

    def compute_output_shape(self, input_shape):
        batch, height, width = self._checked_shape(input_shape)[:3]

        def size(n, k, s):
            if n is None:
                return None
            return n * s if self.padding == "same" else (n - 1) * s + k

        return (batch, *(size(n, k, s) for n, k, s in zip((height, width), self.kernel_size, self.strides)),
                self.filters)
