"""Feature columns: how raw features (numbers, strings, ids) become a model's dense input.

tf.feature_column's vocabulary, on numpy: describe each input once (a number, a bucketized number, a
category from a vocabulary or a hash, a cross of categories) and say how it reaches the network (as
is, one-hot, or through a trained embedding); :func:`input_layer` and :class:`DenseFeatures` then
turn a dict of arrays (or a DataFrame) into the dense matrix a model consumes::

    import flowlearn as fl
    fc = fl.feature_column
    age = fc.numeric_column("age", normalizer_fn=("standardize", 38.0, 13.0))
    education = fc.categorical_column_with_vocabulary_list("education", ["Bachelors", "HS-grad", "Masters"])
    occupation = fc.categorical_column_with_hash_bucket("occupation", 100)
    columns = [age, fc.bucketized_column(age, [25, 35, 50]), fc.indicator_column(education),
               fc.embedding_column(occupation, dimension=8)]
    dense = fc.DenseFeatures(columns)(features)   # features: {"age": [...], "education": [...], ...}

Two stages, as in TensorFlow. *Transforming* a column reads its raw features and gives a block of
numbers per row: normalized values, bucket indices, or category ids (``-1`` for a missing value: it
contributes nothing). *Densifying* turns a block into the
network's input: numbers as they are, ids one-hot (multi-hot: counts) or through an embedding table
(the only weights). :meth:`DenseFeatures.encode` stores the transformed blocks side by side in one
float matrix (ids as whole numbers), so an estimator transforms its strings once per fit, not once
per epoch, and batches, shuffles and pickles plain arrays; the layer densifies such a matrix in
``call``. Ids therefore stay below 2**24 (float32's exact integers) on that path.

A categorical feature holds one value per row (shape ``(n,)``) or several (``(n, k)``: a set of
values per row, missing ones given as None, NaN or ""); the indicator counts them, the embedding
combines them ("mean", "sum" or "sqrtn"). Every column is plain data: ``get_config()`` is JSON
(vocabularies included, even those read from a file) and :func:`deserialize` rebuilds it, so a model
that uses feature columns saves and exports without pickle. A ``normalizer_fn`` is therefore given as
data (``("standardize", mean, std)``, ``("minmax", low, high)``, ``("log1p",)``); a Python callable is
accepted for use in the process but cannot be exported: ``get_config`` raises for it.

Hashing is FNV-1a (64 bits) of the value's UTF-8 text (an integer as its decimal digits), modulo the
bucket count: stable across processes, machines and Python versions (Python's own ``hash`` of a
string is salted per process). A cross hashes its values' texts joined by the unit separator
``"\\x1f"`` (a categorical column's part is its id in decimal).
"""
import itertools
import json
import math
import numbers
import os
from collections.abc import Mapping

import numpy

from ..core import backend, initializers, ops
from ..core.config import floatx, no_grad
from ..core.tensor import Tensor, tensor
from ..layers.base import InputSpec, Layer
from ..layers.variable_scope import get_variable

__all__ = [
    "numeric_column", "bucketized_column", "categorical_column_with_vocabulary_list",
    "categorical_column_with_vocabulary_file", "categorical_column_with_hash_bucket", "crossed_column",
    "indicator_column", "embedding_column", "input_layer", "DenseFeatures", "serialize", "deserialize",
    "fingerprint64",
]

_FNV_OFFSET = numpy.uint64(0xCBF29CE484222325)
_FNV_PRIME = numpy.uint64(0x100000001B3)
_SEPARATOR = "\x1f"
_COMBINERS = ("mean", "sum", "sqrtn")
_NORMALIZERS = {"standardize": 2, "minmax": 2, "log1p": 0}


# -- hashing -----------------------------------------------------------------------------------------
def fingerprint64(strings):
    """FNV-1a 64-bit hashes of the UTF-8 bytes of each string, as a uint64 array.

    The hash behind :func:`categorical_column_with_hash_bucket`, :func:`crossed_column` and the
    out-of-vocabulary buckets. Vectorized over byte positions, so a million short strings take
    milliseconds, not a Python loop over their bytes.

    >>> hex(int(fingerprint64(["a"])[0]))
    '0xaf63dc4c8601ec8c'
    """
    data = [s.encode("utf-8") for s in strings]
    lengths = numpy.fromiter(map(len, data), dtype=numpy.intp, count=len(data))
    hashes = numpy.full(len(data), _FNV_OFFSET, dtype=numpy.uint64)
    if not len(data) or not lengths.max():
        return hashes
    width = int(lengths.max())
    matrix = numpy.zeros((len(data), width), dtype=numpy.uint64)
    rows = numpy.repeat(numpy.arange(len(data)), lengths)
    starts = numpy.cumsum(lengths) - lengths
    cols = numpy.arange(int(lengths.sum())) - numpy.repeat(starts, lengths)
    matrix[rows, cols] = numpy.frombuffer(b"".join(data), dtype=numpy.uint8)
    with numpy.errstate(over="ignore"):  # the multiplication is modulo 2**64 by definition
        for position in range(width):
            live = lengths > position
            hashes[live] = (hashes[live] ^ matrix[live, position]) * _FNV_PRIME
    return hashes


def _bucket_of_texts(texts, size):
    return (fingerprint64(texts) % numpy.uint64(size)).astype(numpy.int64)


# -- reading raw features ----------------------------------------------------------------------------
def _feature(features, key, column):
    """``features[key]`` as an ndarray with rows first, or a KeyError naming the key and what there is."""
    if not isinstance(features, Mapping) and not hasattr(features, "columns"):
        raise TypeError(
            f"feature columns read a dict of arrays or a pandas DataFrame keyed by feature name; got "
            f"{type(features).__name__}."
        )
    available = list(features.keys()) if isinstance(features, Mapping) else list(features.columns)
    if key not in available:
        raise KeyError(
            f"feature column {column!r} needs the feature {key!r}, which the features do not have; available "
            f"keys: {sorted(map(str, available))}."
        )
    value = features[key]
    if isinstance(value, Tensor):
        value = backend.to_numpy(value.data)
    value = numpy.asarray(value)
    if value.ndim == 0:
        raise ValueError(f"feature {key!r}: expected one value per row (shape (n,) or (n, k)); got a scalar.")
    return value


