"""scikit-learn's own estimator checks, on every estimator in its default configuration.

Three checks are expected to fail, for a reason of arithmetic rather than design:
``check_sample_weight_equivalence_on_dense_data`` compares a fit with integer sample weights to a fit
on the rows repeated that many times at rtol=1e-7, which is below float32 resolution (eps = 1.2e-7)
while the estimators train in float32 by default. The two fits differ only in the order of float32
sums (1e-7 relative); the tests at the bottom run the same check in float64, where it passes.
``check_methods_subset_invariance`` and ``check_methods_sample_order_invariance`` compare predictions
of rows alone, or in another order, with the same rows in one batch at rtol=1e-7: prediction runs
the rows given, unpadded, and BLAS computes a row with a kernel that depends on the batch size and
on the row's place in it, so float32 outputs agree to float32 rounding only (test_predict.py checks
that, and runs both checks in float64, where they pass).
"""
import numpy
import pytest
from sklearn.utils.estimator_checks import (
    check_sample_weight_equivalence_on_dense_data, parametrize_with_checks,
)

from flowlearn.estimators import (
    AutoEncoder, CNNClassifier, DNNClassifier, DNNRegressor, LinearClassifier, LinearRegressor,
)

ESTIMATORS = [LinearRegressor(), LinearClassifier(), DNNClassifier(), DNNRegressor(), AutoEncoder(), CNNClassifier()]

FLOAT32_SUMS = (
    "trains in float32: weighted and repeated rows give sums in a different order, so the fits agree to "
    "~1e-7 relative, the float32 resolution, while the check asks rtol=1e-7 (it passes in float64, see "
    "test_sample_weight_equivalence_in_float64)"
)


BATCH_ROUNDING = (
    "predicts in float32 with BLAS kernels that depend on the batch size and a row's place in it, so a row "
    "alone or moved agrees with the batch to ~1e-7 relative, while the check asks rtol=1e-7 (it passes in "
    "float64, see test_predict.py::test_batch_invariance_checks_in_float64)"
)


def expected_failures(estimator):
    reason = FLOAT32_SUMS
    if isinstance(estimator, CNNClassifier):
        reason += "; and dropout=0.5 draws masks per row, so repeated rows get masks of their own"
    return {"check_sample_weight_equivalence_on_dense_data": reason,
            "check_methods_subset_invariance": BATCH_ROUNDING,
            "check_methods_sample_order_invariance": BATCH_ROUNDING}




@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failures)
def test_sklearn_compatible(estimator, check):
    check(estimator)


# LinearRegressor centres X and y inside, so its intercept's gradient is zero up to rounding; Adam
# divides by the gradient's own size, so the two fits' different rounding (15 weighted rows against 27
# repeated ones) grows into intercepts 4e-5 apart. test_linear_regressor_weights_equal_repeats_closely
# checks the equivalence at that precision.
ZERO_GRADIENT_INTERCEPT = (
    "the intercept's gradient is rounding noise (X and y are centred), which Adam scales up: weighted and "
    "repeated fits agree to ~4e-5, not 1e-7"
)


def test_linear_regressor_weights_equal_repeats_closely(float64):
    rng = numpy.random.RandomState(42)
    X, y, weights = rng.rand(15, 30), rng.randint(0, 3, size=15), rng.randint(0, 5, size=15)
    weighted = LinearRegressor(random_state=0).fit(X, y, sample_weight=weights)
    repeated = LinearRegressor(random_state=0).fit(X.repeat(weights, axis=0), y.repeat(weights))
    numpy.testing.assert_allclose(weighted.predict(X), repeated.predict(X), atol=2e-4)
    numpy.testing.assert_allclose(weighted.coef_, repeated.coef_, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    "estimator",
    [pytest.param(LinearRegressor(), marks=pytest.mark.xfail(strict=True, reason=ZERO_GRADIENT_INTERCEPT)),
     LinearClassifier(), DNNClassifier(), DNNRegressor(), AutoEncoder(), CNNClassifier(dropout=0.0)],
    ids=lambda estimator: type(estimator).__name__,
)
def test_sample_weight_equivalence_in_float64(estimator, float64):
    # The same scikit-learn check, exact once the arithmetic is: integer weights == repeated rows.
    check_sample_weight_equivalence_on_dense_data(type(estimator).__name__, estimator)


def test_sample_weight_equivalence_in_float32_to_float32_precision():
    rng = numpy.random.default_rng(42)
    X, y = rng.random((15, 30)), rng.integers(0, 3, 15)
    weights = rng.integers(0, 5, 15)
    weighted = DNNClassifier(random_state=0).fit(X, y, sample_weight=weights)
    repeated = DNNClassifier(random_state=0).fit(X.repeat(weights, axis=0), y.repeat(weights))
    numpy.testing.assert_allclose(weighted.predict_proba(X), repeated.predict_proba(X), rtol=1e-4, atol=1e-6)
