"""AutoEncoder: a network trained to reproduce its input through a narrow layer.

It is a transformer (``transform`` gives the bottleneck codes, ``inverse_transform`` decodes them) and
an outlier detector with scikit-learn's conventions (as IsolationForest): ``score_samples`` is the
negative reconstruction error, higher meaning more normal; ``predict`` gives +1 for inliers and -1 for
outliers, cut at ``offset_``.
"""
import numbers

import numpy
from sklearn.base import ClassNamePrefixFeaturesOutMixin, OutlierMixin, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_array, check_is_fitted

from ..layers import Dense
from ._base import (HIDDEN_ACTIVATIONS, _BaseNetwork, check_unit_tuple, column_moments, dense_layers, fill_doc,
                    store_parameters)

# Rows whose reconstruction error is computed at once (bounded memory for any X).
_ERROR_CHUNK = 16384


def weighted_quantile(values, weights, q):
    """The ``q``-quantile of ``values`` under ``weights`` (NumPy's "averaged_inverted_cdf").

    Equal weights give the usual quantile of the sample; integer weights give the quantile of the
    sample with each value repeated that many times; a zero weight removes the value.

    >>> weighted_quantile(numpy.array([1.0, 2.0, 3.0, 4.0]), numpy.ones(4), 0.5)
    2.5
    """
    order = numpy.argsort(values, kind="stable")
    values, cumulative = values[order], numpy.cumsum(weights[order], dtype=numpy.float64)
    target = q * cumulative[-1]
    last = len(values) - 1
    # The first value whose cumulative weight reaches the target, and the first one past it.
    low = min(int(numpy.searchsorted(cumulative, target, side="left")), last)
    high = min(int(numpy.searchsorted(cumulative, target, side="right")), last)
    return float((values[low] + values[high]) / 2)


