"""``dask_input_fn``: a dask Array or DataFrame streamed to a trainer one partition at a time.

Data larger than memory (``dd.read_parquet``, ``dd.read_csv``, a chunked ``dask.array``) reaches
``Sequential.fit`` and the model_fn ``Estimator`` as ``(features, labels)`` batches without ever being
materialised whole. Each pass goes through small stages, each bounded in memory:

1. *order*: the partitions (row blocks of an array, partitions of a DataFrame) in a new random order each
   pass when shuffling, else in order;
2. *compute*: one partition at a time, on whatever scheduler dask uses (a ``distributed.Client`` when one is
   active, so a cluster reads and preprocesses while this process trains); a background thread computes the
   next ``prefetch`` partitions while the current one is batched;
3. *shuffle*: rows pass through a buffer of at most ``shuffle_buffer_size`` rows (the stage
   :func:`flowlearn.io.csv_input_fn` uses), so rows of neighbouring partitions mix;
4. *batch*: batches of exactly ``batch_size`` rows, across partition boundaries; the last of each pass keeps
   what is left.

At most ``prefetch + 2`` partitions (the one being batched, up to ``prefetch`` waiting, the one the thread is
computing) and the shuffle buffer are held at any time, whatever the size of the data.
dask is imported only when :func:`dask_input_fn` is called (the ``dask`` extra).
"""
import numpy

from ..layers.data_adapter import INFINITE, UNKNOWN, describe
from ._prefetch import prefetched
from .csv import _batched, _shuffled
from .inputs import _check_settings, _count, _frame_columns, _passes, _seed_or_drawn

__all__ = ["DaskBatches", "DaskInputFn", "dask_input_fn"]

_OWNER = "dask_input_fn"
_THREAD_PREFIX = "flowlearn-dask"
# The keys of an array partition's features and labels inside the pipeline (a DataFrame's use its column names).
_FEATURES, _LABELS = "\0features", "\0labels"


def _import_dask():
    try:
        import dask  # noqa: F401 - imported for its side: the error below when missing
        import dask.array
        import dask.dataframe
    except ImportError as error:
        raise ImportError(
            f"{_OWNER} needs dask, which is not installed: pip install 'flowlearn[dask]' (dask, distributed, "
            f"dask-ml). The import failed with: {error}"
        ) from error
    return dask


def dask_input_fn(data, label=None, batch_size=128, num_epochs=1, shuffle=True, seed=None,
                  shuffle_buffer_size=10000, prefetch=1):
    """An input_fn streaming a dask Array or DataFrame as ``(features, labels)`` batches, in bounded memory.

    Parameters
    ----------
    data : dask.array.Array or dask.dataframe.DataFrame
        The features. An array gives array features (its rows first; any chunking of the other axes is merged
        per row block). A DataFrame gives dict features ``{column name: array}``, as
        :func:`flowlearn.io.pandas_input_fn` does.
    label : dask.array.Array, str or list of str, optional
        With an array ``data``: a dask array of labels with the same row chunks. With a DataFrame: the name of
        the label column (array labels) or a list of names (dict labels); they leave the features. None:
        labels are None (prediction).
    batch_size : int, default=128
        Rows per batch; batches run across partition boundaries, the last of each pass keeps what is left.
    num_epochs : int or None, default=1
        Passes over the data; None repeats forever (then a trainer needs ``steps``).
    shuffle : bool, default=True
        Visit the partitions in a new random order each pass and mix rows through the shuffle buffer. False
        gives the rows in their order (for evaluation and prediction).
    seed : int, optional
        Seeds the shuffling: every call of the input_fn gives the same sequence of orders. None draws the seed
        at each call from the stream :func:`flowlearn.layers.set_random_seed` seeds.
    shuffle_buffer_size : int, default=10000
        Rows held by the shuffle buffer (its memory bound); one larger than the data shuffles fully.
    prefetch : int, default=1
        Partitions computed ahead by a background thread while the current one is batched; 0 computes each
        partition when it is needed.

    Returns
    -------
    input_fn : DaskInputFn
        A zero-argument callable; each call returns a :class:`DaskBatches`, an iterable of ``(features,
        labels)`` batches whose ``cardinality()`` is known for arrays with known chunk sizes.

    Examples
    --------
    >>> import dask.dataframe as dd  # doctest: +SKIP
    >>> frame = dd.read_parquet("train/*.parquet")  # doctest: +SKIP
    >>> input_fn = fl.io.dask_input_fn(frame, label="target", batch_size=256, seed=0)  # doctest: +SKIP
    >>> model.fit(input_fn, epochs=5)  # doctest: +SKIP
    """
    dask = _import_dask()
    batch_size, num_epochs, shuffle, seed = _check_settings(_OWNER, batch_size, num_epochs, shuffle, seed)
    shuffle_buffer_size = _count(_OWNER, "shuffle_buffer_size", shuffle_buffer_size)
    prefetch = _count(_OWNER, "prefetch", prefetch, minimum=0)
    if isinstance(data, dask.array.Array):
        partitions, n_rows = _array_partitions(dask, data, label)
        split = _split_array
    elif isinstance(data, dask.dataframe.DataFrame):
        partitions, split, n_rows = _frame_partitions(data, label), _FrameSplit(label), None
    else:
        raise TypeError(f"{_OWNER}: expected `data` as a dask Array or a dask DataFrame; got {describe(data)}. "
                        "For data in memory use flowlearn.io.numpy_input_fn or pandas_input_fn.")
    return DaskInputFn(partitions, split, n_rows, batch_size, num_epochs, shuffle, seed, shuffle_buffer_size,
                       prefetch)


