"""input_fns over data in memory: ``numpy_input_fn`` and ``pandas_input_fn``, as tf.estimator.inputs had them.

An *input_fn* is a zero-argument callable returning an iterable of ``(features, labels)`` batches:
``features`` an array or a dict ``{name: array}``, ``labels`` an array, a dict or None. Every trainer
takes one (``Sequential.fit``, the model_fn ``Estimator``) through :mod:`flowlearn.layers.data_adapter`.

Each call of an input_fn made here returns a fresh :class:`ArrayBatches`, which behaves as a tf.data
dataset: its batches are views or index-taken copies of the arrays given (shuffling permutes row
indices, never the data), the last partial batch of each epoch is kept, epochs never share a batch,
and every iteration over it reshuffles, from a generator seeded once per call, so the sequence of
orders is reproducible and two calls with the same ``seed`` give the same batches.
"""
import itertools
import numbers

import numpy

from ..layers import seeding
from ..layers.data_adapter import INFINITE, describe

__all__ = ["ArrayBatches", "numpy_input_fn", "pandas_input_fn"]


class ArrayBatches:
    """The batches of an input_fn over arrays in memory: what ``numpy_input_fn(...)()`` returns.

    Iterating goes through ``num_epochs`` epochs (forever when None), each a new permutation of the
    rows when shuffling; the generator of those permutations is made once, here, so iterating again
    gives new orders (tf.data's ``reshuffle_each_iteration``). :meth:`cardinality` is the number of
    batches, :data:`~flowlearn.layers.data_adapter.INFINITE` when repeating forever.
    """

    def __init__(self, features, labels, n_rows, batch_size, num_epochs, shuffle, seed):
        self._features, self._labels = features, labels
        self._n = n_rows
        self.batch_size, self.num_epochs, self.shuffle = batch_size, num_epochs, shuffle
        seed = _seed_or_drawn(seed, shuffle)
        self._rng = numpy.random.default_rng(seed) if shuffle else None

    def cardinality(self):
        """Batches in all epochs, or ``INFINITE`` (-1) when ``num_epochs`` is None."""
        if self.num_epochs is None:
            return INFINITE
        return self.num_epochs * -(-self._n // self.batch_size)

    def __len__(self):
        if self.num_epochs is None:
            raise TypeError("an input_fn with num_epochs=None repeats forever: its batches have no length")
        return self.cardinality()

    def __iter__(self):
        epochs = itertools.count() if self.num_epochs is None else range(self.num_epochs)
        for _ in epochs:
            order = self._rng.permutation(self._n) if self.shuffle else None
            for start in range(0, self._n, self.batch_size):
                rows = slice(start, start + self.batch_size) if order is None else order[start:start + self.batch_size]
                yield _take(self._features, rows), _take(self._labels, rows)


def _seed_or_drawn(seed, needed=True):
    """``seed``, or, when it is None and something random is ``needed``, a seed drawn from the stream
    flowlearn.layers.set_random_seed seeds, so that an unseeded script calling it is reproducible end to end.

    Every input_fn and the augmentation ops resolve their ``seed`` here; when nothing random is needed the
    stream does not move, so adding an unshuffled input_fn never changes the draws of the others.
    """
    if seed is None and needed:
        seed = int(seeding.shuffle_rng().integers(2 ** 63))
    return seed


def _passes(num_epochs):
    """One item per pass over the data: ``num_epochs`` of them, or without end when it is None."""
    return itertools.count() if num_epochs is None else range(num_epochs)


def _take(data, rows):
    if data is None:
        return None
    if isinstance(data, dict):
        return {key: column[rows] for key, column in data.items()}
    return data[rows]


def _check_settings(owner, batch_size, num_epochs, shuffle, seed):
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"{owner}: received an invalid value for `batch_size`, expected a positive integer. "
                         f"Received: batch_size={batch_size!r}")
    if num_epochs is not None and (isinstance(num_epochs, bool) or not isinstance(num_epochs, numbers.Integral)
                                   or num_epochs < 1):
        raise ValueError(f"{owner}: received an invalid value for `num_epochs`, expected a positive integer, or None "
                         f"to repeat forever. Received: num_epochs={num_epochs!r}")
    if shuffle is None:
        raise ValueError(
            f"{owner}: `shuffle` must be given explicitly, as True or False (True for training, False for evaluation "
            "and prediction, as TensorFlow required). Received: shuffle=None"
        )
    if not isinstance(shuffle, (bool, numpy.bool_)):
        raise ValueError(f"{owner}: received an invalid value for `shuffle`, expected True or False. "
                         f"Received: shuffle={shuffle!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
        raise ValueError(f"{owner}: received an invalid value for `seed`, expected a non-negative integer or None. "
                         f"Received: seed={seed!r}")
    return int(batch_size), None if num_epochs is None else int(num_epochs), bool(shuffle), seed


def _count(owner, name, value, minimum=1, allow_none=False):
    """``value`` as an int of at least ``minimum`` (1 or 0; None passes where ``allow_none``), else a ValueError
    naming ``owner``'s argument, what it takes and what it received."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        what = "a positive integer" if minimum == 1 else "a non-negative integer"
        raise ValueError(f"{owner}: received an invalid value for `{name}`, expected {what}"
                         f"{' or None' if allow_none else ''}. Received: {name}={value!r}")
    return int(value)


def _check_lengths(owner, named):
    """The common number of rows of the named arrays, or a ValueError listing them."""
    lengths = {name: len(array) for name, array in named.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name} {length}" for name, length in lengths.items())
        raise ValueError(f"{owner}: every array needs the same number of rows; got {listed}.")
    n = next(iter(lengths.values()))
    if n == 0:
        raise ValueError(f"{owner}: expected at least one row; got {', '.join(lengths)} with none.")
    return n


def _arrays(owner, name, value, allow_none):
    """``value`` (an ndarray, or a dict of them) checked, with its arrays by display name."""
    if value is None and allow_none:
        return None, {}
    if isinstance(value, dict):
        if not value:
            raise ValueError(f"{owner}: expected `{name}` as an array or a non-empty dict of arrays; "
                             "got an empty dict.")
        columns = {}
        for key, column in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{owner}: the keys of `{name}` must be strings (feature names); got {key!r}.")
            columns[key] = _one_array(owner, f"{name}[{key!r}]", column)
        return columns, {f"{name}[{key!r}]": column for key, column in columns.items()}
    array = _one_array(owner, name, value)
    return array, {name: array}


def _one_array(owner, name, value):
    if hasattr(value, "iloc"):
        raise TypeError(f"{owner}: expected `{name}` as a numpy array (or a dict of them); got a pandas "
                        f"{type(value).__name__}. Use flowlearn.io.pandas_input_fn for pandas data.")
    if not isinstance(value, numpy.ndarray):
        raise TypeError(f"{owner}: expected `{name}` as a numpy array (or a dict of them); got {describe(value)}. "
                        "Convert it with numpy.asarray first.")
    if value.ndim == 0:
        raise ValueError(f"{owner}: expected `{name}` with the rows first; got a 0-d array.")
    return value


def _input_fn(features, labels, n, batch_size, num_epochs, shuffle, seed, doc):
    def input_fn():
        return ArrayBatches(features, labels, n, batch_size, num_epochs, shuffle, seed)

    input_fn.__doc__ = doc
    return input_fn


def numpy_input_fn(x, y=None, batch_size=128, num_epochs=1, shuffle=None, seed=None):
    """An input_fn over numpy arrays: batches of ``(features, labels)`` taken from ``x`` and ``y``.

    Parameters
    ----------
    x : ndarray or dict of str to ndarray
        The features; a dict gives dict features (as ``numeric_column("x")`` reads them).
    y : ndarray or dict of str to ndarray, optional
        The labels; None for prediction (labels are then None).
    batch_size : int, default=128
        Rows per batch; the last batch of each epoch keeps what is left.
    num_epochs : int or None, default=1
        Passes over the data; None repeats forever (then a trainer needs ``steps``).
    shuffle : bool
        Required, as TensorFlow required it: True for training, False for evaluation and prediction.
        Shuffling permutes row indices, a new permutation each epoch.
    seed : int, optional
        Seeds the permutations: every call of the input_fn then gives the same batches. None draws
        the seed from :func:`flowlearn.layers.set_random_seed`'s stream at each call.

    Returns
    -------
    callable
        ``input_fn()`` -> :class:`ArrayBatches`, an iterable of ``(features, labels)`` batches.

    Examples
    --------
    >>> import numpy, flowlearn as fl
    >>> input_fn = fl.io.numpy_input_fn({"x": numpy.arange(5.0)}, numpy.arange(5), batch_size=2, shuffle=False)
    >>> [(f["x"].tolist(), l.tolist()) for f, l in input_fn()]
    [([0.0, 1.0], [0, 1]), ([2.0, 3.0], [2, 3]), ([4.0], [4])]
    """
    owner = "numpy_input_fn"
    batch_size, num_epochs, shuffle, seed = _check_settings(owner, batch_size, num_epochs, shuffle, seed)
    features, named = _arrays(owner, "x", x, allow_none=False)
    labels, named_labels = _arrays(owner, "y", y, allow_none=True)
    n = _check_lengths(owner, {**named, **named_labels})
    return _input_fn(features, labels, n, batch_size, num_epochs, shuffle, seed,
                     f"Batches of {n} rows from numpy_input_fn (batch_size={batch_size}, num_epochs={num_epochs}, "
                     f"shuffle={shuffle}).")


def pandas_input_fn(x, y=None, batch_size=128, num_epochs=1, shuffle=None, seed=None, target_column=None):
    """An input_fn over a pandas DataFrame: features are a dict ``{column name: array}``.

    Parameters
    ----------
    x : pandas.DataFrame
        The features, one entry per column (names as strings, values as ``column.to_numpy()``,
        converted once, here).
    y : pandas.Series, pandas.DataFrame or ndarray, optional
        The labels: a Series or an array gives array labels, a DataFrame a dict of its columns. A
        Series or DataFrame must have ``x``'s index (same labels, same order).
    batch_size, num_epochs, shuffle, seed
        As for :func:`numpy_input_fn` (``shuffle`` required).
    target_column : str or list of str, optional
        Take the labels from these columns of ``x`` instead of ``y`` (they leave the features): a
        string gives array labels, a list a dict.

    Returns
    -------
    callable
        ``input_fn()`` -> :class:`ArrayBatches` of ``(dict features, labels)`` batches.

    Examples
    --------
    >>> import pandas, flowlearn as fl
    >>> frame = pandas.DataFrame({"age": [30, 40, 50], "income": [1.0, 2.0, 3.0], "bought": [0, 1, 1]})
    >>> input_fn = fl.io.pandas_input_fn(frame, target_column="bought", batch_size=2, shuffle=False)
    >>> features, labels = next(iter(input_fn()))
    >>> sorted(features), labels.tolist()
    (['age', 'income'], [0, 1])
    """
    owner = "pandas_input_fn"
    batch_size, num_epochs, shuffle, seed = _check_settings(owner, batch_size, num_epochs, shuffle, seed)
    if not (hasattr(x, "columns") and hasattr(x, "iloc")):
        raise TypeError(f"{owner}: expected `x` as a pandas DataFrame; got {describe(x)}. "
                        "Use flowlearn.io.numpy_input_fn for numpy arrays.")
    if target_column is not None:
        if y is not None:
            raise ValueError(f"{owner}: pass the labels as `y` or name them with `target_column`, not both. "
                             f"Received: target_column={target_column!r} and y as well.")
        targets = [target_column] if isinstance(target_column, str) else list(target_column)
        missing = [name for name in targets if name not in x.columns]
        if missing or not targets:
            raise ValueError(f"{owner}: `target_column` must name columns of x; {missing or targets} are not among "
                             f"{list(x.columns)}. Received: target_column={target_column!r}")
        y = x[target_column]
        x = x.drop(columns=targets)
    features = _frame_columns(owner, "x", x)
    labels = None
    if y is not None:
        if hasattr(y, "iloc"):
            if not x.index.equals(y.index):
                raise ValueError(f"{owner}: the index of `y` differs from the index of `x`; labels would go to the "
                                 "wrong rows. Align them first (e.g. y = y.loc[x.index]) or reset both indexes.")
            labels = _frame_columns(owner, "y", y) if hasattr(y, "columns") else y.to_numpy()
        elif isinstance(y, numpy.ndarray):
            labels = y
        else:
            raise TypeError(f"{owner}: expected `y` as a pandas Series or DataFrame (or a numpy array); got "
                            f"{describe(y)}.")
    named = {"x": next(iter(features.values()))} if features else {}
    if labels is not None:
        named["y"] = next(iter(labels.values())) if isinstance(labels, dict) else labels
    if not features:
        raise ValueError(f"{owner}: `x` has no feature columns left; got columns {list(x.columns)}.")
    n = _check_lengths(owner, named)
    return _input_fn(features, labels, n, batch_size, num_epochs, shuffle, seed,
                     f"Batches of {n} rows of {len(features)} columns from pandas_input_fn (batch_size={batch_size}, "
                     f"num_epochs={num_epochs}, shuffle={shuffle}).")


def _frame_columns(owner, name, frame):
    """A DataFrame's columns as ``{str(name): array}``, refusing names that collide as strings."""
    columns = {}
    for position, column in enumerate(frame.columns):
        key = str(column)
        if key in columns:
            raise ValueError(f"{owner}: `{name}` has two columns named {key!r}; feature names must be unique.")
        columns[key] = frame.iloc[:, position].to_numpy()
    return columns
