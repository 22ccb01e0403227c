"""Estimator tests train small networks: one BLAS thread is faster for them and steadier on a busy machine."""
import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True)
def one_blas_thread():
    # Products of a few hundred rows gain nothing from a second thread, and on a loaded machine its
    # spinning makes them ~50x slower. Tests that time or scale things opt out by overriding this.
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def pytest_collection_modifyitems(items):
    # Most tests train for a fixed, small number of epochs on purpose: the "train longer" advice of
    # ConvergenceWarning is expected there and would only bury the warnings that matter.
    for item in items:
        if "estimators" in item.path.parts:
            item.add_marker(pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"))
