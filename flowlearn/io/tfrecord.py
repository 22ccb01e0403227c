"""TFRecord files of ``tf.train.Example`` records, read and written without TensorFlow.

A TFRecord file is a sequence of records, each framed as (all little endian)::

    uint64 length | uint32 masked_crc32c(length bytes) | data[length] | uint32 masked_crc32c(data)

with ``masked_crc32c(x) = ((crc >> 15) | (crc << 17)) + 0xa282ead8 (mod 2**32)`` of the CRC32C (Castagnoli)
checksum; the whole stream may be GZIP or ZLIB compressed. Each record's data is a serialized
``tf.train.Example``: a map from feature names to a list of bytes, of float32 or of int64 values.

* :func:`write_tfrecord` / :class:`TFRecordWriter` write files from dicts (atomically: a reader sees the
  whole file or none), :func:`read_tfrecord` yields them back as dicts;
* :func:`tfrecord_input_fn` streams files as ``(features, labels)`` batches for every trainer, parsing each
  record with a ``{name: FixedLenFeature | VarLenFeature}`` spec as ``tf.io.parse_example`` does.

The Example messages come from :mod:`flowlearn.io._example_proto` (TensorFlow's descriptors rebuilt in code)
and the checksums from the ``crc32c`` package; both are imported on first use (the ``tfrecord`` extra), so
``import flowlearn.io`` works without them.
"""
import contextlib
import functools
import gzip
import io
import numbers
import os
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy

from ..core._atomic import atomic_write
from ..layers.data_adapter import INFINITE, UNKNOWN, describe
from ._files import pass_order, resolve_files
from ._prefetch import BATCH, delivered, prefetched
from .inputs import _check_settings, _count, _passes, _seed_or_drawn

__all__ = ["FixedLenFeature", "TFRecordBatches", "TFRecordInputFn", "TFRecordWriter", "VarLenFeature",
           "decode_example", "encode_example", "masked_crc32c", "parse_example", "read_tfrecord",
           "tfrecord_input_fn", "write_tfrecord"]

INSTALL_HINT = "pip install 'flowlearn[tfrecord]'"
_HEADER = struct.Struct("<QI")  # length, masked CRC of the 8 length bytes
_FOOTER = struct.Struct("<I")   # masked CRC of the data
_MASK_DELTA = 0xA282EAD8
_COMPRESSIONS = {None: None, "": None, "NONE": None, "GZIP": "GZIP", "ZLIB": "ZLIB"}
# A length field is trusted only after its CRC matches, but a crafted file can still declare an absurd size:
# data is read in pieces of at most this many bytes, so a short file ends the read instead of an allocation.
_READ_PIECE = 1 << 24
_THREAD_PREFIX = "flowlearn-tfrecord"
_DTYPES = {"float32": "float_list", "int64": "int64_list", "string": "bytes_list"}


# -- dependencies, imported on first use --------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _crc32c():
    try:
        import crc32c
    except ImportError as error:
        raise ImportError(f"TFRecord files need the crc32c package, which is not installed: {INSTALL_HINT} "
                          f"(or pip install crc32c). ({error})") from error
    return crc32c.crc32c


@functools.lru_cache(maxsize=None)
def _proto():
    try:
        from . import _example_proto
    except ImportError as error:
        raise ImportError(f"tf.train.Example records need the protobuf package, which is not installed: "
                          f"{INSTALL_HINT} (or pip install protobuf). ({error})") from error
    return _example_proto


def masked_crc32c(data):
    """The masked CRC32C checksum TFRecord framing stores: ``((crc >> 15) | (crc << 17)) + 0xa282ead8``.

    Masking keeps a checksum of data that itself holds checksums (a TFRecord inside a TFRecord) from
    being trivially related to them, as in LevelDB's log format, from which the framing comes.

    >>> hex(masked_crc32c(b""))
    '0xa282ead8'
    """
    return _masked(_crc32c(), data)


def _compression(owner, compression_type):
    key = compression_type.upper() if isinstance(compression_type, str) else compression_type
    if key not in _COMPRESSIONS:
        raise ValueError(f"{owner}: received an invalid value for `compression_type`, expected None, 'GZIP' or "
                         f"'ZLIB' (as tf.io.TFRecordOptions). Received: compression_type={compression_type!r}")
    return _COMPRESSIONS[key]


# -- Example <-> dict ----------------------------------------------------------------------------------------
_TEXT = (bytes, bytearray, memoryview, str)


