"""Streaming CSV input: ``csv_input_fn`` reads CSV files larger than memory as ``(features, labels)`` batches.

The pipeline is a chain of small stages, each bounded in memory (tf.data's read / decode / shuffle / batch /
prefetch, without TensorFlow):

1. *read*: each file is read in blocks of about ``chunk_size`` bytes, every block cut at a record boundary
   (a newline outside quotes), so no file is ever held whole;
2. *check*: the fields of every record are counted with vectorised byte searches, which is what lets a bad row
   be named by file and line and be skipped without restarting the parser;
3. *decode*: each block goes through pandas' C parser with the column dtypes (a block that fails to convert is
   decoded again as strings, value by value, to find the row and the reason); empty fields take the column
   defaults;
4. *interleave*: ``num_parallel_reads`` files are read at once by worker threads and their blocks taken in a
   fixed round-robin, so the order never depends on thread timing;
5. *shuffle*: a buffer of at most ``shuffle_buffer_size`` rows; each incoming block replaces randomly chosen
   rows of the buffer and the replaced rows leave (a seeded generator makes the order reproducible);
6. *batch*, then *prefetch*: a background thread keeps the next ``prefetch_buffer_size`` batches ready while the
   model trains.
"""
import csv
import io
from concurrent.futures import ThreadPoolExecutor

import numpy
import pandas

from ..layers.data_adapter import INFINITE, UNKNOWN
from ._files import pass_order, resolve_files
from ._prefetch import BATCH, WARNING, delivered, prefetched
from .inputs import _count, _passes, _seed_or_drawn

__all__ = ["CsvBatches", "CsvInputFn", "csv_input_fn"]

_NEWLINE, _QUOTE, _CARRIAGE_RETURN = 10, 34, 13
_BOM = b"\xef\xbb\xbf"
_NO_DEFAULT = object()
_THREAD_PREFIX = "flowlearn-csv"


def csv_input_fn(file_pattern, column_names=None, column_defaults=None, label_column=None, batch_size=128,
                 num_epochs=1, shuffle=True, shuffle_buffer_size=10000, num_parallel_reads=2, header=True, seed=None,
                 on_bad_row="raise", chunk_size=1 << 20, field_delim=",", prefetch_buffer_size=2):
    """An input_fn that streams CSV files as ``(features, labels)`` batches, in bounded memory.

    Parameters
    ----------
    file_pattern : str, path or list of them
        A file, a glob pattern (``"data/train-*.csv"``, matches sorted by name) or a list of files and patterns.
    column_names : list of str, optional
        The names of the columns. Default: the first line of the first file (``header=True`` is then required).
    column_defaults : list or dict, optional
        One entry per column (a list in column order, or a dict by name; columns left out have none), as in
        ``tf.io.decode_csv``'s ``record_defaults``: a value (``0.0`` -> float32, ``0`` -> int64, ``""`` -> str,
        a numpy scalar -> its dtype) fills that column's empty fields; a type (``float``, ``int``, ``str``, a numpy
        dtype) or ``None`` declares a required column, whose empty fields make the row malformed. Columns
        without a type are float32 when every non-empty field of the first block parses as a number, else str
        (numpy object arrays).
    label_column : str, optional
        The column returned as labels; the others are the features. ``None``: labels are ``None``.
    batch_size : int, default 128
        Rows per batch; the last batch of each pass over the files may be smaller.
    num_epochs : int or None, default 1
        Passes over the files; ``None`` repeats forever. Every pass yields each good row exactly once.
    shuffle : bool, default True
        Shuffle the order of the files each pass and the rows through the shuffle buffer.
    shuffle_buffer_size : int, default 10000
        Rows held by the shuffle buffer (the bound on its memory). A buffer larger than the data shuffles fully.
    num_parallel_reads : int, default 2
        Files read at once, each by a worker thread; their blocks are interleaved in a fixed round-robin, so
        with several files the rows of up to this many files alternate block by block.
    header : bool, default True
        Whether each file starts with a header line (skipped; it gives the names when ``column_names`` is None).
    seed : int, optional
        Seed of the shuffling: every call of the input_fn gives the same sequence of orders, on every machine
        and whatever the threads' timing. Default: drawn at each call from the stream that
        :func:`flowlearn.layers.set_random_seed` seeds.
    on_bad_row : {"raise", "skip"}, default "raise"
        A malformed row (wrong number of fields, a value that does not parse, an empty required field) raises
        ``ValueError("<file>, line <n>: <reason>")``, or with ``"skip"`` is dropped and counted: a warning at the
        end of each pass gives the count and the first such row.
    chunk_size : int, default 1 MiB
        Bytes read from a file at a time (each block is extended to the end of its last record).
    field_delim : str, default ","
        The one-character field separator.
    prefetch_buffer_size : int, default 2
        Batches prepared ahead by a background thread; 0 prepares each batch when it is asked for.

    Returns
    -------
    input_fn : CsvInputFn
        A zero-argument callable; each call returns an iterable (:class:`CsvBatches`) of ``(features,
        labels)``, ``features`` a dict of column name -> ndarray. An iteration's threads stop when it ends,
        fails, or is abandoned (its iterator closed or garbage-collected).

    Examples
    --------
    >>> input_fn = csv_input_fn("train-*.csv", label_column="label", batch_size=32, seed=0)  # doctest: +SKIP
    >>> for features, labels in input_fn():  # doctest: +SKIP
    ...     ...
    """
    files = resolve_files("csv_input_fn", "file_pattern", file_pattern)
    options = _Options(batch_size, num_epochs, shuffle, shuffle_buffer_size, num_parallel_reads, on_bad_row,
                       chunk_size, field_delim, prefetch_buffer_size, seed, header)
    names = _column_names(files, column_names, header, options.delimiter)
    columns = _column_specs(names, column_defaults)
    if label_column is not None and label_column not in names:
        raise ValueError(f"csv_input_fn: label_column={label_column!r} is not a column; the columns are {names}.")
    if any(column.dtype is None for column in columns):
        _infer_dtypes(files, columns, options)
    return CsvInputFn(files, columns, label_column, options)


