"""DNNClassifier and DNNRegressor in scikit-learn's model-selection machinery."""
import numpy
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.dummy import DummyRegressor
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from flowlearn.estimators import DNNClassifier, DNNRegressor


def test_pipeline_in_grid_search_with_two_processes_on_breast_cancer():
    X, y = load_breast_cancer(return_X_y=True)
    pipeline = Pipeline([("scale", StandardScaler()), ("dnn", DNNClassifier(hidden_units=(32,), random_state=0))])
    # n_jobs=2 runs the fits in loky worker processes: the estimator travels there and back by pickle.
    search = GridSearchCV(pipeline, {"dnn__l2": [0.0, 1e-3]}, cv=3, n_jobs=2).fit(X, y)
    assert search.best_score_ >= 0.95
    assert search.predict(X[:5]).shape == (5,)


def test_cross_val_score_of_dnn_regressor_beats_a_constant_predictor():
    X, y = load_diabetes(return_X_y=True)
    model = Pipeline([("scale", StandardScaler()),
                      ("dnn", DNNRegressor(hidden_units=(16,), l2=1e-3, early_stopping=True, random_state=0))])
    ours = cross_val_score(model, X, y, cv=5)
    constant = cross_val_score(DummyRegressor(), X, y, cv=5)
    assert ours.mean() > constant.mean() + 0.3


def test_dnn_regressor_multi_output_and_target_scale():
    rng = numpy.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    y = numpy.c_[1000 * numpy.sin(X[:, 0]) + 5000, X[:, 1] * X[:, 2]]  # wildly different scales
    model = DNNRegressor(random_state=0).fit(X, y)
    assert model.predict(X).shape == (400, 2)
    assert model.score(X, y) > 0.9


@pytest.mark.parametrize("params", [dict(dropout=0.3), dict(batch_norm=True), dict(activation="tanh"),
                                    dict(optimizer="sgd", learning_rate=0.1)],
                         ids=["dropout", "batch_norm", "tanh", "sgd"])
def test_dnn_classifier_variants_learn_digits(params):
    X, y = load_digits(return_X_y=True)
    model = DNNClassifier(random_state=0, epochs=30, **params).fit(X[:1200] / 16, y[:1200])
    assert model.score(X[1200:] / 16, y[1200:]) > 0.88


def test_no_hidden_units_is_a_linear_model():
    X, y = load_digits(return_X_y=True)
    model = DNNClassifier(hidden_units=(), epochs=2).fit(X, y)
    assert [layer.name for layer in model._model.layers] == ["output"]


def test_class_weight_moves_the_decision_towards_the_weighted_class():
    rng = numpy.random.default_rng(0)
    X = rng.normal(size=(600, 2))
    y = (X[:, 0] + 0.8 * rng.normal(size=600) > 0.8).astype(int)  # a minority class, overlapping
    plain = DNNClassifier(hidden_units=(8,), random_state=0).fit(X, y)
    weighted = DNNClassifier(hidden_units=(8,), class_weight={1: 5.0}, random_state=0).fit(X, y)
    balanced = DNNClassifier(hidden_units=(8,), class_weight="balanced", random_state=0).fit(X, y)
    assert (weighted.predict(X) == 1).sum() > 1.5 * (plain.predict(X) == 1).sum()
    assert (balanced.predict(X) == 1).sum() > 1.5 * (plain.predict(X) == 1).sum()
    with pytest.raises(ValueError, match="class_weight='balanced' is not supported by partial_fit"):
        DNNClassifier(class_weight="balanced").partial_fit(X, y, classes=[0, 1])


def test_binary_probabilities_match_the_logit():
    X, y = load_breast_cancer(return_X_y=True)
    model = Pipeline([("scale", StandardScaler()), ("dnn", DNNClassifier(epochs=20, random_state=0))]).fit(X, y)
    logits = model.decision_function(X)
    numpy.testing.assert_allclose(model.predict_proba(X)[:, 1], 1 / (1 + numpy.exp(-logits)), rtol=1e-12)
    numpy.testing.assert_array_equal(model.predict(X), (logits > 0).astype(int))