def _as_bytes(value):
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _feature_values(name, value, where):
    """``(kind, values)`` for one feature of a dict: kind ``"bytes_list"``, ``"int64_list"``,
    ``"float_list"`` or None (an empty list, whose kind cannot be told), values a list."""
    def refuse(reason=""):
        return ValueError(f"{where}feature {name!r}: expected bytes or str, an int, a float, a list of them or a "
                          f"numeric numpy array{reason}; got {describe(value)}.")

    if isinstance(value, _TEXT):
        return "bytes_list", [_as_bytes(value)]
    if isinstance(value, (list, tuple)):
        if not value:
            return None, []
        texts = [isinstance(item, _TEXT) for item in value]
        if all(texts):
            return "bytes_list", [_as_bytes(item) for item in value]
        if any(texts):
            raise refuse(" (a list holds either bytes/str or numbers, not both)")
    elif not isinstance(value, (numbers.Number, numpy.generic, numpy.ndarray)):
        raise refuse()
    try:
        array = numpy.asarray(value)
    except ValueError:  # a ragged nested list
        raise refuse(" (nested lists must be rectangular)") from None
    kind = array.dtype.kind
    if kind in "SU":
        return "bytes_list", [_as_bytes(item) for item in array.ravel().tolist()]
    if kind == "b":
        return "int64_list", array.ravel().astype(numpy.int64).tolist()
    if kind in "iu":
        if kind == "u" and array.size and array.max() > numpy.iinfo(numpy.int64).max:
            raise refuse(" (unsigned values above 2**63 - 1 do not fit an int64_list)")
        return "int64_list", array.ravel().tolist()
    if kind == "f":
        return "float_list", array.ravel().tolist()
    if kind == "O" and array.size:  # Python ints beyond int64, or an object array given as such
        items = array.ravel().tolist()
        if all(isinstance(item, numbers.Integral) for item in items):
            if not all(-2 ** 63 <= item < 2 ** 63 for item in items):
                raise refuse(" (integers must fit in int64)")
            return "int64_list", [int(item) for item in items]
        if all(isinstance(item, numbers.Real) for item in items):
            return "float_list", [float(item) for item in items]
        if all(isinstance(item, _TEXT) for item in items):
            return "bytes_list", [_as_bytes(item) for item in items]
    raise refuse()


def encode_example(features):
    """A dict of features as a serialized ``tf.train.Example`` (the bytes of one record).

    Values: bytes or str (UTF-8) -> ``bytes_list``; ints, bools and integer arrays -> ``int64_list``; floats
    and float arrays -> ``float_list`` (float32 on the wire, as in TensorFlow); lists of bytes/str, of ints or
    of floats -> their list. Arrays are flattened (the shape is the reader's business, as in TensorFlow: give it
    to :class:`FixedLenFeature`). An empty list is a feature with no values and no kind. Map entries are
    serialized sorted by name, so the same dict always gives the same bytes.

    >>> encode_example({"label": 1}).hex()
    '0a100a0e0a056c6162656c12051a030a0101'
    """
    return _encode(features, "encode_example: ")


def _encode(features, where):
    if not isinstance(features, dict):
        raise ValueError(f"{where}expected a dict of feature name -> value; got {describe(features)}"
                         + (" (serialized records are written with TFRecordWriter.write)"
                            if isinstance(features, (bytes, bytearray)) else "") + ".")
    proto = _proto()
    example = proto.Example()
    table = example.features.feature
    for name, value in features.items():
        if not isinstance(name, str):
            raise ValueError(f"{where}feature names must be str; got {describe(name)}.")
        kind, values = _feature_values(name, value, where)
        feature = table[name]  # creates the (empty) entry, which is what an empty list writes
        if kind is not None:
            getattr(feature, kind).value.extend(values)
    return example.SerializeToString(deterministic=True)


def _parse_message(data, where):
    try:
        return _proto().Example.FromString(data)
    except Exception as error:  # protobuf's DecodeError (its module differs between implementations)
        raise ValueError(f"{where} is not a serialized tf.train.Example: {error}") from None


def _values(feature):
    kind = feature.WhichOneof("kind")
    if kind == "bytes_list":
        return kind, list(feature.bytes_list.value)
    if kind == "int64_list":
        return kind, _array(feature.int64_list.value, numpy.int64)
    if kind == "float_list":
        return kind, _array(feature.float_list.value, numpy.float32)
    return None, []


def _array(repeated, dtype):
    # numpy.array on protobuf's repeated container costs ~6 us whatever its length (numpy probes it for the array
    # protocols first); through a list, short ones (most features of most records) take under 1 us.
    return numpy.array(repeated[:] if len(repeated) <= 16 else repeated, dtype)


def decode_example(data):
    """A serialized ``tf.train.Example`` as a dict, names sorted: bytes lists as lists of bytes, int64 lists as
    int64 arrays, float lists as float32 arrays (a feature with no kind set: an empty list).

    >>> decode_example(encode_example({"label": 1, "name": "cat"}))
    {'label': array([1]), 'name': [b'cat']}
    """
    return _decode(data, "decode_example: the data")


