"""Fully connected networks: DNNClassifier and DNNRegressor (tf.estimator's canned DNN estimators)."""
import numbers

from sklearn.utils._param_validation import Interval, StrOptions

from ..layers import Dense
from ._base import (HIDDEN_ACTIVATIONS, _BaseNetwork, _ClassifierNetwork, _RegressorNetwork, check_unit_tuple,
                    dense_layers, fill_doc, store_parameters)
from ._features import FEATURE_COLUMNS_PARAMETER, FeatureColumnsMixin

_DNN_CONSTRAINTS = {
    "hidden_units": ["array-like", Interval(numbers.Integral, 1, None, closed="left")],
    "activation": [StrOptions(set(HIDDEN_ACTIVATIONS))],
    "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
    "batch_norm": ["boolean"],
}

DNN_PARAMETERS = """\
    hidden_units : int or sequence of int, default=(64, 32)
        Units of each hidden layer, input side first; () gives a linear model.
    activation : {"relu", "leaky_relu", "elu", "selu", "tanh", "sigmoid", "softplus", "linear"}, default="relu"
        Activation of the hidden layers.
    dropout : float in [0, 1), default=0.0
        Fraction of each hidden layer's outputs dropped during training.
    batch_norm : bool, default=False
        Batch normalization between each hidden layer and its activation."""


class _DNNMixin:
    """The network of both DNN estimators: hidden Dense layers (batch norm, dropout optional), then a linear output."""

    def _check_parameters(self):
        check_unit_tuple(type(self).__name__, "hidden_units", self.hidden_units)
        if self.dropout >= 1:
            raise ValueError(f"The 'dropout' parameter of {type(self).__name__} must be below 1. Got {self.dropout!r}.")

    def _build_layers(self, n_features, n_outputs):
        regularizer = self._kernel_regularizer()
        units = check_unit_tuple(type(self).__name__, "hidden_units", self.hidden_units)
        hidden = dense_layers(units, self.activation, regularizer, "hidden", dropout=self.dropout,
                              batch_norm=self.batch_norm)
        return hidden + [Dense(n_outputs, kernel_regularizer=regularizer, name="output")]


@fill_doc(dnn_parameters=DNN_PARAMETERS, epochs=200, feature_columns=FEATURE_COLUMNS_PARAMETER)
class DNNClassifier(FeatureColumnsMixin, _DNNMixin, _ClassifierNetwork):
    """Feed-forward neural network classifier (tf.estimator's DNNClassifier, scikit-learn's interface).

    Hidden Dense layers then one logit (two classes, sigmoid cross-entropy) or one per class (softmax
    cross-entropy). Labels may be of any type (strings, non-contiguous integers).

    Parameters
    ----------
{dnn_parameters}
    class_weight : dict, "balanced" or None, default=None
        Weights ``{label: weight}`` multiplying the loss of each class's rows; "balanced" weights
        classes inversely to their frequency in y.
{common_parameters}
{feature_columns}

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels, sorted.
{common_attributes}

    See Also
    --------
    sklearn.neural_network.MLPClassifier : The same model in scikit-learn.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from flowlearn.estimators import DNNClassifier
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> model = make_pipeline(StandardScaler(), DNNClassifier(hidden_units=(32,), random_state=0)).fit(X, y)
    >>> bool(model.score(X, y) > 0.95)
    True
    """

    _parameter_constraints = {
        **_BaseNetwork._parameter_constraints,
        **_DNN_CONSTRAINTS,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(self, hidden_units=(64, 32), *, activation="relu", dropout=0.0, batch_norm=False, class_weight=None,
                 optimizer="adam", learning_rate=None, batch_size="auto", epochs=200, l2=0.0, early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=10, tol=1e-4, warm_start=False, random_state=None,
                 verbose=0, device="cpu", feature_columns=None, strategy=None):
        store_parameters(self, locals())

    def _class_weight(self):
        return self.class_weight


@fill_doc(dnn_parameters=DNN_PARAMETERS, epochs=200, feature_columns=FEATURE_COLUMNS_PARAMETER)
class DNNRegressor(FeatureColumnsMixin, _DNNMixin, _RegressorNetwork):
    """Feed-forward neural network regressor (tf.estimator's DNNRegressor, scikit-learn's interface).

    Hidden Dense layers then one linear output per target, trained with the squared error on
    standardized targets (so the default learning rate suits targets of any scale).

    Parameters
    ----------
{dnn_parameters}
{common_parameters}
{feature_columns}

    Attributes
    ----------
{common_attributes}

    See Also
    --------
    sklearn.neural_network.MLPRegressor : The same model in scikit-learn.

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn.model_selection import cross_val_score
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from flowlearn.estimators import DNNRegressor
    >>> X, y = load_diabetes(return_X_y=True)
    >>> model = make_pipeline(StandardScaler(), DNNRegressor(hidden_units=(16,), l2=1e-3, random_state=0))
    >>> bool(cross_val_score(model, X, y, cv=3).mean() > 0.3)
    True
    """

    _parameter_constraints = {**_BaseNetwork._parameter_constraints, **_DNN_CONSTRAINTS}

    def __init__(self, hidden_units=(64, 32), *, activation="relu", dropout=0.0, batch_norm=False, optimizer="adam",
                 learning_rate=None, batch_size="auto", epochs=200, l2=0.0, early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=10, tol=1e-4, warm_start=False, random_state=None,
                 verbose=0, device="cpu", feature_columns=None, strategy=None):
        store_parameters(self, locals())
