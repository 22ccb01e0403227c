"""LinearRegressor and LinearClassifier: they find the solutions of the classical solvers."""
import numpy
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris, load_wine
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.preprocessing import StandardScaler

from flowlearn.estimators import LinearClassifier, LinearRegressor


def noisy_linear_data(n, n_targets=None, seed=0):
    rng = numpy.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    coef = rng.normal(scale=2.0, size=(5,) if n_targets is None else (5, n_targets))
    y = X @ coef + 4.0 + rng.normal(size=(n,) if n_targets is None else (n, n_targets))
    return X, y


def least_squares(X, y):
    solution = numpy.linalg.lstsq(numpy.c_[X, numpy.ones(len(X))], y, rcond=None)[0]
    return solution[:-1].T, solution[-1]


def test_linear_regressor_recovers_least_squares_coefficients():
    X, y = noisy_linear_data(1000)
    # The defaults (tol=1e-4 on the loss, steps of 0.02) stop within about 1% of the optimum; a smaller
    # step and a tighter tol trade time for precision.
    model = LinearRegressor(learning_rate=0.005, tol=1e-7, epochs=500, random_state=0).fit(X, y)
    coef, intercept = least_squares(X, y)
    numpy.testing.assert_allclose(model.coef_, coef, rtol=1e-2, atol=1e-2)  # atol: small coefficients
    numpy.testing.assert_allclose(model.intercept_, intercept, rtol=1e-2)
    assert model.coef_.shape == (5,) and isinstance(model.intercept_, float)


def test_linear_regressor_fits_several_targets_at_once():
    X, y = noisy_linear_data(1000, n_targets=3)
    model = LinearRegressor(learning_rate=0.005, tol=1e-7, epochs=500, random_state=0).fit(X, y)
    coef, intercept = least_squares(X, y)
    assert model.coef_.shape == (3, 5) and model.intercept_.shape == (3,)
    assert model.predict(X).shape == (1000, 3)
    numpy.testing.assert_allclose(model.coef_, coef, rtol=1e-2, atol=1e-2)  # atol: small coefficients
    numpy.testing.assert_allclose(model.intercept_, intercept, rtol=1e-2)


def test_linear_regressor_keeps_a_column_target_a_column():
    X, y = noisy_linear_data(300)
    assert LinearRegressor(epochs=5).fit(X, y[:, None]).predict(X).shape == (300, 1)


def test_l2_is_ridge_on_the_mean_loss_of_standardized_targets():
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    X, y = noisy_linear_data(1000)
    model = LinearRegressor(l2=0.25, tol=1e-6, random_state=0).fit(X, y)
    # The penalty is on the coefficients of standardized features (as glmnet's): with z = (X - mean) / std,
    # mean((y - zw - b)^2) / var(y) + l2 * |w|^2 / var(y)  is  Ridge on z with alpha = l2 * n_samples.
    X = X * [1.0, 10.0, 0.1, 3.0, 1.0]  # columns of different scales, so that it matters
    model = LinearRegressor(l2=0.25, tol=1e-6, random_state=0).fit(X, y)
    scaler = StandardScaler().fit(X)
    reference = Ridge(alpha=0.25 * len(X)).fit(scaler.transform(X), y)
    numpy.testing.assert_allclose(model.coef_, reference.coef_ / scaler.scale_, rtol=2e-2)
    shrunk, plain = model.coef_ * scaler.scale_, least_squares(X, y)[0] * scaler.scale_
    assert numpy.linalg.norm(shrunk) < 0.85 * numpy.linalg.norm(plain)


def test_linear_classifier_agrees_with_logistic_regression():
    rng = numpy.random.default_rng(0)
    X = rng.normal(size=(1000, 4))
    y = (X @ [2.0, -1.0, 0.5, 0.0] + 0.3 * rng.normal(size=1000) > 0).astype(int)
    ours = LinearClassifier(random_state=0).fit(X, y)
    reference = LogisticRegression(C=1e4).fit(X, y)
    assert (ours.predict(X) == reference.predict(X)).mean() > 0.98
    assert ours.coef_.shape == (1, 4) and ours.intercept_.shape == (1,)
    # Same direction of the separating hyperplane.
    a, b = ours.coef_.ravel(), reference.coef_.ravel()
    cosine = a @ b / numpy.linalg.norm(a) / numpy.linalg.norm(b)
    assert cosine > 0.99