def _decode(data, where):
    table = _parse_message(data, where).features.feature
    return {name: _values(table[name])[1] for name in sorted(table)}


# -- framing --------------------------------------------------------------------------------------------------
class _ZlibReader(io.RawIOBase):
    """The inflated bytes of a ZLIB stream, read incrementally (never more than asked for at a time)."""

    def __init__(self, raw):
        self._raw, self._inflate = raw, zlib.decompressobj()

    def readable(self):
        return True

    def readinto(self, buffer):
        while not self._inflate.eof:
            source = self._inflate.unconsumed_tail or self._raw.read(1 << 16)
            if not source:
                raise EOFError("the ZLIB stream ends before its end marker")
            data = self._inflate.decompress(source, len(buffer))
            if data:
                buffer[:len(data)] = data
                return len(data)
        return 0

    def close(self):
        self._raw.close()
        super().close()


class _ZlibWriter:
    def __init__(self, raw):
        self._raw, self._deflate = raw, zlib.compressobj()

    def write(self, data):
        self._raw.write(self._deflate.compress(data))

    def flush(self):
        self._raw.write(self._deflate.flush(zlib.Z_SYNC_FLUSH))

    def close(self):
        self._raw.write(self._deflate.flush())


def _open_for_reading(path, compression):
    if compression == "GZIP":
        return gzip.open(path, "rb")
    if compression == "ZLIB":
        return io.BufferedReader(_ZlibReader(open(path, "rb")), 1 << 16)
    return open(path, "rb")


def _read_exactly(stream, size):
    """Up to ``size`` bytes; fewer only at the end of the stream."""
    if size <= _READ_PIECE:
        return stream.read(size)
    pieces = []
    while size:
        piece = stream.read(min(size, _READ_PIECE))
        if not piece:
            break
        pieces.append(piece)
        size -= len(piece)
    return b"".join(pieces)


def _hint(header):
    if header.startswith(b"\x1f\x8b"):
        return "; the file starts as GZIP data does: read it with compression_type='GZIP'"
    if header[:1] == b"\x78":
        return "; the file may be ZLIB data (its first byte is 0x78): compression_type='ZLIB'?"
    return ""


def _records(path, compression):
    """``(index, offset, data)`` of each record of ``path``, checked; a damaged record raises a ValueError
    naming the file, the record and its byte offset (in the decompressed stream for a compressed file)."""
    crc = _crc32c()
    where = "decompressed byte offset" if compression else "byte offset"
    with _open_for_reading(path, compression) as stream:
        index = offset = 0
        size = os.fstat(stream.fileno()).st_size if compression is None else None

        def corrupt(reason):
            return ValueError(f"{path}: corrupt TFRecord, record {index} at {where} {offset}: {reason}")

        try:
            while True:
                header = stream.read(_HEADER.size)
                if not header:
                    return
                if len(header) < _HEADER.size:
                    raise corrupt(f"truncated: the file ends {len(header)} bytes into the 12-byte record header")
                length, length_crc = _HEADER.unpack(header)
                if _masked(crc, header[:8]) != length_crc:
                    raise corrupt("the checksum of the length field does not match (a damaged length, or not a "
                                  "TFRecord file" + (_hint(header) if index == 0 else "") + ")")
                if size is not None and offset + 16 + length > size:
                    raise corrupt(f"truncated: the record declares {length} data bytes, the file holds "
                                  f"{max(size - offset - 12, 0)} more bytes")
                data = _read_exactly(stream, length)
                footer = stream.read(_FOOTER.size)
                if len(data) < length or len(footer) < _FOOTER.size:
                    raise corrupt(f"truncated: the record declares {length} data bytes and a 4-byte checksum, the "
                                  f"stream ends after {len(data) + len(footer)}")
                if _masked(crc, data) != _FOOTER.unpack(footer)[0]:
                    raise corrupt("the checksum of the data does not match (damaged data)")
                yield index, offset, data
                index += 1
                offset += 16 + length
        except (EOFError, OSError, zlib.error) as error:  # a damaged or truncated compressed stream
            raise corrupt(f"the {compression} stream is damaged or truncated ({error})") from None


