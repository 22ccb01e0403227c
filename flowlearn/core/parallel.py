"""Intra-op parallelism: one op's work split over slices of its batch, one thread per core.

numpy runs element-wise work on one core, and OpenBLAS parallelises each matrix product on its own
by waking its worker threads for that one call. A training step made of many medium-sized products
between element-wise passes pays for that hand-off on every product, leaves the second core idle
through every copy and element-wise pass, and moves each product's output from the core that wrote
half of it to the core that reads it next. On the 2-core machines we measure on, the input gradient
of a 100x14x14x32 -> 64, 5x5 convolution (25 products, 25 accumulations) took 17.5-33 ms that way,
depending on how busy the host was, and 14 ms split in two halves of the batch, each half running
its products on single-threaded BLAS and its own accumulations on its own core.

:func:`parallel_slices` is that split. From the first split that calls BLAS on, the BLAS libraries
that numpy loaded are held at one thread (through threadpoolctl, which scikit-learn installs) and
handed back when a fit, evaluate or predict call ends (see :class:`_BlasThreads` for why not after
every split). Inside a fit, evaluate or predict call, a product too small to split takes the same
hold (:func:`hold_blas_for_small_product`): on a host where another process keeps a core busy, waking
BLAS's workers for each of thousands of tiny products made a small network's fit several times
slower than on one thread. Which products split is :func:`flowlearn.core.ops._gemm.regime`'s call.

The number of threads is :func:`get_num_threads` (all the cores this process may
use, or ``FLOWLEARN_NUM_THREADS``), never more than BLAS's own thread count, so
``threadpoolctl.threadpool_limits(1)`` keeps flowlearn on one thread too. Work is never split
inside work that is already split, and never in slices smaller than the caller's ``grain``.

Results depend only on the number of slices: an op splits its batch the same way on every call.
"""
import contextlib
import functools
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

__all__ = [
    "get_num_threads", "set_num_threads", "parallel_slices", "release_blas", "release_blas_if_idle", "hands_blas_back",
    "hold_blas_for_small_product", "in_stretch", "on_one_blas_thread", "BlasThreadChoice",
]

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
# Seconds without a split after which a product left to BLAS gets BLAS's own thread count back.
RELEASE_AFTER = 1.0


class _BlasThreads:
    """The BLAS libraries numpy loaded, held at one thread while flowlearn splits BLAS work.

    Setting OpenBLAS's thread count wakes its worker threads, which then spin for tens of
    milliseconds on the cores flowlearn's threads need: setting one thread and back around every
    split made a split 4096x100 @ 100x256 product take 2.1 ms instead of 1.1. So the count is set
    to one at the first split and kept there; it is handed back (from the calling thread: OpenBLAS
    may ignore a count set from another one) when a fit, evaluate or predict call ends, when a
    product that BLAS should thread comes a second after the last split, or by :func:`release_blas`.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._running = 0  # splits running now
        self._saved = None  # the thread counts to hand back; None while BLAS is not held
        self.last_split = 0.0
        self.last_threaded = float("-inf")  # when a product that wants BLAS's threads last came
        self._libraries = None  # None: not looked up yet; (): no controllable BLAS found

    @property
    def holding(self):
        return self._saved is not None

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
        """The BLAS thread count outside flowlearn's hold (0 where BLAS threads cannot be set)."""
        with self._lock:
            libraries = self._lookup()
            if not libraries:
                return 0
            current = [library.get_num_threads() for library in libraries]
            if self._saved is not None and max(current) == 1:
                return max(self._saved)
            return max(current)

    @contextlib.contextmanager
    def held(self):
        """BLAS on one thread inside, and still after, until :meth:`release`."""
        with self._lock:
            libraries = self._lookup()
            current = [library.get_num_threads() for library in libraries]
            if max(current, default=1) > 1:  # not held yet, or someone set a count since: hold that
                self._saved = current
                for library in libraries:
                    library.set_num_threads(1)
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
                self.last_split = time.monotonic()

    def hold(self):
        """BLAS on one thread from now until :meth:`release`, for products too small to need more.

        Unlike :meth:`held` this trusts the hold once taken (no thread counts are read again): it runs
        before each of thousands of tiny products, where reading them would cost a tenth of the product.
        A BLAS already on one thread counts as held too, so that it is not read again either.
        """
        if self._saved is not None:
            return
        with self._lock:
            libraries = self._lookup()
            if self._saved is not None or not libraries:
                return
            current = [library.get_num_threads() for library in libraries]
            self._saved = current
            if max(current) > 1:
                for library in libraries:
                    library.set_num_threads(1)

    def release(self):
        """Hand BLAS its thread counts back (unless a split is running)."""
        if self._saved is None:
            return
        with self._lock:
            if self._running == 0 and self._saved is not None:
                for library, count in zip(self._libraries, self._saved):
                    if library.get_num_threads() == 1:  # a count set by someone else since is theirs
                        library.set_num_threads(count)
                self._saved = None


