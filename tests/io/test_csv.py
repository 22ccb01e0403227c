import collections
import gc
import itertools
import random
import re
import threading
import time
import tracemalloc
import warnings

import numpy
import pytest

from flowlearn.io import csv as csv_module
from flowlearn.io import csv_input_fn


def _csv_threads():
    return [thread for thread in threading.enumerate() if thread.name.startswith("flowlearn-csv")]


@pytest.fixture(autouse=True)
def _no_thread_left():
    yield
    gc.collect()
    assert not _csv_threads(), "a csv_input_fn thread outlived its test"


def _write_table(path, start, stop, header=True):
    """Rows id, x (= id / 8), name (= "n<id>"), label (= id % 3)."""
    lines = ["id,x,name,label"] if header else []
    lines += [f"{i},{i / 8},n{i},{i % 3}" for i in range(start, stop)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def three_files(tmp_path):
    return [_write_table(tmp_path / f"part-{k}.csv", 700 * k, 700 * (k + 1)) for k in range(3)]


def _ids(input_fn):
    return [int(i) for features, _ in input_fn() for i in features["id"]]


def _write(path, text):
    path.write_text(text)
    return path


# -- every row once per pass ---------------------------------------------------------------------------------
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("prefetch", [0, 2])
def test_every_row_arrives_once_per_epoch(tmp_path, three_files, shuffle, prefetch):
    input_fn = csv_input_fn(str(tmp_path / "part-*.csv"), batch_size=64, num_epochs=2, shuffle=shuffle,
                            shuffle_buffer_size=500, seed=3, chunk_size=2048, prefetch_buffer_size=prefetch)
    batches = list(input_fn())
    sizes = [len(features["id"]) for features, _ in batches]
    # Each pass ends with its own partial batch: 2100 rows = 32 full batches + 52 rows, twice.
    assert sizes == ([64] * 32 + [52]) * 2
    ids = [int(i) for features, _ in batches for i in features["id"]]
    for epoch in (ids[:2100], ids[2100:]):
        assert collections.Counter(epoch) == collections.Counter(range(2100))
    if shuffle:
        assert ids[:2100] != ids[2100:]  # a new order each pass
    for features, _ in batches:  # the columns of a row stay together
        numpy.testing.assert_allclose(features["x"], features["id"] / 8)
        assert list(features["name"]) == [f"n{int(i)}" for i in features["id"]]


def test_unshuffled_order_alternates_files_block_by_block(tmp_path, three_files):
    one_reader = _ids(csv_input_fn(three_files, shuffle=False, num_parallel_reads=1, chunk_size=2048))
    assert one_reader == list(range(2100))
    two_readers = _ids(csv_input_fn(three_files, shuffle=False, num_parallel_reads=2, chunk_size=2048))
    assert sorted(two_readers) == list(range(2100)) and two_readers != one_reader
    # The first block of the second file comes right after the first block of the first.
    first_block = two_readers.index(700)
    assert two_readers[:first_block] == list(range(first_block))


# -- shuffling ---------------------------------------------------------------------------------------------
def test_seeded_shuffle_is_reproducible_and_depends_on_the_seed(three_files):
    def order(seed, **options):
        return _ids(csv_input_fn(three_files, seed=seed, shuffle_buffer_size=300, chunk_size=2048,
                                 num_parallel_reads=3, **options))

    first = order(7)
    assert order(7) == first  # a new call: the same order
    assert order(7, prefetch_buffer_size=0) == first  # prefetching changes when, not what
    assert order(8) != first
    assert sorted(first) == list(range(2100)) and first != sorted(first)


def test_iterating_one_call_again_reshuffles_reproducibly(three_files):
    # As numpy_input_fn: Sequential.fit iterates the iterable once per epoch, and each epoch gets a new order.
    input_fn = csv_input_fn(three_files, seed=5, shuffle_buffer_size=300, chunk_size=2048)
    batches = input_fn()
    first, second = ([int(i) for f, _ in batches for i in f["id"]] for _ in range(2))
    assert first != second and sorted(first) == sorted(second) == list(range(2100))
    again = input_fn()
    assert [[int(i) for f, _ in again for i in f["id"]] for _ in range(2)] == [first, second]


def test_unseeded_shuffles_follow_set_random_seed(three_files):
    from flowlearn.layers import set_random_seed

    input_fn = csv_input_fn(three_files, shuffle_buffer_size=300, chunk_size=2048)
    set_random_seed(3)
    first = _ids(input_fn)
    set_random_seed(3)
    assert _ids(input_fn) == first
    assert _ids(input_fn) != first


def test_cardinality_for_the_data_adapter(three_files):
    from flowlearn.layers.data_adapter import INFINITE, UNKNOWN, cardinality

    assert cardinality(csv_input_fn(three_files)()) == UNKNOWN
    assert cardinality(csv_input_fn(three_files, num_epochs=None)()) == INFINITE


def test_seeded_order_does_not_depend_on_thread_timing(monkeypatch, three_files):
    reference = _ids(csv_input_fn(three_files, seed=1, chunk_size=2048, num_parallel_reads=3))
    read_blocks = csv_module._blocks
    jitter = random.Random(0)

    def slow_blocks(*args):
        for block in read_blocks(*args):
            time.sleep(jitter.random() * 0.003)  # readers finish in a different order each time
            yield block

    monkeypatch.setattr(csv_module, "_blocks", slow_blocks)
    assert _ids(csv_input_fn(three_files, seed=1, chunk_size=2048, num_parallel_reads=3)) == reference


def test_shuffle_buffer_holds_at_most_its_capacity():
    # A row can leave the buffer at the earliest when its chunk arrives, and at most `capacity` rows wait
    # in it: so no row comes out more than capacity + chunk rows before its place in the input.
    capacity, chunk = 100, 30
    chunks = ({"id": numpy.arange(start, start + chunk)} for start in range(0, 3000, chunk))
    out = numpy.concatenate([piece["id"] for piece in csv_module._shuffled(chunks, capacity,
                                                                           numpy.random.default_rng(0))])
    assert sorted(out) == list(range(3000))
    ahead = out - numpy.arange(3000)  # how many places earlier than in the input each row came out
    assert ahead.max() <= capacity + chunk - 1
    assert numpy.abs(ahead).mean() > capacity / 4  # and it does mix


# -- bounded memory -----------------------------------------------------------------------------------------
def test_files_larger_than_the_chunk_stream_in_bounded_memory(monkeypatch, tmp_path):
    # Two files of ~25 MB each; the reader may hold a block per file in flight, the shuffle buffer and a
    # few batches, never a file.
    rng = numpy.random.default_rng(0)
    rows = rng.integers(0, 1000, (20000, 4))
    block = "".join(f"{a},{b},{c},{d}\n" for a, b, c, d in rows).encode()  # ~0.3 MB of records
    repeats = 25_000_000 // len(block) + 1
    for k in range(2):
        with open(tmp_path / f"big-{k}.csv", "wb") as handle:
            handle.write(b"a,b,c,d\n")
            for _ in range(repeats):
                handle.write(block)
    file_bytes = 2 * (repeats * len(block) + 8)
    chunk_size = 1 << 18
    seen_blocks = []
    read_blocks = csv_module._blocks

    def spy(*args):
        for block, line in read_blocks(*args):
            seen_blocks.append(len(block))
            yield block, line

    monkeypatch.setattr(csv_module, "_blocks", spy)
    input_fn = csv_input_fn(str(tmp_path / "big-*.csv"), batch_size=4096, shuffle_buffer_size=10000, seed=0,
                            chunk_size=chunk_size, column_defaults=[0.0] * 4)
    began = time.perf_counter()
    tracemalloc.start()
    try:
        total = 0
        checksum = 0.0
        for features, _ in input_fn():
            total += len(features["a"])
            checksum += float(features["a"].sum())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"read in {time.perf_counter() - began:.1f} s")
    assert total == 2 * repeats * len(rows)
    assert checksum == 2 * repeats * rows[:, 0].sum()
    assert len(seen_blocks) > 150 and max(seen_blocks) <= chunk_size  # blocks are cut at a record's end
    print(f"tracemalloc peak {peak / 2**20:.1f} MiB streaming {file_bytes / 2**20:.0f} MiB")
    assert peak < 24 * chunk_size < file_bytes / 8, (peak, file_bytes)