def _masked(crc, data):
    # crc is _crc32c()'s function, looked up once per file or writer rather than once per record.
    value = crc(data)
    return (((value >> 15) | (value << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def read_tfrecord(path, raw=False, compression_type=None):
    """The records of a TFRecord file, streamed: dicts of features (or, ``raw=True``, the records' bytes).

    Parameters
    ----------
    path : str or path
        One TFRecord file.
    raw : bool, default False
        Yield each record's data (bytes) without parsing it as a ``tf.train.Example``.
    compression_type : {None, "GZIP", "ZLIB"}
        How the file is compressed, as ``tf.data.TFRecordDataset`` takes it (not guessed).

    Yields
    ------
    dict or bytes
        ``{name: value}`` per record, names sorted: bytes lists as lists of bytes, int64 lists as int64
        arrays, float lists as float32 arrays (see :func:`decode_example`).

    Raises
    ------
    ValueError
        On a damaged record (a length or data checksum that does not match, a truncated file or stream, data
        that is not an Example), naming the file, the record's index and its byte offset. The records before
        it have been yielded.

    Examples
    --------
    >>> write_tfrecord("pets.tfrecord", [{"name": "cat", "legs": 4}])  # doctest: +SKIP
    >>> list(read_tfrecord("pets.tfrecord"))  # doctest: +SKIP
    [{'legs': array([4]), 'name': [b'cat']}]
    """
    compression = _compression("read_tfrecord", compression_type)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"read_tfrecord: no such file: {path!r}")
    _crc32c()
    if not raw:
        _proto()
    return _read(path, raw, compression)


def _read(path, raw, compression):
    for index, offset, data in _records(path, compression):
        yield data if raw else _decode(data, f"{path}: record {index} at byte offset {offset}")


# -- writing ------------------------------------------------------------------------------------------------
class TFRecordWriter:
    """Writes a TFRecord file record by record (as ``tf.io.TFRecordWriter``), atomically.

    The records go to a temporary file next to ``path``; :meth:`close` (or the end of a ``with`` block)
    syncs it and renames it over ``path``, so a reader never sees a half-written file. An exception in the
    ``with`` block, or :meth:`abort`, discards what was written and leaves ``path`` as it was.

    Parameters
    ----------
    path : str or path
    compression_type : {None, "GZIP", "ZLIB"}

    Examples
    --------
    >>> with TFRecordWriter("data.tfrecord") as writer:  # doctest: +SKIP
    ...     writer.write_example({"x": [1.0, 2.0], "label": 0})
    ...     writer.write(serialized_example_bytes)
    """

    def __init__(self, path, compression_type=None):
        self.path = os.fspath(path)
        self.compression_type = _compression("TFRecordWriter", compression_type)
        self.records = 0
        self._crc = _crc32c()
        self._files = contextlib.ExitStack()
        raw = self._files.enter_context(atomic_write(self.path))
        if self.compression_type == "GZIP":
            # mtime=0 and no file name: the same records always give the same bytes.
            self._stream = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0)
        elif self.compression_type == "ZLIB":
            self._stream = _ZlibWriter(raw)
        else:
            self._stream = raw
        self._open = True

    def write(self, record):
        """Append one record: ``record`` is its data (bytes), e.g. a serialized Example."""
        self._check_open()
        if not isinstance(record, (bytes, bytearray, memoryview)):
            raise TypeError(f"TFRecordWriter.write: expected the record as bytes; got {describe(record)}. "
                            "Write a dict of features with write_example.")
        record = bytes(record)  # a memoryview's len() counts its items, not its bytes
        length = struct.pack("<Q", len(record))
        self._stream.write(length + _FOOTER.pack(_masked(self._crc, length)))
        self._stream.write(record)
        self._stream.write(_FOOTER.pack(_masked(self._crc, record)))
        self.records += 1

    def write_example(self, features):
        """Append a dict of features as a ``tf.train.Example`` record (values as in :func:`encode_example`)."""
        self._check_open()
        self.write(_encode(features, f"TFRecordWriter({self.path!r}), record {self.records}: "))

    def flush(self):
        """Hand the records written so far to the file's buffers (the file is put in place only by ``close``)."""
        self._check_open()
        self._stream.flush()

    def close(self):
        """Finish the file and put it in place (once; later calls do nothing)."""
        if self._open:
            self._open = False
            try:
                if self.compression_type:  # the compressor's last bytes (the raw file is atomic_write's to close)
                    self._stream.close()
            except BaseException as error:
                self._files.__exit__(type(error), error, error.__traceback__)
                raise
            self._files.close()

    def abort(self):
        """Discard what was written; ``path`` keeps its previous content (or stays absent)."""
        if self._open:
            self._open = False
            error = _Aborted()
            self._files.__exit__(_Aborted, error, None)

    def _check_open(self):
        if not self._open:
            raise ValueError(f"TFRecordWriter({self.path!r}) is closed.")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        if exc_type is None:
            self.close()
        elif self._open:
            self._open = False
            self._files.__exit__(exc_type, exc_value, traceback)

    def __del__(self):
        # Dropped without close: nothing is put in place (the temporary is removed), as after abort.
        try:
            self.abort()
        except Exception:  # noqa: BLE001 - interpreter shutdown; atomic_write's stale clean-up handles leftovers
            pass

    def __repr__(self):
        state = "open" if self._open else "closed"
        return f"TFRecordWriter({self.path!r}, compression_type={self.compression_type!r}, {self.records} records, " \
               f"{state})"


class _Aborted(Exception):
    pass


def write_tfrecord(path, examples, compression_type=None):
    """Write dicts of features as a TFRecord file of ``tf.train.Example`` records, atomically.

    Parameters
    ----------
    path : str or path
        The file; replaced in one step once every record is written (a failure leaves it as it was).
    examples : iterable of dict
        One dict per record, ``{name: value}``: bytes or str -> ``bytes_list``; ints and integer arrays ->
        ``int64_list``; floats and float arrays -> ``float_list`` (arrays flattened); lists of bytes/str,
        ints or floats. Streamed: a generator is written as it goes.
    compression_type : {None, "GZIP", "ZLIB"}

    Returns
    -------
    int
        The number of records written.

    Raises
    ------
    ValueError
        A value of another type (None, a set, a dict, mixed text and numbers, ...), naming the record, the
        feature and what it received.

    Examples
    --------
    >>> import numpy
    >>> write_tfrecord("train.tfrecord", [{"image": numpy.zeros((2, 2)), "label": 1}])  # doctest: +SKIP
    1
    """
    with TFRecordWriter(path, compression_type) as writer:
        for index, example in enumerate(examples):
            writer.write(_encode(example, f"write_tfrecord: example {index}: "))
    return writer.records


# -- parsing specs --------------------------------------------------------------------------------------------
def _dtype_name(owner, dtype):
    if isinstance(dtype, str) and dtype in _DTYPES:
        return dtype
    if dtype in (bytes, str, object):
        return "string"
    try:
        name = numpy.dtype(dtype).name
    except TypeError:
        name = None
    if name in ("float32", "int64"):
        return name
    raise ValueError(f"{owner}: received an invalid value for `dtype`, expected 'float32', 'int64' or 'string'. "
                     f"Received: dtype={dtype!r}")


class FixedLenFeature:
    """A feature with the same number of values in every record, parsed to an array of ``shape``.

    As ``tf.io.FixedLenFeature``: the record's list (``float_list`` for ``"float32"``, ``int64_list`` for
    ``"int64"``, ``bytes_list`` for ``"string"``) must hold exactly ``prod(shape)`` values; a batch is an
    array of shape ``(batch,) + shape`` (float32, int64, or an object array of bytes).

    Parameters
    ----------
    shape : int or tuple of int
        ``()`` for a scalar per record.
    dtype : {"float32", "int64", "string"}
    default_value : optional
        Used when a record lacks the feature: a scalar (repeated over ``shape``) or a value of ``shape``.
        None makes the feature required (a record without it raises a ValueError naming both).
    """

    def __init__(self, shape, dtype, default_value=None):
        self.shape = _shape(shape)
        self.dtype = _dtype_name("FixedLenFeature", dtype)
        self.default_value = default_value
        self._size = int(numpy.prod(self.shape))
        self._default = None if default_value is None else self._make_default(default_value)

    def _make_default(self, value):
        if self.dtype == "string":
            items = [value] if isinstance(value, _TEXT) else numpy.asarray(value, object).ravel().tolist()
            if not all(isinstance(item, _TEXT) for item in items):
                raise ValueError(f"FixedLenFeature: a 'string' feature's default_value must be bytes or str; got "
                                 f"{describe(value)}.")
            array = numpy.empty(len(items), object)
            array[:] = [_as_bytes(item) for item in items]
        else:
            given = numpy.asarray(value)
            # Numbers only, and no fraction silently cut off to make an int64 default.
            if given.dtype.kind not in ("iub" if self.dtype == "int64" else "iubf"):
                raise ValueError(f"FixedLenFeature: default_value must be {self.dtype} values; got "
                                 f"{describe(value)} of dtype {given.dtype}.")
            array = given.astype(self.dtype)
        size = self._size
        if array.size == 1:
            return numpy.full(self.shape, array.ravel()[0], array.dtype)
        if array.size != size:
            raise ValueError(f"FixedLenFeature: default_value must be a scalar or hold {size} values (shape "
                             f"{self.shape}); got {describe(value)}.")
        return array.reshape(self.shape)

    def _parse(self, kind, values, name, where):
        if values is None:
            if self._default is None:
                raise ValueError(f"{where}: the record has no feature {name!r}, and features[{name!r}] has no "
                                 "default_value.")
            return self._default.copy()
        _check_kind(kind, self.dtype, name, where)
        size = self._size
        if len(values) != size:
            raise ValueError(f"{where}: feature {name!r} holds {len(values)} values; features[{name!r}] = "
                             f"FixedLenFeature(shape={self.shape}) expects {size}.")
        if self.dtype == "string":
            array = numpy.empty(size, object)
            array[:] = values
            values = array
        elif kind is None:
            values = numpy.zeros(0, self.dtype)
        return values.reshape(self.shape)

    def __repr__(self):
        return f"FixedLenFeature(shape={self.shape}, dtype={self.dtype!r}, default_value={self.default_value!r})"


class VarLenFeature:
    """A feature whose number of values varies from record to record.

    flowlearn has no sparse tensors, so where ``tf.io.VarLenFeature`` gives a SparseTensor, a batch here is a
    dense array of shape ``(batch, longest)``, each row padded after its values (with 0, or ``b""`` for
    strings, as ``tf.sparse.to_dense`` pads). A record without the feature gives an empty row.

    Parameters
    ----------
    dtype : {"float32", "int64", "string"}
    """

    def __init__(self, dtype):
        self.dtype = _dtype_name("VarLenFeature", dtype)

    def _parse(self, kind, values, name, where):
        if values is None:
            kind, values = None, []
        _check_kind(kind, self.dtype, name, where)
        if self.dtype == "string":
            array = numpy.empty(len(values), object)
            array[:] = values
            return array
        return numpy.asarray(values, self.dtype)

    def _pad(self, rows):
        width = max((len(row) for row in rows), default=0)
        if self.dtype == "string":
            batch = numpy.full((len(rows), width), b"", object)
        else:
            batch = numpy.zeros((len(rows), width), self.dtype)
        for position, row in enumerate(rows):
            batch[position, :len(row)] = row
        return batch

    def __repr__(self):
        return f"VarLenFeature(dtype={self.dtype!r})"


def _shape(shape):
    try:
        dims = (shape,) if isinstance(shape, numbers.Integral) and not isinstance(shape, bool) else tuple(shape)
    except TypeError:
        dims = None
    if dims is None or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 0
                               for d in dims):
        raise ValueError(f"FixedLenFeature: received an invalid value for `shape`, expected a tuple of non-negative "
                         f"integers (() for a scalar). Received: shape={shape!r}")
    return tuple(int(d) for d in dims)


