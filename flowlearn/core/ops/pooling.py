"""Max and average pooling of NHWC images over (possibly overlapping) windows.

A pooling is a max or a sum over the ``ph*pw`` strided views that the window offsets read (the
geometry of :class:`flowlearn.core.ops.conv._Windows`, shared with convolution), so every pass is
a whole-batch array operation. Max pooling keeps, per output, the int8 offset of the FIRST maximum
in row-major window order (PyTorch's and TensorFlow's choice): MNIST's blank background makes
whole windows tie, and sending the gradient to every tied element would multiply it.

Max pooling runs on slices of the batch in threads (:mod:`flowlearn.core.parallel`): its strided
passes are compute-bound enough to gain from a second core (forward + backward of both MNIST
CNN pools, 9 -> 4.9 ms per step). Average pooling is a few memory-bound passes and stays serial.
"""
import math

import numpy

__all__ = ["max_pool2d", "avg_pool2d"]

from ..config import modes
from ..primitive import Primitive, apply
from .conv import SLICE_ELEMENTS, _split_batch, _Windows, _as_tensors, _check_rank4, _pair, _padding


def _index_dtype(win):
    return "int8" if win.kh * win.kw <= 127 else "int32"


def _lowest(dtype):
    """The value padding must hold so that it never wins a max."""
    return -numpy.inf if dtype.kind == "f" else numpy.iinfo(dtype).min


def _max_windows(xp, x, win, out, index):
    """Running maximum over the window offsets into ``out``, with the offset of the first maximum
    (unless ``index`` is None: no gradient will be asked for).

    A later offset takes over only where it is strictly larger, so ties keep the earliest element.
    This one loop also serves 2x2/stride 2: on the four sub-grids it measured faster than a tree
    of maxima (1.6 vs 2.3 ms for 100x28x28x32), whose index needs more passes to assemble.
    """
    padded = win.pad(xp, x, fill=_lowest(x.dtype))
    views = [win.view(padded, i, j) for i, j in win.offsets()]
    if len(views) == 1:
        out[...] = views[0]
        if index is not None:
            index[...] = 0
        return
    xp.maximum(views[0], views[1], out=out)
    if index is None:  # the maxima alone: a third of the passes (one image's 28x28x32 pooling: 27 -> 12 us)
        for view in views[2:]:
            xp.maximum(out, view, out=out)
        return
    index[...] = views[1] > views[0]
    for k in range(2, len(views)):
        larger = (views[k] > out).view(xp.int8)
        xp.maximum(out, views[k], out=out)
        # index = where(larger, k, index), in integer arithmetic: ``where`` is 4x slower on int8
        step = k - index
        step *= larger
        index += step


def _route_to_maxima(xp, grad, index, win, grad_x):
    """Send each output's gradient to the first maximum of its window, in the padded ``grad_x``.

    Where windows do not overlap each offset's view is simply written (``grad_x`` may start
    uninitialised when the views tile it exactly); where they overlap, the views accumulate.
    """
    overlapping = win.sh < win.kh or win.sw < win.kw
    for k, (i, j) in enumerate(win.offsets()):
        view = win.view(grad_x, i, j)
        if overlapping:
            view += grad * (index == k)
        else:
            xp.multiply(grad, index == k, out=view)


def _gradient_buffer(xp, x_shape, dtype, win):
    """The padded input-gradient buffer: uninitialised when the windows tile the input exactly."""
    return xp.empty(x_shape, dtype=dtype) if win.covers(x_shape) else win.zeros_padded(xp, x_shape, dtype)


class MaxPool2D(Primitive):
    """Keeps the int8 offset of each window's first maximum: a quarter of the output's float32 bytes."""

    name = "max_pool2d"

    @staticmethod
    def forward(xp, x, pool_size, strides, padding):
        win = _Windows(x.shape[1:3], pool_size, strides, (1, 1), padding)
        shape = (x.shape[0], win.out_h, win.out_w, x.shape[3])
        out = xp.empty(shape, dtype=x.dtype)
        # Under no_grad (prediction) nothing keeps what forward saves: no index of the maxima.
        index = xp.empty(shape, dtype=_index_dtype(win)) if modes.grad_enabled else None

        def work(start, stop):
            _max_windows(xp, x[start:stop], win, out[start:stop], None if index is None else index[start:stop])

        _split_batch(xp, x.shape[0], work, math.prod(x.shape[1:]), SLICE_ELEMENTS)
        return out, (index, x.shape)

    @staticmethod
    def backward(xp, grad, saved, needs, pool_size, strides, padding):
        index, x_shape = saved
        win = _Windows(x_shape[1:3], pool_size, strides, (1, 1), padding)
        grad_x = _gradient_buffer(xp, x_shape, grad.dtype, win)

        def work(start, stop):
            _route_to_maxima(xp, grad[start:stop], index[start:stop], win, grad_x[start:stop])

        _split_batch(xp, x_shape[0], work, math.prod(x_shape[1:]), SLICE_ELEMENTS)
        return (win.crop(grad_x, x_shape),)


