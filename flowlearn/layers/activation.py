"""Activations on layers: the Activation layer, and the part shared with Dense and the convolutions.

A layer with an ``activation`` stores its NAME (None for linear) in ``self.activation`` and offers
``call_logits(inputs)``: the output before the activation, so a model can fuse a final softmax or
sigmoid with the cross-entropy loss (stabler and faster than composing them).
"""
from ..core.ops.activation import get_activation
from . import _args
from .base import Layer


def resolve_activation(owner, activation):
    """``(name, function)`` for an activation name (or a registered activation function); linear is (None, None)."""
    if activation is None or (isinstance(activation, str) and activation == "linear"):
        return None, None
    if isinstance(activation, str):
        try:
            return activation, get_activation(activation)
        except ValueError as error:
            raise ValueError(f"{owner}: received an invalid value for `activation`: {error}") from None
    # Only names survive get_config, so a function is accepted only if it is a registered activation.
    name = getattr(activation, "__name__", None)
    try:
        registered = get_activation(name) if isinstance(name, str) else None
    except ValueError:
        registered = None
    if registered is not activation:
        raise _args.invalid(owner, "activation", "an activation name such as 'relu', or None (custom functions "
                            "cannot be saved in a config)", activation)
    return (None, None) if name == "linear" else (name, registered)


class ActivationMixin:
    """For layers computing ``activation(pre_activation(x))``; subclasses define ``_pre_activation``."""

    def _set_activation(self, activation):
        self.activation, self._activation_fn = resolve_activation(type(self).__name__, activation)

    def _pre_activation(self, inputs):
        raise NotImplementedError

    def call(self, inputs, training=None):
        outputs = self._pre_activation(inputs)
        return outputs if self._activation_fn is None else self._activation_fn(outputs)

    def call_logits(self, inputs, training=None):
        """The output before the activation (what a fused softmax/sigmoid cross-entropy loss takes)."""
        return self._pre_activation(self._prepare_input(inputs))


class Activation(ActivationMixin, Layer):
    """Apply an activation function by name.

    >>> import flowlearn as fl
    >>> fl.layers.Activation("relu")(fl.tensor([[-1.0, 2.0]])).numpy()
    array([[0., 2.]], dtype=float32)
    """

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self._set_activation(activation)

    def _pre_activation(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config["activation"] = self.activation
        return config