# -- partitions ------------------------------------------------------------------------------------------
def _row_blocks(array):
    """One delayed numpy block per chunk of rows (the other axes' chunks merged, so a block is whole rows)."""
    if array.ndim == 0:
        raise ValueError(f"{_OWNER}: expected arrays with the rows first; got a 0-d dask array.")
    whole_rows = array.rechunk({axis: -1 for axis in range(1, array.ndim)})
    return list(whole_rows.to_delayed().reshape(-1))


def _array_partitions(dask, data, label):
    features = _row_blocks(data)
    if label is None:
        return [{_FEATURES: block} for block in features], _known_rows(data)
    if not isinstance(label, dask.array.Array):
        raise TypeError(f"{_OWNER}: with a dask array as `data`, expected `label` as a dask array of the same rows "
                        f"(or None); got {describe(label)}.")
    known = not any(numpy.isnan(size) for size in data.chunks[0] + label.chunks[0])
    # Unknown sizes (a DataFrame's to_dask_array() without lengths): block i of each is taken to be the same
    # rows, and each computed partition is checked (_columns_of).
    must_match = known or len(label.chunks[0]) != len(data.chunks[0])
    if must_match and label.chunks[0] != data.chunks[0]:
        if not known or sum(label.chunks[0]) != sum(data.chunks[0]):
            raise ValueError(
                f"{_OWNER}: `label` must have the rows of `data`, in the same chunks; got row chunks "
                f"{label.chunks[0]} for label and {data.chunks[0]} for data. Chunk both the same way (e.g. "
                "label.rechunk({0: data.chunks[0]}))."
            )
        label = label.rechunk({0: data.chunks[0]})  # same rows, other chunking: align the labels to the data's
    labels = _row_blocks(label)
    return [{_FEATURES: x, _LABELS: y} for x, y in zip(features, labels)], _known_rows(data)


def _known_rows(array):
    rows = array.shape[0]
    return None if rows is None or (isinstance(rows, float) and numpy.isnan(rows)) else int(rows)


def _split_array(chunk):
    return chunk[_FEATURES], chunk.get(_LABELS)


def _frame_partitions(frame, label):
    names = [str(column) for column in frame.columns]
    if label is not None:
        targets = [label] if isinstance(label, str) else list(label) if isinstance(label, (list, tuple)) else None
        if not targets or not all(isinstance(name, str) for name in targets):
            raise TypeError(f"{_OWNER}: with a dask DataFrame as `data`, expected `label` as a column name or a list "
                            f"of them (or None); got {describe(label)}.")
        missing = [name for name in targets if name not in names]
        if missing:
            raise ValueError(f"{_OWNER}: `label` must name columns of data; {missing} are not among {names}. "
                             f"Received: label={label!r}")
        if len(targets) == len(names):
            raise ValueError(f"{_OWNER}: `data` has no feature columns left once the label columns {targets} leave.")
    return [{"frame": part} for part in frame.to_delayed()]


