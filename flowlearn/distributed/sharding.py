"""Which rows of a global batch each rank takes: one contiguous slice per rank, in rank order."""
import numpy

__all__ = ["shard_bounds", "shard_batch"]


def shard_bounds(n, size, rank):
    """``(start, stop)`` of ``rank``'s rows among ``n``: contiguous, in rank order, sizes differing by at most one.

    Contiguous slices in rank order mean that the ranks' rows, put back together in rank order, are the
    global batch itself, so gathered predictions line up with gathered labels row for row.

    >>> [shard_bounds(5, 2, rank) for rank in range(2)]
    [(0, 2), (2, 5)]
    """
    return (n * rank) // size, (n * (rank + 1)) // size


def shard_batch(batch, n, start, stop):
    """``batch`` (an array, or tuples, lists and dicts of them, None items kept) cut to rows ``start:stop``.

    Only items holding ``n`` rows are cut: anything else (a scalar, a per-batch setting) is the same
    on every rank and passes unchanged.
    """
    if batch is None:
        return None
    if isinstance(batch, dict):
        return {key: shard_batch(value, n, start, stop) for key, value in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(shard_batch(item, n, start, stop) for item in batch)
    shape = getattr(batch, "shape", None)
    if shape is None and not isinstance(batch, (str, bytes)) and hasattr(batch, "__len__"):
        batch = numpy.asarray(batch)
        shape = batch.shape
    if shape and shape[0] == n:
        return batch[start:stop]
    return batch