def _check_kind(kind, dtype, name, where):
    if kind is not None and kind != _DTYPES[dtype]:
        held = {value: key for key, value in _DTYPES.items()}[kind]
        raise ValueError(f"{where}: feature {name!r} holds {kind} ({held}) values; features[{name!r}] declares "
                         f"dtype {dtype!r}.")


def parse_example(data, features):
    """One serialized Example parsed with a spec ``{name: FixedLenFeature | VarLenFeature}`` (as
    ``tf.io.parse_single_example``): ``{name: array}``, only the features named, shapes as declared.

    >>> parse_example(encode_example({"x": [1.0, 2.0]}), {"x": FixedLenFeature((2, 1), "float32")})["x"].shape
    (2, 1)
    """
    return _parse_with_spec(data, _check_spec("parse_example", features), "parse_example: the record")


def _parse_with_spec(data, features, where):
    table = _parse_message(data, where).features.feature
    parsed = {}
    for name, spec in features.items():
        kind, values = _values(table[name]) if name in table else (None, None)
        parsed[name] = spec._parse(kind, values, name, where)
    return parsed


# -- the input_fn -------------------------------------------------------------------------------------------
def tfrecord_input_fn(files, features, label_key=None, batch_size=32, num_epochs=1, shuffle=True, seed=None,
                      shuffle_buffer_size=1000, num_parallel_reads=None, compression_type=None, map_fn=None,
                      num_parallel_calls=None, prefetch_buffer_size=2):
    """An input_fn that streams TFRecord files of Examples as ``(features, labels)`` batches.

    The stages, each bounded in memory (tf.data's ``TFRecordDataset -> shuffle -> map(parse) -> batch ->
    prefetch``): *read* the files' records, ``num_parallel_reads`` files interleaved one record at a time;
    *shuffle* the serialized records through a buffer of ``shuffle_buffer_size``; *parse* each with
    ``features`` (then ``map_fn``); *batch*; *prefetch* in a background thread.

    Parameters
    ----------
    files : str, path or list of them
        A file, a glob pattern (matches sorted by name) or a list of files and patterns.
    features : dict of str to FixedLenFeature or VarLenFeature
        What to parse from each record (other features are ignored), as ``tf.io.parse_example``'s spec.
    label_key : str, optional
        The feature (one of ``features``) returned as the labels; the others are the features. None: labels
        are None.
    batch_size : int, default 32
        Records per batch; each pass over the files ends with its own partial batch.
    num_epochs : int or None, default 1
        Passes over the files; None repeats forever.
    shuffle : bool, default True
        Shuffle the files' order each pass, and the records through the shuffle buffer.
    seed : int, optional
        Every call of the input_fn with the same seed gives the same batches (the pipeline's order never
        depends on thread timing). Default: drawn per call from :func:`flowlearn.layers.set_random_seed`'s stream.
    shuffle_buffer_size : int, default 1000
        Serialized records held by the shuffle buffer (its memory is this many records' bytes).
    num_parallel_reads : int, optional
        Files read at once, their records taken in turn (tf.data's interleave, ``block_length=1``); None or 1
        reads the files one after another.
    compression_type : {None, "GZIP", "ZLIB"}
    map_fn : callable, optional
        Called on each parsed record (a dict ``{name: array}``, labels included) before batching, returning
        such a dict: e.g. to decode ``image`` bytes into a pixel array.
    num_parallel_calls : int, optional
        Threads that parse and map the records of a batch (in order, so the batches stay deterministic); useful
        when ``map_fn`` releases the GIL (image decoding does). None parses in the pipeline's thread.
    prefetch_buffer_size : int, default 2
        Batches prepared ahead by a background thread; 0 prepares each batch when asked for (no thread).

    Returns
    -------
    TFRecordInputFn
        Call it for an iterable (:class:`TFRecordBatches`) of ``(features dict, labels)``.

    Examples
    --------
    >>> input_fn = tfrecord_input_fn("train-*.tfrecord", {"x": FixedLenFeature((4,), "float32"),  # doctest: +SKIP
    ...                              "label": FixedLenFeature((), "int64")}, label_key="label", seed=0)
    """
    owner = "tfrecord_input_fn"
    batch_size, num_epochs, shuffle, seed = _check_settings(owner, batch_size, num_epochs, shuffle, seed)
    features = _check_spec(owner, features)
    if label_key is not None and label_key not in features:
        raise ValueError(f"{owner}: label_key={label_key!r} is not one of the features {list(features)}.")
    options = {
        "shuffle_buffer_size": _count(owner, "shuffle_buffer_size", shuffle_buffer_size),
        "num_parallel_reads": _count(owner, "num_parallel_reads", num_parallel_reads, allow_none=True) or 1,
        "num_parallel_calls": _count(owner, "num_parallel_calls", num_parallel_calls, allow_none=True) or 1,
        "prefetch": _count(owner, "prefetch_buffer_size", prefetch_buffer_size, minimum=0),
    }
    if map_fn is not None and not callable(map_fn):
        raise ValueError(f"{owner}: `map_fn` must be callable or None; got {describe(map_fn)}.")
    compression = _compression(owner, compression_type)
    _crc32c(), _proto()
    return TFRecordInputFn(resolve_files(owner, "files", files), features, label_key, batch_size, num_epochs, shuffle,
                           seed, compression, map_fn, options)


