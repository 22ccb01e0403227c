"""BatchNormalization: normalise each feature by batch statistics in training, moving ones in inference."""
import numbers

from ..core import initializers, ops
from . import _args, regularizers
from .base import InputSpec, Layer


class BatchNormalization(Layer):
    """Normalise over every axis but ``axis``, then scale by ``gamma`` and shift by ``beta``.

    In training the batch's mean and variance normalise, and the moving statistics (non-trainable
    weights) are updated in place: ``moving = moving * momentum + batch * (1 - momentum)``. In
    inference the moving statistics normalise. A frozen layer (``trainable=False``) always runs in
    inference mode, as in Keras 3, so fine-tuning leaves its statistics alone.

    Parameters
    ----------
    axis : int
        The feature axis (-1: the last, i.e. channels for NHWC images).
    momentum : float in [0, 1]
    epsilon : float > 0
    center, scale : bool
        Learn ``beta`` / ``gamma``.

    >>> import numpy as np, flowlearn as fl
    >>> layer = fl.layers.BatchNormalization()
    >>> y = layer(np.random.default_rng(0).normal(5.0, 2.0, (64, 3)), training=True)
    >>> bool(abs(y.numpy().mean()) < 1e-5)
    True
    >>> [w.name for w in layer.non_trainable_weights]
    ['batch_normalization/moving_mean', 'batch_normalization/moving_variance']
    """

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", moving_mean_initializer="zeros",
                 moving_variance_initializer="ones", beta_regularizer=None, gamma_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        owner = "BatchNormalization"
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise _args.invalid(owner, "axis", "an integer", axis)
        self.axis = int(axis)
        self.momentum = _args.number_in(owner, "momentum", momentum, 0.0, 1.0)
        self.epsilon = _args.number_in(owner, "epsilon", epsilon, 0.0, float("inf"), low_open=True, high_open=True)
        self.center = _args.boolean(owner, "center", center)
        self.scale = _args.boolean(owner, "scale", scale)
        self.beta_initializer = _args.initializer(owner, "beta_initializer", beta_initializer)
        self.gamma_initializer = _args.initializer(owner, "gamma_initializer", gamma_initializer)
        self.moving_mean_initializer = _args.initializer(owner, "moving_mean_initializer", moving_mean_initializer)
        self.moving_variance_initializer = _args.initializer(
            owner, "moving_variance_initializer", moving_variance_initializer)
        self.beta_regularizer = _args.regularizer(owner, "beta_regularizer", beta_regularizer)
        self.gamma_regularizer = _args.regularizer(owner, "gamma_regularizer", gamma_regularizer)
        self.gamma = self.beta = self.moving_mean = self.moving_variance = None

    def build(self, input_shape):
        rank = len(input_shape)
        if not -rank <= self.axis < rank:
            raise ValueError(
                f'Layer "{self.name}": axis {self.axis} is out of range for input of rank {rank} '
                f"(shape {tuple(input_shape)})."
            )
        axis = self.axis % rank
        size = input_shape[axis]
        if size is None:
            raise ValueError(
                f'Layer "{self.name}": the size of axis {self.axis} must be known; got {tuple(input_shape)}.'
            )
        if self.scale:
            self.gamma = self.add_weight("gamma", (size,), self.gamma_initializer, regularizer=self.gamma_regularizer)
        if self.center:
            self.beta = self.add_weight("beta", (size,), self.beta_initializer, regularizer=self.beta_regularizer)
        self.moving_mean = self.add_weight("moving_mean", (size,), self.moving_mean_initializer, trainable=False)
        self.moving_variance = self.add_weight("moving_variance", (size,), self.moving_variance_initializer,
                                               trainable=False)
        self.input_spec = InputSpec(ndim=rank, axes={axis if self.axis >= 0 else self.axis: size})

    def call(self, inputs, training=None):
        return ops.batch_norm(
            inputs, self.gamma, self.beta, self.moving_mean, self.moving_variance,
            training=bool(training) and self._trainable, momentum=self.momentum, epsilon=self.epsilon,
            axis=self.axis,
        )

    def compute_output_shape(self, input_shape):
        return self._checked_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            axis=self.axis, momentum=self.momentum, epsilon=self.epsilon, center=self.center, scale=self.scale,
            beta_initializer=initializers.serialize(self.beta_initializer),
            gamma_initializer=initializers.serialize(self.gamma_initializer),
            moving_mean_initializer=initializers.serialize(self.moving_mean_initializer),
            moving_variance_initializer=initializers.serialize(self.moving_variance_initializer),
            beta_regularizer=regularizers.serialize(self.beta_regularizer),
            gamma_regularizer=regularizers.serialize(self.gamma_regularizer),
        )
        return config
