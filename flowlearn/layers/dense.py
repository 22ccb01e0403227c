"""Dense: the fully connected layer, ``activation(inputs @ kernel + bias)``."""
from ..core import initializers, ops
from . import _args, regularizers
from .activation import ActivationMixin
from .base import InputSpec, Layer


class Dense(ActivationMixin, Layer):
    """Fully connected layer on the last axis: ``activation(inputs @ kernel + bias)``.

    Inputs of rank > 2 (batch, ..., features) are transformed on their last axis.

    Parameters
    ----------
    units : int
        Size of the output's last axis.
    activation : str, optional
        An activation name ("relu", "softmax", ...); None is linear.
    use_bias : bool
    kernel_initializer, bias_initializer : str, dict or Initializer
    kernel_regularizer, bias_regularizer : str, dict or Regularizer, optional

    >>> import numpy as np, flowlearn as fl
    >>> layer = fl.layers.Dense(10, activation="softmax")
    >>> layer(np.ones((32, 784))).shape
    (32, 10)
    >>> layer.kernel.shape, layer.activation
    ((784, 10), 'softmax')
    """

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        owner = "Dense"
        self.units = _args.positive_int(owner, "units", units)
        self._set_activation(activation)
        self.use_bias = _args.boolean(owner, "use_bias", use_bias)
        self.kernel_initializer = _args.initializer(owner, "kernel_initializer", kernel_initializer)
        self.bias_initializer = _args.initializer(owner, "bias_initializer", bias_initializer)
        self.kernel_regularizer = _args.regularizer(owner, "kernel_regularizer", kernel_regularizer)
        self.bias_regularizer = _args.regularizer(owner, "bias_regularizer", bias_regularizer)
        self.kernel = self.bias = None
        self.input_spec = InputSpec(min_ndim=2)

    def build(self, input_shape):
        features = input_shape[-1]
        if features is None:
            raise ValueError(f'Layer "{self.name}": the last dimension of the input must be known; got {input_shape}.')
        self.kernel = self.add_weight("kernel", (features, self.units), self.kernel_initializer,
                                      regularizer=self.kernel_regularizer)
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.units,), self.bias_initializer,
                                        regularizer=self.bias_regularizer)
        self.input_spec = InputSpec(min_ndim=2, axes={-1: features})

    def _pre_activation(self, inputs):
        if inputs.ndim == 2:
            outputs = ops.matmul(inputs, self.kernel)
        else:
            # One GEMM over all leading axes; -1 keeps a traced graph valid for any batch size.
            flat = ops.reshape(inputs, (-1, inputs.shape[-1]))
            outputs = ops.reshape(ops.matmul(flat, self.kernel), (-1,) + inputs.shape[1:-1] + (self.units,))
        if self.bias is not None:
            outputs = outputs + self.bias
        return outputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            activation=self.activation,
            use_bias=self.use_bias,
            kernel_initializer=initializers.serialize(self.kernel_initializer),
            bias_initializer=initializers.serialize(self.bias_initializer),
            kernel_regularizer=regularizers.serialize(self.kernel_regularizer),
            bias_regularizer=regularizers.serialize(self.bias_regularizer),
        )
        return config