def _rows_of(features):
    """The common number of rows of the features (checked), or None when there is no array."""
    counts = {}
    keys = features.keys() if isinstance(features, Mapping) else features.columns
    for key in keys:
        value = features[key]
        shape = getattr(value, "shape", None)
        counts[key] = shape[0] if shape is not None and len(shape) else len(value)
    if len(set(counts.values())) > 1:
        raise ValueError(f"features must all have the same number of rows; got {counts}.")
    return next(iter(counts.values()), None)


def _categorical_values(key, value):
    """(codes (n, k) with -1 for missing, unique values): one value per row becomes k = 1.

    Missing values (None, NaN, "") get code -1. pandas' factorize does the work in C.
    """
    import pandas

    matrix = value.reshape(len(value), -1)
    flat = matrix.reshape(-1)
    if flat.dtype.kind == "S":
        flat = numpy.char.decode(flat, "utf-8")
    if flat.dtype.kind not in "OUiuf":
        raise TypeError(f"feature {key!r}: expected strings or integers for a categorical column; got dtype "
                        f"{flat.dtype}.")
    codes, uniques = pandas.factorize(flat.astype(object) if flat.dtype.kind == "U" else flat)
    uniques = numpy.asarray(uniques, dtype=object)
    for position, item in enumerate(uniques):
        if isinstance(item, bytes):
            uniques[position] = item = item.decode("utf-8")
        if isinstance(item, str) and item == "":
            codes[codes == position] = -1
    return codes.reshape(matrix.shape), uniques


def _as_text(key, item):
    """A categorical value's text for hashing: a string as is, an integer (or whole float) in decimal."""
    if isinstance(item, str):
        return item
    if isinstance(item, (numbers.Integral, numpy.integer)) and not isinstance(item, bool):
        return str(int(item))
    if isinstance(item, (numbers.Real, numpy.floating)) and float(item).is_integer():
        return str(int(item))
    raise TypeError(f"feature {key!r}: expected string or integer values; got {item!r} ({type(item).__name__}).")


def _map_codes(codes, table):
    """``table[code]`` for each code, -1 where the code is -1."""
    table = numpy.append(numpy.asarray(table, dtype=numpy.int64), -1)
    return table[codes]


# -- normalizers -------------------------------------------------------------------------------------
def _check_normalizer(key, normalizer):
    if normalizer is None or callable(normalizer):
        return normalizer
    if isinstance(normalizer, (list, tuple)) and normalizer and normalizer[0] in _NORMALIZERS:
        name, arguments = normalizer[0], list(normalizer[1:])
        if len(arguments) == _NORMALIZERS[name]:
            arguments = [numpy.asarray(a, dtype=numpy.float64).tolist() for a in arguments]
            if name == "standardize" and not numpy.all(numpy.asarray(arguments[1]) > 0):
                raise ValueError(f"numeric_column {key!r}: the standardize std must be > 0; got {arguments[1]}.")
            if name == "minmax" and not numpy.all(numpy.asarray(arguments[1]) > numpy.asarray(arguments[0])):
                raise ValueError(f"numeric_column {key!r}: minmax needs high > low; got {arguments}.")
            return (name, *arguments)
    raise ValueError(
        f"numeric_column {key!r}: expected normalizer_fn to be None, ('standardize', mean, std), ('minmax', low, "
        f"high), ('log1p',) or a callable (not exportable); got {normalizer!r}."
    )


def _normalize(normalizer, values):
    if normalizer is None:
        return values
    if callable(normalizer):
        return numpy.asarray(normalizer(values), dtype=numpy.float64)
    name, *arguments = normalizer
    if name == "standardize":
        return (values - numpy.asarray(arguments[0])) / numpy.asarray(arguments[1])
    if name == "minmax":
        low, high = (numpy.asarray(a) for a in arguments)
        return (values - low) / (high - low)
    return numpy.log1p(values)


# -- the columns -------------------------------------------------------------------------------------
_COLUMN_CLASSES = {}


class FeatureColumn:
    """Base of every column: a name, the raw keys it reads, and a JSON config."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _COLUMN_CLASSES[cls.__name__] = cls

    @property
    def name(self):
        raise NotImplementedError

    @property
    def keys(self):
        """The raw feature keys this column reads."""
        raise NotImplementedError

    def get_config(self):
        """The constructor arguments as JSON values (nested columns as :func:`serialize` dicts)."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({arguments})"

    def __eq__(self, other):
        return type(self) is type(other) and self._identity() == other._identity()

    def __hash__(self):
        return hash((type(self).__name__, self.name))

    def _identity(self):
        try:
            return json.dumps(self.get_config(), sort_keys=True)
        except ValueError:  # a callable normalizer: compare the objects
            return id(self)


class DenseColumn(FeatureColumn):
    """A column the network can take directly: ``width`` numbers per row."""

    def _block_width(self, widths):
        """Slots of this column's transformed block in the encoded matrix."""
        raise NotImplementedError

    def _width(self):
        """Numbers per row after densifying."""
        raise NotImplementedError


class CategoricalColumn(FeatureColumn):
    """A column of ids in ``[0, num_buckets)`` (-1 for nothing); densified by indicator or embedding."""

    @property
    def num_buckets(self):
        raise NotImplementedError

    def _ids(self, features, widths):
        """int64 ids of shape (n, k); ``widths[key]`` fixes k where known (else it is recorded)."""
        raise NotImplementedError

    def _value_width(self, widths):
        raise NotImplementedError


def _check_width(key, value, widths):
    width = int(numpy.prod(value.shape[1:], dtype=numpy.int64))
    if widths is not None:
        expected = widths.get(key)
        if expected is None:
            widths[key] = width
        elif expected != width:
            raise ValueError(
                f"feature {key!r}: expected {expected} value(s) per row, as when the columns were first used; got "
                f"shape {value.shape}."
            )


