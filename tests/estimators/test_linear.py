"""LinearRegressor and LinearClassifier: they find the solutions of the classical solvers."""
import numpy
from sklearn.linear_model import LogisticRegression

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

    X, y = noisy_linear_data(1000)
    model = LinearRegressor(l2=0.25, tol=1e-6, random_state=0).fit(X, y)
    # mean((y - Xw - b)^2) / var(y) + l2 * |w|^2 / var(y)  is  Ridge with alpha = l2 * n_samples.
    reference = Ridge(alpha=0.25 * len(X)).fit(X, y)
    numpy.testing.assert_allclose(model.coef_, reference.coef_, rtol=2e-2)
    assert numpy.linalg.norm(model.coef_) < 0.85 * numpy.linalg.norm(least_squares(X, y)[0])


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
