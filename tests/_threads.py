"""Helpers for tests of flowlearn's intra-op threads: the BLAS thread counts it controls, and a
fixture that lets a test choose flowlearn's thread count whatever the machine has."""
import pytest
from threadpoolctl import threadpool_limits

import flowlearn as fl
from flowlearn.core import parallel


def blas_threads():
    """The thread counts of the BLAS libraries flowlearn controls (those loaded when it first split)."""
    return [library.get_num_threads() for library in parallel._blas._lookup()]


@pytest.fixture
def threads():
    """Yields ``fl.set_num_threads``; BLAS is allowed 4 threads meanwhile, and all is put back after."""
    previous = fl.get_num_threads()
    parallel.release_blas()
    with threadpool_limits(limits=4, user_api="blas"):
        yield fl.set_num_threads
        parallel.release_blas()
    fl.set_num_threads(previous)