class CsvInputFn:
    """The input_fn :func:`csv_input_fn` returns: call it for an iterator of ``(features, labels)`` batches.

    Attributes
    ----------
    files : list of str
        The files read, in their unshuffled order.
    column_names : list of str
    dtypes : dict
        Column name -> numpy dtype of its arrays.
    """

    def __init__(self, files, columns, label_column, options):
        self.files = files
        self._columns = columns
        self._label = label_column
        self._options = options
        self.column_names = [column.name for column in columns]
        self.dtypes = {column.name: column.dtype for column in columns}

    def __repr__(self):
        return f"CsvInputFn({len(self.files)} files, columns={self.column_names}, label_column={self._label!r})"

    def __call__(self):
        seed = _seed_or_drawn(self._options.seed, self._options.shuffle)
        return CsvBatches(self, numpy.random.default_rng(seed))

    # -- the consumer's side -----------------------------------------------------------------------------
    def _iterate(self, rng):
        options = self._options
        if options.prefetch:
            # Read ahead in a thread: the same (kind, item) pairs, the reader's own exception re-raised.
            items = prefetched(lambda: self._items(rng), options.prefetch, f"{_THREAD_PREFIX}-prefetch",
                               "csv_input_fn")
        else:
            items = self._items(rng)
        yield from delivered(items)

    # -- the pipeline ------------------------------------------------------------------------------------
    def _items(self, rng):
        """``(kind, item)`` pairs: batches, and a warning after each pass that skipped rows."""
        options = self._options
        executor = None
        if options.parallel_reads > 1:
            executor = ThreadPoolExecutor(options.parallel_reads, thread_name_prefix=f"{_THREAD_PREFIX}-read")
        try:
            for _ in _passes(options.num_epochs):
                files = pass_order(self.files, options.shuffle, rng)
                tally = _BadRowTally()
                chunks = tally.counting(_interleave(files, options.parallel_reads, executor, self._reader()))
                pieces = _shuffled(chunks, options.buffer_size, rng) if options.shuffle else chunks
                rows = 0
                try:
                    for batch in _batched(pieces, options.batch_size):
                        rows += len(next(iter(batch.values())))
                        yield BATCH, self._split(batch)
                finally:
                    pieces.close()
                    chunks.close()
                if tally.count:
                    yield WARNING, (f"csv_input_fn skipped {tally.count} malformed row(s) in one pass over "
                                    f"{len(files)} file(s); the first: {tally.first}")
                if rows == 0 and options.num_epochs is None:
                    raise ValueError(f"csv_input_fn: num_epochs=None, but the files hold no rows to repeat: "
                                     f"{self.files}")
        finally:
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)

    def _reader(self):
        columns, options = self._columns, self._options

        def read(path):
            for block, first_line in _blocks(path, options.chunk_size, options.header):
                decoded = None
                lines = _quick_check(block, first_line, len(columns), options.delimiter)
                if lines is not None:
                    try:
                        decoded, lines, bad = _decode(block, lines, columns, options.delimiter, path, checked=False)
                    except pandas.errors.ParserError:  # a record with too many fields: find it below
                        lines = None
                if lines is None:
                    block, lines, bad = _check_records(block, first_line, len(columns), options.delimiter, path)
                    decoded, lines, bad_values = _decode(block, lines, columns, options.delimiter, path)
                    bad.extend(bad_values)
                bad.sort()
                if bad and options.on_bad_row == "raise":
                    line, reason = bad[0]
                    before = lines < line
                    if before.any():  # the good rows above the bad one still arrive, as when reading on
                        yield _take(decoded, before), path, []
                    raise ValueError(f"{path}, line {line}: {reason}")
                if decoded is not None or bad:
                    yield decoded, path, bad

        return read

    def _split(self, batch):
        labels = batch.pop(self._label) if self._label is not None else None
        return batch, labels