class NumericColumn(DenseColumn):
    """Real values as they are (after an optional normalizer); see :func:`numeric_column`."""

    def __init__(self, key, shape=(1,), default_value=None, dtype="float32", normalizer_fn=None):
        if not isinstance(key, str) or not key:
            raise ValueError(f"numeric_column: expected `key` to be a non-empty string; got {key!r}.")
        if isinstance(shape, numbers.Integral):
            shape = (shape,)
        try:
            shape = tuple(int(d) for d in shape)
        except TypeError:
            shape = ()
        if not shape or any(d < 1 for d in shape):
            raise ValueError(f"numeric_column {key!r}: expected `shape` to be positive ints such as (1,); got {shape}.")
        dtype = numpy.dtype(dtype)
        if dtype.kind not in "fiu":
            raise ValueError(f"numeric_column {key!r}: expected a float or integer `dtype`; got {dtype}.")
        if default_value is not None:
            default = numpy.asarray(default_value, dtype=numpy.float64)
            if default.size not in (1, math.prod(shape)):
                raise ValueError(f"numeric_column {key!r}: `default_value` must be a number or have shape {shape}; "
                                 f"got {default_value!r}.")
            default_value = default.item() if default.size == 1 else default.reshape(shape).tolist()
        self.key, self.shape, self.dtype = key, shape, dtype.name
        self.default_value = default_value
        self.normalizer_fn = _check_normalizer(key, normalizer_fn)

    @property
    def name(self):
        return self.key

    @property
    def keys(self):
        return (self.key,)

    def get_config(self):
        if callable(self.normalizer_fn):
            raise ValueError(
                f"numeric_column {self.key!r}: a Python callable normalizer_fn cannot be exported or saved; give it "
                "as data: ('standardize', mean, std), ('minmax', low, high) or ('log1p',)."
            )
        return {"key": self.key, "shape": list(self.shape), "default_value": self.default_value, "dtype": self.dtype,
                "normalizer_fn": None if self.normalizer_fn is None else list(self.normalizer_fn)}

    def _values(self, features):
        """float64 values of shape (n,) + shape, normalized and with missing ones filled."""
        value = _feature(features, self.key, self.name)
        size = math.prod(self.shape)
        if value.shape[1:] != self.shape and not (size == 1 and value.ndim == 1) and \
                math.prod(value.shape[1:]) != size:
            raise ValueError(
                f"numeric_column {self.key!r}: expected feature values of shape (n, {', '.join(map(str, self.shape))}) "
                f"(or (n,) for one value); got shape {value.shape}."
            )
        try:
            values = value.astype(numpy.float64) if value.dtype.kind != "O" else \
                numpy.array([numpy.nan if v is None else v for v in value.ravel()], dtype=numpy.float64)
        except (TypeError, ValueError):
            raise ValueError(f"numeric_column {self.key!r}: expected numbers; got values such as "
                             f"{value.ravel()[:3].tolist()} (dtype {value.dtype}).") from None
        values = values.reshape((len(value),) + self.shape)
        missing = numpy.isnan(values)
        if numpy.dtype(self.dtype) != numpy.float64:
            # Read as the column's dtype (an integer column truncates), missing values found before the cast.
            with numpy.errstate(invalid="ignore"):
                values = numpy.where(missing, numpy.nan, values.astype(self.dtype).astype(numpy.float64))
        if missing.any():
            if self.default_value is None:
                raise ValueError(f"numeric_column {self.key!r}: {int(missing.sum())} missing (NaN/None) value(s) "
                                 "and no default_value to fill them.")
            values = numpy.where(missing, numpy.broadcast_to(self.default_value, values.shape), values)
        return _normalize(self.normalizer_fn, values)

    def _block_width(self, widths):
        return math.prod(self.shape)

    def _width(self):
        return math.prod(self.shape)

    def _transform(self, features, widths):
        values = self._values(features)
        return values.reshape(len(values), -1)

    def _dense(self, block, table):
        return block


class BucketizedColumn(DenseColumn, CategoricalColumn):
    """A numeric column cut at ``boundaries``; see :func:`bucketized_column`."""

    def __init__(self, source_column, boundaries):
        if not isinstance(source_column, NumericColumn):
            raise ValueError(f"bucketized_column: expected `source_column` to be a numeric_column; got "
                             f"{source_column!r}.")
        try:
            boundaries = [float(b) for b in boundaries]
        except TypeError:
            boundaries = None
        if not boundaries or any(b >= c for b, c in zip(boundaries, boundaries[1:])):
            raise ValueError(f"bucketized_column {source_column.key!r}: expected `boundaries` to be a non-empty, "
                             f"strictly increasing list of numbers; got {boundaries!r}.")
        self.source_column, self.boundaries = source_column, boundaries

    @property
    def name(self):
        return f"{self.source_column.name}_bucketized"

    @property
    def keys(self):
        return self.source_column.keys

    @property
    def num_buckets(self):
        return (len(self.boundaries) + 1) * math.prod(self.source_column.shape)

    def get_config(self):
        return {"source_column": serialize(self.source_column), "boundaries": list(self.boundaries)}

    @classmethod
    def from_config(cls, config):
        return cls(deserialize(config["source_column"]), config["boundaries"])

    def _buckets(self, features):
        values = self.source_column._values(features).reshape(-1, math.prod(self.source_column.shape))
        # [-inf, b0) is bucket 0 and b0 itself falls in bucket 1, as in TensorFlow.
        return numpy.searchsorted(numpy.asarray(self.boundaries), values, side="right")

    def _ids(self, features, widths):
        buckets = self._buckets(features)
        return (buckets + numpy.arange(buckets.shape[1]) * (len(self.boundaries) + 1)).astype(numpy.int64)

    def _value_width(self, widths):
        return math.prod(self.source_column.shape)

    def _block_width(self, widths):
        return math.prod(self.source_column.shape)

    def _width(self):
        return self.num_buckets

    def _transform(self, features, widths):
        return self._buckets(features)

    def _dense(self, block, table):
        xp = backend.array_module(block)
        n, width = block.shape
        ids = block.astype(numpy.int64) + xp.arange(width) * (len(self.boundaries) + 1)
        return _multi_hot(xp, ids, self.num_buckets)