class AvgPool2D(Primitive):
    """Mean over each window's valid (unpadded) elements, as TensorFlow counts them."""

    name = "avg_pool2d"

    @staticmethod
    def forward(xp, x, pool_size, strides, padding):
        win = _Windows(x.shape[1:3], pool_size, strides, (1, 1), padding)
        padded = win.pad(xp, x)
        views = [win.view(padded, i, j) for i, j in win.offsets()]
        out = views[0] + views[1] if len(views) > 1 else views[0].copy()
        for view in views[2:]:
            out += view
        scale = _reciprocal_counts(xp, x.shape, win, x.dtype)
        out *= scale
        return out, (scale, x.shape)

    @staticmethod
    def backward(xp, grad, saved, needs, pool_size, strides, padding):
        scale, x_shape = saved
        win = _Windows(x_shape[1:3], pool_size, strides, (1, 1), padding)
        share = grad * scale
        grad_x = _gradient_buffer(xp, x_shape, grad.dtype, win)
        overlapping = win.sh < win.kh or win.sw < win.kw
        for view in (win.view(grad_x, i, j) for i, j in win.offsets()):
            if overlapping:
                view += share
            else:
                view[...] = share
        return (win.crop(grad_x, x_shape),)


def _reciprocal_counts(xp, x_shape, win, dtype):
    """1 / (number of unpadded elements) per window: a Python float, or (out_h, out_w, 1) with padding."""
    if not win.padded:
        return 1.0 / (win.kh * win.kw)
    top, _, left, _ = win.pads

    def counts(size, k, s, before, n_out):
        return [min(o * s - before + k, size) - max(o * s - before, 0) for o in range(n_out)]

    rows = numpy.array(counts(x_shape[1], win.kh, win.sh, top, win.out_h), dtype=dtype)
    cols = numpy.array(counts(x_shape[2], win.kw, win.sw, left, win.out_w), dtype=dtype)
    return xp.asarray(1 / numpy.outer(rows, cols)[:, :, None]).astype(dtype, copy=False)


def _pool_args(op, x, pool_size, strides, padding):
    x = _as_tensors(x)[0]
    _check_rank4(op, "x", x, "NHWC")
    pool_size = _pair(op, "pool_size", pool_size)
    strides = pool_size if strides is None else _pair(op, "strides", strides)
    padding = _padding(op, padding)
    win = _Windows(x.shape[1:3], pool_size, strides, (1, 1), padding)
    if win.out_h < 1 or win.out_w < 1:
        raise ValueError(
            f"{op}: pool_size {pool_size} is larger than the input's spatial size {tuple(x.shape[1:3])} "
            "with padding='valid'; use padding='same' or a smaller pool."
        )
    return x, dict(pool_size=pool_size, strides=strides, padding=padding)


def max_pool2d(x, pool_size=2, strides=None, padding="valid"):
    """Max pooling of NHWC images; the gradient goes to the first maximum of each window.

    Parameters
    ----------
    x : Tensor of shape (batch, height, width, channels)
    pool_size : int or (int, int)
    strides : int or (int, int), optional
        Defaults to ``pool_size``; smaller strides give overlapping windows (e.g. pool 3, stride 2).
    padding : {"valid", "same"}, case-insensitive
        "same" pads as TensorFlow does (output ceil(size / stride)); padding never wins the max.

    >>> import numpy as np, flowlearn as fl
    >>> x = fl.tensor(np.arange(16.0).reshape(1, 4, 4, 1))
    >>> fl.ops.max_pool2d(x).numpy()[0, :, :, 0]
    array([[ 5.,  7.],
           [13., 15.]], dtype=float32)
    """
    x, attrs = _pool_args("max_pool2d", x, pool_size, strides, padding)
    return apply(MaxPool2D, (x,), **attrs)


def avg_pool2d(x, pool_size=2, strides=None, padding="valid"):
    """Average pooling of NHWC images (same arguments as :func:`max_pool2d`).

    With ``padding="same"`` each window averages only its unpadded elements, as TensorFlow does.

    >>> import numpy as np, flowlearn as fl
    >>> x = fl.tensor(np.arange(9.0).reshape(1, 3, 3, 1))
    >>> fl.ops.avg_pool2d(x, padding="same").numpy()[0, :, :, 0]
    array([[2. , 3.5],
           [6.5, 8. ]], dtype=float32)
    """
    x, attrs = _pool_args("avg_pool2d", x, pool_size, strides, padding)
    return apply(AvgPool2D, (x,), **attrs)
