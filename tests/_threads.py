"""Helpers for tests of flowlearn's intra-op threads: the BLAS thread counts it controls, and a
fixture that lets a test choose flowlearn's thread count whatever the machine has."""
import numpy
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


def split_sized_problem(threads):
    """Set two flowlearn threads and return (x, y): 512 rows of 600 features and 3 classes, for which a
    1024-unit first layer's 512x600 @ 600x1024 product is large enough to split. Skips without BLAS."""
    threads(2)
    if not blas_threads():
        pytest.skip("no BLAS library that threadpoolctl can see")
    rng = numpy.random.default_rng(5)
    return rng.standard_normal((512, 600)).astype(numpy.float32), rng.integers(0, 3, 512)