# -- defaults, types, header, labels ----------------------------------------------------------------------
def test_column_defaults_fill_empty_fields_and_set_dtypes(tmp_path):
    path = _write(tmp_path / "d.csv", "a,b,c,d\n1,2.5,x,7\n,,,8\n3,,z,\n")
    by_list = csv_input_fn(path, column_defaults=[-1, [0.5], "?", numpy.int32(9)], shuffle=False)
    by_dict = csv_input_fn(path, column_defaults={"a": -1, "b": 0.5, "c": "?", "d": numpy.int32(9)}, shuffle=False)
    for input_fn in (by_list, by_dict):
        (features, labels), = list(input_fn())
        assert labels is None
        assert features["a"].dtype == numpy.int64 and features["a"].tolist() == [1, -1, 3]
        assert features["b"].dtype == numpy.float32 and features["b"].tolist() == [2.5, 0.5, 0.5]
        assert features["c"].dtype == object and features["c"].tolist() == ["x", "?", "z"]
        assert features["d"].dtype == numpy.int32 and features["d"].tolist() == [7, 8, 9]


def test_types_are_inferred_without_defaults(tmp_path):
    path = _write(tmp_path / "t.csv", "n,s,m\n1,a,2\n2.5,b,nan\n")
    input_fn = csv_input_fn(path, shuffle=False)
    assert input_fn.dtypes == {"n": numpy.float32, "s": object, "m": numpy.float32}
    (features, _), = list(input_fn())
    assert features["n"].tolist() == [1.0, 2.5] and features["s"].tolist() == ["a", "b"]
    assert features["m"][0] == 2 and numpy.isnan(features["m"][1])  # "nan" is a value, not an empty field


