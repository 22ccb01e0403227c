"""Functional forms for model functions, as in ``tf.layers``: ``h = layers.dense(x, 128, activation="relu")``.

Each form runs the matching layer class. Forms that own weights (dense, conv2d, conv2d_transpose,
batch_normalization) get-or-create their layer in the current :func:`variable_scope` by an automatic
name (``dense``, ``dense_1``, ... in call order) or ``name=``, so calling the model function again
reuses the same weights; outside a scope they raise RuntimeError. Weightless forms work anywhere.
"""
from ..core import ops
from .batch_normalization import BatchNormalization
from .convolution import Conv2D, Conv2DTranspose
from .dense import Dense
from .dropout import Dropout
from .pooling import AveragePooling2D, MaxPooling2D
from .reshaping import Flatten
from .variable_scope import scoped_layer

__all__ = [
    "dense", "conv2d", "conv2d_transpose", "max_pooling2d", "average_pooling2d", "dropout", "flatten",
    "batch_normalization",
]


def dense(inputs, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
          bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, trainable=True, name=None):
    """``activation(inputs @ kernel + bias)`` with the weights of the scope's layer ``name`` (see :class:`Dense`).

    >>> import numpy as np, flowlearn as fl
    >>> with fl.variable_scope(fl.VariableStore()):
    ...     fl.layers.dense(np.ones((4, 3)), 2, activation="relu").shape
    (4, 2)
    """
    arguments = {"units": units, "activation": activation, "use_bias": use_bias,
                 "kernel_initializer": kernel_initializer, "bias_initializer": bias_initializer,
                 "kernel_regularizer": kernel_regularizer, "bias_regularizer": bias_regularizer,
                 "trainable": trainable}
    return scoped_layer("layers.dense", "dense", Dense, name, arguments)(inputs)


def conv2d(inputs, filters, kernel_size, strides=1, padding="valid", dilation_rate=1, activation=None,
           use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
           bias_regularizer=None, trainable=True, name=None):
    """2-D convolution of NHWC ``inputs`` with the scope's layer ``name`` (see :class:`Conv2D`).

    >>> import numpy as np, flowlearn as fl
    >>> with fl.variable_scope(fl.VariableStore()):
    ...     fl.layers.conv2d(np.ones((2, 28, 28, 1)), 32, 5, padding="same").shape
    (2, 28, 28, 32)
    """
    arguments = {"filters": filters, "kernel_size": kernel_size, "strides": strides, "padding": padding,
                 "dilation_rate": dilation_rate, "activation": activation, "use_bias": use_bias,
                 "kernel_initializer": kernel_initializer, "bias_initializer": bias_initializer,
                 "kernel_regularizer": kernel_regularizer, "bias_regularizer": bias_regularizer,
                 "trainable": trainable}
    return scoped_layer("layers.conv2d", "conv2d", Conv2D, name, arguments)(inputs)


def conv2d_transpose(inputs, filters, kernel_size, strides=1, padding="valid", activation=None, use_bias=True,
                     kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                     bias_regularizer=None, trainable=True, name=None):
    """Transposed 2-D convolution with the scope's layer ``name`` (see :class:`Conv2DTranspose`)."""
    arguments = {"filters": filters, "kernel_size": kernel_size, "strides": strides, "padding": padding,
                 "activation": activation, "use_bias": use_bias, "kernel_initializer": kernel_initializer,
                 "bias_initializer": bias_initializer, "kernel_regularizer": kernel_regularizer,
                 "bias_regularizer": bias_regularizer, "trainable": trainable}
    return scoped_layer("layers.conv2d_transpose", "conv2d_transpose", Conv2DTranspose, name, arguments)(inputs)


def batch_normalization(inputs, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                        beta_initializer="zeros", gamma_initializer="ones", moving_mean_initializer="zeros",
                        moving_variance_initializer="ones", training=False, trainable=True, name=None):
    """Batch normalization with the scope's layer ``name`` (see :class:`BatchNormalization`).

    ``training=True`` normalises with the batch statistics and updates the moving ones; the default
    (False, as in ``tf.layers``) uses the moving statistics. ``training=None`` reads the global flag.
    """
    arguments = {"axis": axis, "momentum": momentum, "epsilon": epsilon, "center": center, "scale": scale,
                 "beta_initializer": beta_initializer, "gamma_initializer": gamma_initializer,
                 "moving_mean_initializer": moving_mean_initializer,
                 "moving_variance_initializer": moving_variance_initializer, "trainable": trainable}
    layer = scoped_layer("layers.batch_normalization", "batch_normalization", BatchNormalization, name, arguments)
    return layer(inputs, training=training)


def max_pooling2d(inputs, pool_size, strides=None, padding="valid", name=None):
    """Max pooling of NHWC ``inputs`` (see :class:`MaxPooling2D`); ``strides`` defaults to ``pool_size``.

    >>> import numpy as np, flowlearn as fl
    >>> fl.layers.max_pooling2d(np.ones((2, 28, 28, 32)), 2, 2).shape
    (2, 14, 14, 32)
    """
    return MaxPooling2D(pool_size, strides, padding, name=name or "max_pooling2d")(inputs)


def average_pooling2d(inputs, pool_size, strides=None, padding="valid", name=None):
    """Average pooling of NHWC ``inputs`` (see :class:`AveragePooling2D`)."""
    return AveragePooling2D(pool_size, strides, padding, name=name or "average_pooling2d")(inputs)


def flatten(inputs, name=None):
    """``inputs`` as (batch, features) (see :class:`Flatten`)."""
    return Flatten(name=name or "flatten")(inputs)


def dropout(inputs, rate=0.5, training=False, seed=None, name=None):
    """Inverted dropout in training, the identity otherwise (see :class:`Dropout`).

    ``training`` defaults to False as in ``tf.layers.dropout``: pass ``training=True`` (or the
    model function's mode test) to drop, or None to read the global training flag. With ``seed``,
    successive calls draw different masks in a sequence that a new process repeats.

    >>> import numpy as np, flowlearn as fl
    >>> x = np.ones((2, 3), dtype="float32")
    >>> bool((fl.layers.dropout(x, 0.5).numpy() == x).all())
    True
    """
    layer = Dropout(rate, name=name or "dropout")
    if seed is None:
        return layer(inputs, training=training)
    # A fresh layer per call with its own seeded generator would repeat one mask forever; the op's
    # per-seed counter gives the sequence instead.
    return ops.dropout(layer._prepare_input(inputs), layer.rate, training=training, seed=seed)
