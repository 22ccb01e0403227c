"""Every 2-D matrix product of the op core, with one policy for who runs it on which threads.

OpenBLAS threads a product by waking its worker threads, which then spin for tens of
milliseconds waiting for the next one. That is the fastest choice for a model made only of
mid-sized products (a 128x784 @ 784x256 product: 279 us on two BLAS threads, 367 us split by
flowlearn) and the slowest for a model that mixes them with work flowlearn splits itself: a
spinning BLAS worker holds the core that a flowlearn thread needs (a convolution step went from
19 to 33 ms next to one). So, by size (multiply-adds, ``m*n*k``):

- large products are split by flowlearn over rows or columns of the output, one slice per thread,
  each slice on single-threaded BLAS (:func:`flowlearn.core.parallel.parallel_slices`);
- small ones run on single-threaded BLAS, where a second thread could save microseconds at most
  and would wake a spinning worker;
- the mid-sized ones in between are left to BLAS, unless flowlearn split a product in the last
  second: then they are split too (a network with convolutions splits every training step, so
  its dense layers must not wake BLAS's threads).

A product is never split along its inner dimension, so every output element is the same sum in
the same order however many threads run.
"""
import numpy

from ..parallel import blas_single_thread, parallel_slices, split_recently

# The bounds of the three regimes, in multiply-adds. Below SMALL a one-thread product takes
# well under 50 us here, and no split slice is smaller.
SMALL = 4_000_000
LARGE = 100_000_000


def gemm(xp, a, b, out=None):
    """``a @ b`` for 2-D ``a`` (m, k) and ``b`` (k, n), optionally into ``out`` (m, n)."""
    if xp is not numpy:
        return xp.matmul(a, b, out=out)
    m, k = a.shape
    n = b.shape[1]
    size = m * n * k
    if size < SMALL:
        with blas_single_thread():
            return numpy.matmul(a, b, out=out)
    if size < LARGE and not split_recently():
        return numpy.matmul(a, b, out=out)
    if out is None:
        out = numpy.empty((m, n), dtype=numpy.result_type(a, b))
    if m >= n:
        def work(start, stop):
            numpy.matmul(a[start:stop], b, out=out[start:stop])
        parallel_slices(m, work, grain=-(-SMALL // (n * k)), uses_blas=True)
    else:
        def work(start, stop):
            numpy.matmul(a, b[:, start:stop], out=out[:, start:stop])
        parallel_slices(n, work, grain=-(-SMALL // (m * k)), uses_blas=True)
    return out
