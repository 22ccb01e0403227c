"""An estimator's fit and predict hand numpy's BLAS its thread counts back when they end."""
import pytest

from flowlearn.core import parallel
from flowlearn.estimators import DNNClassifier
from tests._threads import blas_threads, split_sized_problem, threads  # noqa: F401 (a fixture)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimator_fit_and_predict_hand_blas_back(threads):
    x, y = split_sized_problem(threads)
    model = DNNClassifier(hidden_units=(1024,), epochs=1, batch_size=512).fit(x, y)
    assert set(blas_threads()) == {4}
    parallel.parallel_slices(4, lambda a, b: None, uses_blas=True)
    assert set(blas_threads()) == {1}
    model.predict(x)
    assert set(blas_threads()) == {4}