class CsvBatches:
    """What a call of a :class:`CsvInputFn` returns: an iterable of ``(features, labels)`` batches.

    Each iteration reads the files again, in its own threads, and draws new orders from the generator
    seeded once at the call (tf.data's ``reshuffle_each_iteration``): iterating twice gives two different
    shuffles, and two calls with the same ``seed`` give the same sequence of them. ``cardinality()`` is
    :data:`~flowlearn.layers.data_adapter.INFINITE` when ``num_epochs`` is None, else unknown (the number of
    rows is not known before reading them).
    """

    def __init__(self, input_fn, rng):
        self._input_fn, self._rng = input_fn, rng

    def cardinality(self):
        return INFINITE if self._input_fn._options.num_epochs is None else UNKNOWN

    def __iter__(self):
        return self._input_fn._iterate(self._rng)


# -- options and columns -----------------------------------------------------------------------------------
class _Options:
    def __init__(self, batch_size, num_epochs, shuffle, shuffle_buffer_size, num_parallel_reads, on_bad_row,
                 chunk_size, field_delim, prefetch_buffer_size, seed, header):
        self.batch_size = _count("csv_input_fn", "batch_size", batch_size)
        self.num_epochs = _count("csv_input_fn", "num_epochs", num_epochs, allow_none=True)
        self.shuffle = bool(shuffle)
        self.buffer_size = _count("csv_input_fn", "shuffle_buffer_size", shuffle_buffer_size)
        self.parallel_reads = _count("csv_input_fn", "num_parallel_reads", num_parallel_reads)
        if on_bad_row not in ("raise", "skip"):
            raise ValueError(f"csv_input_fn: on_bad_row must be 'raise' or 'skip'; got {on_bad_row!r}.")
        self.on_bad_row = on_bad_row
        self.chunk_size = _count("csv_input_fn", "chunk_size", chunk_size)
        if not isinstance(field_delim, str) or len(field_delim.encode()) != 1 or field_delim in "\"\r\n":
            raise ValueError(f"csv_input_fn: field_delim must be one ASCII character other than a quote or a "
                             f"newline; got {field_delim!r}.")
        self.delimiter = field_delim
        self.prefetch = _count("csv_input_fn", "prefetch_buffer_size", prefetch_buffer_size, minimum=0)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, numpy.integer)) or seed < 0):
            raise ValueError(f"csv_input_fn: seed must be a non-negative integer or None; got {seed!r}.")
        self.seed = seed
        self.header = bool(header)


