"""Element-wise work on large numpy arrays, split along the first axis over threads.

numpy runs a ufunc on one core; the activations of a convolutional layer (100x28x28x32 floats)
take about a millisecond per pass. Splitting the batch axis gives each core its own rows. Small
arrays, cupy arrays, and operands that do not line up along the first axis take one plain call.
"""
import numpy

from ..parallel import parallel_slices

# Smallest slice, in output elements, worth a thread of its own (~100 us of memory traffic).
SLICE_ELEMENTS = 1 << 18


def map_rows(xp, fn, shape, dtype, *operands):
    """A new array of ``shape``/``dtype`` filled by ``fn(*operands, out=out)``, slice by slice.

    ``fn`` must be element-wise with numpy broadcasting. Operands with the output's rank and
    first-axis length are sliced with it; the others (biases, scalars) are passed whole.
    """
    out = xp.empty(shape, dtype=dtype)
    size = out.size
    if xp is not numpy or len(shape) == 0 or shape[0] < 2 or size < 2 * SLICE_ELEMENTS:
        fn(*operands, out=out)
        return out
    along = [numpy.ndim(operand) == len(shape) and numpy.shape(operand)[0] == shape[0] for operand in operands]

    def work(start, stop):
        fn(*(op[start:stop] if rows else op for op, rows in zip(operands, along)), out=out[start:stop])

    parallel_slices(shape[0], work, grain=-(-SLICE_ELEMENTS * shape[0] // size))
    return out


def ufunc_rows(xp, ufunc, a, b):
    """``ufunc(a, b)`` for an arithmetic ufunc (result dtype ``result_type(a, b)``), in row slices."""
    shape = numpy.broadcast_shapes(numpy.shape(a), numpy.shape(b))
    return map_rows(xp, ufunc, shape, xp.result_type(a, b), a, b)