def test_declared_types_without_defaults_make_empty_fields_bad(tmp_path):
    path = _write(tmp_path / "r.csv", "a,b\n1,2\n3,\n")
    input_fn = csv_input_fn(path, column_defaults=[int, None], shuffle=False)
    assert input_fn.dtypes == {"a": numpy.int64, "b": numpy.float32}
    with pytest.raises(ValueError, match=r"r\.csv, line 3: column 'b' is empty and has no default"):
        list(input_fn())


def test_header_and_no_header(tmp_path):
    with_header = _write(tmp_path / "h.csv", "p,q\n1,2\n3,4\n")
    without = _write(tmp_path / "n.csv", "1,2\n3,4\n")
    (features, _), = list(csv_input_fn(with_header, shuffle=False)())
    assert list(features) == ["p", "q"] and features["p"].tolist() == [1, 3]
    (features, _), = list(csv_input_fn(with_header, column_names=["u", "v"], shuffle=False)())
    assert list(features) == ["u", "v"] and features["u"].tolist() == [1, 3]  # the header line is skipped
    (features, _), = list(csv_input_fn(without, column_names=["u", "v"], header=False, shuffle=False)())
    assert features["u"].tolist() == [1, 3]
    with pytest.raises(ValueError, match="header=False needs column_names"):
        csv_input_fn(without, header=False)


def test_files_with_different_headers_are_refused(tmp_path):
    _write(tmp_path / "a.csv", "p,q\n1,2\n")
    _write(tmp_path / "b.csv", "p,r\n1,2\n")
    with pytest.raises(ValueError, match=r"b\.csv, line 1: header \['p', 'r'\] differs"):
        csv_input_fn(str(tmp_path / "*.csv"))


def test_label_column_becomes_the_labels(three_files):
    input_fn = csv_input_fn(three_files, label_column="label", column_defaults={"label": 0}, seed=0)
    for features, labels in input_fn():
        assert "label" not in features and list(features) == ["id", "x", "name"]
        assert labels.dtype == numpy.int64 and labels.tolist() == (features["id"].astype(int) % 3).tolist()
    with pytest.raises(ValueError, match=r"label_column='y' is not a column; the columns are \['id'"):
        csv_input_fn(three_files, label_column="y")


def test_quoted_fields_with_delimiters_and_newlines(tmp_path):
    path = _write(tmp_path / "q.csv", 'a,b\n1,"x, y"\n2,"two\nlines"\n3,"say ""hi"""\n4,z,extra\n')
    with pytest.raises(ValueError, match=r"q\.csv, line 6: expected 2 fields, got 3"):  # physical line
        list(csv_input_fn(path, shuffle=False)())
    with pytest.warns(UserWarning, match="skipped 1 malformed row"):
        (features, _), = list(csv_input_fn(path, shuffle=False, on_bad_row="skip")())
    assert features["b"].tolist() == ["x, y", "two\nlines", 'say "hi"']


