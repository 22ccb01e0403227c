"""The one data path: whatever a trainer is given becomes ``(features, labels)`` batches.

``Sequential.fit / evaluate / predict``, the scikit-learn estimators and the model_fn ``Estimator`` all
take their data through this module, so every trainer sees the same batches and the same errors. Data
comes in two kinds, each with its adapter:

* **in memory**: arrays, array-likes, Tensors, pandas DataFrames and Series, or a dict holding one
  array. :func:`host_array` checks it once (a non-empty numpy array, see also :func:`check_finite`),
  and :class:`ArrayAdapter` (over :func:`array_batches`) cuts it into batches, shuffling by permuting
  indices, never the data;
* **a batch source**: an *input_fn* (a zero-argument callable returning an iterable of batches, such
  as ``flowlearn.io.numpy_input_fn(...)``), a Python generator, or any other iterable of batches
  that is not itself array-like. :func:`iterate_batches` goes through one and checks each batch's
  structure; :class:`BatchSourceAdapter` gives a trainer the batches of each epoch.

A batch is a ``(features, labels)`` tuple (``(features, labels, sample_weight)`` where a trainer takes
sample weights): ``features`` an array or a dict ``{name: array}``, ``labels`` an array, a dict or
None (prediction). A DataFrame becomes a dict of its columns and a Series its array. Every array has
the batch dimension first, and all of one batch's arrays have the same number of rows.

Epochs over a batch source, as in Keras (:class:`BatchSourceAdapter` has the details):

* without ``steps`` an epoch is one pass. An input_fn is gone through afresh each epoch (the
  iterable it returns is iterated again, or, when it is a one-shot iterator, the input_fn is called
  again); so is any re-iterable (a list of batches, a dataset object). A Python generator can only be
  gone through once: the first epoch uses it up, and training then stops with a warning. A source
  known to repeat forever (``numpy_input_fn(..., num_epochs=None)``) needs ``steps``;
* with ``steps`` (``steps_per_epoch``) each training epoch takes the next ``steps`` batches, going on
  where the previous epoch stopped. When a pass ends, a restartable source starts another one; a
  generator that runs out ends training with a warning;
* evaluation (validation, ``evaluate``, ``predict``) starts a restartable source from its beginning
  every time and takes at most ``steps`` batches, so each validation sees the same data.

How many batches a source holds is read from its ``cardinality()`` method when it has one (as
tf.data's datasets; :data:`INFINITE` means it repeats forever), else from ``len()``.
"""
import inspect
import itertools
import math
import numbers
import warnings
from collections.abc import Iterable, Iterator

import numpy

from ..core.tensor import Tensor

__all__ = [
    "INFINITE", "UNKNOWN", "ArrayAdapter", "BatchSourceAdapter", "array_batches", "batch_length", "cardinality",
    "check_finite", "describe", "host_array", "is_batch_source", "iterate_batches",
]

# What cardinality() returns for a source that repeats forever, and for one whose size is not known.
INFINITE = -1
UNKNOWN = -2

_END = object()


def describe(value):
    """A few words saying what ``value`` is, for error messages: its type, with its shape, keys or length."""
    shape = getattr(value, "shape", None)
    if shape is not None and not isinstance(value, type):
        return f"{type(value).__name__} of shape {tuple(shape)}"
    if isinstance(value, dict):
        keys = list(value)
        return f"dict with keys {keys[:8]}{' ...' if len(keys) > 8 else ''}"
    if isinstance(value, (tuple, list)):
        return f"{type(value).__name__} of {len(value)} item{'s' if len(value) != 1 else ''}"
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


def _is_dataframe(value):
    return hasattr(value, "columns") and hasattr(value, "iloc")


def _is_series(value):
    return hasattr(value, "iloc") and hasattr(value, "to_numpy") and not hasattr(value, "columns")


