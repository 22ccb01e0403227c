"""What Dense and the convolutions share: ``activation(op(inputs, kernel) + bias)``'s arguments,
weights and config."""
from ..core import initializers
from . import _args, regularizers
from .activation import ActivationMixin
from .base import InputSpec, Layer


class _KernelLayer(ActivationMixin, Layer):
    """Base of the layers with a kernel, an optional bias and an activation.

    Subclasses give the input rank (``_input_rank``, InputSpec arguments), the weight shapes for
    inputs with ``features`` on the last axis (``_weight_shapes``) and ``_pre_activation``.
    """

    _input_rank = {"min_ndim": 2}

    def __init__(self, activation=None, use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        owner = type(self).__name__
        self._set_activation(activation)
        self.use_bias = _args.boolean(owner, "use_bias", use_bias)
        self.kernel_initializer = _args.initializer(owner, "kernel_initializer", kernel_initializer)
        self.bias_initializer = _args.initializer(owner, "bias_initializer", bias_initializer)
        self.kernel_regularizer = _args.regularizer(owner, "kernel_regularizer", kernel_regularizer)
        self.bias_regularizer = _args.regularizer(owner, "bias_regularizer", bias_regularizer)
        self.kernel = self.bias = None
        self.input_spec = InputSpec(**self._input_rank)

    def _weight_shapes(self, features):
        """``(kernel shape, bias shape)`` for inputs with ``features`` values on their last axis."""
        raise NotImplementedError

    def build(self, input_shape):
        features = input_shape[-1]
        if features is None:
            raise ValueError(
                f'Layer "{self.name}": the last dimension of the input (features or channels) must be known; '
                f"got {input_shape}."
            )
        kernel_shape, bias_shape = self._weight_shapes(features)
        self.kernel = self.add_weight("kernel", kernel_shape, self.kernel_initializer,
                                      regularizer=self.kernel_regularizer)
        if self.use_bias:
            self.bias = self.add_weight("bias", bias_shape, self.bias_initializer, regularizer=self.bias_regularizer)
        self.input_spec = InputSpec(**self._input_rank, axes={-1: features})

    def get_config(self):
        config = super().get_config()
        config.update(
            activation=self.activation,
            use_bias=self.use_bias,
            kernel_initializer=initializers.serialize(self.kernel_initializer),
            bias_initializer=initializers.serialize(self.bias_initializer),
            kernel_regularizer=regularizers.serialize(self.kernel_regularizer),
            bias_regularizer=regularizers.serialize(self.bias_regularizer),
        )
        return config