# -- malformed rows ---------------------------------------------------------------------------------------------
_HEADER = "a,b,c,d,e\n"
_GOOD = "1,2,3,4,5\n"


@pytest.mark.parametrize("bad_line, message", [
    ("1,2,3,4,5,6\n", "expected 5 fields, got 6"),
    ("1,2,3,4\n", "expected 5 fields, got 4"),
    ("1,2,x3,4,5\n", "column 'c' expects a number (float32), got 'x3'"),
    ("1,2,3,4,1.5\n", "column 'e' expects an integer (int64), got '1.5'"),
    ("1,2,3,,5\n", "column 'd' is empty and has no default"),
])
def test_a_bad_row_raises_with_its_file_and_line(tmp_path, bad_line, message):
    # Line 17 (header = line 1), in a later block than the first, after a blank line that counts as a line.
    _write(tmp_path / "ok.csv", _HEADER + _GOOD * 3)
    _write(tmp_path / "file.csv", _HEADER + _GOOD * 10 + "\n" + _GOOD * 4 + bad_line + _GOOD * 30)
    input_fn = csv_input_fn(str(tmp_path / "*.csv"), column_defaults=[None, None, float, None, int],
                            chunk_size=64, shuffle=False)
    with pytest.raises(ValueError, match=re.escape(f"file.csv, line 17: {message}")):
        list(input_fn())


def test_the_raise_names_the_full_path(tmp_path):
    path = _write(tmp_path / "file.csv", _HEADER + _GOOD + "1,2\n")
    with pytest.raises(ValueError) as raised:
        list(csv_input_fn(path)())
    assert str(raised.value) == f"{path}, line 3: expected 5 fields, got 2"


def test_bad_rows_are_skipped_and_counted_each_pass(tmp_path):
    path = _write(tmp_path / "s.csv", _HEADER + _GOOD + "1,2,3\n" + _GOOD + "1,2,3,4,x\n" + _GOOD * 2
                  + "9,9,9,9,9,9\n")
    input_fn = csv_input_fn(path, on_bad_row="skip", num_epochs=2, chunk_size=32, column_defaults=[0] * 5,
                            batch_size=100)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = list(input_fn())
    assert [len(features["a"]) for features, _ in batches] == [4, 4]
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    for message in messages:
        assert message.startswith("csv_input_fn skipped 3 malformed row(s) in one pass over 1 file(s)")
        assert message.endswith(f"the first: {path}, line 3: expected 5 fields, got 3")


def test_unparsable_numbers_are_skipped_too(tmp_path):
    path = _write(tmp_path / "u.csv", "a,b\n1,2\nx,3\n4,5\n")
    with pytest.warns(UserWarning, match=r"skipped 1 malformed row.*u\.csv, line 3: column 'a' expects a number"):
        (features, _), = list(csv_input_fn(path, column_defaults=[0.0, 0.0], on_bad_row="skip", shuffle=False)())
    assert features["a"].tolist() == [1, 4] and features["b"].tolist() == [2, 5]


# -- repetition, errors, threads ------------------------------------------------------------------------------
def test_num_epochs_none_repeats_until_the_consumer_stops(three_files):
    input_fn = csv_input_fn(three_files, num_epochs=None, batch_size=700, seed=0, chunk_size=4096)
    ids = [int(i) for features, _ in itertools.islice(input_fn(), 9) for i in features["id"]]
    assert len(ids) == 3 * 2100
    for epoch in range(3):
        assert sorted(ids[2100 * epoch:2100 * (epoch + 1)]) == list(range(2100))


def test_num_epochs_none_over_no_rows_raises_instead_of_spinning(tmp_path):
    path = _write(tmp_path / "empty.csv", "a,b\n")
    assert list(csv_input_fn(path)()) == []
    with pytest.raises(ValueError, match="hold no rows to repeat"):
        next(iter(csv_input_fn(path, num_epochs=None)()))


def test_missing_files_and_empty_patterns_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file: '.*nowhere.csv'"):
        csv_input_fn(str(tmp_path / "nowhere.csv"))
    with pytest.raises(ValueError, match=r"the pattern '.*train-\*\.csv' in `file_pattern` matches no file"):
        csv_input_fn(str(tmp_path / "train-*.csv"))
    with pytest.raises(ValueError, match="csv_input_fn: `file_pattern` is an empty list"):
        csv_input_fn([])