def _check_spec(owner, features):
    if not isinstance(features, dict) or not features:
        raise ValueError(f"{owner}: expected `features` as a non-empty dict of name -> FixedLenFeature or "
                         f"VarLenFeature; got {describe(features)}.")
    for name, spec in features.items():
        if not isinstance(spec, (FixedLenFeature, VarLenFeature)):
            raise ValueError(f"{owner}: features[{name!r}] must be a FixedLenFeature or a VarLenFeature; got "
                             f"{describe(spec)}.")
    return dict(features)


class TFRecordInputFn:
    """The input_fn :func:`tfrecord_input_fn` returns: each call gives a :class:`TFRecordBatches`.

    Attributes
    ----------
    files : list of str
        The files read, in their unshuffled order.
    features : dict
        The parsing spec.
    """

    def __init__(self, files, features, label_key, batch_size, num_epochs, shuffle, seed, compression, map_fn,
                 options):
        self.files, self.features, self.label_key = files, features, label_key
        self.batch_size, self.num_epochs, self.shuffle, self.seed = batch_size, num_epochs, shuffle, seed
        self._compression, self._map_fn, self._options = compression, map_fn, options

    def __repr__(self):
        return (f"TFRecordInputFn({len(self.files)} files, features={list(self.features)}, "
                f"label_key={self.label_key!r}, batch_size={self.batch_size})")

    def __call__(self):
        seed = _seed_or_drawn(self.seed, self.shuffle)
        return TFRecordBatches(self, numpy.random.default_rng(seed))

    # -- stages -----------------------------------------------------------------------------------------------
    def _batches(self, rng):
        """Every batch of every pass, built in the calling thread."""
        calls = self._options["num_parallel_calls"]
        executor = ThreadPoolExecutor(calls, thread_name_prefix=f"{_THREAD_PREFIX}-map") if calls > 1 else None
        try:
            for _ in _passes(self.num_epochs):
                files = pass_order(self.files, self.shuffle, rng)
                records = _interleaved(files, self._options["num_parallel_reads"], self._compression)
                if self.shuffle:
                    records = _shuffled(records, self._options["shuffle_buffer_size"], rng)
                count = 0
                try:
                    group = []
                    for record in records:
                        group.append(record)
                        if len(group) == self.batch_size:
                            count += len(group)
                            yield self._batch(group, executor)
                            group = []
                    if group:
                        count += len(group)
                        yield self._batch(group, executor)
                finally:
                    records.close()
                if count == 0 and self.num_epochs is None:
                    raise ValueError(f"tfrecord_input_fn: num_epochs=None, but the files hold no records to repeat: "
                                     f"{self.files}")
        finally:
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)

    def _parse(self, record):
        path, index, offset, data = record
        parsed = _parse_with_spec(data, self.features, f"{path}, record {index} at byte offset {offset}")
        if self._map_fn is not None:
            parsed = self._map_fn(parsed)
            if not isinstance(parsed, dict):
                raise ValueError(f"tfrecord_input_fn: map_fn must return a dict of name -> array; got "
                                 f"{describe(parsed)} for {path}, record {index}.")
        return parsed

    def _batch(self, group, executor):
        parsed = list(executor.map(self._parse, group)) if executor is not None else [self._parse(r) for r in group]
        batch = {}
        for name in parsed[0]:
            column = [record[name] for record in parsed]
            spec = self.features.get(name)
            if isinstance(spec, VarLenFeature):
                batch[name] = spec._pad(column)
                continue
            try:
                batch[name] = numpy.stack(column)
            except ValueError:
                shapes = sorted({numpy.shape(value) for value in column})
                raise ValueError(f"tfrecord_input_fn: the records of one batch give feature {name!r} different "
                                 f"shapes {shapes}; declare it a VarLenFeature or make map_fn return one shape."
                                 ) from None
        labels = batch.pop(self.label_key) if self.label_key is not None else None
        return batch, labels

    def _iterate(self, rng):
        if not self._options["prefetch"]:
            yield from self._batches(rng)
            return
        # The pipeline runs in a background thread, prefetch_buffer_size batches ahead; its errors are re-raised
        # here, and stopping early (the iterator closed or collected) stops and joins it.
        def produce():
            batches = self._batches(rng)
            try:
                for batch in batches:
                    yield BATCH, batch
            finally:
                batches.close()  # its files and map threads, in the producer thread, now

        yield from delivered(prefetched(produce, self._options["prefetch"], f"{_THREAD_PREFIX}-prefetch",
                                        "tfrecord_input_fn"))


