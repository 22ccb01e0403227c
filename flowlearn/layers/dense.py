"""Dense: the fully connected layer, ``activation(inputs @ kernel + bias)``."""
from ..core import ops
from . import _args
from ._kernel import _KernelLayer


class Dense(_KernelLayer):
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
        super().__init__(activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                         bias_regularizer, **kwargs)
        self.units = _args.positive_int("Dense", "units", units)

    def _weight_shapes(self, features):
        return (features, self.units), (self.units,)

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
        config["units"] = self.units
        return config
