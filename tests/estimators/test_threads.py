"""An estimator's fit and predict hand numpy's BLAS its thread counts back when they end."""
import numpy
import pytest

from flowlearn.core import parallel
from flowlearn.estimators import DNNClassifier
from tests._threads import blas_threads, threads  # noqa: F401 (a fixture)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimator_fit_and_predict_hand_blas_back(threads):
    threads(2)
    if not blas_threads():
        pytest.skip("no BLAS library that threadpoolctl can see")
    rng = numpy.random.default_rng(5)
    x = rng.standard_normal((256, 600)).astype(numpy.float32)
    y = rng.integers(0, 3, 256)
    model = DNNClassifier(hidden_units=(1024,), epochs=1, batch_size=256).fit(x, y)
    assert set(blas_threads()) == {4}
    parallel.parallel_slices(4, lambda a, b: None, uses_blas=True)
    assert set(blas_threads()) == {1}
    model.predict(x)
    assert set(blas_threads()) == {4}