@pytest.mark.parametrize("argument, value", [
    ("batch_size", 0), ("num_epochs", 0), ("shuffle_buffer_size", -1), ("num_parallel_reads", 0),
    ("chunk_size", 0), ("on_bad_row", "ignore"), ("field_delim", ";;"), ("seed", -1), ("seed", 1.5),
    ("prefetch_buffer_size", -1),
])
def test_bad_arguments_name_themselves(three_files, argument, value):
    with pytest.raises(ValueError, match=argument):
        csv_input_fn(three_files, **{argument: value})


def test_bad_counts_say_what_was_expected(three_files):
    with pytest.raises(ValueError, match="`prefetch_buffer_size`, expected a non-negative integer. Received: "
                                         "prefetch_buffer_size=-1"):
        csv_input_fn(three_files, prefetch_buffer_size=-1)
    with pytest.raises(ValueError, match="`num_epochs`, expected a positive integer or None. Received: num_epochs=0"):
        csv_input_fn(three_files, num_epochs=0)


@pytest.mark.parametrize("prefetch", [0, 2])
def test_stopping_early_leaves_no_thread(three_files, prefetch):
    input_fn = csv_input_fn(three_files, num_epochs=None, batch_size=8, chunk_size=512, num_parallel_reads=3,
                            shuffle_buffer_size=50, prefetch_buffer_size=prefetch)
    for _ in input_fn():
        names = [thread.name for thread in _csv_threads()]
        assert any("-read" in name for name in names)
        assert any(name.endswith("-prefetch") for name in names) == bool(prefetch)
        break
    assert not _csv_threads()
    iterator = iter(input_fn())
    next(iterator)
    iterator.close()
    assert not _csv_threads()


def test_a_reader_error_reaches_the_consumer_with_its_message(tmp_path):
    _write(tmp_path / "big.csv", _HEADER + _GOOD * 3000 + "oops\n")
    input_fn = csv_input_fn(str(tmp_path / "big.csv"), batch_size=10, chunk_size=1024, shuffle=False)
    seen = 0
    with pytest.raises(ValueError, match=r"big\.csv, line 3002: expected 5 fields, got 1$"):
        for _ in input_fn():
            seen += 1
    assert seen == 300  # every good row before it arrived first
    assert not _csv_threads()


