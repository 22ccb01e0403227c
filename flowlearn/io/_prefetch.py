"""Prefetch: run a generator in a background thread and hand its items over through a bounded queue.

The generator yields ``(kind, item)`` pairs; the consumer's side yields the same pairs in the same order, and
re-raises the producer's exception (its own type, message and traceback). Stopping early (the consumer's generator
closed or garbage-collected) tells the producer to stop, closes its generator in its own thread and joins it, so
no thread outlives the iteration. :func:`delivered` is the consumer's end: it hands on the batches and issues
the warnings of a pipeline's pairs.
"""
import queue
import threading
import warnings

__all__ = ["BATCH", "WARNING", "delivered", "prefetched"]

# The kinds of a pipeline's (kind, item) pairs: a batch, or the text of a warning to issue where the user iterates.
BATCH, WARNING = "batch", "warning"

_DONE, _ERROR = object(), object()


def prefetched(make_items, size, thread_name, owner):
    """The ``(kind, item)`` pairs of ``make_items()``, produced ahead by a thread, at most ``size`` waiting.

    Parameters
    ----------
    make_items : callable
        Returns the generator to run; called in the producer thread (so the generator's clean-up runs there).
    size : int
        Items prepared ahead (the bound on the queue).
    thread_name : str
        The producer thread's name (tests look for leftover threads by name).
    owner : str
        Named in the error raised if the producer dies without a result.
    """
    ready = queue.Queue(maxsize=size)
    stop = threading.Event()

    def put(entry):
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    def produce():
        items = make_items()
        try:
            for entry in items:
                if not put(entry):
                    return
            put((_DONE, None))
        except BaseException as error:  # handed to the consumer, which raises it
            put((_ERROR, error))
        finally:
            items.close()

    producer = threading.Thread(target=produce, name=thread_name, daemon=True)
    producer.start()
    try:
        while True:
            try:
                kind, item = ready.get(timeout=0.1)
            except queue.Empty:
                if not producer.is_alive() and ready.empty():
                    raise RuntimeError(f"{owner}: the reader thread ended without a result") from None
                continue
            if kind is _DONE:
                return
            if kind is _ERROR:
                raise item
            yield kind, item
    finally:
        stop.set()
        producer.join()


def delivered(pairs):
    """The items of :data:`BATCH` pairs, each :data:`WARNING` pair's text issued as a ``UserWarning``; closes
    ``pairs`` when done or abandoned.

    The pipeline's generator runs where the user cannot see it (often a reader thread), so its warnings travel as
    pairs and are issued here, pointing at the line that iterates: callers must delegate to this generator with
    ``yield from`` (the warning's ``stacklevel`` counts this frame and the caller's).
    """
    try:
        for kind, item in pairs:
            if kind == WARNING:
                warnings.warn(item, UserWarning, stacklevel=3)
            else:
                yield item
    finally:
        pairs.close()
