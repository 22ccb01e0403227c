"""Intra-op parallelism: one op's work split over slices of its batch, one thread per core.

numpy runs element-wise work on one core, and OpenBLAS parallelises each matrix product on its own
by waking its worker threads for that one call. A training step made of many medium-sized products
between element-wise passes pays for that hand-off on every product, leaves the second core idle
through every copy and element-wise pass, and moves each product's output from the core that wrote
half of it to the core that reads it next. On the 2-core machines we measure on, the input gradient
of a 100x14x14x32 -> 64, 5x5 convolution (25 products, 25 accumulations) took 17.5-33 ms that way,
depending on how busy the host was, and 14 ms split in two halves of the batch, each half running
its products on single-threaded BLAS and its own accumulations on its own core.

:func:`parallel_slices` is that split. While a split that calls BLAS runs, the BLAS libraries that
numpy loaded are set to one thread each (through threadpoolctl, which scikit-learn installs) and
put back afterwards. The number of threads is :func:`get_num_threads` (all the cores this process
may use, or ``FLOWLEARN_NUM_THREADS``), never more than the BLAS thread count in force, so
``threadpoolctl.threadpool_limits(1)`` keeps flowlearn on one thread too. Work is never split
inside work that is already split, and never in slices smaller than the caller's ``grain``.

Results depend only on the number of slices: an op splits its batch the same way on every call.
"""
import contextlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

__all__ = ["get_num_threads", "set_num_threads", "parallel_slices", "blas_single_thread", "split_recently"]

_ENV = "FLOWLEARN_NUM_THREADS"


def _default_threads():
    value = os.environ.get(_ENV)
    if value:
        try:
            count = int(value)
        except ValueError:
            count = 0
        if count < 1:
            raise ValueError(f"{_ENV} must be a positive integer; got {value!r}.")
        return count
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


_num_threads = None  # resolved on first use, so the environment variable may be set after import
_pool = None
_pool_size = 0
_pool_lock = threading.Lock()
_local = threading.local()
_last_blas_split = -float("inf")  # time.monotonic() of the last split that ran BLAS in threads


def get_num_threads():
    """How many threads flowlearn splits one op's work over (before the BLAS limit applies)."""
    global _num_threads
    if _num_threads is None:
        _num_threads = _default_threads()
    return _num_threads


def set_num_threads(count):
    """Set how many threads flowlearn splits one op's work over; 1 turns the splitting off.

    >>> import flowlearn as fl
    >>> previous = fl.get_num_threads()
    >>> fl.set_num_threads(1)
    >>> fl.get_num_threads()
    1
    >>> fl.set_num_threads(previous)
    """
    global _num_threads
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"set_num_threads: expected a positive int; got {count!r}.")
    _num_threads = count


def _worker_pool(workers):
    global _pool, _pool_size
    with _pool_lock:
        if _pool_size < workers:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(workers, thread_name_prefix="flowlearn", initializer=_mark_worker)
            _pool_size = workers
        return _pool


def _mark_worker():
    _local.inside = True


# -- BLAS threads ----------------------------------------------------------------------------------
class _BlasThreads:
    """The BLAS libraries numpy loaded, set to one thread while any split that uses BLAS runs."""

    def __init__(self):
        self._lock = threading.Lock()
        self._users = 0
        self._saved = None
        self._libraries = None  # None: not looked up yet; (): no controllable BLAS found

    def _lookup(self):
        if self._libraries is None:
            try:
                from threadpoolctl import ThreadpoolController
            except ImportError:  # without it BLAS threads cannot be set: splits that use BLAS stay serial
                self._libraries = ()
            else:
                self._libraries = tuple(ThreadpoolController().select(user_api="blas").lib_controllers)
        return self._libraries

    def available(self):
        """The BLAS thread count in force outside any split (0 where BLAS threads cannot be set)."""
        with self._lock:
            libraries = self._lookup()
            if not libraries:
                return 0
            if self._saved is not None:
                return max(self._saved)
            return max(library.get_num_threads() for library in libraries)

    @contextlib.contextmanager
    def single(self):
        with self._lock:
            self._lookup()
            if self._users == 0:
                self._saved = [library.get_num_threads() for library in self._libraries]
                for library in self._libraries:
                    library.set_num_threads(1)
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    for library, count in zip(self._libraries, self._saved):
                        library.set_num_threads(count)
                    self._saved = None


_blas = _BlasThreads()


def _after_fork_in_child():
    # A forked child has none of the parent's threads: a pool inherited from it would queue work
    # that no thread ever runs. Start from scratch, as if nothing had been split yet.
    global _pool, _pool_size, _pool_lock, _local, _blas
    _pool, _pool_size, _pool_lock, _local = None, 0, threading.Lock(), threading.local()
    _blas = _BlasThreads()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def blas_single_thread():
    """Context manager: the BLAS libraries numpy loaded run on one thread inside it.

    Nested and concurrent uses are counted: the thread counts in force before the first one are
    put back when the last one ends.
    """
    return _blas.single()


# -- the split -------------------------------------------------------------------------------------
def _slice_count(total, grain, uses_blas):
    if getattr(_local, "inside", False):
        return 1
    count = min(get_num_threads(), total // max(grain, 1))
    if count > 1:
        # The BLAS thread count bounds every split: a limit set for BLAS (joblib sets one in each
        # of its workers so that n_jobs processes do not oversubscribe the cores) holds for
        # flowlearn's threads too. Work that calls BLAS cannot split where BLAS threads cannot be set.
        blas = _blas.available()
        if blas or uses_blas:
            count = min(count, blas)
    return max(count, 1)


def parallel_slices(total, work, grain=1, uses_blas=False):
    """Run ``work(start, stop)`` over contiguous slices of ``range(total)``, one slice per thread.

    Parameters
    ----------
    total : int
        Size of the range to split (a batch, or the elements of a flat array).
    work : callable
        ``work(start, stop)``; each call must touch only its own slice of any shared output.
    grain : int
        Smallest slice worth a thread of its own: the range is split into at most
        ``total // grain`` slices.
    uses_blas : bool
        True when ``work`` calls BLAS: BLAS runs single-threaded while the slices run (and the
        work stays serial where BLAS threads cannot be set).

    Returns
    -------
    list
        The return values of ``work``, in slice order (one element when nothing was split).
    """
    global _last_blas_split
    count = _slice_count(total, grain, uses_blas)
    if count == 1:
        return [work(0, total)]
    if uses_blas:
        _last_blas_split = time.monotonic()
    bounds = [total * k // count for k in range(count + 1)]
    pool = _worker_pool(count - 1)
    with _blas.single() if uses_blas else contextlib.nullcontext():
        futures = [pool.submit(work, bounds[k], bounds[k + 1]) for k in range(1, count)]
        _local.inside = True
        try:
            first = work(bounds[0], bounds[1])
        finally:
            _local.inside = False
            wait(futures)  # no worker may still write into the caller's buffers once we return
        return [first] + [future.result() for future in futures]


def split_recently(seconds=1.0):
    """True when flowlearn split BLAS work over its own threads in the last ``seconds``.

    A workload that does (a convolutional network's training step) should not wake BLAS's own
    threads for its other products: they would spin on the cores its threads need.
    """
    return time.monotonic() - _last_blas_split < seconds
