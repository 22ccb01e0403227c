"""Keras-style layers, their functional forms for model functions, and variable scopes.

Layer classes build their weights from the first input's shape (``fl.layers.Dense(10)(x)``);
functional forms (``fl.layers.dense(x, 10)``) keep theirs in the current ``fl.variable_scope``.
"""
from . import regularizers
from .activation import Activation
from .base import InputSpec, Layer, clear_session
from .batch_normalization import BatchNormalization
from .convolution import Conv2D, Conv2DTranspose
from .dense import Dense
from .dropout import Dropout
from .embedding import Embedding
from .functional import (
    average_pooling2d, batch_normalization, conv2d, conv2d_transpose, dense, dropout, flatten, max_pooling2d,
)
from .input_layer import Input, InputLayer
from .pooling import AveragePooling2D, GlobalAveragePooling2D, MaxPooling2D
from .reshaping import Flatten, Reshape
from .seeding import set_random_seed
from .serialization import deserialize, serialize
from .variable_scope import VariableStore, get_variable, variable_scope

# Keras's short aliases.
MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D

__all__ = [
    "Layer", "InputSpec", "Dense", "Conv2D", "Conv2DTranspose", "MaxPooling2D", "AveragePooling2D",
    "GlobalAveragePooling2D", "Flatten", "Reshape", "Dropout", "BatchNormalization", "Activation", "Embedding",
    "InputLayer", "Input", "MaxPool2D", "AvgPool2D",
    "dense", "conv2d", "conv2d_transpose", "max_pooling2d", "average_pooling2d", "dropout", "flatten",
    "batch_normalization",
    "variable_scope", "VariableStore", "get_variable", "regularizers", "set_random_seed", "clear_session",
    "serialize", "deserialize",
]

# The model container, its saving and its callbacks.
from . import callbacks
from .saving import load_model, save_model
from .sequential import Sequential

__all__ += ["Sequential", "load_model", "save_model", "callbacks"]
