"""AutoEncoder: codes, reconstructions and outlier detection with scikit-learn's conventions."""
import numpy
import pytest
from sklearn.metrics import roc_auc_score

from flowlearn.estimators import AutoEncoder


@pytest.fixture(scope="module")
def manifold():
    """2,000 rows near a 3-D subspace of R^20, with 1% of them shifted far off it."""
    rng = numpy.random.default_rng(0)
    X = rng.normal(size=(2000, 3)) @ rng.normal(size=(3, 20)) + 0.1 * rng.normal(size=(2000, 20))
    outliers = rng.choice(2000, 20, replace=False)
    X[outliers] += rng.normal(scale=3.0, size=(20, 20))
    truth = numpy.zeros(2000, dtype=bool)
    truth[outliers] = True
    return X, truth


@pytest.fixture(scope="module")
def fitted(manifold):
    X, _ = manifold
    # All 200 epochs: with tol=1e-4 the stopping rule ends at epoch 89, where Tukey's fence still flags
    # 5.7% of the inliers (2.1% after 200 epochs).
    return AutoEncoder(hidden_units=(32, 3), output_activation=None, n_iter_no_change=None, random_state=0).fit(X)


def test_flags_planted_outliers(manifold, fitted):
    X, truth = manifold
    assert roc_auc_score(truth, -fitted.score_samples(X)) >= 0.95
    flagged = fitted.predict(X) == -1
    assert flagged[truth].mean() > 0.9  # "auto" (Tukey's fence) catches the planted rows ...
    assert flagged[~truth].mean() < 0.05  # ... and few others


def test_contamination_sets_the_share_of_outliers(manifold):
    X, truth = manifold
    model = AutoEncoder(hidden_units=(32, 3), output_activation=None, contamination=0.01, random_state=0).fit(X)
    flagged = model.predict(X) == -1
    assert flagged.sum() == 20
    assert flagged[truth].sum() >= 18


def test_scores_follow_the_outlier_detector_conventions(manifold, fitted):
    X, _ = manifold
    scores, decision = fitted.score_samples(X), fitted.decision_function(X)
    numpy.testing.assert_allclose(decision, scores - fitted.offset_)
    numpy.testing.assert_array_equal(fitted.predict(X), numpy.where(decision >= 0, 1, -1))
    numpy.testing.assert_allclose(-scores, ((fitted.reconstruct(X) - X) ** 2).mean(axis=1), rtol=1e-10)


def test_score_is_the_weighted_mean_of_score_samples_and_checks_the_weights(manifold, fitted):
    X, _ = manifold
    weights = numpy.arange(len(X), dtype=float)
    assert fitted.score(X) == pytest.approx(fitted.score_samples(X).mean())
    assert fitted.score(X, sample_weight=weights) == pytest.approx(numpy.average(fitted.score_samples(X),
                                                                                 weights=weights))
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(1999,\), expected \(2000,\)"):
        fitted.score(X, sample_weight=weights[1:])
    with pytest.raises(ValueError, match="Negative values in data passed to `sample_weight`"):
        fitted.score(X, sample_weight=-weights)


def test_transform_and_inverse_transform(manifold, fitted):
    X, _ = manifold
    codes = fitted.transform(X)
    assert codes.shape == (2000, 3) and codes.dtype == numpy.float64
    numpy.testing.assert_allclose(fitted.inverse_transform(codes), fitted.reconstruct(X), rtol=1e-5, atol=1e-5)
    assert list(fitted.get_feature_names_out()) == ["autoencoder0", "autoencoder1", "autoencoder2"]
    with pytest.raises(ValueError, match=r"X has 4 features, but AutoEncoder.inverse_transform expects 3"):
        fitted.inverse_transform(numpy.zeros((2, 4)))


def test_pandas_output_and_fit_transform(manifold):
    X, _ = manifold
    model = AutoEncoder(hidden_units=(8, 2), output_activation=None, epochs=3, random_state=0).set_output(
        transform="pandas")
    frame = model.fit_transform(X[:200])
    assert list(frame.columns) == ["autoencoder0", "autoencoder1"] and frame.shape == (200, 2)


def test_sigmoid_output_reconstructs_unit_interval_data():
    rng = numpy.random.default_rng(0)
    X = rng.random((500, 2)) @ rng.random((2, 30)) / 2  # in [0, 1]
    model = AutoEncoder(hidden_units=(16, 2), random_state=0).fit(X)
    reconstructed = model.reconstruct(X)
    assert reconstructed.min() >= 0 and reconstructed.max() <= 1
    assert numpy.mean((reconstructed - X) ** 2) < 0.1 * X.var()