class VocabularyColumn(CategoricalColumn):
    """Ids from a vocabulary list; see :func:`categorical_column_with_vocabulary_list`."""

    def __init__(self, key, vocabulary_list, default_value=-1, num_oov_buckets=0):
        owner = f"categorical_column_with_vocabulary_list {key!r}"
        if not isinstance(key, str) or not key:
            raise ValueError(f"categorical column: expected `key` to be a non-empty string; got {key!r}.")
        vocabulary = list(vocabulary_list) if not isinstance(vocabulary_list, str) else None
        if not vocabulary:
            raise ValueError(f"{owner}: expected a non-empty list of strings or integers; got {vocabulary_list!r}.")
        if all(isinstance(v, str) for v in vocabulary):
            kind = "string"
        elif all(isinstance(v, (numbers.Integral, numpy.integer)) and not isinstance(v, bool) for v in vocabulary):
            kind, vocabulary = "integer", [int(v) for v in vocabulary]
        else:
            raise ValueError(f"{owner}: expected all strings or all integers in the vocabulary; got {vocabulary[:5]}.")
        duplicates = sorted({str(v) for v in vocabulary if vocabulary.count(v) > 1}) if \
            len(set(vocabulary)) != len(vocabulary) else []
        if duplicates:
            raise ValueError(f"{owner}: vocabulary entries must be unique; repeated: {duplicates}.")
        if not isinstance(num_oov_buckets, numbers.Integral) or num_oov_buckets < 0:
            raise ValueError(f"{owner}: expected `num_oov_buckets` to be an int >= 0; got {num_oov_buckets!r}.")
        # A value outside the vocabulary with nowhere to go is an error, not TensorFlow's silent id -1 that the
        # indicator and embedding columns then drop: a typo in a category should not train as "no category".
        # None is accepted for the same meaning (it named the error before -1 did).
        if default_value is not None and (not isinstance(default_value, numbers.Integral)
                                          or not -1 <= default_value < len(vocabulary)):
            raise ValueError(f"{owner}: expected `default_value` to be an id in [0, {len(vocabulary)}) or -1 (a miss "
                             f"is an error); got {default_value!r}.")
        default_value = -1 if default_value is None else int(default_value)
        if num_oov_buckets and default_value != -1:
            raise ValueError(f"{owner}: give either default_value or num_oov_buckets, not both (a miss goes to one).")
        self.key, self.vocabulary_list, self.kind = key, vocabulary, kind
        self.default_value = default_value
        self.num_oov_buckets = int(num_oov_buckets)
        self._index = {v: i for i, v in enumerate(vocabulary)}

    @property
    def name(self):
        return self.key

    @property
    def keys(self):
        return (self.key,)

    @property
    def num_buckets(self):
        return len(self.vocabulary_list) + self.num_oov_buckets

    def get_config(self):
        return {"key": self.key, "vocabulary_list": list(self.vocabulary_list), "default_value": self.default_value,
                "num_oov_buckets": self.num_oov_buckets}

    def _lookup_key(self, item):
        if self.kind == "string":
            if not isinstance(item, str):
                raise TypeError(f"feature {self.key!r}: the vocabulary holds strings; got {item!r} "
                                f"({type(item).__name__}).")
            return item
        text = _as_text(self.key, item)
        if isinstance(item, str):
            raise TypeError(f"feature {self.key!r}: the vocabulary holds integers; got the string {item!r}.")
        return int(text)

    def _ids(self, features, widths):
        value = _feature(features, self.key, self.name)
        _check_width(self.key, value, widths)
        codes, uniques = _categorical_values(self.key, value)
        keys = [self._lookup_key(item) for item in uniques]
        # "" is a missing value (its code is already -1), not a miss; -2 marks the misses.
        table = numpy.array([self._index.get(k, -1 if k == "" else -2) for k in keys], dtype=numpy.int64)
        misses = numpy.flatnonzero(table == -2)
        if len(misses):
            if self.num_oov_buckets:
                texts = [_as_text(self.key, keys[i]) for i in misses]
                table[misses] = len(self.vocabulary_list) + _bucket_of_texts(texts, self.num_oov_buckets)
            elif self.default_value == -1:
                unknown = sorted({str(keys[i]) for i in misses})
                raise ValueError(
                    f"feature {self.key!r}: {len(unknown)} value(s) not in the vocabulary of "
                    f"{len(self.vocabulary_list)} entries, such as {unknown[:5]}, and the column has no OOV bucket; "
                    "pass num_oov_buckets > 0 to give unknown values buckets, or default_value=<id> to map them to "
                    "one vocabulary entry."
                )
            else:
                table[misses] = self.default_value
        return _map_codes(codes, table)

    def _value_width(self, widths):
        return widths.get(self.key, 1) if widths is not None else 1


class VocabularyFileColumn(VocabularyColumn):
    """Ids from a vocabulary file, one entry a line; see :func:`categorical_column_with_vocabulary_file`.

    The vocabulary is read once, at construction, and kept in the config: a saved model needs no file.
    """

    def __init__(self, key, vocabulary_file, vocabulary_size=None, default_value=-1, num_oov_buckets=0,
                 vocabulary=None):
        if vocabulary is None:
            vocabulary = _read_vocabulary(key, vocabulary_file, vocabulary_size)
        self.vocabulary_file, self.vocabulary_size = os.fspath(vocabulary_file), vocabulary_size
        super().__init__(key, vocabulary, default_value, num_oov_buckets)

    def get_config(self):
        return {"key": self.key, "vocabulary_file": self.vocabulary_file, "vocabulary_size": self.vocabulary_size,
                "default_value": self.default_value, "num_oov_buckets": self.num_oov_buckets,
                "vocabulary": list(self.vocabulary_list)}


