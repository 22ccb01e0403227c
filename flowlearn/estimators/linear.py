"""Linear models trained by gradient descent: LinearRegressor and LinearClassifier.

One Dense layer: least squares for regression (several targets at once if y has columns), logistic
regression for two classes and softmax (multinomial) regression for more. These are the taxi-fare and
logistic-regression models of the worked examples, with scikit-learn's interface.
"""
import numpy

from ..layers import BatchNormalization, Dense
from ._base import _ClassifierNetwork, _RegressorNetwork, fill_doc, store_parameters
from ._features import FEATURE_COLUMNS_PARAMETER, FeatureColumnsMixin

# Added to the stored variance by the standardizing layer: negligible, yet it must be positive.
_EPSILON = 1e-12


class _LinearMixin:
    """The network of both linear models, their parameters, and their scikit-learn-style ``coef_`` / ``intercept_``."""

    _default_learning_rate = 0.02
    # A plateau at 0.02 on collinear features (diabetes) is ~1% of R^2 short of least squares; two cuts of
    # the step by 5 get within 0.7% in a few dozen more epochs.
    _plateau_decays = 2

    def __init__(self, *, optimizer="adam", learning_rate=None, batch_size="auto", epochs=200, l2=0.0,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10, tol=1e-4, warm_start=False,
                 random_state=None, verbose=0, device="cpu", feature_columns=None, strategy=None):
        store_parameters(self, locals())

    # Gradient descent on raw features converges at the pace of the worst-scaled one (a column in the
    # thousands next to one in hundredths never settles at any single step size). So the network first
    # standardizes X with the (weighted) mean and deviation of the first fit, a frozen batch
    # normalization that only ever uses those statistics, and the Dense layer learns coefficients of
    # standardized features; coef_ and intercept_ fold the scaling back into X's units.
    def _fit_input_statistics(self, X, weights):
        self._x_mean, self._x_scale = self._input_moments(X, weights)  # of the dense features, with feature_columns

    def _build_layers(self, n_features, n_outputs):
        return [
            BatchNormalization(center=False, scale=False, epsilon=_EPSILON, trainable=False, name="standardize"),
            # Zeros, as tf.estimator's and scikit-learn's linear models start: the solution for standardized
            # features is a few units from the origin at most, nearer than a random start.
            Dense(n_outputs, kernel_initializer="zeros", kernel_regularizer=self._kernel_regularizer(), name="linear"),
        ]

    def _initialize(self, n_features, n_outputs):
        super()._initialize(n_features, n_outputs)
        # coef_ folds with the layer's own sqrt(variance + epsilon), so it matches the network exactly.
        self._model.layers[-2].set_weights([self._x_mean, self._x_scale ** 2])  # after DenseFeatures, if any

    def _coefficients(self):
        """(coefficients, intercepts) in the units of X as float64, one row per output."""
        if not hasattr(self, "_model"):
            raise AttributeError("coef_ and intercept_ exist once the model is fitted: call fit first.")
        standardize, linear = self._model.layers[-2:]
        mean, variance = (w.astype(numpy.float64) for w in standardize.get_weights())
        kernel, bias = (w.astype(numpy.float64) for w in linear.get_weights())
        kernel = kernel / numpy.sqrt(variance + _EPSILON)[:, None]
        return kernel.T, bias - mean @ kernel


@fill_doc(epochs=200, feature_columns=FEATURE_COLUMNS_PARAMETER)
class LinearRegressor(FeatureColumnsMixin, _LinearMixin, _RegressorNetwork):
    """Least-squares linear regression trained by mini-batch gradient descent (tf.estimator's LinearRegressor).

    Minimises the mean squared error of ``X @ coef_.T + intercept_`` (plus the optional L2 penalty, on
    the coefficients of standardized features). Features and targets are standardized internally (with
    the statistics of the first fit; ``coef_`` and ``intercept_`` are folded back into their units), so
    the defaults suit unscaled data. y may have several columns (one model per column, trained together).

    Parameters
    ----------
{common_parameters}
{feature_columns}

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,) or (n_targets, n_features)
        Coefficients, in the units of X and y.
    intercept_ : float or ndarray of shape (n_targets,)
{common_attributes}

    See Also
    --------
    sklearn.linear_model.LinearRegression : The exact least-squares solution.

    Examples
    --------
    >>> import numpy as np
    >>> from flowlearn.estimators import LinearRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(500, 3))
    >>> y = X @ [1.5, -2.0, 0.5] + 3.0
    >>> model = LinearRegressor(random_state=0).fit(X, y)
    >>> np.round(model.coef_, 2), round(float(model.intercept_), 2)
    (array([ 1.5, -2. ,  0.5]), 3.0)
    """

    @property
    def coef_(self):
        kernel, _ = self._fitted_coefficients()
        return kernel.ravel() if self._single_target else kernel

    @property
    def intercept_(self):
        _, bias = self._fitted_coefficients()
        return float(bias[0]) if self._single_target else bias

    def _fitted_coefficients(self):
        # The network fits standardized targets: scale back to y's units.
        kernel, bias = self._coefficients()
        return kernel * self._y_scale[:, None], bias * self._y_scale + self._y_mean


@fill_doc(epochs=200, feature_columns=FEATURE_COLUMNS_PARAMETER)
class LinearClassifier(FeatureColumnsMixin, _LinearMixin, _ClassifierNetwork):
    """Logistic regression (two classes) or multinomial softmax regression (more), trained by gradient descent.

    tf.estimator's LinearClassifier with scikit-learn's interface: labels of any type (strings,
    non-contiguous integers), ``predict_proba`` with one column per class of ``classes_``. Features are
    standardized internally (``coef_`` and ``intercept_`` are in their raw units), so no scaler is needed.

    Parameters
    ----------
{common_parameters}
{feature_columns}

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels, sorted.
    coef_ : ndarray of shape (1, n_features) for two classes, else (n_classes, n_features)
    intercept_ : ndarray of shape (1,) or (n_classes,)
{common_attributes}

    See Also
    --------
    sklearn.linear_model.LogisticRegression : The same model, fitted by a second-order solver.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from flowlearn.estimators import LinearClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> model = LinearClassifier(random_state=0).fit(X, y)
    >>> bool(model.score(X, y) > 0.9)
    True
    """

    @property
    def coef_(self):
        return self._coefficients()[0]

    @property
    def intercept_(self):
        return self._coefficients()[1]