def _column_names(files, column_names, header, delimiter):
    if column_names is None:
        if not header:
            raise ValueError("csv_input_fn: header=False needs column_names (the files carry no names).")
        names = _read_header(files[0], delimiter)
        for path in files[1:]:
            other = _read_header(path, delimiter)
            if other != names:
                raise ValueError(f"{path}, line 1: header {other} differs from the header of {files[0]}: {names}")
    else:
        names = [str(name) for name in column_names]
    if not names:
        raise ValueError("csv_input_fn: column_names is empty.")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"csv_input_fn: column names must be unique; repeated: {duplicates}")
    return names


def _read_header(path, delimiter):
    # Only the header record is read: a block at a time until its (unquoted) newline.
    with open(path, "rb") as handle:
        data = b""
        while True:
            piece = handle.read(1 << 16)
            data += piece
            end = _record_end(data, last=False)
            if end >= 0 or not piece:
                break
    data = data[:end] if end >= 0 else data
    text = data.removeprefix(_BOM).decode("utf-8")
    if not text.strip():
        raise ValueError(f"{path}, line 1: expected a header line (header=True), found an empty line or file")
    return next(csv.reader(io.StringIO(text), delimiter=delimiter))


class _Column:
    def __init__(self, name, dtype, default):
        self.name, self.dtype, self.default = name, dtype, default


def _column_specs(names, column_defaults):
    if column_defaults is None:
        entries = [None] * len(names)
    elif isinstance(column_defaults, dict):
        unknown = sorted(set(column_defaults) - set(names))
        if unknown:
            raise ValueError(f"csv_input_fn: column_defaults names columns that do not exist: {unknown}; "
                             f"the columns are {names}")
        entries = [column_defaults.get(name) for name in names]
    else:
        entries = list(column_defaults)
        if len(entries) != len(names):
            raise ValueError(f"csv_input_fn: column_defaults must have one entry per column ({len(names)}: "
                             f"{names}); got {len(entries)}")
    return [_column(name, entry) for name, entry in zip(names, entries)]


def _column(name, entry):
    """A column's dtype and default from its ``column_defaults`` entry (see csv_input_fn)."""
    if isinstance(entry, (list, tuple)):
        if len(entry) > 1:
            raise ValueError(f"csv_input_fn: column_defaults for {name!r} must be one value; got {entry!r}")
        entry = entry[0] if entry else None
    if entry is None:
        return _Column(name, None, _NO_DEFAULT)
    if isinstance(entry, (type, numpy.dtype)):
        return _Column(name, _declared_dtype(name, entry), _NO_DEFAULT)
    if isinstance(entry, (bool, numpy.bool_)):
        raise TypeError(f"csv_input_fn: column_defaults for {name!r} must be a number or a str; got {entry!r}")
    if isinstance(entry, numpy.generic):
        return _Column(name, _declared_dtype(name, entry.dtype), entry)
    if isinstance(entry, float):
        return _Column(name, numpy.dtype(numpy.float32), entry)
    if isinstance(entry, int):
        return _Column(name, numpy.dtype(numpy.int64), entry)
    if isinstance(entry, str):
        return _Column(name, numpy.dtype(object), entry)
    raise TypeError(f"csv_input_fn: column_defaults for {name!r} must be a float, int or str value, a type or "
                    f"None; got {entry!r} of type {type(entry).__name__}")


def _declared_dtype(name, kind):
    if kind is float:
        return numpy.dtype(numpy.float32)
    if kind is int:
        return numpy.dtype(numpy.int64)
    if kind is str or kind is object:
        return numpy.dtype(object)
    dtype = numpy.dtype(kind)
    if dtype.kind in "fiu":
        return dtype
    if dtype.kind in "UO":
        return numpy.dtype(object)
    raise TypeError(f"csv_input_fn: column {name!r} must be a float, integer or str column; got dtype {dtype}")


