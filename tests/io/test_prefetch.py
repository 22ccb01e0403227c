"""The read-ahead stage and the consumer's end that the file input_fns share."""
import inspect
import threading
import warnings

import pytest

from flowlearn.io import csv_input_fn
from flowlearn.io._prefetch import BATCH, WARNING, delivered, prefetched


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


def test_delivered_hands_on_batches_and_warns_at_the_users_loop():
    closed = []

    def pairs():
        try:
            yield BATCH, 1
            yield WARNING, "skipped 2 rows"
            yield BATCH, 2
        finally:
            closed.append(True)

    def pipeline():  # as csv_input_fn and image_input_fn delegate to it
        yield from delivered(pairs())

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        got = [item for item in pipeline()]
    assert got == [1, 2] and closed == [True]
    assert [(str(w.message), w.category, w.filename, w.lineno) for w in caught] == [
        ("skipped 2 rows", UserWarning, __file__, line)]
    abandoned = pipeline()
    next(abandoned)
    abandoned.close()
    assert closed == [True, True]


@pytest.mark.parametrize("prefetch_buffer_size", [0, 2])
def test_csv_input_fns_skip_warning_points_at_the_loop(tmp_path, prefetch_buffer_size):
    path = tmp_path / "rows.csv"
    path.write_text("a,b\n1,2\n3\n5,6\n")
    input_fn = csv_input_fn(str(path), shuffle=False, on_bad_row="skip", prefetch_buffer_size=prefetch_buffer_size)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        batches = list(input_fn())
    assert len(batches) == 1
    assert [(w.filename, w.lineno) for w in caught if "skipped 1 malformed row" in str(w.message)] == [
        (__file__, line)]