_blas = _BlasThreads()


def release_blas():
    """Give numpy's BLAS back the thread counts it had before flowlearn held it at one thread.

    flowlearn holds BLAS at one thread from its first split product on, so that BLAS's own
    threads do not spin on the cores its threads use, and hands the counts back when a ``fit``,
    ``evaluate`` or ``predict`` call ends. Code that calls the ops directly (a hand-written
    training loop) can call this when it is done, before numpy work of its own.
    """
    _blas.release()


def hands_blas_back(function):
    """Decorator for the calls that end a stretch of work (fit, evaluate, predict): whatever way
    ``function`` ends, :func:`release_blas` runs after it, in the caller's thread.

    Only the outermost such call releases: a validation pass or prediction inside ``fit`` leaves
    BLAS held for the epochs still to come (handing it back and taking it again would wake
    BLAS's spinning threads once per epoch).
    """
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        depth = getattr(_local, "stretch", 0)
        _local.stretch = depth + 1
        try:
            return function(*args, **kwargs)
        finally:
            _local.stretch = depth
            if depth == 0:
                if getattr(_local, "keep_hold", False):  # a one-row call that ran best on one thread
                    _local.keep_hold = False
                else:
                    _blas.release()
    return wrapper


def in_stretch():
    """True inside a fit, evaluate or predict call (a function decorated by :func:`hands_blas_back`)
    in the calling thread: the stretch of work at whose end BLAS is handed back."""
    return getattr(_local, "stretch", 0) > 0


def on_one_blas_thread(work):
    """``work()`` with BLAS held at one thread, as in a split, and the hold kept after it: for a
    product that flowlearn would split but runs whole this time (see ``_gemm.SplitGain``)."""
    with _blas.held():
        return work()


def release_blas_if_idle():
    """Before a product that BLAS's own threads should run: :func:`release_blas` if no split has run
    for :data:`RELEASE_AFTER` seconds. Notes the product, so that small products that follow within
    that time leave BLAS its threads (see :func:`hold_blas_for_small_product`)."""
    now = time.monotonic()
    _blas.last_threaded = now
    if _blas.holding and now - _blas.last_split >= RELEASE_AFTER:
        _blas.release()


def hold_blas_for_small_product():
    """Before a product too small for flowlearn to split: hold BLAS at one thread, if this thread is
    inside a fit, evaluate or predict call and no product that wants BLAS's threads ran in the last
    :data:`RELEASE_AFTER` seconds.

    Thousands of tiny products (a small network's fit) each woke BLAS's worker threads: fine on an idle
    host, but next to one busy process the digits fit of a 64-128-64-10 network took 3.6x as long as on
    one thread, and an MNIST MLP's, whose products are mid-sized, 2.7-10x. Held once, BLAS stays on one
    thread until the call ends (setting the count around each product would wake the workers too).
    Outside such a call nothing is held, so numpy code of the user's own never finds BLAS changed. Inside
    one, no product wants BLAS's threads (larger ones are split), so only a product that ran on them
    just before the call began (outside it) delays the hold, by at most a second.
    """
    if _blas._saved is not None or getattr(_local, "stretch", 0) == 0 or getattr(_local, "leave_blas", False):
        return
    if time.monotonic() - _blas.last_threaded >= RELEASE_AFTER:
        _blas.hold()


