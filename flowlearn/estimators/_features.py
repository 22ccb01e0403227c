"""``feature_columns=`` for the canned estimators: dicts and DataFrames of raw features in, DenseFeatures first.

With feature columns, ``fit`` and ``predict`` take a DataFrame or a dict of arrays (string columns
included). The features are *encoded* once per call by the network's :class:`DenseFeatures` layer
(vocabulary lookups, hashing, bucketizing, normalizing: the columns' transformations) into a float
matrix, and everything else - scikit-learn's checks, shuffling row indices, batches, chunked
prediction, pickling - runs on that matrix as it does without feature columns; the DenseFeatures layer,
first in the network, densifies each batch (one-hot, embedding lookups: the trainable part). So
``n_features_in_`` counts the encoded matrix's columns, and a linear model's ``coef_`` has one entry
per dense feature (columns sorted by name, as :func:`flowlearn.feature_column.input_layer` orders them).
"""
import numpy

from ..io.feature_column import DenseColumn, DenseFeatures, FeatureColumn
from ._base import column_moments


class FeatureColumnsMixin:
    """Put before the network mixin in the bases; needs a ``feature_columns`` parameter (None: plain X)."""

    def _check_parameters(self):
        super()._check_parameters()
        columns = self.feature_columns
        if columns is None:
            return
        name = type(self).__name__
        if isinstance(columns, FeatureColumn) or not isinstance(columns, (list, tuple)) or not columns or not all(
                isinstance(c, DenseColumn) for c in columns):
            raise ValueError(
                f"The 'feature_columns' parameter of {name} must be None or a non-empty list of dense feature "
                f"columns (numeric, bucketized, indicator or embedding columns). Got {columns!r} instead."
            )

    def _feature_layer(self):
        return self._model.layers[0]

    def _new_feature_layer(self):
        """A DenseFeatures layer for the columns, with the value widths recorded by the last fit's encoder."""
        return DenseFeatures(self.feature_columns, value_widths=self._features.value_widths, name="features")

    def _validate_training_data(self, X, y, reset):
        if self.feature_columns is not None:
            if reset or not hasattr(self, "_model"):
                # A fresh layer records the value widths of the categorical features; the network's first
                # layer is made with them (_build_layers).
                self._features = DenseFeatures(self.feature_columns, name="features")
            else:
                self._features = self._feature_layer()
            X = self._features.encode(X)
        return super()._validate_training_data(X, y, reset)

    def _validate_input(self, X):
        if self.feature_columns is not None and hasattr(self, "_model"):
            X = self._feature_layer().encode(X)
        return super()._validate_input(X)

    def _build_layers(self, n_features, n_outputs):
        layers = super()._build_layers(n_features, n_outputs)
        if self.feature_columns is None:
            return layers
        return [self._new_feature_layer()] + layers

    def _input_moments(self, X, weights):
        """(mean, std) of what reaches the network's first weighted layer: X, or the dense features.

        For the dense features a throwaway layer computes them (embedding slots, which are learned,
        report mean 0 and deviation 1).
        """
        if self.feature_columns is None:
            return column_moments(X, weights)
        features = self._new_feature_layer()
        features._rng = numpy.random.default_rng(0)  # its draws are thrown away: leave the global stream alone
        features.build((None, X.shape[1]))
        return features.dense_statistics(X, weights)

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_features", None)  # the encoder of the last fit; the network holds the same columns
        return state


FEATURE_COLUMNS_PARAMETER = """\
    feature_columns : list of dense feature columns or None, default=None
        With columns from :mod:`flowlearn.feature_column` (numeric, bucketized, indicator, embedding),
        ``fit`` and ``predict`` take a DataFrame or a dict of arrays (strings included) and the network
        starts with a :class:`~flowlearn.feature_column.DenseFeatures` layer (embeddings are trained
        with the rest). None: X is a numeric matrix."""
