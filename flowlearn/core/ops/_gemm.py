"""Every 2-D matrix product of the op core, with one policy for who runs it on which threads.

By size (multiply-adds, ``m*n*k``):

- products from ``SPLIT`` on are split by flowlearn over rows or columns of the output, one slice per
  thread, each slice on single-threaded BLAS (:func:`flowlearn.core.parallel.parallel_slices`), and so
  are products that a larger op splits anyway (a convolution's kernel gradient) from ``2 * SMALL`` on;
- mid-sized products (``SMALL`` to ``SPLIT``) run on one BLAS thread inside a fit, evaluate or predict
  call (:func:`flowlearn.core.parallel.hold_blas_for_small_product`), and on BLAS's own threads outside
  one unless a recent split still holds BLAS at one thread;
- small products (under ``SMALL``) never need BLAS's threads: inside a fit, evaluate or predict call
  they hold BLAS at one thread too. A 200x64 @ 64x128 product is ~35 us of work on one core; a second
  thread saves at most half of that, and waking it costs as much on an idle host and milliseconds on a
  busy one.

Why flowlearn's split and not BLAS's threads from ``SPLIT`` on: on an idle host OpenBLAS's threads run
a 128x784 @ 784x256 product (an MNIST MLP's first layer) in ~300 us, flowlearn's split in ~390 and
one thread in ~530, but OpenBLAS's workers spin and meet several times inside every product, and next
to one busy process they lose the core for a time slice at each meeting: that product's weight gradient
took 12 ms instead of 0.53, and a training epoch 4-16x as long as on one thread. A split meets once per
product, and its worker sleeps between products. Under ``SPLIT`` the wake-up (~100 us here) eats what a
second thread would save, so one thread does those.

Whether a split pays depends on the host: next to a busy process the second slice often waits for
the busy process's time slice too, and the MNIST MLP's splits took 3-4x as long as one thread on average
(0.55-0.7x on an idle host). So each split of a product under ``LARGE`` measures itself
(:class:`SplitGain`): while recent splits took longer than their slices' work would on one thread,
such products run whole on one BLAS thread, with one split in every ``SplitGain.PROBE_EVERY`` to
notice when the cores are free again. The choice changes no number for the products flowlearn's layers
make: see the next paragraph.

A product is split along its inner dimension only when its output is no larger than that dimension
(then output slices would be slivers); the partial products are added in slice order. Otherwise
every output element is one BLAS sum over the same inner dimension as unsplit, and with the
single-threaded BLAS each slice runs on, OpenBLAS gives bit for bit the product that
``OPENBLAS_NUM_THREADS=1`` gives for the layer shapes checked (MLP and CNN products of 32-256 rows, halves
of 1-2 rows through 3136x1024; BLAS's own threads may sum in another order). Not for every shape: at some
column boundaries of products with a few rows (e.g. 999 columns), OpenBLAS's edge kernels round the last
bit differently, so there the busy-host fallback can move a last bit. The same product splits the same way
on every call.
"""
import time

import numpy

from ..parallel import (hold_blas_for_small_product, in_stretch, on_one_blas_thread, parallel_slices,
                        release_blas_if_idle)

# Under SMALL multiply-adds a product never needs a second thread. From SPLIT on (about 0.35 ms on one
# core here) flowlearn splits it: enough work to hide waking a thread (~0.1 ms on an idle host, up to
# ~0.3 ms on a busy one). No slice has fewer than SMALL. LARGE was the split threshold before mid-sized
# products were split too; it is kept for code that imports it.
SMALL = 4_000_000
SPLIT = 16_000_000
LARGE = 250_000_000


def regime(size, split=False, stretch=False):
    """Who runs a product of ``size`` multiply-adds on numpy.

    Parameters
    ----------
    size : int
        ``m * n * k``.
    split : bool
        The product belongs to an op that splits anyway: it splits from ``2 * SMALL`` on rather than
        from ``SPLIT``.
    stretch : bool
        The product runs inside a fit, evaluate or predict call
        (:func:`flowlearn.core.parallel.in_stretch`).

    Returns
    -------
    str
        "split" (flowlearn's threads, each slice on single-threaded BLAS; under ``LARGE``, one held
        BLAS thread while splits do not pay, see :class:`SplitGain`), "one thread" (BLAS, held at one
        thread inside a fit/evaluate/predict call) or "blas" (BLAS's own threads: a mid-sized product
        outside such a call).
    """
    if size < SMALL:
        return "one thread"
    if size >= (2 * SMALL if split else SPLIT):
        return "split"
    return "one thread" if stretch else "blas"


class SplitGain:
    """How splitting products from ``SPLIT`` to ``LARGE`` has paid lately: a running mean of a split's
    time over the time its slices' work would take on one thread (the caller's own slice times the
    slice count, so a host busy enough to slow the caller slows the estimate alike). Under 1: split.
    At 1 or more: run such products whole on one thread, except every ``PROBE_EVERY``-th, which splits
    and is measured.

    Measured in an MNIST MLP's training on the 2-core development machine: on an idle host a split
    takes ~0.55-0.7 of one thread's time, every time; next to one busy process the median was 1.3
    but 40% of splits took more than twice as long as one thread and the mean was 3-4 (the second
    slice waits for the busy process's time slice). Tuned on those sequences: splitting always costs
    3-4.3x one thread per such product next to a busy process; this costs 1.07-1.18x there and
    0.77 on the quietest runs. A mean, not a median, because waiting is what costs time; a sample counts
    at most ``CLAMP``, so that one split that lost its core does not stop splitting for long.
    """

    PROBE_EVERY = 32
    WEIGHT = 0.25  # of the newest measurement in the running mean
    CLAMP = 3.0

    def __init__(self):
        self.ratio = 0.0  # optimistic start: split until measured otherwise
        self._skipped = 0

    def wanted(self):
        """Whether the next product from ``SPLIT`` to ``LARGE`` should split."""
        if self.ratio < 1.0:
            return True
        self._skipped += 1
        if self._skipped < self.PROBE_EVERY:
            return False
        self._skipped = 0
        return True

    def record(self, seconds, caller_seconds, slices):
        """One split of ``slices`` slices took ``seconds``, the caller's own slice ``caller_seconds``."""
        if slices > 1 and caller_seconds > 0.0:
            sample = min(seconds / (caller_seconds * slices), self.CLAMP)
            self.ratio += self.WEIGHT * (sample - self.ratio)


split_gain = SplitGain()


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
    kind = regime(size, split, in_stretch())
    if kind == "one thread":
        hold_blas_for_small_product()
        return numpy.matmul(a, b, out=out)
    if kind == "blas":
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
    measured = not split and size < LARGE
    if measured and not split_gain.wanted():
        # Splits have not paid lately: the whole product on one BLAS thread (held, as a split holds it).
        # Every output element is the same BLAS sum either way: for the layer shapes checked, bit for bit.
        return on_one_blas_thread(lambda: numpy.matmul(a, b, out=out))
    if m >= n:
        def work(start, stop):
            began = time.perf_counter()
            numpy.matmul(a[start:stop], b, out=out[start:stop])
            return time.perf_counter() - began
        total, grain = m, -(-SMALL // (n * k))
    else:
        def work(start, stop):
            began = time.perf_counter()
            numpy.matmul(a, b[:, start:stop], out=out[:, start:stop])
            return time.perf_counter() - began
        total, grain = n, -(-SMALL // (m * k))
    began = time.perf_counter()
    slices = parallel_slices(total, work, grain=grain, uses_blas=True)
    if measured:
        split_gain.record(time.perf_counter() - began, slices[0], len(slices))  # slice 0 ran in this thread
    return out