class BlasThreadChoice:
    """For calls too small to split over a batch (one row or one image through a network): whether their
    products get BLAS's own threads or BLAS held at one, chosen by timing the calls both ways.

    One 28x28 image through the default ``CNNClassifier`` network took 0.52 ms with OpenBLAS's two threads and
    0.90 ms on one, on an idle 2-core host: its 196x800 @ 800x64 convolution product and the 12.8 MB weight read
    of its dense layer both gain from a second core. Next to one busy process the threaded calls had a lower
    median but a tail of 12-16 ms (a worker waiting out the busy process's time slice) against ~5 ms on one
    thread. So each network keeps the running mean of its calls' seconds in each regime, runs the cheaper one,
    and now and then runs the other for a few calls to notice when the host changes: after ``PROBE_EVERY``
    calls, a gap that doubles (up to ``PROBE_MAX``) each time a probe confirms the choice, and starts again from
    ``PROBE_EVERY`` only when threads win (a probe of one thread costs little; one of threads on a busy host may
    stall). Every call counts, a probe's first with its cost of waking BLAS's sleeping workers, except the
    network's very first (which traces its replay). A tail spike lifts a regime's mean at once and probes
    bring it back down, so a host that makes threaded calls stall falls back to one thread.

    Where one thread wins, the hold outlives the call: handing BLAS its threads back after each call woke
    OpenBLAS's workers, which then spun next to the busy process and the next call (one image took 2.9 ms
    on average against 1.0 with ``OPENBLAS_NUM_THREADS=1``). It ends with the next call that runs threaded,
    the end of any other fit, evaluate or predict call, or :func:`release_blas`.

    Either way every product sums in BLAS's order for its thread count: the choice changes timings, and may
    move a last bit, never more.
    """

    MEASURED = 3  # calls of each regime counted before the means are compared
    PROBE_CALLS = 3  # a probe's calls in a row
    PROBE_EVERY = 16
    PROBE_MAX = 1024
    WEIGHT = 0.25  # of the newest call in the running mean

    def __init__(self):
        self._means = {True: None, False: None}
        self._counted = {True: 0, False: 0}
        self._previous = None  # the regime of the last call
        self._burst, self._burst_regime = 0, None  # calls left in a run of one regime (measuring, probing)
        self._gap, self._since_probe, self._choice = self.PROBE_EVERY, 0, None
        self._lock = threading.Lock()  # threads predicting with one model at once share its counts

    def _run(self, regime, calls):
        self._burst, self._burst_regime = calls - 1, regime
        return regime

    def _choose(self):
        if self._burst > 0:
            self._burst -= 1
            return self._burst_regime
        for regime in (True, False):  # measure both first, threads first, each in a run of calls
            if self._counted[regime] < self.MEASURED:
                return self._run(regime, self.MEASURED + 1)
        better = self._means[True] <= self._means[False]
        if better != self._choice:
            if better:  # threads won (again): check one thread soon, a probe that costs little
                self._gap, self._since_probe = self.PROBE_EVERY, 0
            # One thread won: probes of threads, which may stall on a busy host, stay as rare as they were.
            self._choice = better
        self._since_probe += 1
        if self._since_probe < self._gap:
            return better
        self._since_probe = 0
        self._gap = min(2 * self._gap, self.PROBE_MAX)  # back to PROBE_EVERY when threads win a probe
        return self._run(not better, self.PROBE_CALLS)

    def _record(self, threaded, seconds):
        first, self._previous = self._previous is None, threaded
        if first:  # the network's first call traces its replay: not a call like the others
            return
        self._counted[threaded] += 1
        mean = self._means[threaded]
        # A running mean, not the probe's calls alone: a probe's few calls rarely catch the stalls that make a
        # busy host's threaded calls dear on average (a few percent of calls, 12-16 ms each), the mean keeps
        # them in mind; after a host calms down, a few probes bring it back down.
        self._means[threaded] = seconds if mean is None else mean + self.WEIGHT * (seconds - mean)

    @contextlib.contextmanager
    def call(self):
        """Run the body in the chosen regime and time it. BLAS is left its threads only if nothing holds it
        already (a fit's validation pass keeps the fit's hold)."""
        with self._lock:
            threaded = self._choose()
        if threaded and _blas.holding:
            if getattr(_local, "stretch", 0) > 1:
                threaded = False  # inside a fit: its hold stays
            else:
                _blas.release()  # the hold an earlier one-row call kept
        before = getattr(_local, "leave_blas", False)
        _local.leave_blas = threaded
        if not threaded:
            hold_blas_for_small_product()  # before the first product: a convolution's calls BLAS directly
        began = time.perf_counter()
        try:
            yield
        finally:
            _local.leave_blas = before
            with self._lock:
                self._record(threaded, time.perf_counter() - began)
            if not threaded and getattr(_local, "stretch", 0) == 1:
                _local.keep_hold = True


def _after_fork_in_child():
    # A forked child has none of the parent's threads: a pool inherited from it would queue work
    # that no thread ever runs, and a split running in the parent is not running here. Start
    # from scratch, with BLAS's thread counts handed back.
    global _pool, _pool_size, _pool_lock, _local
    _pool, _pool_size, _pool_lock, _local = None, 0, threading.Lock(), threading.local()
    _blas._lock = threading.Lock()
    _blas._running = 0
    _blas.release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


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
    count = _slice_count(total, grain, uses_blas)
    if count == 1:
        return [work(0, total)]
    bounds = [total * k // count for k in range(count + 1)]
    pool = _worker_pool(count - 1)
    with _blas.held() if uses_blas else contextlib.nullcontext():
        futures = [pool.submit(work, bounds[k], bounds[k + 1]) for k in range(1, count)]
        _local.inside = True
        try:
            first = work(bounds[0], bounds[1])
        finally:
            _local.inside = False
            wait(futures)  # no worker may still write into the caller's buffers once we return
        return [first] + [future.result() for future in futures]

