"""CNNClassifier: the convolutional network of the MNIST worked example, as a scikit-learn classifier.

It takes images as NHWC arrays (or NHW for one channel), or as flat rows together with
``image_shape=(height, width, channels)``, so it works after scikit-learn transformers, which pass
2-D arrays. Either way the estimator counts ``n_features_in_ = height * width * channels`` and accepts
both forms at prediction.
"""
import math
import numbers

import numpy
from sklearn.utils._param_validation import Interval

from ..layers import Conv2D, Dense, Flatten, MaxPooling2D, Reshape
from ._base import _BaseNetwork, _ClassifierNetwork, check_unit_tuple, dense_layers, fill_doc, store_parameters


def _pair(sizes):
    return sizes * 2 if len(sizes) == 1 else sizes


@fill_doc(epochs=10)
class CNNClassifier(_ClassifierNetwork):
    """Convolutional neural network classifier for images.

    Each entry of ``conv_filters`` adds a convolution (``kernel_size``, "same" padding, ReLU) and a max
    pooling (``pool_size``, "same" padding); then come the Dense ReLU layers of ``dense_units``, each
    followed by dropout, and the output logits. The defaults are the network of the MNIST worked
    example: conv5x5x32 - pool2 - conv5x5x64 - pool2 - dense1024 - dropout0.5 - logits.

    Parameters
    ----------
    conv_filters : sequence of int, default=(32, 64)
        Filters of each convolution block.
    kernel_size : int or (int, int), default=5
        Size of the convolution windows.
    pool_size : int or (int, int), default=2
        Size (and stride) of the max-pooling windows.
    dense_units : sequence of int, default=(1024,)
        Units of the fully connected layers after the convolutions.
    dropout : float in [0, 1), default=0.5
        Fraction of each dense layer's outputs dropped during training.
    image_shape : (int, int, int) or None, default=None
        (height, width, channels) of the images when X is given as flat rows. None: taken from X when X
        has 3 or 4 dimensions; for flat rows, square one-channel images when the number of features is
        a perfect square (784 -> 28x28x1), else a strip of 1 x n_features x 1.
{common_parameters}

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels, sorted.
{common_attributes}

    Examples
    --------
    >>> from flowlearn.estimators import CNNClassifier
    >>> from flowlearn.io.datasets import load_mnist
    >>> (x_train, y_train), (x_test, y_test) = load_mnist()
    >>> model = CNNClassifier(conv_filters=(8, 16), dense_units=(64,), epochs=3, batch_size=50, random_state=0)
    >>> model.fit(x_train[:2000] / 255.0, y_train[:2000]).score(x_test / 255.0, y_test) > 0.85
    True
    """

    _parameter_constraints = {
        **_BaseNetwork._parameter_constraints,
        "conv_filters": ["array-like"],
        "kernel_size": [Interval(numbers.Integral, 1, None, closed="left"), "array-like"],
        "pool_size": [Interval(numbers.Integral, 1, None, closed="left"), "array-like"],
        "dense_units": ["array-like"],
        "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
        "image_shape": ["array-like", None],
    }

    # Parameters understate a convolution's work and memory (each is used at every pixel): cap the
    # prediction chunk instead. 64 MNIST digits keep the second convolution's patch matrix near 40 MB
    # and give each of two threads a share of the batch; fewer images go through as they are.
    _predict_batch_size = 64

    def __init__(self, conv_filters=(32, 64), *, kernel_size=5, pool_size=2, dense_units=(1024,), dropout=0.5,
                 image_shape=None, optimizer="adam", learning_rate=None, batch_size="auto", epochs=10, l2=0.0,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10, tol=1e-4, warm_start=False,
                 random_state=None, verbose=0, device="cpu", strategy=None):
        store_parameters(self, locals())

    # -- images in, flat rows through validation ---------------------------------------------------
    def _flatten_images(self, X, reset):
        """Flat rows for validate_data; the shape of 3-D/4-D X is remembered (at fit) or checked (after)."""
        if getattr(X, "ndim", None) is None and isinstance(X, (list, tuple)):
            X = numpy.asarray(X)
        ndim = getattr(X, "ndim", 2)
        if ndim not in (3, 4):
            if reset:
                self._data_image_shape = None
            return X
        shape = tuple(int(d) for d in X.shape[1:]) + ((1,) if ndim == 3 else ())
        if reset:
            self._data_image_shape = shape
        elif shape != self._image_shape:
            raise ValueError(
                f"X holds images of shape {shape} (height, width, channels); {type(self).__name__} was fitted on "
                f"images of shape {self._image_shape}."
            )
        return X.reshape(X.shape[0], -1)

    def _validate_training_data(self, X, y, reset):
        return super()._validate_training_data(self._flatten_images(X, reset), y, reset)

    def _validate_input(self, X):
        return super()._validate_input(self._flatten_images(X, reset=False) if hasattr(self, "_model") else X)

    def _resolve_image_shape(self, n_features):
        name = type(self).__name__
        if self.image_shape is not None:
            shape = check_unit_tuple(name, "image_shape", self.image_shape)
            if len(shape) != 3 or math.prod(shape) != n_features:
                raise ValueError(
                    f"The 'image_shape' parameter of {name} must be (height, width, channels) holding the "
                    f"{n_features} features of X. Got {self.image_shape!r} instead."
                )
            if self._data_image_shape not in (None, shape):
                raise ValueError(
                    f"X holds images of shape {self._data_image_shape}, but image_shape={self.image_shape!r}."
                )
            return shape
        if self._data_image_shape is not None:
            return self._data_image_shape
        side = math.isqrt(n_features)
        return (side, side, 1) if side * side == n_features else (1, n_features, 1)

    # -- network ------------------------------------------------------------------------------------
    def _check_parameters(self):
        name = type(self).__name__
        check_unit_tuple(name, "conv_filters", self.conv_filters)
        check_unit_tuple(name, "dense_units", self.dense_units)
        for param in ("kernel_size", "pool_size"):
            value = check_unit_tuple(name, param, getattr(self, param), allow_empty=False)
            if len(value) not in (1, 2):
                raise ValueError(f"The '{param}' parameter of {name} must be an int or a pair of ints. Got {value!r}.")

    def _build_layers(self, n_features, n_outputs):
        name = type(self).__name__
        self._image_shape = self._resolve_image_shape(n_features)
        kernel, pool = (_pair(check_unit_tuple(name, param, getattr(self, param), allow_empty=False))
                        for param in ("kernel_size", "pool_size"))
        regularizer = self._kernel_regularizer()
        layers = [Reshape(self._image_shape, name="image")]
        for index, filters in enumerate(check_unit_tuple(name, "conv_filters", self.conv_filters)):
            layers += [
                Conv2D(filters, kernel, padding="same", activation="relu",
                       kernel_regularizer=regularizer, name=f"conv_{index}"),
                # "same" pooling keeps images smaller than the window (e.g. a 1-pixel-high strip) valid.
                MaxPooling2D(pool, padding="same", name=f"pool_{index}"),
            ]
        layers.append(Flatten(name="flatten"))
        layers += dense_layers(check_unit_tuple(name, "dense_units", self.dense_units), "relu", regularizer, "dense",
                               dropout=self.dropout)
        layers.append(Dense(n_outputs, kernel_regularizer=regularizer, name="output"))
        return layers