def _read_vocabulary(key, path, size):
    owner = f"categorical_column_with_vocabulary_file {key!r}"
    try:
        with open(path, encoding="utf-8") as file:
            lines = [line.rstrip("\r\n") for line in file]
    except OSError as error:
        raise ValueError(f"{owner}: cannot read vocabulary_file {os.fspath(path)!r}: {error}.") from None
    while lines and lines[-1] == "":
        lines.pop()
    if size is not None:
        if not isinstance(size, numbers.Integral) or size < 1:
            raise ValueError(f"{owner}: expected `vocabulary_size` to be a positive int or None; got {size!r}.")
        if size > len(lines):
            raise ValueError(f"{owner}: vocabulary_size={size} but {os.fspath(path)!r} has {len(lines)} lines.")
        lines = lines[:size]
    return lines


class HashedColumn(CategoricalColumn):
    """Ids from hashing the value's text; see :func:`categorical_column_with_hash_bucket`."""

    def __init__(self, key, hash_bucket_size):
        if not isinstance(key, str) or not key:
            raise ValueError(f"categorical_column_with_hash_bucket: expected `key` to be a non-empty string; got "
                             f"{key!r}.")
        if not isinstance(hash_bucket_size, numbers.Integral) or hash_bucket_size < 1:
            raise ValueError(f"categorical_column_with_hash_bucket {key!r}: expected `hash_bucket_size` to be an int "
                             f">= 1; got {hash_bucket_size!r}.")
        self.key, self.hash_bucket_size = key, int(hash_bucket_size)

    @property
    def name(self):
        return self.key

    @property
    def keys(self):
        return (self.key,)

    @property
    def num_buckets(self):
        return self.hash_bucket_size

    def get_config(self):
        return {"key": self.key, "hash_bucket_size": self.hash_bucket_size}

    def _ids(self, features, widths):
        value = _feature(features, self.key, self.name)
        _check_width(self.key, value, widths)
        codes, uniques = _categorical_values(self.key, value)
        table = _bucket_of_texts([_as_text(self.key, item) for item in uniques], self.hash_bucket_size)
        return _map_codes(codes, table)

    def _value_width(self, widths):
        return widths.get(self.key, 1) if widths is not None else 1


