"""Canned estimators with ``feature_columns=``: DataFrames and dicts of raw features (strings included) in."""
import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

import flowlearn as fl
from flowlearn.estimators import DNNClassifier, DNNRegressor, LinearClassifier, LinearRegressor

fc = fl.feature_column

EDUCATION = ["HS-grad", "Some-college", "Bachelors", "Masters", "Doctorate"]


def census(n, seed):
    """A small census-like set: income above 50K depends on age, hours, education and occupation."""
    rng = np.random.default_rng(seed)
    education = rng.choice(EDUCATION + ["Preschool"], n)  # "Preschool" is outside the vocabulary: the OOV bucket
    occupation = rng.choice([f"occupation-{i}" for i in range(40)], n)
    age = rng.normal(40, 12, n).clip(17, 90)
    hours = rng.normal(40, 10, n).round()
    level = {e: i for i, e in enumerate(EDUCATION)}
    effect = np.array([level.get(e, -1) for e in education]) * 0.8
    good_job = np.array([int(o.split("-")[1]) % 3 == 0 for o in occupation]) * 1.5
    score = 0.06 * (age - 40) + 0.05 * (hours - 40) + effect + good_job - 1.6 + rng.normal(0, 0.5, n)
    frame = pd.DataFrame({"age": age, "hours": hours, "education": education, "occupation": occupation})
    return frame, np.where(score > 0, ">50K", "<=50K")


def columns():
    age = fc.numeric_column("age", normalizer_fn=("standardize", 40.0, 12.0))
    return [
        age,
        fc.numeric_column("hours", normalizer_fn=("standardize", 40.0, 10.0)),
        fc.indicator_column(fc.categorical_column_with_vocabulary_list("education", EDUCATION, num_oov_buckets=1)),
        fc.embedding_column(fc.categorical_column_with_hash_bucket("occupation", 64), dimension=4),
    ]


@pytest.fixture(scope="module")
def fitted():
    frame, labels = census(1200, seed=0)
    model = DNNClassifier(hidden_units=(16,), epochs=40, random_state=0, feature_columns=columns())
    return model.fit(frame[:900], labels[:900]), frame, labels


def test_dnn_classifier_learns_from_a_dataframe(fitted):
    model, frame, labels = fitted
    majority = max(np.mean(labels[900:] == c) for c in model.classes_)
    accuracy = model.score(frame[900:], labels[900:])
    assert accuracy > majority + 0.15, (accuracy, majority)
    assert [layer.name for layer in model._model.layers][0] == "features"
    assert isinstance(model._model.layers[0], fc.DenseFeatures)
    # The embedding trained: the network's table moved away from where a fresh fit starts.
    fresh = clone(model).set_params(epochs=1).fit(frame[:900], labels[:900])
    assert not np.allclose(model._model.layers[0].get_weights()[0], fresh._model.layers[0].get_weights()[0])


def test_dict_input_predicts_as_the_dataframe(fitted):
    model, frame, _ = fitted
    features = {key: frame[key].to_numpy()[900:] for key in frame.columns}
    np.testing.assert_array_equal(model.predict_proba(features), model.predict_proba(frame[900:]))
    one_row = {key: values[:1] for key, values in features.items()}
    np.testing.assert_allclose(model.predict_proba(one_row), model.predict_proba(frame[900:901]), rtol=1e-6)


def test_sklearn_contract_and_pickle(fitted):
    model, frame, labels = fitted
    params = model.get_params()
    assert params["feature_columns"] == columns()
    copy = clone(model)
    assert copy.get_params()["feature_columns"] == model.feature_columns and not hasattr(copy, "_model")
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict_proba(frame[900:]), model.predict_proba(frame[900:]))
    # Two fits with the same seed agree (the statistics pass draws nothing from the global stream).
    a = LinearClassifier(epochs=5, random_state=3, feature_columns=columns()).fit(frame[:300], labels[:300])
    b = LinearClassifier(epochs=5, random_state=3, feature_columns=columns()).fit(frame[:300], labels[:300])
    np.testing.assert_array_equal(a.coef_, b.coef_)


def test_missing_feature_and_bad_columns_are_named(fitted):
    model, frame, _ = fitted
    with pytest.raises(KeyError, match=r"needs the feature 'education'.*available keys: \['age', 'hours', "
                                       r"'occupation'\]"):
        model.predict(frame.drop(columns="education"))
    with pytest.raises(ValueError, match="'feature_columns' parameter of DNNRegressor must be None or a non-empty"):
        DNNRegressor(feature_columns=[fc.categorical_column_with_hash_bucket("x", 3)]).fit({"x": ["a", "b"]}, [1, 2])


def test_linear_regressor_with_a_categorical_effect():
    rng = np.random.default_rng(1)
    n = 600
    group = rng.choice(["a", "b", "c"], n)
    x = rng.normal(10, 3, n)
    y = 2.0 * x + np.select([group == "a", group == "b"], [5.0, -3.0], 0.0) + rng.normal(0, 0.1, n)
    model = LinearRegressor(epochs=100, random_state=0, feature_columns=[
        fc.numeric_column("x"), fc.indicator_column(fc.categorical_column_with_vocabulary_list("g", ["a", "b", "c"]))])
    model.fit({"x": x, "g": group}, y)
    assert model.score({"x": x, "g": group}, y) > 0.99
    # coef_ has one entry per dense feature, columns sorted by name: g_indicator (3), then x.
    assert model.coef_.shape == (4,)
    assert model.coef_[3] == pytest.approx(2.0, rel=0.02)
    assert model.coef_[0] - model.coef_[2] == pytest.approx(5.0, abs=0.1)
    assert model.coef_[1] - model.coef_[2] == pytest.approx(-3.0, abs=0.1)


def test_dnn_regressor_and_warm_start_keep_the_columns():
    frame, _ = census(300, seed=2)
    target = frame["age"].to_numpy() * 0.1
    model = DNNRegressor(hidden_units=(8,), epochs=3, warm_start=True, random_state=0, feature_columns=columns())
    model.fit(frame, target)
    layer = model._model.layers[0]
    model.fit(frame, target)
    assert model._model.layers[0] is layer and model.n_iter_ == 6
    assert model.predict(frame).shape == (300,)