def _infer_dtypes(files, columns, options):
    """float32 for columns whose non-empty fields in the first block all parse as numbers, else str."""
    strings = None
    for path in files:
        for block, first_line in _blocks(path, options.chunk_size, options.header):
            block, lines, _ = _check_records(block, first_line, len(columns), options.delimiter, path)
            if len(lines):
                _check_utf8(block, lines, path)
                strings = _read_strings(block, columns, options.delimiter)
                break
        if strings is not None:
            break
    for column in columns:
        if column.dtype is None:
            numeric = strings is None or all(_parses_as_float(text) for text in strings[column.name] if text != "")
            column.dtype = numpy.dtype(numpy.float32 if numeric else object)


def _parses_as_float(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


# -- read: blocks of whole records ---------------------------------------------------------------------------
def _record_end(data, last):
    """Index of the last (or first) newline of ``data`` that ends a record (is outside quotes), or -1."""
    if b'"' not in data:
        return data.rfind(b"\n") if last else data.find(b"\n")
    array = numpy.frombuffer(data, numpy.uint8)
    newlines = numpy.flatnonzero(array == _NEWLINE)
    quotes = numpy.flatnonzero(array == _QUOTE)
    # A newline is outside quotes when an even number of quote characters precede it ("" escapes count twice).
    outside = newlines[(numpy.searchsorted(quotes, newlines) & 1) == 0]
    if not len(outside):
        return -1
    return int(outside[-1] if last else outside[0])


def _blocks(path, chunk_size, header):
    """``(block, first_line)``: the file in blocks of whole records of about ``chunk_size`` bytes, with the
    1-based line number of each block's first record; the header record is dropped."""
    with open(path, "rb") as handle:
        position, line, size = 0, 1, chunk_size
        while True:
            handle.seek(position)
            block = handle.read(size)
            if not block:
                return
            if len(block) == size:  # not the end of the file: cut after the last whole record
                end = _record_end(block, last=True)
                if end < 0:  # a record longer than what was read: read again, twice as much
                    size *= 2
                    continue
                if end + 1 < len(block):
                    block = block[:end + 1]  # the cut-off record is read again with the next block
            size = chunk_size
            if position == 0 and block.startswith(_BOM):
                block, position = block[len(_BOM):], len(_BOM)
            position += len(block)
            if header:
                end = _record_end(block, last=False)
                end = len(block) - 1 if end < 0 else end
                line += block.count(b"\n", 0, end + 1)
                block, header = block[end + 1:], False
            if block:
                yield block, line
                line += int(numpy.count_nonzero(numpy.frombuffer(block, numpy.uint8) == _NEWLINE))  # > bytes.count


# -- check: field counts, with lines -------------------------------------------------------------------------
def _quick_check(block, first_line, n_fields, delimiter):
    """The lines of the records of ``block`` when a few byte counts show that all have ``n_fields`` fields
    (given that pandas then parses the block without a too-many-fields error), else None.

    No quotes and no blank lines, so that records are lines; as many delimiters as ``n_fields`` fields in
    every record need; and the first record right, because pandas takes the number of fields it expects
    from it (a longer first record would silently pad the others). With no record above ``n_fields`` fields
    (pandas' check) and the total right, none can be below. This skips the full check of nearly every
    block of a well-formed file.
    """
    if b'"' in block:
        return None
    array = numpy.frombuffer(block, numpy.uint8)
    newline = array == _NEWLINE
    # Blank lines: a newline first, right after another, or after a carriage return that follows one.
    if newline[0] or array[0] == _CARRIAGE_RETURN or (newline[1:] & newline[:-1]).any():
        return None
    if ((array[1:-1] == _CARRIAGE_RETURN) & newline[2:] & newline[:-2]).any():
        return None
    records = int(numpy.count_nonzero(newline)) + (block[-1] != _NEWLINE)
    del newline
    separator = ord(delimiter)
    if numpy.count_nonzero(array == separator) != (n_fields - 1) * records:
        return None
    first_end = block.find(b"\n")
    if block.count(delimiter.encode(), 0, len(block) if first_end < 0 else first_end) != n_fields - 1:
        return None
    return first_line + numpy.arange(records)


def _check_records(block, first_line, n_fields, delimiter, path):
    """Drop blank and malformed records from ``block``.

    Returns ``(block, lines, bad)``: the kept records as bytes, the line of each kept record (an int array),
    and ``[(line, reason)]`` for the malformed ones.
    """
    array = numpy.frombuffer(block, numpy.uint8)
    newlines = numpy.flatnonzero(array == _NEWLINE)
    delimiters = numpy.flatnonzero(array == ord(delimiter))
    quoted = b'"' in block
    ends = newlines
    if quoted:
        # Inside quotes after an odd number of quote characters ("" escapes count twice, so they cancel).
        quotes = numpy.flatnonzero(array == _QUOTE)
        ends = newlines[(numpy.searchsorted(quotes, newlines) & 1) == 0]
        delimiters = delimiters[(numpy.searchsorted(quotes, delimiters) & 1) == 0]
        unterminated = len(quotes) % 2 == 1  # only the file's last block can end inside quotes
    if block[-1] != _NEWLINE:  # the file's last record, without a final newline
        ends = numpy.append(ends, len(block))
    starts = numpy.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    # The delimiters before each record's end, less those before the previous record's end.
    fields = numpy.diff(numpy.searchsorted(delimiters, ends), prepend=0) + 1
    del delimiters
    lengths = ends - starts
    blank = (lengths == 0) | ((lengths == 1) & (array[starts] == _CARRIAGE_RETURN))
    lines = first_line + (numpy.searchsorted(newlines, starts) if quoted else numpy.arange(len(starts)))
    bad = ~blank & (fields != n_fields)
    reasons = [(int(line), f"expected {n_fields} fields, got {count}") for line, count in zip(lines[bad], fields[bad])]
    if quoted and unterminated and not bad[-1]:
        bad[-1] = True
        reasons.append((int(lines[-1]), "a quoted field is never closed"))
    keep = ~(blank | bad)
    if keep.all():
        return block, lines, reasons
    # Each record spans its length plus its newline; the mask drops the bytes of the records not kept.
    keep_bytes = numpy.repeat(keep, lengths + 1)[:len(block)]
    return array[keep_bytes].tobytes(), lines[keep], reasons


# -- decode: typed columns, defaults, bad values -------------------------------------------------------------
def _decode(block, lines, columns, delimiter, path, checked=True):
    """``(columns dict or None, their lines, [(line, reason)])`` for a block of well-formed records.

    ``checked=False``: the records' field counts rest on pandas finding no record too long (its
    ``ParserError`` is let through, for the caller to check the block record by record).
    """
    if not len(lines):
        return None, lines, []
    try:
        frame = pandas.read_csv(
            io.BytesIO(block), sep=delimiter, header=None, names=[c.name for c in columns], index_col=False,
            dtype={c.name: "Int64" if c.dtype.kind in "iu" else c.dtype for c in columns},
            keep_default_na=False, na_values=[""], engine="c", low_memory=False,
        )
        decoded, bad = _from_typed(frame, lines, columns)
    except pandas.errors.ParserError as error:
        if not checked:
            raise
        raise ValueError(f"{path}, lines {lines[0]}-{lines[-1]}: {error}".strip()) from None
    except (ValueError, TypeError, OverflowError):
        # A field that does not convert: decode this block again as strings, value by value, to find it.
        _check_utf8(block, lines, path)
        frame = _read_strings(block, columns, delimiter)
        decoded, bad = _from_strings(frame, lines, columns)
    if len(frame) != len(lines):
        raise ValueError(f"{path}, lines {lines[0]}-{lines[-1]}: pandas read {len(frame)} records where "
                         f"{len(lines)} were expected; a quote character inside an unquoted field?")
    if bad:
        keep = numpy.ones(len(lines), bool)
        keep[[row for row, _ in bad]] = False
        decoded = {name: values[keep] for name, values in decoded.items()}
        bad = [(int(lines[row]), reason) for row, reason in bad]
        lines = lines[keep]
    if not len(lines):
        return None, lines, bad
    return decoded, lines, bad


def _check_utf8(block, lines, path):
    try:
        block.decode("utf-8")
    except UnicodeDecodeError as error:
        record = min(block.count(b"\n", 0, error.start), len(lines) - 1)
        raise ValueError(f"{path}, line {lines[record]}: not UTF-8 text ({error.reason} at byte "
                         f"{error.object[error.start:error.end]!r})") from None


def _read_strings(block, columns, delimiter):
    return pandas.read_csv(io.BytesIO(block), sep=delimiter, header=None, names=[c.name for c in columns],
                           index_col=False, dtype=object, na_filter=False, engine="c", low_memory=False)


def _from_typed(frame, lines, columns):
    decoded, bad = {}, []
    for column in columns:
        series = frame[column.name]
        if column.dtype.kind in "iu":
            missing = series.isna().to_numpy()
            values = series.to_numpy(dtype=numpy.int64, na_value=0)
            if column.dtype != numpy.int64:
                info = numpy.iinfo(column.dtype)
                if ((values < info.min) | (values > info.max)).any():
                    raise OverflowError  # found and reported value by value
                values = values.astype(column.dtype)
        elif column.dtype.kind == "f":
            values = series.to_numpy()
            missing = numpy.isnan(values)
        else:
            values = series.to_numpy(dtype=object)
            missing = pandas.isna(values)
        decoded[column.name] = _fill(column, values, missing, bad)
    return decoded, bad


def _from_strings(frame, lines, columns):
    decoded, bad = {}, []
    for column in columns:
        texts = frame[column.name].to_numpy(dtype=object)
        missing = texts == ""
        if column.dtype.kind == "O":
            values = texts.copy()
        else:
            values = numpy.zeros(len(texts), column.dtype)
            convert = _to_int if column.dtype.kind in "iu" else float
            for row in numpy.flatnonzero(~missing):
                try:
                    values[row] = convert(texts[row])
                except (ValueError, OverflowError):
                    kind = "an integer" if column.dtype.kind in "iu" else "a number"
                    bad.append((int(row), f"column {column.name!r} expects {kind} ({column.dtype}), "
                                          f"got {texts[row]!r}"))
        decoded[column.name] = _fill(column, values, missing, bad)
    return decoded, bad


def _to_int(text):
    try:
        return int(text)
    except ValueError:
        number = float(text)  # "3.0", as pandas reads it; "3.5" stays an error
        if not number.is_integer():
            raise
        return int(number)


def _fill(column, values, missing, bad):
    if missing.any():
        if column.default is _NO_DEFAULT:
            bad.extend((int(row), f"column {column.name!r} is empty and has no default in column_defaults")
                       for row in numpy.flatnonzero(missing))
        else:
            values[missing] = column.default
    return values


class _BadRowTally:
    """Counts the rows skipped in one pass, in the (deterministic) order the chunks are used."""

    def __init__(self):
        self.count, self.first = 0, None

    def counting(self, chunks):
        try:
            for decoded, path, bad in chunks:
                if bad:
                    self.count += len(bad)
                    if self.first is None:
                        self.first = f"{path}, line {bad[0][0]}: {bad[0][1]}"
                if decoded is not None:
                    yield decoded
        finally:
            chunks.close()  # its readers' files and in-flight reads, now rather than at garbage collection


# -- interleave, shuffle, batch --------------------------------------------------------------------------------
class _Deferred:
    """A synchronous stand-in for a Future: runs ``fn`` when its result is asked for."""

    def __init__(self, fn, *args):
        self._fn, self._args = fn, args

    def result(self):
        return self._fn(*self._args)

    def cancel(self):
        return True


def _interleave(files, cycle_length, executor, read):
    """Chunks of up to ``cycle_length`` files at once, taken in a fixed round-robin (the next file takes the
    slot of one that ends); each file's next chunk is read ahead on ``executor`` while the others are used."""
    def start(readers):
        path = next(pending, None)
        if path is None:
            return None
        reader = read(path)
        readers.append(reader)
        return [reader, submit(reader)]

    def submit(reader):
        if executor is None:
            return _Deferred(next, reader, None)
        return executor.submit(next, reader, None)

    pending, readers = iter(files), []
    slots = [slot for slot in (start(readers) for _ in range(cycle_length)) if slot is not None]
    try:
        position = 0
        while slots:
            position %= len(slots)
            reader, future = slots[position]
            chunk = future.result()
            if chunk is None:
                replacement = start(readers)
                if replacement is None:
                    del slots[position]
                    continue
                slots[position] = replacement
            else:
                slots[position][1] = submit(reader)
                yield chunk
            position += 1
    finally:
        for _, future in slots:
            if not future.cancel():
                try:
                    future.result()  # a read in flight: let it finish before its file is closed
                except BaseException:  # noqa: BLE001 - the pipeline is ending; its error is not this one
                    pass
        for reader in readers:
            reader.close()


def _rows(chunk):
    return len(next(iter(chunk.values())))


def _take(chunk, index):
    return {name: values[index] for name, values in chunk.items()}


def _shuffled(chunks, capacity, rng):
    """The rows of ``chunks`` through a shuffle buffer of at most ``capacity`` rows.

    Once full, each incoming chunk of ``m`` rows joins the buffer's rows as one pool from which ``m`` rows are
    drawn at random to leave; the incoming rows not drawn take the places of the buffer rows that were. Rows
    move once each way, so a chunk costs O(m), whatever the capacity.
    """
    buffer, size = None, 0
    for chunk in chunks:
        m = _rows(chunk)
        if buffer is None:
            # Rows may be arrays themselves (dask_input_fn's feature blocks): rows first, their shape kept.
            buffer = {name: numpy.empty((min(capacity, max(m, 1024)),) + values.shape[1:], values.dtype)
                      for name, values in chunk.items()}
        fill = min(capacity - size, m)
        if fill:
            if size + fill > len(next(iter(buffer.values()))):
                grown = min(capacity, max(2 * (size + fill), 1024))
                buffer = {name: numpy.concatenate([values[:size],
                                                   numpy.empty((grown - size,) + values.shape[1:], values.dtype)])
                          for name, values in buffer.items()}
            for name, values in chunk.items():
                buffer[name][size:size + fill] = values[:fill]
            size += fill
        if fill == m:
            continue
        rest = _take(chunk, slice(fill, None))
        n_rest = m - fill
        drawn = rng.choice(size + n_rest, size=n_rest, replace=False)  # in random order
        from_buffer = drawn < size
        slots = drawn[from_buffer]
        drawn_rest = drawn[~from_buffer] - size
        staying = numpy.ones(n_rest, bool)
        staying[drawn_rest] = False
        # Integer positions: per column, fancy indexing with them is ~4x faster than with the masks.
        at_buffer, at_rest, staying = (numpy.flatnonzero(mask) for mask in (from_buffer, ~from_buffer, staying))
        out = {}
        for name, values in buffer.items():
            piece = numpy.empty((n_rest,) + values.shape[1:], values.dtype)
            piece[at_buffer] = values[slots]
            piece[at_rest] = rest[name][drawn_rest]
            values[slots] = rest[name][staying]
            out[name] = piece
        yield out
    if size:
        order = rng.permutation(size)
        yield {name: values[:size][order] for name, values in buffer.items()}


def _batched(pieces, batch_size):
    """Batches of exactly ``batch_size`` rows from pieces of any size; the last may be smaller. Each batch is
    a copy, so that no batch keeps a whole decoded block alive."""
    held, count = [], 0
    for piece in pieces:
        rows, offset = _rows(piece), 0
        if count:  # complete the partial batch held from the pieces before
            offset = min(batch_size - count, rows)
            held.append(_take(piece, slice(0, offset)))
            count += offset
            if count < batch_size:
                continue
            yield _concatenated(held)
            held, count = [], 0
        while rows - offset >= batch_size:
            yield {name: values[offset:offset + batch_size].copy() for name, values in piece.items()}
            offset += batch_size
        if offset < rows:
            held, count = [{name: values[offset:].copy() for name, values in piece.items()}], rows - offset
    if count:
        yield _concatenated(held)


def _concatenated(parts):
    return {name: numpy.concatenate([part[name] for part in parts]) for name in parts[0]}
