"""The read-ahead stage shared by csv_input_fn and image_input_fn."""
import threading

import pytest

from flowlearn.io._prefetch import prefetched


def _threads():
    return [thread for thread in threading.enumerate() if thread.name == "test-prefetch"]


def test_items_arrive_in_order_and_the_thread_ends():
    made_in = []

    def items():
        made_in.append(threading.current_thread().name)
        for i in range(50):
            yield "batch", i

    assert list(prefetched(items, 3, "test-prefetch", "owner")) == [("batch", i) for i in range(50)]
    assert made_in == ["test-prefetch"]  # the generator runs (and is closed) in the producer thread
    assert not _threads()


def test_the_producers_exception_is_raised_as_it_was():
    def items():
        yield "batch", 1
        raise KeyError("the reader's own error")

    pairs = prefetched(items, 2, "test-prefetch", "owner")
    assert next(pairs) == ("batch", 1)
    with pytest.raises(KeyError, match="the reader's own error"):
        next(pairs)
    assert not _threads()


def test_stopping_early_closes_the_producers_generator():
    closed = threading.Event()

    def items():
        try:
            i = 0
            while True:
                yield "batch", i
                i += 1
        finally:
            closed.set()

    pairs = prefetched(items, 2, "test-prefetch", "owner")
    assert next(pairs) == ("batch", 0)
    pairs.close()
    assert closed.is_set() and not _threads()