class _FrameSplit:
    """A computed pandas partition's columns -> the pipeline's dict, and a batch -> ``(features, labels)``."""

    def __init__(self, label):
        self._label = label

    def __call__(self, batch):
        if self._label is None:
            return batch, None
        if isinstance(self._label, str):
            return batch, batch.pop(self._label)
        return batch, {name: batch.pop(name) for name in self._label}


def _columns_of(computed):
    """A computed partition as the pipeline's dict of arrays (rows first)."""
    if "frame" in computed:
        return _frame_columns(_OWNER, "data", computed["frame"])
    columns = {key: numpy.asarray(value) for key, value in computed.items()}
    if _LABELS in columns and len(columns[_LABELS]) != len(columns[_FEATURES]):
        raise ValueError(f"{_OWNER}: a partition of `data` has {len(columns[_FEATURES])} rows and the matching "
                         f"partition of `label` {len(columns[_LABELS])}; they must hold the same rows.")
    return columns


# -- the input_fn ------------------------------------------------------------------------------------------
class DaskInputFn:
    """The input_fn :func:`dask_input_fn` returns: call it for a :class:`DaskBatches`.

    Attributes
    ----------
    n_partitions : int
        The partitions (row blocks) streamed each pass.
    """

    def __init__(self, partitions, split, n_rows, batch_size, num_epochs, shuffle, seed, buffer_size, prefetch):
        self._partitions, self._split, self._n_rows = partitions, split, n_rows
        self.batch_size, self.num_epochs, self.shuffle = batch_size, num_epochs, shuffle
        self._seed, self._buffer_size, self._prefetch = seed, buffer_size, prefetch
        self.n_partitions = len(partitions)

    def __repr__(self):
        return (f"DaskInputFn({self.n_partitions} partitions, batch_size={self.batch_size}, "
                f"num_epochs={self.num_epochs}, shuffle={self.shuffle})")

    def __call__(self):
        seed = _seed_or_drawn(self._seed, self.shuffle)
        return DaskBatches(self, numpy.random.default_rng(seed))

    def _cardinality(self):
        if self.num_epochs is None:
            return INFINITE
        if self._n_rows is None:
            return UNKNOWN
        return self.num_epochs * -(-self._n_rows // self.batch_size)

    def _iterate(self, rng):
        for _ in _passes(self.num_epochs):
            order = rng.permutation(self.n_partitions) if self.shuffle else range(self.n_partitions)
            chunks = self._computed(order)
            pieces = _shuffled(chunks, self._buffer_size, rng) if self.shuffle else chunks
            rows = 0
            try:
                for batch in _batched(pieces, self.batch_size):
                    rows += len(next(iter(batch.values())))
                    yield self._split(batch)
            finally:
                pieces.close()
                chunks.close()
            if rows == 0 and self.num_epochs is None:
                raise ValueError(f"{_OWNER}: num_epochs=None, but the data holds no rows to repeat.")

    def _computed(self, order):
        """The partitions in ``order``, computed one at a time; with ``prefetch``, by a thread reading ahead
        (the read-ahead stage csv_input_fn and image_input_fn use), at most ``prefetch`` of them waiting."""
        if not self._prefetch:
            for index in order:
                yield _columns_of(self._compute(index))
            return

        def partitions():
            for index in order:
                yield None, self._compute(index)

        for _, computed in prefetched(partitions, self._prefetch, _THREAD_PREFIX, _OWNER):
            yield _columns_of(computed)

    def _compute(self, index):
        import dask  # imported where used: flowlearn.io imports this module on machines without dask

        (computed,) = dask.compute(self._partitions[index])
        return computed


class DaskBatches:
    """What a call of a :class:`DaskInputFn` returns: an iterable of ``(features, labels)`` batches.

    Each iteration computes the partitions again and draws new orders from the generator seeded once at the
    call (tf.data's ``reshuffle_each_iteration``). ``cardinality()`` is the number of batches when the number
    of rows is known (dask arrays with known chunks), :data:`~flowlearn.layers.data_adapter.INFINITE` when
    ``num_epochs`` is None, else :data:`~flowlearn.layers.data_adapter.UNKNOWN`.
    """

    def __init__(self, input_fn, rng):
        self._input_fn, self._rng = input_fn, rng

    def cardinality(self):
        """Batches per iteration where the rows are counted, else ``INFINITE`` or ``UNKNOWN`` (see above)."""
        return self._input_fn._cardinality()

    def __iter__(self):
        return self._input_fn._iterate(self._rng)