# -- data in memory -----------------------------------------------------------------------------
def host_array(what, name, value):
    """``value`` as a numpy array with at least one sample; the check every trainer runs on in-memory data.

    Tensors, DataFrames, Series and array-likes are accepted; a dict of one array (an input_fn's
    ``{"x": array}`` features) stands for that array. A dict of several arrays raises: a model with
    one input cannot tell how to join them.
    """
    if isinstance(value, dict):
        if len(value) != 1:
            raise ValueError(
                f"{what}: expected `{name}` as one array (or a dict holding one); got a dict with keys {list(value)}. "
                "A Sequential model has one input: stack the arrays into one, or turn the dict into one array "
                "with feature columns (flowlearn.feature_column.input_layer)."
            )
        value = next(iter(value.values()))
    if isinstance(value, Tensor):
        value = value.numpy()
    array = numpy.asarray(value)
    if array.ndim == 0 or len(array) == 0:
        raise ValueError(f"{what}: expected `{name}` with at least one sample; got an array of shape {array.shape}.")
    return array


def check_finite(what, name, array):
    """Raise ValueError naming the first sample of a float ``array`` with a NaN or infinite value."""
    if array.dtype.kind == "f" and not numpy.isfinite(array).all():
        row = int(numpy.argwhere(~numpy.isfinite(array))[0][0])
        raise ValueError(
            f"{what}: `{name}` contains NaN or infinite values (first in sample {row}). Clean the data, or pass "
            "allow_nan=True if the model is meant to see them."
        )


def batch_length(batch):
    """The number of samples in ``batch``: an array, a tuple/list of arrays (first non-None) or a dict."""
    if isinstance(batch, dict):
        batch = next(iter(batch.values()))
    if isinstance(batch, (tuple, list)):
        batch = next(item for item in batch if item is not None)
    if isinstance(batch, dict):
        batch = next(iter(batch.values()))
    return len(batch)


def array_batches(arrays, batch_size, shuffle=False, rng=None, indices=None):
    """Yield tuples of batches taken from equally long arrays (None entries stay None).

    With ``shuffle`` the rows are visited in the order of one index permutation: the data are never
    copied as a whole, each batch is one fancy-indexed copy. Without it, batches are views.
    ``indices`` (an integer array) restricts the batches to those rows, e.g. the training part of a
    held-out split, again without copying the data.

    >>> import numpy
    >>> x, y = numpy.arange(10).reshape(5, 2), numpy.arange(5)
    >>> [len(bx) for bx, by in array_batches((x, y), batch_size=2)]
    [2, 2, 1]
    >>> [by.tolist() for bx, by in array_batches((x, y), batch_size=2, indices=numpy.array([4, 0, 2]))]
    [[4, 0], [2]]
    """
    arrays = tuple(arrays)
    n = batch_length(arrays) if indices is None else len(indices)
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"Received an invalid value for `batch_size`: expected a positive integer; got {batch_size!r}.")
    batch_size = int(batch_size)
    order = indices
    if shuffle:
        rng = rng if rng is not None else numpy.random.default_rng()
        order = rng.permutation(n) if indices is None else indices[rng.permutation(n)]
    for start in range(0, n, batch_size):
        rows = slice(start, start + batch_size) if order is None else order[start:start + batch_size]
        yield tuple(None if array is None else array[rows] for array in arrays)


def _positive_steps(what, name, steps):
    """``steps`` as an int >= 1 (a whole float such as 2.0 too), or None; anything else (a string, NaN,
    infinity) is refused by name rather than by whatever ``int()`` happens to raise."""
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, numbers.Real)
                              or not math.isfinite(steps) or int(steps) != steps or steps < 1):
        raise ValueError(f"{what}: received an invalid value for `{name}`, expected a positive integer or None. "
                         f"Received: {name}={steps!r}")
    return None if steps is None else int(steps)


