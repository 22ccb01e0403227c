"""Every 2-D matrix product of the op core, with one policy for who runs it on which threads.

By size (multiply-adds, ``m*n*k``):

- large products are split by flowlearn over rows or columns of the output, one slice per thread,
  each slice on single-threaded BLAS (:func:`flowlearn.core.parallel.parallel_slices`), and so are
  products that a larger op splits anyway (a convolution's kernel gradient) if not small;
- mid-sized products are left to BLAS: its own threads, or one thread while flowlearn holds it there
  (from a split on, until a fit/evaluate/predict call ends or a mid-sized product comes a second
  after the last split);
- small products (under ``SMALL``) never need BLAS's threads: inside a fit, evaluate or predict call
  they hold BLAS at one thread (:func:`flowlearn.core.parallel.hold_blas_for_small_product`), unless
  mid-sized products ran in the last second. A 200x64 @ 64x128 product is ~35 us of work on one core;
  a second thread saves at most half of that, and waking it costs as much on an idle host and
  milliseconds on a busy one.

Mid-sized products are BLAS's because its threads do them faster (a 128x784 @ 784x256 product:
279 us on two BLAS threads, 367 us split by flowlearn), while a split pays for itself once the
product is large enough to hide handing a slice to a thread, and keeps BLAS's workers asleep in
a training step that mixes products with work flowlearn splits itself: a spinning BLAS worker
holds the core that a flowlearn thread needs (a convolution step went from 19 to 33 ms next to one).

A product is split along its inner dimension only when its output is no larger than that dimension
(then output slices would be slivers); the partial products are added in slice order. Otherwise
every output element is one BLAS sum. Either way a split product equals the unsplit one up to
float32 rounding, and the same product splits the same way on every call.
"""
import numpy

from ..parallel import hold_blas_for_small_product, parallel_slices, release_blas_if_idle

# Products from LARGE multiply-adds on (about 3 ms on one core here) are split: enough work to hide
# waking a thread, which costs up to ~0.3 ms when the host is busy. No slice has fewer than SMALL.
SMALL = 4_000_000
LARGE = 250_000_000


def regime(size, split=False):
    """Who runs a product of ``size`` multiply-adds on numpy: "one thread" (small: BLAS, held at one
    thread inside a fit/evaluate/predict call), "blas" (mid-sized: BLAS's own threads) or "split"
    (flowlearn's threads, each slice on single-threaded BLAS). ``split=True``: the product belongs to
    an op that splits anyway, so it splits from ``2 * SMALL`` on rather than from ``LARGE``."""
    if size < SMALL:
        return "one thread"
    return "blas" if size < (2 * SMALL if split else LARGE) else "split"


def gemm(xp, a, b, out=None, split=False):
    """``a @ b`` for 2-D ``a`` (m, k) and ``b`` (k, n), optionally into ``out`` (m, n), run as
    :func:`regime` says.
    """
    if xp is not numpy:
        return xp.matmul(a, b, out=out)
    m, k = a.shape
    n = b.shape[1]
    size = m * n * k
    if size < SMALL:
        hold_blas_for_small_product()
        return numpy.matmul(a, b, out=out)
    if regime(size, split) == "blas":
        release_blas_if_idle()  # give BLAS its threads back if flowlearn is done splitting
        return numpy.matmul(a, b, out=out)
    if m * n <= k:
        # A small output over a long inner dimension (the kernel gradient of a first convolution:
        # 25x32 over 78,400 rows): output slices would be slivers, so split the inner dimension and
        # add the partial products in slice order (1.2 ms against 3.0 split by columns).
        def partial(start, stop):
            return numpy.matmul(a[:, start:stop], b[start:stop])
        parts = parallel_slices(k, partial, grain=-(-SMALL // (m * n)), uses_blas=True)
        total = parts[0]
        for part in parts[1:]:
            total += part
        if out is None:
            return total
        out[...] = total
        return out
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