def test_linear_classifier_multinomial():
    from sklearn.datasets import load_iris
    from sklearn.preprocessing import StandardScaler

    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    model = LinearClassifier(random_state=0).fit(X, y)
    assert model.coef_.shape == (3, 4)
    assert model.score(X, y) > 0.93
    numpy.testing.assert_allclose(model.predict_proba(X).sum(axis=1), 1.0)
    numpy.testing.assert_allclose(model.predict_log_proba(X), numpy.log(model.predict_proba(X)), atol=1e-12)


# -- default settings on unscaled data: the classical solvers' answers -------------------------------
def test_worked_example_with_defaults_matches_least_squares():
    # The worked example's data: x = N(5, 5) + 15, y = 2x + 2 N(0, 3); raw gradient descent on it used
    # to predict 35-43 where least squares gives 16-59.
    rng = numpy.random.default_rng(0)
    x = rng.normal(5, 5, 200) + 15
    y = 2 * x + 2 * rng.normal(0, 3, 200)
    X = x[:, None]
    ours, reference = LinearRegressor(random_state=0).fit(X, y), LinearRegression().fit(X, y)
    assert ours.score(X, y) == pytest.approx(reference.score(X, y), rel=1e-2)
    # Predictions a few hundredths of y's spread apart (they span 16-59 as least squares' do); tol=1e-4
    # on the loss leaves the slope within about 2%.
    assert numpy.sqrt(numpy.mean((ours.predict(X) - reference.predict(X)) ** 2)) < 0.03 * y.std()
    assert ours.coef_[0] == pytest.approx(reference.coef_[0], rel=3e-2)


@pytest.mark.parametrize("scaled", [False, True], ids=["raw", "standardized"])
def test_linear_regressor_defaults_match_least_squares_on_diabetes(scaled):
    X, y = load_diabetes(return_X_y=True)
    X = StandardScaler().fit_transform(X) if scaled else X * 100 + 50  # raw: far from unit scale
    ours, reference = LinearRegressor(random_state=0).fit(X, y), LinearRegression().fit(X, y)
    assert ours.score(X, y) == pytest.approx(reference.score(X, y), rel=1e-2)
    # Predictions agree to a tenth of y's spread (the rest is the collinear s1-s5 directions that
    # first-order steps approach slowly); coef_/intercept_ are exactly what predict uses.
    assert numpy.sqrt(numpy.mean((ours.predict(X) - reference.predict(X)) ** 2)) < 0.1 * y.std()
    numpy.testing.assert_allclose(X @ ours.coef_ + ours.intercept_, ours.predict(X), rtol=1e-5)


@pytest.mark.parametrize("load", [load_breast_cancer, load_iris, load_wine, load_digits],
                         ids=["breast_cancer", "iris", "wine", "digits"])
def test_linear_classifier_defaults_match_logistic_regression_on_raw_features(load):
    X, y = load(return_X_y=True)
    ours = LinearClassifier(random_state=0).fit(X, y)
    reference = make_logistic().fit(X, y)
    assert ours.score(X, y) == pytest.approx(reference.score(X, y), rel=1e-2)
    assert (ours.predict(X) == reference.predict(X)).mean() >= 0.99
    # coef_ and intercept_ are in the units of the raw features.
    logits = X @ ours.coef_.T + ours.intercept_
    numpy.testing.assert_allclose(logits.ravel() if logits.shape[1] == 1 else logits, ours.decision_function(X),
                                  rtol=1e-4, atol=1e-4)


def make_logistic():
    from sklearn.pipeline import make_pipeline

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))


def test_standardizing_first_changes_nothing():
    X, y = load_wine(return_X_y=True)
    raw = LinearClassifier(random_state=0).fit(X, y)
    scaled = LinearClassifier(random_state=0).fit(StandardScaler().fit_transform(X), y)
    numpy.testing.assert_allclose(raw.predict_proba(X), scaled.predict_proba(StandardScaler().fit_transform(X)),
                                  atol=1e-4)