class CrossedColumn(CategoricalColumn):
    """Hashed combinations of several categorical features; see :func:`crossed_column`."""

    def __init__(self, keys, hash_bucket_size):
        keys = list(keys) if not isinstance(keys, (str, FeatureColumn)) else []
        if len(keys) < 2 or not all(isinstance(k, (str, CategoricalColumn)) for k in keys):
            raise ValueError(f"crossed_column: expected `keys` to be two or more feature keys (str) or categorical "
                             f"columns; got {keys!r}.")
        if not isinstance(hash_bucket_size, numbers.Integral) or hash_bucket_size < 1:
            raise ValueError(f"crossed_column: expected `hash_bucket_size` to be an int >= 1; got "
                             f"{hash_bucket_size!r}.")
        self.crossed_keys, self.hash_bucket_size = keys, int(hash_bucket_size)

    @property
    def name(self):
        return "_X_".join(sorted(k if isinstance(k, str) else k.name for k in self.crossed_keys))

    @property
    def keys(self):
        return tuple(itertools.chain.from_iterable((k,) if isinstance(k, str) else k.keys for k in self.crossed_keys))

    @property
    def num_buckets(self):
        return self.hash_bucket_size

    def get_config(self):
        keys = [k if isinstance(k, str) else serialize(k) for k in self.crossed_keys]
        return {"keys": keys, "hash_bucket_size": self.hash_bucket_size}

    @classmethod
    def from_config(cls, config):
        keys = [k if isinstance(k, str) else deserialize(k) for k in config["keys"]]
        return cls(keys, config["hash_bucket_size"])

    def _parts(self, key, features, widths):
        """(codes (n, k), texts): each value's index into the texts it contributes, -1 for missing."""
        if isinstance(key, str):
            value = _feature(features, key, self.name)
            _check_width(key, value, widths)
            codes, uniques = _categorical_values(key, value)
            return codes, [_as_text(key, item) for item in uniques]
        ids = key._ids(features, widths)
        live = ids >= 0
        uniques, inverse = numpy.unique(ids[live], return_inverse=True)
        codes = numpy.full(ids.shape, -1, dtype=numpy.int64)
        codes[live] = inverse.reshape(-1)
        return codes, [str(int(i)) for i in uniques]

    def _ids(self, features, widths):
        parts = [self._parts(k, features, widths) for k in self.crossed_keys]
        columns = []
        for combination in itertools.product(*(range(codes.shape[1]) for codes, _ in parts)):
            # Combine the parts' codes pairwise into codes of distinct combinations, so only those are
            # joined into text and hashed (not every row).
            codes, texts = parts[0][0][:, combination[0]].astype(numpy.int64), parts[0][1]
            for (more_codes, more_texts), j in zip(parts[1:], combination[1:]):
                more = more_codes[:, j]
                missing = (codes < 0) | (more < 0)
                keys = codes * len(more_texts) + more
                uniques, inverse = numpy.unique(keys[~missing], return_inverse=True)
                codes = numpy.full(len(keys), -1, dtype=numpy.int64)
                codes[~missing] = inverse.reshape(-1)
                texts = [texts[u // len(more_texts)] + _SEPARATOR + more_texts[u % len(more_texts)]
                         for u in uniques.tolist()]
            buckets = _bucket_of_texts(texts, self.hash_bucket_size) if texts else numpy.zeros(0, numpy.int64)
            columns.append(_map_codes(codes, buckets))
        return numpy.stack(columns, axis=1)

    def _value_width(self, widths):
        width = 1
        for key in self.crossed_keys:
            width *= widths.get(key, 1) if isinstance(key, str) else key._value_width(widths)
        return width


def _multi_hot(xp, ids, depth):
    """(n, depth) counts of each id per row; ids < 0 count nothing."""
    n = ids.shape[0]
    live = ids >= 0
    flat = (xp.arange(n)[:, None] * depth + xp.where(live, ids, 0))[live]
    return xp.bincount(flat.reshape(-1), minlength=n * depth).reshape(n, depth)


class IndicatorColumn(DenseColumn):
    """One-hot (multi-hot: counts) of a categorical column; see :func:`indicator_column`."""

    def __init__(self, categorical_column):
        if not isinstance(categorical_column, CategoricalColumn):
            raise ValueError(f"indicator_column: expected a categorical column; got {categorical_column!r}.")
        self.categorical_column = categorical_column

    @property
    def name(self):
        return f"{self.categorical_column.name}_indicator"

    @property
    def keys(self):
        return self.categorical_column.keys

    def get_config(self):
        return {"categorical_column": serialize(self.categorical_column)}

    @classmethod
    def from_config(cls, config):
        return cls(deserialize(config["categorical_column"]))

    def _block_width(self, widths):
        return self.categorical_column._value_width(widths)

    def _width(self):
        return self.categorical_column.num_buckets

    def _transform(self, features, widths):
        return self.categorical_column._ids(features, widths)

    def _dense(self, block, table):
        xp = backend.array_module(block)
        return _multi_hot(xp, block.astype(numpy.int64), self.categorical_column.num_buckets)


class EmbeddingColumn(DenseColumn):
    """A trained embedding of a categorical column's ids; see :func:`embedding_column`."""

    def __init__(self, categorical_column, dimension, combiner="mean", initializer=None):
        if not isinstance(categorical_column, CategoricalColumn):
            raise ValueError(f"embedding_column: expected a categorical column; got {categorical_column!r}.")
        if not isinstance(dimension, numbers.Integral) or dimension < 1:
            raise ValueError(f"embedding_column: expected `dimension` to be an int >= 1; got {dimension!r}.")
        if combiner not in _COMBINERS:
            raise ValueError(f"embedding_column: expected `combiner` in {list(_COMBINERS)}; got {combiner!r}.")
        if initializer is None:
            # TensorFlow's default: a truncated normal of deviation 1/sqrt(dimension).
            initializer = initializers.TruncatedNormal(mean=0.0, stddev=1.0 / math.sqrt(dimension))
        self.categorical_column, self.dimension, self.combiner = categorical_column, int(dimension), combiner
        self.initializer = initializers.get(initializer)

    @property
    def name(self):
        return f"{self.categorical_column.name}_embedding"

    @property
    def keys(self):
        return self.categorical_column.keys

    @property
    def table_shape(self):
        return self.categorical_column.num_buckets, self.dimension

    def get_config(self):
        return {"categorical_column": serialize(self.categorical_column), "dimension": self.dimension,
                "combiner": self.combiner, "initializer": initializers.serialize(self.initializer)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["categorical_column"] = deserialize(config["categorical_column"])
        return cls(**config)

    def _block_width(self, widths):
        return self.categorical_column._value_width(widths)

    def _width(self):
        return self.dimension

    def _transform(self, features, widths):
        return self.categorical_column._ids(features, widths)

    def _dense(self, block, table):
        xp = backend.array_module(block)
        ids = block.astype(numpy.int64)
        live = ids >= 0
        count = live.sum(axis=1, keepdims=True).astype(table.dtype)
        scale = {"sum": 1.0, "mean": 1.0 / xp.maximum(count, 1), "sqrtn": 1.0 / xp.sqrt(xp.maximum(count, 1))}
        weights = (live * scale[self.combiner]).astype(table.dtype)
        rows = ops.getitem(table, xp.where(live, ids, 0))  # (n, k, dimension); ignored ids weigh 0
        return ops.sum(rows * tensor(weights[:, :, None], dtype=table.dtype, device=backend.device_of(weights)), axis=1)


# -- the public constructors -------------------------------------------------------------------------
def numeric_column(key, shape=(1,), default_value=None, dtype="float32", normalizer_fn=None):
    """A real-valued feature, fed to the network as it is (after ``normalizer_fn``).

    Parameters
    ----------
    key : str
        The feature's name.
    shape : tuple of int, default=(1,)
        Values per row; a feature of shape ``(n,)`` is taken for ``(1,)``.
    default_value : float or array-like, optional
        Fills missing values (NaN, None); without it a missing value raises ValueError.
    dtype : numeric dtype, default="float32"
        The values are read as this dtype (the network computes in its own float dtype).
    normalizer_fn : tuple or callable, optional
        ``("standardize", mean, std)``, ``("minmax", low, high)`` or ``("log1p",)`` (plain data that
        saves and exports); a callable ``f(values) -> values`` works in the process but cannot be
        saved (``get_config`` raises).

    >>> import numpy as np
    >>> column = numeric_column("age", normalizer_fn=("standardize", 40.0, 10.0))
    >>> input_layer({"age": np.array([30.0, 50.0])}, [column]).data.ravel().tolist()
    [-1.0, 1.0]
    """
    return NumericColumn(key, shape, default_value, dtype, normalizer_fn)


def bucketized_column(source_column, boundaries):
    """A numeric column cut into ranges: ``(-inf, b0), [b0, b1), ..., [b_last, inf)``.

    Densified as a one-hot per value; usable as a categorical column (in a cross, an embedding).

    >>> import numpy as np
    >>> column = bucketized_column(numeric_column("age"), [18, 65])
    >>> input_layer({"age": np.array([10, 18, 70])}, [column]).data.tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """
    return BucketizedColumn(source_column, boundaries)


def categorical_column_with_vocabulary_list(key, vocabulary_list, default_value=-1, num_oov_buckets=0):
    """Category ids from a list: the i-th entry is id i.

    A value not in the list gets, with ``num_oov_buckets > 0``, one of the ids
    ``len(vocabulary_list) + hash % num_oov_buckets``, or with ``default_value`` in
    ``[0, len(vocabulary_list))`` that id. With neither (the default, ``default_value=-1``) it raises
    ValueError naming the feature and the unknown values: TensorFlow gave it the id -1, which the
    indicator and embedding columns dropped without a word. A missing value (None, NaN, "") is not a
    miss: it contributes nothing.

    >>> import numpy as np
    >>> column = indicator_column(categorical_column_with_vocabulary_list("c", ["a", "b"], num_oov_buckets=1))
    >>> input_layer({"c": np.array(["b", "a", "z"])}, [column]).data.tolist()
    [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    """
    return VocabularyColumn(key, vocabulary_list, default_value, num_oov_buckets)


def categorical_column_with_vocabulary_file(key, vocabulary_file, vocabulary_size=None, default_value=-1,
                                            num_oov_buckets=0):
    """Category ids from a UTF-8 text file, one entry per line (the first ``vocabulary_size`` lines).

    As :func:`categorical_column_with_vocabulary_list` otherwise; the file is read once, when the
    column is made, and its entries are kept in the column's config.
    """
    return VocabularyFileColumn(key, vocabulary_file, vocabulary_size, default_value, num_oov_buckets)


def categorical_column_with_hash_bucket(key, hash_bucket_size):
    """Category ids ``fnv1a64(utf8(text)) % hash_bucket_size`` for string or integer features.

    Stable across processes and machines (see :func:`fingerprint64`).

    >>> import numpy as np
    >>> column = categorical_column_with_hash_bucket("city", 1000)
    >>> int(column._ids({"city": np.array(["a"])}, {})[0, 0]) == 0xaf63dc4c8601ec8c % 1000
    True
    """
    return HashedColumn(key, hash_bucket_size)


def crossed_column(keys, hash_bucket_size):
    """Ids of combinations: for each row, every combination of the keys' values hashed into buckets.

    ``keys`` are raw feature keys (string or integer features) or categorical columns (their ids
    take part). Missing values make no combination.
    """
    return CrossedColumn(keys, hash_bucket_size)


def indicator_column(categorical_column):
    """A categorical column as a one-hot vector (a multi-value row: the count of each id)."""
    return IndicatorColumn(categorical_column)


def embedding_column(categorical_column, dimension, combiner="mean", initializer=None):
    """A categorical column through a trained ``(num_buckets, dimension)`` table.

    Several ids in a row are combined by ``combiner``: "mean", "sum" or "sqrtn" (sum over the root of
    the count); a row with no id gives zeros. ``initializer`` defaults to TensorFlow's truncated normal
    of deviation ``1 / sqrt(dimension)``.
    """
    return EmbeddingColumn(categorical_column, dimension, combiner, initializer)


def serialize(column):
    """``{"class_name": ..., "config": ...}`` of a feature column (JSON)."""
    if not isinstance(column, FeatureColumn):
        raise TypeError(f"serialize: expected a feature column; got {type(column).__name__}.")
    return {"class_name": type(column).__name__, "config": column.get_config()}


def deserialize(data):
    """A feature column from :func:`serialize` output."""
    if not isinstance(data, Mapping) or data.get("class_name") not in _COLUMN_CLASSES or \
            not isinstance(data.get("config"), Mapping):
        raise ValueError(f"deserialize: expected {{'class_name': one of {sorted(_COLUMN_CLASSES)}, 'config': dict}}; "
                         f"got {data!r}.")
    return _COLUMN_CLASSES[data["class_name"]].from_config(dict(data["config"]))


# -- from features to the dense input ----------------------------------------------------------------
def _sorted_dense_columns(owner, feature_columns):
    if isinstance(feature_columns, FeatureColumn):
        feature_columns = [feature_columns]
    try:
        columns = list(feature_columns)
    except TypeError:
        raise TypeError(f"{owner}: expected a list of feature columns; got {feature_columns!r}.") from None
    if not columns:
        raise ValueError(f"{owner}: expected at least one feature column; got none.")
    for column in columns:
        if isinstance(column, CategoricalColumn) and not isinstance(column, DenseColumn):
            raise ValueError(f"{owner}: {column.name!r} is categorical; wrap it in indicator_column or "
                             "embedding_column to feed it to the network.")
        if not isinstance(column, DenseColumn):
            raise TypeError(f"{owner}: expected feature columns; got {column!r}.")
    names = [c.name for c in columns]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{owner}: feature column names must be unique; repeated: {repeated}.")
    return sorted(columns, key=lambda c: c.name)  # as TensorFlow: the order of the list does not matter


def input_layer(features, feature_columns):
    """The dense input Tensor ``(n, width)`` for ``features`` (a dict of arrays or a DataFrame).

    Columns are sorted by name and their dense values concatenated. Embedding tables are variables
    of the current ``fl.variable_scope`` (``input_layer/<column>/embedding_weights``), so a model
    function keeps and trains them; without embedding columns no scope is needed. Called twice in one
    run of the scope, the second call claims the same variables: an error unless the scope has
    ``reuse=True`` or ``fl.AUTO_REUSE`` (then both share the tables), as for any variable.

    >>> import numpy as np
    >>> columns = [numeric_column("b"), numeric_column("a", shape=(2,))]
    >>> input_layer({"a": np.ones((1, 2)), "b": np.zeros(1)}, columns).data.tolist()
    [[1.0, 1.0, 0.0]]
    """
    columns = _sorted_dense_columns("input_layer", feature_columns)
    _rows_of(features)
    blocks = []
    for column in columns:
        table = None
        if isinstance(column, EmbeddingColumn):
            table = get_variable(f"input_layer/{column.name}/embedding_weights", column.table_shape,
                                 initializer=column.initializer)
        block = column._transform(features, {})
        dense = column._dense(block.astype(numpy.float64) if isinstance(column, NumericColumn) else block, table)
        blocks.append(dense if isinstance(dense, Tensor) else tensor(numpy.asarray(dense, dtype=floatx())))
    blocks = [b if b.dtype == floatx() else b.astype(floatx()) for b in blocks]
    return blocks[0] if len(blocks) == 1 else ops.concat(blocks, axis=1)


class DenseFeatures(Layer):
    """A layer that turns features into the dense input (Keras's ``DenseFeatures``), owning its embeddings.

    Call it on a dict of arrays or a DataFrame, or on the float matrix :meth:`encode` made of them
    (what the canned estimators feed it, so that strings are looked up once per fit). The output is
    the concatenation of the columns' dense values, columns sorted by name.

    Parameters
    ----------
    feature_columns : list of dense feature columns
        numeric, bucketized, indicator or embedding columns.
    value_widths : dict of str to int, optional
        Values per row of each categorical feature (1 for a feature of shape (n,)); recorded from the
        first features encoded when not given, fixed from then on.

    >>> import numpy as np
    >>> layer = DenseFeatures([numeric_column("x"),
    ...                        embedding_column(categorical_column_with_hash_bucket("w", 10), 3)])
    >>> layer({"x": np.zeros(4), "w": np.array(["a", "b", "a", "c"])}).shape
    (4, 4)
    >>> [w.name for w in layer.weights]
    ['dense_features/w_embedding/embedding_weights']
    """

    def __init__(self, feature_columns, value_widths=None, **kwargs):
        super().__init__(**kwargs)
        self.feature_columns = _sorted_dense_columns(f'Layer "{self.name}"', feature_columns)
        self.value_widths = None if value_widths is None else {str(k): int(v) for k, v in value_widths.items()}
        self._tables = {}

    def _widths(self):
        return dict(self.value_widths or {})

    def _layout(self):
        """(column, start, stop) of each column's block in the encoded matrix."""
        layout, start = [], 0
        widths = self._widths()
        for column in self.feature_columns:
            stop = start + column._block_width(widths)
            layout.append((column, start, stop))
            start = stop
        return layout

    @property
    def encoded_width(self):
        """Columns of the encoded matrix (the layer's input width)."""
        return self._layout()[-1][2]

    @property
    def output_width(self):
        return sum(column._width() for column in self.feature_columns)

    def encode(self, features):
        """The float matrix of the columns' transformed blocks (normalized values, bucket indices, ids).

        Checks every key and shape; the first call fixes ``value_widths`` when they were not given.
        """
        rows = _rows_of(features)
        widths = self._widths()
        blocks = [column._transform(features, widths) for column in self.feature_columns]
        if self.value_widths is None:
            self.value_widths = widths
        elif widths != self.value_widths:
            raise ValueError(f'Layer "{self.name}": value widths {widths} differ from the fitted {self.value_widths}.')
        limit = 2 ** (numpy.finfo(self.dtype).nmant + 1)
        for column in self.feature_columns:
            categorical = getattr(column, "categorical_column", None)
            if categorical is not None and categorical.num_buckets > limit:
                raise ValueError(
                    f'Layer "{self.name}": column {column.name!r} has {categorical.num_buckets} ids, more than '
                    f"{self.dtype.name} holds exactly ({limit}); use fewer buckets or dtype='float64'."
                )
        if not blocks:
            return numpy.empty((rows or 0, 0), dtype=self.dtype)
        return numpy.concatenate([numpy.asarray(b).reshape(len(b), -1) for b in blocks], axis=1).astype(self.dtype)

    def __call__(self, inputs, training=None):
        if isinstance(inputs, Mapping) or hasattr(inputs, "columns"):
            inputs = self.encode(inputs)
        return super().__call__(inputs, training=training)

    def build(self, input_shape):
        expected = self.encoded_width
        self.input_spec = InputSpec(ndim=2, axes={-1: expected})
        self.input_spec.check(self.name, tuple(input_shape))
        for column in self.feature_columns:
            if isinstance(column, EmbeddingColumn):
                self._tables[column.name] = self.add_weight(f"{column.name}/embedding_weights", column.table_shape,
                                                            column.initializer)

    def call(self, inputs):
        blocks = []
        for column, start, stop in self._layout():
            block = inputs.data[:, start:stop]
            if isinstance(column, NumericColumn):
                blocks.append(ops.getitem(inputs, (slice(None), slice(start, stop))))
                continue
            dense = column._dense(block, self._tables.get(column.name))
            blocks.append(dense if isinstance(dense, Tensor) else tensor(dense.astype(self.dtype), device=self.device))
        return blocks[0] if len(blocks) == 1 else ops.concat(blocks, axis=1)

    def compute_output_shape(self, input_shape):
        return (tuple(input_shape)[0], self.output_width)

    def get_config(self):
        config = super().get_config()
        config.update(feature_columns=[serialize(c) for c in self.feature_columns], value_widths=self.value_widths)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["feature_columns"] = [deserialize(c) for c in config["feature_columns"]]
        return cls(**config)

    def dense_statistics(self, encoded, weights=None, chunk=4096):
        """(mean, std) of each output column over the rows of ``encoded`` (float64), embedding slots (0, 1).

        What a model that standardizes its input needs to know of the dense features; computed in
        chunks (two passes), so no dense copy of all rows is made. Requires the layer built.
        """
        total = float(len(encoded)) if weights is None else float(numpy.sum(weights, dtype=numpy.float64))
        total = total if total > 0 else 1.0

        def chunks():
            with no_grad():
                for first in range(0, len(encoded), chunk):
                    values = backend.to_numpy(self(encoded[first:first + chunk]).data).astype(numpy.float64)
                    yield values, None if weights is None else numpy.asarray(weights[first:first + chunk],
                                                                            dtype=numpy.float64)

        mean = numpy.zeros(self.output_width)
        for values, w in chunks():
            mean += values.sum(axis=0) if w is None else w @ values
        mean /= total
        squares = numpy.zeros(self.output_width)
        for values, w in chunks():
            squares += ((values - mean) ** 2).sum(axis=0) if w is None else w @ (values - mean) ** 2
        spread = numpy.sqrt(squares / total)
        spread = numpy.where(spread > 1e-12 * numpy.maximum(numpy.abs(mean), 1.0), spread, 1.0)
        start = 0
        for column in self.feature_columns:  # output columns in the same sorted order
            stop = start + column._width()
            if isinstance(column, EmbeddingColumn):  # learned: standardizing their starting values means nothing
                mean[start:stop], spread[start:stop] = 0.0, 1.0
            start = stop
        return mean, spread