class TFRecordBatches:
    """What a call of a :class:`TFRecordInputFn` returns: an iterable of ``(features, labels)`` batches.

    Each iteration reads the files again and draws new orders from the generator seeded at the call (as
    tf.data's ``reshuffle_each_iteration``). ``cardinality()`` is
    :data:`~flowlearn.layers.data_adapter.INFINITE` with ``num_epochs=None``, else unknown (the records are
    not counted before they are read).
    """

    def __init__(self, input_fn, rng):
        self._input_fn, self._rng = input_fn, rng

    def cardinality(self):
        """:data:`~flowlearn.layers.data_adapter.INFINITE` with ``num_epochs=None``, else
        :data:`~flowlearn.layers.data_adapter.UNKNOWN`."""
        return INFINITE if self._input_fn.num_epochs is None else UNKNOWN

    def __iter__(self):
        return self._input_fn._iterate(self._rng)


def _interleaved(files, cycle_length, compression):
    """``(path, index, offset, data)`` of the records of ``files``, ``cycle_length`` files at a time taken in
    turn one record each; the next file takes the place of one that ends (tf.data's interleave)."""
    pending = iter(files)
    readers = []
    try:
        for path in pending:
            readers.append((path, _records(path, compression)))
            if len(readers) == cycle_length:
                break
        position = 0
        while readers:
            position %= len(readers)
            path, reader = readers[position]
            record = next(reader, None)
            if record is None:
                reader.close()
                following = next(pending, None)
                if following is None:
                    del readers[position]
                else:
                    readers[position] = (following, _records(following, compression))
                continue
            yield (path,) + record
            position += 1
    finally:
        for _, reader in readers:
            reader.close()


def _shuffled(records, capacity, rng):
    """``records`` through a shuffle buffer of ``capacity``: once it is full, each new record takes the place of
    one drawn at random, which leaves; at the end the rest leave in random order (tf.data's ``shuffle``)."""
    buffer, draws = [], iter(())
    try:
        for record in records:
            if len(buffer) < capacity:
                buffer.append(record)
                continue
            slot = next(draws, None)
            if slot is None:  # draws come 1024 at a time: one generator call per record would cost more
                draws = iter(rng.integers(capacity, size=1024).tolist())
                slot = next(draws)
            yield buffer[slot]
            buffer[slot] = record
        for slot in rng.permutation(len(buffer)).tolist():
            yield buffer[slot]
    finally:
        records.close()