class ArrayAdapter:
    """The epochs of a trainer over equally long in-memory arrays (None entries stay None).

    Without ``steps`` each call of :meth:`epoch` is one pass, a new permutation when shuffling (this
    is :func:`array_batches`, with no per-batch cost added). With ``steps`` each epoch takes the next
    ``steps`` batches of an endless run of passes, going on where the previous epoch stopped.

    Parameters
    ----------
    arrays : tuple of arrays or None
    batch_size : int
    shuffle : bool
    rng : numpy.random.Generator, optional
        Draws the permutations (a fresh unseeded generator when None).
    indices : array of int, optional
        Only these rows (e.g. the training part of a held-out split).
    steps : int, optional
        Batches per epoch.
    """

    def __init__(self, arrays, batch_size, shuffle=False, rng=None, indices=None, steps=None):
        self.arrays = tuple(arrays)
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.rng = rng
        self.indices = indices
        self.steps = _positive_steps("fit", "steps_per_epoch", steps)
        n = batch_length(self.arrays) if indices is None else len(indices)
        self.num_batches = self.steps if self.steps is not None else -(-n // batch_size)
        self._pass = None

    def _one_pass(self):
        return array_batches(self.arrays, self.batch_size, shuffle=self.shuffle, rng=self.rng, indices=self.indices)

    def epoch(self, epoch=None):
        """The batches of one epoch (``epoch`` is accepted for :func:`~flowlearn.layers.training.run_training`)."""
        if self.steps is None:
            return self._one_pass()
        return self._stream()

    def _stream(self):
        taken = 0
        while taken < self.steps:
            if self._pass is None:
                self._pass = self._one_pass()
            for batch in self._pass:
                yield batch
                taken += 1
                if taken == self.steps:
                    return  # the pass stays where it is: the next epoch goes on from here
            self._pass = None


# -- batch sources ------------------------------------------------------------------------------
def is_batch_source(value):
    """Whether ``value`` is a batch source (an input_fn, a generator, an iterable of batches) rather than
    data in memory.

    Arrays, Tensors, DataFrames, lists, tuples, dicts and strings are data: a list of batches given as
    ``x`` is taken for an array-like, so wrap it in a function (``lambda: batches``) to train on its
    batches.
    """
    if isinstance(value, (numpy.ndarray, Tensor, list, tuple, dict, str, bytes)) or value is None:
        return False
    if hasattr(value, "__array__") or hasattr(value, "__cuda_array_interface__") or _is_dataframe(value):
        return False
    return callable(value) or isinstance(value, Iterable)


def cardinality(iterable):
    """The number of batches ``iterable`` holds: an int, :data:`INFINITE` or :data:`UNKNOWN`.

    Read from a ``cardinality()`` method when there is one (tf.data's convention), else from
    ``len()``; a one-shot iterator (a generator) is :data:`UNKNOWN`.
    """
    method = getattr(iterable, "cardinality", None)
    if callable(method):
        value = int(method())
        return value if value >= 0 or value in (INFINITE, UNKNOWN) else UNKNOWN
    if isinstance(iterable, Iterator):
        return UNKNOWN
    try:
        return len(iterable)
    except TypeError:
        return UNKNOWN


class _Source:
    """The passes over one batch source; :meth:`new_pass` returns an iterator of its raw items."""

    def __init__(self, source, what, name):
        self.prefix = f"{what}: " if what else ""
        self.origin = f" from `{name}`" if name else ""
        self._input_fn = None
        if callable(source) and not isinstance(source, Iterable):
            self.role = "input_fn"
            self._input_fn = source
            self._iterable = self._call_input_fn()
        elif isinstance(source, Iterable) and not isinstance(source, (str, bytes, dict)):
            self._iterable = source
            self.role = "the generator" if isinstance(source, Iterator) else "the iterable"
        else:
            raise TypeError(
                f"{self.prefix}expected {f'`{name}` as ' if name else ''}an input_fn (a function returning an "
                "iterable of (features, labels) batches), a generator or an iterable of batches; got "
                f"{describe(source)}."
            )
        if name:
            self.role = f"the {self.role.replace('the ', '')} given as `{name}`"
        self._used = False

    def _call_input_fn(self):
        try:
            required = [p.name for p in inspect.signature(self._input_fn).parameters.values()
                        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        except (TypeError, ValueError):  # no signature to read (some builtins): just call it
            required = []
        if required:
            raise TypeError(
                f"{self.prefix}an input_fn is called with no arguments; the input_fn{self.origin} requires "
                f"{required}. Bind them first, e.g. functools.partial(input_fn, ...) or lambda: input_fn(...)."
            )
        result = self._input_fn()
        if isinstance(result, tuple) and len(result) in (2, 3) and not isinstance(result[0], tuple):
            raise TypeError(
                f"{self.prefix}the input_fn{self.origin} returned one (features, labels) pair; an input_fn returns "
                "an iterable of such batches: return [(features, labels)], write it as a generator (yield ...), "
                "or build it with flowlearn.io.numpy_input_fn / pandas_input_fn."
            )
        if not isinstance(result, Iterable) or isinstance(result, (str, bytes, dict, numpy.ndarray, Tensor)):
            raise TypeError(
                f"{self.prefix}an input_fn must return an iterable of (features, labels) batches; the input_fn"
                f"{self.origin} returned {describe(result)}."
            )
        return result

    @property
    def restartable(self):
        """Whether another pass can start once one has begun."""
        return self._input_fn is not None or not isinstance(self._iterable, Iterator)

    def cardinality(self):
        return cardinality(self._iterable)

    def new_pass(self):
        """An iterator over the next pass, or None when a one-shot source has already been started."""
        if not self._used:
            self._used = True
            return iter(self._iterable)
        if not isinstance(self._iterable, Iterator):
            return iter(self._iterable)
        if self._input_fn is not None:
            self._iterable = self._call_input_fn()
            return iter(self._iterable)
        return None

    def check(self, item, index, *, sample_weight=False, bare_features=False):
        """The batch ``item`` as ``(features, labels)`` (with ``sample_weight``: a triple), structure checked."""
        prefix, where = self.prefix, f"batch {index + 1}{self.origin}"
        if isinstance(item, (tuple, list)) and (len(item) == 2 or (sample_weight and len(item) == 3)):
            features, labels = item[0], item[1]
            weights = item[2] if len(item) == 3 else None
        elif bare_features and isinstance(item, (tuple, list)) and len(item) == 1:
            features, labels, weights = item[0], None, None
        elif bare_features and not isinstance(item, (tuple, list)):
            features, labels, weights = item, None, None
        else:
            expected = "(features, labels)" + (" or (features, labels, sample_weight)" if sample_weight else "")
            raise ValueError(
                f"{prefix}{self.role} must yield {expected} tuples; got {describe(item)} as batch {index + 1}."
            )
        features = _structure(prefix, "features", features, where, allow_none=False)
        labels = _structure(prefix, "labels", labels, where, allow_none=True)
        if weights is not None:
            weights = _structure(prefix, "sample_weight", weights, where, allow_none=False, allow_dict=False)
        _check_rows(prefix, where, features, labels, weights)
        return (features, labels, weights) if sample_weight else (features, labels)


def _structure(prefix, name, value, where, *, allow_none, allow_dict=True):
    """``value`` (features, labels or sample weights of one batch) as an array or a dict of arrays."""
    if value is None:
        if allow_none:
            return None
        raise ValueError(f"{prefix}{name} of {where} is None; expected an array{' or a dict of arrays' * allow_dict}.")
    # (A dict or an array is no DataFrame: skipping the probes, whose failing hasattr calls raise and catch
    # AttributeErrors, saves microseconds on every batch of a training loop.)
    if allow_dict and type(value) is not dict and type(value) is not numpy.ndarray and _is_dataframe(value):
        value = {str(column): value[column].to_numpy() for column in value.columns}
    if isinstance(value, dict):
        if not allow_dict or not value:
            raise ValueError(f"{prefix}{name} of {where} must be {'a non-empty dict or ' * allow_dict}an array; "
                             f"got {describe(value)}.")
        columns = {}
        for key, column in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{prefix}the keys of {name} must be strings (feature names); {where} has key {key!r}.")
            columns[key] = _column(prefix, f"{name}[{key!r}]", column, where)
        return columns
    return _column(prefix, name, value, where, allow_dict)


def _column(prefix, name, value, where, allow_dict=False):
    if type(value) is numpy.ndarray and value.ndim:  # the usual column, without the Series probes
        return value
    if _is_series(value):
        value = value.to_numpy()
    elif isinstance(value, (list, tuple)):
        value = numpy.asarray(value)
    shape = getattr(value, "shape", None)
    if shape is None or isinstance(value, (str, bytes)) or len(shape) == 0:
        kinds = "an array (or a dict of arrays)" if allow_dict else "an array"
        raise ValueError(f"{prefix}{name} of {where} must be {kinds} with the batch dimension first; "
                         f"got {describe(value)}.")
    return value


def _check_rows(prefix, where, features, labels, weights):
    counts = set()  # the usual case first, without naming every array
    for value in (features, labels, weights):
        if isinstance(value, dict):
            counts.update([int(column.shape[0]) for column in value.values()])
        elif value is not None:
            counts.add(int(value.shape[0]))
    if len(counts) == 1 and 0 not in counts:
        return
    rows = {}
    for name, value in (("features", features), ("labels", labels), ("sample_weight", weights)):
        if isinstance(value, dict):
            rows.update({f"{name}[{key!r}]": int(column.shape[0]) for key, column in value.items()})
        elif value is not None:
            rows[name] = int(value.shape[0])
    counts = set(rows.values())
    if len(counts) > 1:
        listed = ", ".join(f"{name} {count}" for name, count in rows.items())
        raise ValueError(f"{prefix}every array of a batch needs the same number of rows; {where} has {listed}.")
    if counts == {0}:
        raise ValueError(f"{prefix}{where} has no rows; a batch needs at least one sample.")


def iterate_batches(source, *, what=None, sample_weight=False, bare_features=False):
    """An iterator of checked ``(features, labels)`` batches from one pass over ``source``.

    Parameters
    ----------
    source : callable or iterable
        An input_fn (called once here), a generator, or an iterable of batches.
    what : str, optional
        Who asks (e.g. ``"Estimator.train"``), put in front of error messages.
    sample_weight : bool
        Accept ``(features, labels, sample_weight)`` triples too, and yield triples (the weights
        None where a batch has none).
    bare_features : bool
        Accept a batch of features alone (prediction input); its labels are None.

    Each batch is checked as it comes: a wrong structure raises ValueError naming what was
    expected and what came, e.g. ``input_fn must yield (features, labels) tuples; got ndarray of shape
    (32, 4) as batch 1``. A DataFrame becomes a dict of column arrays, a Series an array, a list an array.

    >>> import numpy
    >>> def input_fn():
    ...     yield {"x": numpy.zeros((2, 3))}, numpy.ones(2)
    >>> [(sorted(f), l.tolist()) for f, l in iterate_batches(input_fn)]
    [(['x'], [1.0, 1.0])]
    """
    passes = _Source(source, what, None)
    items = passes.new_pass()

    def batches():
        for index, item in enumerate(items):
            yield passes.check(item, index, sample_weight=sample_weight, bare_features=bare_features)

    return batches()


class BatchSourceAdapter:
    """The epochs of a trainer over a batch source (see the module docstring for the rules).

    Parameters
    ----------
    source : callable or iterable
        An input_fn, a generator or an iterable of batches.
    what, name : str
        The method and the argument, for messages (``"fit"``, ``"x"``).
    steps : int, optional
        Batches per epoch (``steps_per_epoch``, ``validation_steps``, ``steps``). Required when the
        source is known to repeat forever.
    steps_name : str
        The argument that gives ``steps``, for messages.
    training : bool
        True: with ``steps`` each epoch goes on where the previous one stopped, a restartable source
        starting a new pass whenever one ends, and a one-shot source that runs out warns and ends the
        epoch (and with it training). False (evaluation): every epoch starts a restartable source
        afresh and takes at most ``steps`` batches.
    sample_weight, bare_features : bool
        As for :func:`iterate_batches`.

    Attributes
    ----------
    num_batches : int or None
        Batches per epoch when known (for the progress bar).
    """

    def __init__(self, source, *, what, name, steps=None, steps_name="steps", training=False, sample_weight=True,
                 bare_features=False):
        self._source = _Source(source, what, name)
        self.what, self.name, self.steps_name = what, name, steps_name
        self.steps = _positive_steps(what, steps_name, steps)
        self.training = training
        self._options = {"sample_weight": sample_weight, "bare_features": bare_features}
        size = self._source.cardinality()
        if self.steps is None and size == INFINITE:
            raise ValueError(
                f"{what}: `{name}` repeats forever (e.g. an input_fn with num_epochs=None), so an epoch never "
                f"ends; pass `{steps_name}` to say how many batches make one."
            )
        self.num_batches = self.steps if self.steps is not None else (size if size >= 0 else None)
        self._iterator = None  # the pass under way
        self._index = 0  # batches taken from it
        self._peeked = None
        self._fresh = False  # the pass under way has given out nothing but the peeked batch
        self._warned = False

    @property
    def one_shot(self):
        """Whether the source can be gone through only once (a Python generator)."""
        return not self._source.restartable

    def _start_pass(self):
        iterator = self._source.new_pass()
        if iterator is None:
            return False
        self._iterator, self._index, self._fresh = iterator, 0, True
        return True

    def _next(self):
        """The next checked batch of the pass under way, or _END when it is over."""
        if self._peeked is not None:
            batch, self._peeked = self._peeked, None
            return batch
        item = next(self._iterator, _END)
        if item is _END:
            self._iterator = None
            return _END
        self._index += 1
        return self._source.check(item, self._index - 1, **self._options)

    def peek(self):
        """The first batch, checked and kept to be given out first: what builds a model before training."""
        if self._peeked is None:
            if self._iterator is None:
                self._start_pass()
            batch = self._next() if self._iterator is not None else _END
            if batch is _END:
                raise ValueError(f"{self.what}: `{self.name}` yielded no batches; expected at least one.")
            self._peeked = batch
        return self._peeked

    def epoch(self, epoch=0):
        """The checked batches of epoch ``epoch`` (0-based, for messages)."""
        restart = self._source.restartable and not (self.training and self.steps is not None) and not self._fresh
        if (self._iterator is None or restart) and not self._start_pass():
            self._ran_out(epoch, 0)
            return
        self._fresh = False
        taken = in_pass = 0
        while self.steps is None or taken < self.steps:
            batch = self._next()
            if batch is _END:
                if self.steps is None or not self.training:
                    break
                if self._source.restartable and in_pass and self._start_pass():
                    in_pass = 0
                    continue
                break
            taken += 1
            in_pass += 1
            yield batch
        if taken == 0 or (self.training and self.steps is not None and taken < self.steps):
            self._ran_out(epoch, taken)

    def _ran_out(self, epoch, taken):
        if not self.training:
            if taken == 0:
                raise ValueError(
                    f"{self.what}: `{self.name}` yielded no batches{f' for epoch {epoch + 1}' if epoch else ''}. "
                    "A generator can be gone "
                    f"through only once: pass an input_fn (a function returning the batches), or a generator that "
                    f"repeats together with `{self.steps_name}`."
                )
            return
        if self._warned:
            return
        self._warned = True
        if self.steps is None:
            message = (f"`{self.name}` was used up by the epochs before epoch {epoch + 1}; training stops here. A "
                       "Python generator can be gone through only once: pass an input_fn (a function returning "
                       "the batches) to go through the data every epoch, or a generator that repeats together "
                       "with `steps_per_epoch`.")
        else:
            message = (f"`{self.name}` ran out of data after {taken} of the {self.steps} batches of epoch "
                       f"{epoch + 1} (steps_per_epoch={self.steps}); training stops after this epoch. Make sure "
                       "the generator yields at least steps_per_epoch * epochs batches, or pass an input_fn, "
                       "which is started again whenever it ends.")
        warnings.warn(f"{self.what}: {message}", UserWarning, stacklevel=2)


def first_steps(batches, steps):
    """At most ``steps`` items of ``batches`` (all of them when ``steps`` is None)."""
    return batches if steps is None else itertools.islice(batches, steps)