def test_sequential_fit_on_a_csv_input_fn_matches_fit_on_the_arrays(tmp_path):
    import flowlearn as fl

    rng = numpy.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype(numpy.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(numpy.int64)
    lines = ["a,b,c,d,label"] + [",".join(f"{v!r}" for v in row) + f",{label}" for row, label in
                                 zip(x.tolist(), y)]
    _write(tmp_path / "train.csv", "\n".join(lines) + "\n")
    input_fn = csv_input_fn(tmp_path / "train.csv", label_column="label", column_defaults={"label": 0},
                            batch_size=32, shuffle=False, num_epochs=1)

    def stacked():  # a Sequential model takes one array: the feature columns side by side
        return ((numpy.stack(list(features.values()), axis=1), labels) for features, labels in input_fn())

    def fresh_model():
        fl.layers.set_random_seed(0)
        model = fl.Sequential([fl.layers.Input((4,)), fl.layers.Dense(8, activation="relu"),
                               fl.layers.Dense(2, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy")
        return model

    on_arrays, on_csv = fresh_model(), fresh_model()
    on_arrays.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    on_csv.fit(stacked, epochs=2, verbose=0)
    for p, q in zip(on_arrays.get_weights(), on_csv.get_weights()):
        numpy.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("rows", [
    "1,2,3,4\n1,2\n1,2,3\n",  # the first too long, another too short: pandas alone would pad silently
    "1,2,3\n1,2,3,4\n1,2\n",  # the field total is right, two records are not
    "1,2,3,\n1,2\n1,2,3\n",   # a trailing empty field, which pandas drops when the first record has it
])
def test_compensating_field_counts_are_both_bad(tmp_path, rows):
    path = _write(tmp_path / "c.csv", "a,b,c\n" + rows)
    with pytest.warns(UserWarning, match="skipped 2 malformed row"):
        (features, _), = list(csv_input_fn(path, column_defaults=[0, 0, 0], on_bad_row="skip", shuffle=False)())
    assert features["a"].tolist() == [1] and features["c"].tolist() == [3]


def test_windows_line_ends_a_byte_order_mark_and_no_final_newline(tmp_path):
    path = tmp_path / "w.csv"
    path.write_bytes(b"\xef\xbb\xbfa,b\r\n1,x\r\n\r\n2,y\r\n3,z")
    input_fn = csv_input_fn(path, shuffle=False, chunk_size=8)
    assert input_fn.column_names == ["a", "b"]
    (features, _), = list(input_fn())
    assert features["a"].tolist() == [1, 2, 3] and features["b"].tolist() == ["x", "y", "z"]
    path.write_bytes(b"\xef\xbb\xbfa,b\r\n1,x\r\n\r\n2,y,extra\r\n3,z")
    with pytest.raises(ValueError, match=r"w\.csv, line 4: expected 2 fields, got 3"):
        list(csv_input_fn(path, shuffle=False, chunk_size=8)())


def test_values_out_of_a_small_integer_range_are_bad_rows(tmp_path):
    path = _write(tmp_path / "i.csv", "a\n1\n99999999999\n3\n")
    with pytest.raises(ValueError, match=r"i\.csv, line 3: column 'a' expects an integer \(int32\), got '99999999999'"):
        list(csv_input_fn(path, column_defaults=[numpy.int32(0)])())


def test_text_that_is_not_utf8_is_named_by_line(tmp_path):
    path = tmp_path / "b.csv"
    path.write_bytes(b"a,b\n1,ok\n2,caf\xe9\n")
    with pytest.raises(ValueError, match=r"b\.csv, line 3: not UTF-8 text"):
        list(csv_input_fn(path, shuffle=False)())


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_other_field_delimiters(tmp_path, delimiter):
    path = _write(tmp_path / "t.csv", f"a{delimiter}b\n1{delimiter}x,y\n2{delimiter}z\n")
    (features, _), = list(csv_input_fn(path, field_delim=delimiter, shuffle=False)())
    assert features["a"].tolist() == [1, 2] and features["b"].tolist() == ["x,y", "z"]
    _write(tmp_path / "t.csv", f"a{delimiter}b\n1{delimiter}x\n2{delimiter}z{delimiter}w\n")
    with pytest.raises(ValueError, match=r"t\.csv, line 3: expected 2 fields, got 3"):
        list(csv_input_fn(path, field_delim=delimiter, shuffle=False)())


def test_a_model_fn_estimator_trains_and_evaluates_on_csv_files(tmp_path):
    # The whole data path: CSV files -> csv_input_fn -> feature columns in a model_fn -> Estimator.
    import flowlearn as fl
    from flowlearn import feature_column
    from flowlearn.core import losses
    from flowlearn.estimators import Estimator, EstimatorSpec, ModeKeys, RunConfig

    rng = numpy.random.default_rng(0)
    x = rng.normal(size=600)
    for k in range(3):
        rows = range(200 * k, 200 * (k + 1))
        _write(tmp_path / f"train-{k}.csv", "x,y\n" + "".join(f"{x[i]:.5f},{3 * x[i] + 1:.5f}\n" for i in rows))
    columns = [feature_column.numeric_column("x")]

    def model_fn(features, labels, mode):
        prediction = fl.layers.dense(feature_column.input_layer(features, columns), 1)
        if mode == ModeKeys.PREDICT:
            return EstimatorSpec(mode, predictions={"y": prediction})
        loss = losses.mean_squared_error(labels.reshape(-1, 1), prediction)
        train_op = fl.train.AdamOptimizer(0.1).minimize(loss, global_step=fl.train.get_global_step())
        return EstimatorSpec(mode, loss=loss, train_op=train_op)

    pattern = str(tmp_path / "train-*.csv")
    estimator = Estimator(model_fn, model_dir=str(tmp_path / "model"),
                          config=RunConfig(tf_random_seed=0, save_summary_steps=None, log_step_count_steps=None))
    estimator.train(csv_input_fn(pattern, label_column="y", batch_size=50, num_epochs=None, seed=0), steps=300)
    result = estimator.evaluate(csv_input_fn(pattern, label_column="y", batch_size=100, shuffle=False))
    assert result["global_step"] == 300 and result["loss"] < 1e-2
    assert not _csv_threads()  # the endless training input was abandoned after 300 steps, and stopped