@fill_doc(epochs=200)
class AutoEncoder(ClassNamePrefixFeaturesOutMixin, OutlierMixin, TransformerMixin, _BaseNetwork):
    """Autoencoder for dimensionality reduction and outlier detection.

    The encoder is Dense layers of ``hidden_units`` (the last, the bottleneck, is linear); the decoder
    mirrors it back to the input size. Training minimises the mean squared reconstruction error.

    Parameters
    ----------
    hidden_units : sequence of int, default=(256, 128, 16)
        Units of the encoder's layers, input side first; the last is the size of the codes.
    activation : {"relu", "leaky_relu", "elu", "selu", "tanh", "sigmoid", "softplus", "linear"}, default="relu"
        Activation of the hidden layers (not of the bottleneck).
    output_activation : "sigmoid" or None, default="sigmoid"
        "sigmoid" for data scaled to [0, 1] (e.g. pixels, or after MinMaxScaler); None (linear) for
        anything else, e.g. after StandardScaler.
    contamination : "auto" or float in (0, 0.5], default="auto"
        Expected share of outliers in the training data, which sets ``offset_``: with a float, that
        share of the training rows scores below it; "auto" uses Tukey's fence on the training
        reconstruction errors, ``Q3 + 1.5 * (Q3 - Q1)``.
{common_parameters}

    Attributes
    ----------
    offset_ : float
        The threshold on ``score_samples``: ``decision_function = score_samples - offset_``.
{common_attributes}

    See Also
    --------
    sklearn.ensemble.IsolationForest : Another outlier detector with the same interface.
    sklearn.decomposition.PCA : The linear counterpart of ``transform``.

    Examples
    --------
    >>> import numpy as np
    >>> from flowlearn.estimators import AutoEncoder
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(1000, 3)) @ rng.normal(size=(3, 20))    # rows on a 3-D subspace
    >>> X[:10] += rng.normal(scale=5.0, size=(10, 20))                 # ten outliers
    >>> model = AutoEncoder(hidden_units=(32, 3), output_activation=None, random_state=0).fit(X)
    >>> model.transform(X).shape
    (1000, 3)
    >>> bool((model.predict(X[:10]) == -1).all())
    True
    """

    _parameter_constraints = {
        **_BaseNetwork._parameter_constraints,
        "hidden_units": ["array-like", Interval(numbers.Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(HIDDEN_ACTIVATIONS))],
        "output_activation": [StrOptions({"sigmoid"}), None],
        "contamination": [StrOptions({"auto"}), Interval(numbers.Real, 0, 0.5, closed="right")],
    }

    def __init__(self, hidden_units=(256, 128, 16), *, activation="relu", output_activation="sigmoid",
                 contamination="auto", optimizer="adam", learning_rate=None, batch_size="auto", epochs=200, l2=0.0,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10, tol=1e-4, warm_start=False,
                 random_state=None, verbose=0, device="cpu", strategy=None):
        store_parameters(self, locals())

    # -- network ------------------------------------------------------------------------------------
    def _check_parameters(self):
        check_unit_tuple(type(self).__name__, "hidden_units", self.hidden_units, allow_empty=False)

    def _build_layers(self, n_features, n_outputs):
        units = check_unit_tuple(type(self).__name__, "hidden_units", self.hidden_units, allow_empty=False)
        regularizer = self._kernel_regularizer()
        encoder = dense_layers(units[:-1], self.activation, regularizer, "encoder")
        encoder.append(Dense(units[-1], kernel_regularizer=regularizer, name="codes"))
        decoder = dense_layers(reversed(units[:-1]), self.activation, regularizer, "decoder")
        decoder.append(Dense(n_outputs, activation=self.output_activation, kernel_regularizer=regularizer,
                             name="reconstruction"))
        self._n_encoder_layers = len(encoder)
        self._n_features_out = units[-1]
        return encoder + decoder

    def _fit_input_statistics(self, X, weights):
        # Errors are measured in units of X's mean variance, so that ``tol`` means the same share of
        # the data's spread whatever its scale (1e-4 of the variance), as the regressors' standardized
        # targets do; the minimiser is unchanged.
        self._error_scale = 1.0 / float(numpy.mean(column_moments(X, weights)[1] ** 2))

    def _batch_loss(self, outputs, targets, weights):
        return super()._batch_loss(outputs, targets, weights) * self._error_scale

    def _validation_score(self, X, targets, weights, rows):
        errors = self._errors(X, rows) * self._error_scale
        return -float(numpy.average(errors, weights=None if weights is None else weights[rows]))

    def _after_fit(self, X, weights):
        scores = -self._errors(X)
        weights = numpy.ones(len(scores)) if weights is None else weights
        if self.contamination == "auto":
            q1, q3 = (weighted_quantile(scores, weights, q) for q in (0.25, 0.75))
            self.offset_ = q1 - 1.5 * (q3 - q1)  # the fence, on scores (negative errors): below it, outliers
        else:
            self.offset_ = weighted_quantile(scores, weights, self.contamination)

    def _errors(self, X, rows=None):
        """Mean squared reconstruction error of each row of X (or of ``X[rows]``), a chunk of rows at a time."""
        n = X.shape[0] if rows is None else len(rows)
        errors = numpy.empty(n, dtype=numpy.float64)
        for first in range(0, n, _ERROR_CHUNK):
            part = slice(first, first + _ERROR_CHUNK)
            originals = X[part] if rows is None else X[rows[part]]
            reconstructed = self._forward(originals)
            reconstructed -= originals
            errors[part] = numpy.mean(reconstructed * reconstructed, axis=1)
        return errors

    # -- scikit-learn API ---------------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, sample_weight=None):
        """Train the network to reconstruct X (``y`` is ignored) and set ``offset_``; returns self."""
        return self._fit(X, None, sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None, sample_weight=None):
        """One epoch over X (``y`` is ignored), e.g. one block of a larger dataset; returns self.

        The first call fixes the error scale (X's mean variance) and builds the network; ``offset_`` is
        recomputed from the rows of each call (it describes the last block seen).
        """
        return self._fit(X, None, sample_weight, partial=True)

    def score(self, X, y=None, sample_weight=None):
        """Mean of :meth:`score_samples` over X (weighted by ``sample_weight``): the higher, the better the
        reconstruction; what model selection (GridSearchCV, dask-ml's searches) maximises by default."""
        scores = self.score_samples(X)
        if sample_weight is not None:  # checked as fit checks it: one non-negative weight per row of X
            sample_weight = _check_sample_weight(sample_weight, scores, ensure_non_negative=True)
        return float(numpy.average(scores, weights=sample_weight))

    def transform(self, X):
        """The bottleneck codes of X, shape (n_samples, hidden_units[-1])."""
        return self._forward(self._validate_input(X), stop=self._n_encoder_layers)

    def inverse_transform(self, X):
        """Decode bottleneck codes back to the input space, shape (n_samples, n_features_in_)."""
        check_is_fitted(self)
        codes = check_array(X, dtype=(numpy.float32, numpy.float64))
        if codes.shape[1] != self._n_features_out:
            raise ValueError(
                f"X has {codes.shape[1]} features, but {type(self).__name__}.inverse_transform expects "
                f"{self._n_features_out} (the size of the codes, hidden_units[-1])."
            )
        return self._forward(codes, start=self._n_encoder_layers)

    def reconstruct(self, X):
        """X passed through the whole network (encode, then decode), shape (n_samples, n_features_in_)."""
        return self._forward(self._validate_input(X))

    def score_samples(self, X):
        """Negative mean squared reconstruction error of each row: the higher, the more normal."""
        return -self._errors(self._validate_input(X))

    def decision_function(self, X):
        """``score_samples(X) - offset_``: negative for outliers, positive for inliers."""
        return self.score_samples(X) - self.offset_

    def predict(self, X):
        """+1 for inliers, -1 for outliers (``decision_function(X) < 0``)."""
        return numpy.where(self.decision_function(X) >= 0, 1, -1)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64"]
        return tags
