"""Convolutions on NHWC images: ``conv2d`` (kernels HWIO) and ``conv2d_transpose`` (kernels HWOI).

Both are im2col + one GEMM. im2col is a single copy from an ``as_strided`` view of all windows
into a recycled buffer, so there is no per-pixel Python. The input gradient of a convolution is
``kh*kw`` small GEMMs, each added straight into a zero-padded gradient buffer: that beat one big
GEMM followed by col2im, whose scatter re-reads a matrix ``kh*kw`` times the size of the image
(17.5 vs 35 ms for 100x14x14x32 -> 64, 5x5). ``conv2d_transpose`` is that input gradient run
forwards, so the two ops share all their code.

Each product runs over slices of the batch, one per thread (:mod:`flowlearn.core.parallel`): a
slice builds its own rows of the patch matrix, multiplies them on single-threaded BLAS and
accumulates its own images' input gradient, so both cores work through the copies and additions
that sit between the GEMMs, and no BLAS worker has to be woken for each of the 25 small products.

The window geometry (output size, TensorFlow's "same" padding, the strided view each offset reads)
lives in :class:`_Windows`, which pooling uses too.
"""
import collections
import math
import os
import threading

import numpy

__all__ = ["conv2d", "conv2d_transpose"]

from ..parallel import parallel_slices
from ..primitive import Primitive, apply
from ..tensor import Tensor, as_tensor
from ._broadcast import reduce_to_shape
from ._gemm import SMALL, gemm

PADDINGS = ("valid", "same")
_FUSED_ACTIVATIONS = (None, "relu")
# Smallest slice of the batch, in elements, worth a thread for a pass over memory (a gradient mask,
# pooling): about 100 us of work.
SLICE_ELEMENTS = 1 << 18
# Rows of a convolution's output finished (bias, ReLU) right after they are multiplied: a quarter of L2.
_FINISH_CHUNK_BYTES = 1 << 18


# -- argument checks shared with pooling ----------------------------------------------------------
def _as_tensors(x, kernel=None):
    """``x`` (and ``kernel``) as Tensors; array-likes take the dtype and device of the other one."""
    if not isinstance(x, Tensor):
        x = as_tensor(x, like=kernel if isinstance(kernel, Tensor) else None)
    if kernel is not None and not isinstance(kernel, Tensor):
        kernel = as_tensor(kernel, like=x)
    return x, kernel


def _check_rank4(op, name, tensor, layout):
    if tensor.ndim != 4:
        raise ValueError(f"{op}: expected `{name}` of rank 4 ({layout}); got shape {tuple(tensor.shape)}.")


def _pair(op, name, value):
    """An int or a pair of ints as a tuple of two positive Python ints."""
    pair = (value, value) if isinstance(value, (int, numpy.integer)) else value
    try:
        pair = tuple(pair)
        ok = len(pair) == 2 and all(isinstance(v, (int, numpy.integer)) and not isinstance(v, bool) and v > 0
                                    for v in pair)
    except TypeError:
        ok = False
    if not ok or isinstance(value, bool):
        raise ValueError(f"{op}: expected `{name}` to be a positive int or a pair of positive ints; got {value!r}.")
    return int(pair[0]), int(pair[1])


def _padding(op, value):
    name = value.lower() if isinstance(value, str) else value
    if name not in PADDINGS:
        raise ValueError(f"{op}: unknown padding {value!r}; expected one of {PADDINGS} (case-insensitive).")
    return name


def _same_pads(size, k, s, d):
    """TensorFlow's "same": output ceil(size / s), the odd pixel of padding at the bottom/right."""
    total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


# -- geometry ------------------------------------------------------------------------------------
class _Windows:
    """Where each offset (i, j) of a ``kh x kw`` window reads in the padded NHWC input.

    ``view(padded, i, j)`` is the strided (N, out_h, out_w, C) slice that offset (i, j) of every
    window sees; a convolution or a pooling is a sum (or a max) of these ``kh*kw`` views.
    """

    __slots__ = ("kh", "kw", "sh", "sw", "dh", "dw", "out_h", "out_w", "pads")

    def __init__(self, in_hw, k_hw, strides, dilation, padding):
        (self.kh, self.kw), (self.sh, self.sw), (self.dh, self.dw) = k_hw, strides, dilation
        if padding == "same":
            self.pads = (_same_pads(in_hw[0], self.kh, self.sh, self.dh)
                         + _same_pads(in_hw[1], self.kw, self.sw, self.dw))
        else:
            self.pads = (0, 0, 0, 0)
        top, bottom, left, right = self.pads
        self.out_h = (in_hw[0] + top + bottom - (self.kh - 1) * self.dh - 1) // self.sh + 1
        self.out_w = (in_hw[1] + left + right - (self.kw - 1) * self.dw - 1) // self.sw + 1

    def offsets(self):
        return [(i, j) for i in range(self.kh) for j in range(self.kw)]

    def view(self, padded, i, j):
        top, left = i * self.dh, j * self.dw
        return padded[:, top:top + self.sh * (self.out_h - 1) + 1:self.sh,
                      left:left + self.sw * (self.out_w - 1) + 1:self.sw]

    @property
    def padded(self):
        return any(self.pads)

    def pad(self, xp, x, fill=0):
        """``x`` with the padding around it (``x`` itself when there is none); only the border is filled."""
        if not self.padded:
            return x
        top, bottom, left, right = self.pads
        n, h, w, c = x.shape
        out = xp.empty((n, h + top + bottom, w + left + right, c), dtype=x.dtype)
        out[:, :top] = fill
        out[:, top + h:] = fill
        out[:, top:top + h, :left] = fill
        out[:, top:top + h, left + w:] = fill
        out[:, top:top + h, left:left + w] = x
        return out

    def zeros_padded(self, xp, shape, dtype):
        """A zero gradient buffer for an input of ``shape`` plus its padding."""
        top, bottom, left, right = self.pads
        n, h, w, c = shape
        return xp.zeros((n, h + top + bottom, w + left + right, c), dtype=dtype)

    def crop(self, padded, shape):
        """The inverse of :meth:`pad`: the (N, H, W, C) interior of a padded array."""
        if not self.padded:
            return padded
        top, _, left, _ = self.pads
        return padded[:, top:top + shape[1], left:left + shape[2]]

    def covers(self, shape):
        """True when the windows touch every input pixel exactly once (no padding, no overlap, no gap)."""
        return (not self.padded and (self.kh, self.kw) == (self.sh, self.sw) and (self.dh, self.dw) == (1, 1)
                and shape[1] == self.kh * self.out_h and shape[2] == self.kw * self.out_w)


# -- patch buffers: checked out by a forward pass, given back with the node that keeps them ---------
class _BufferPool:
    """Uninitialised numpy buffers handed out as :class:`_Lease` objects and reused once given back.

    Fresh arrays above glibc's mmap threshold (32 MB at most) cost page faults on every training step:
    a fresh 63 MB patch matrix took 7.9 ms to fill, a recycled one 3.1 ms. A buffer goes back to the
    pool only when its lease is freed, so two live graphs never share one. One pool serves every
    thread (a lease may be freed in another thread than the one that took it); it keeps the most
    recently given back buffers, up to ``max_bytes`` in all. Buffers under ``min_bytes`` are plain
    ``numpy.empty`` (malloc reuses those cheaply), and so is everything on cupy, whose memory pool
    already recycles.
    """

    def __init__(self, min_bytes, max_bytes):
        self.min_bytes, self.max_bytes = min_bytes, max_bytes
        self._lock = threading.Lock()
        self._free = []  # buffers ready to hand out, least recently given back first
        # Given back by _Lease.__del__, which may run in any thread, even inside checkout (a garbage
        # collection there): it only appends here, and checkout moves them to _free under the lock.
        self._returned = collections.deque()

    def checkout(self, xp, shape, dtype):
        """A :class:`_Lease` on an uninitialised array of ``shape`` and ``dtype``."""
        dtype = numpy.dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        if xp is not numpy or not self.min_bytes <= nbytes <= self.max_bytes:
            return _Lease(xp.empty(shape, dtype=dtype), None)
        array = None
        with self._lock:
            while self._returned:
                self._free.append(self._returned.popleft())
            for index in range(len(self._free) - 1, -1, -1):
                if self._free[index].shape == shape and self._free[index].dtype == dtype:
                    array = self._free.pop(index)
                    break
            held = sum(buffer.nbytes for buffer in self._free)
            while held > self.max_bytes:
                held -= self._free.pop(0).nbytes
        if array is None:
            array = numpy.empty(shape, dtype=dtype)
        return _Lease(array, self)

    def give_back(self, array):
        self._returned.append(array)

    def free_buffers(self):
        """The buffers ready to be handed out (a list, for tests and debugging)."""
        with self._lock:
            return list(self._free) + list(self._returned)

    def clear(self):
        """Drop every buffer not checked out."""
        with self._lock:
            self._free.clear()
            self._returned.clear()


class _Lease:
    """One buffer of a :class:`_BufferPool`, checked out for as long as this object lives.

    A convolution's forward pass puts the lease of its patch matrix in the node's saved tuple. The node
    drops it when backward has used it (``Node.release``; kept with ``retain_graph=True``) or when the
    node itself is freed, and at once when nothing is recorded (under ``no_grad``): CPython frees an
    object when its last reference goes, and the buffer is back in the pool for the next forward pass.
    Only the lease may keep the buffer: views of ``lease.array`` live no longer than the call that
    made them.
    """

    __slots__ = ("array", "_pool")

    def __init__(self, array, pool):
        self.array, self._pool = array, pool

    def __del__(self):
        if self._pool is not None:
            self._pool.give_back(self.array)


_patch_pool = _BufferPool(min_bytes=1 << 20, max_bytes=256 << 20)


def _after_fork_in_child():
    # A lock held by a parent thread at the fork would never be released in the child.
    _patch_pool._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# -- the three products of a convolution, each split over slices of the batch ----------------------
def _split_batch(xp, batch, work, per_image, minimum, uses_blas=False):
    """``work(start, stop)`` over slices of the batch: threads on numpy, one call on cupy.

    A slice gets a thread of its own only with at least ``minimum`` units of work, counted as
    ``per_image`` per image (multiply-adds for products, elements for passes over memory).
    """
    if xp is not numpy:
        return [work(0, batch)]
    return parallel_slices(batch, work, grain=-(-minimum // max(per_image, 1)), uses_blas=uses_blas)


def _patch_buffer(xp, batch, channels, win, dtype):
    """A :class:`_Lease` on an uninitialised (recycled) buffer for the patch matrix of ``batch`` images.

    Rows are in NHW order and columns in (kh, kw, C) order. Single-channel inputs are laid out
    transposed, (kh, kw, N, out_h, out_w), so that the copy streams whole image rows rather than
    ``kw`` floats at a time; the GEMM takes the transposed matrix at no cost.
    """
    if channels == 1:
        shape = (win.kh, win.kw, batch, win.out_h, win.out_w)
    else:
        shape = (batch, win.out_h, win.out_w, win.kh, win.kw, channels)
    return _patch_pool.checkout(xp, shape, dtype)


def _images(buffer, channels, start, stop):
    """The part of a patch buffer that holds images ``start:stop``."""
    return buffer[:, :, start:stop] if channels == 1 else buffer[start:stop]


def _fill_patches(xp, x_padded, win, dest):
    """Copy every window of the padded NHWC ``x_padded`` into ``dest`` (a :func:`_images` part).

    One copy from an ``as_strided`` view of all windows: with stride and dilation 1 along the
    width, each (kw, C) row of a window is one contiguous run of the input, so the copy streams
    ``kw*C`` floats at a time (4x faster than ``kh*kw`` slice copies of ``C`` floats each).
    """
    n, _, _, c = x_padded.shape
    s_n, s_h, s_w, s_c = x_padded.strides
    outer = (n, win.out_h, win.out_w), (s_n, s_h * win.sh, s_w * win.sw)
    if c == 1:
        shape, strides = (win.kh, win.kw) + outer[0], (s_h * win.dh, s_w * win.dw) + outer[1]
    else:
        shape, strides = outer[0] + (win.kh, win.kw, c), outer[1] + (s_h * win.dh, s_w * win.dw, s_c)
    if xp is numpy and x_padded.flags.c_contiguous:
        # The ndarray constructor over the array's own buffer: as_strided's __array_interface__ round trip
        # cost 2.7 us a call against 0.4, a tenth of one small image's convolution. It also checks that
        # the windows stay inside the buffer.
        windows = numpy.ndarray(shape, x_padded.dtype, x_padded, 0, strides)
    else:
        windows = xp.lib.stride_tricks.as_strided(x_padded, shape=shape, strides=strides)
    dest[...] = windows


def _patch_matrix(part, channels, win):
    """A patch buffer (or part of one) as the 2-D (rows, kh*kw*C) matrix the GEMMs use."""
    if channels == 1:
        return part.reshape(win.kh * win.kw, -1).T
    return part.reshape(-1, win.kh * win.kw * channels)


_zero_runs = {}  # dtype -> a read-only run of zeros, grown as needed


def _zeros(size, dtype):
    """A numpy run of at least ``size`` zeros of ``dtype`` that is never written: the ReLU's other operand.

    numpy's ``maximum`` against an array of zeros runs its SIMD loop; against the scalar 0 it took three
    to four times as long (25,088 floats: 2.5 vs 9.9 us; 100x28x28x32: 0.28 vs 0.92 ms). cupy is as
    fast with the scalar.
    """
    run = _zero_runs.get(numpy.dtype(dtype))
    if run is None or run.size < size:
        run = numpy.zeros(size, dtype=dtype)
        run.flags.writeable = False
        _zero_runs[run.dtype] = run  # two threads growing it at once each keep a valid run
    return run


def _pointwise(win):
    return (win.kh, win.kw, win.sh, win.sw) == (1, 1, 1, 1)


def _convolve(xp, x, kernel, win, bias=None, relu=False):
    """The patch matrix of ``x`` and, unless ``kernel`` is None, the convolution ``patches @ kernel``.

    Returns ``(output or None, patches)``: output NHWC, patches the :class:`_Patches` the kernel
    gradient reads (whose buffer goes back to the pool when it is freed). Each slice of the batch
    builds its own rows of the patch matrix and multiplies them; with a ``bias`` or ``relu`` to
    apply, it multiplies in chunks of rows small enough to be finished while still in its core's
    cache.
    """
    n, c = x.shape[0], x.shape[3]
    rows = win.out_h * win.out_w
    pointwise = _pointwise(win)
    finishing = kernel is not None and (bias is not None or relu)
    chunk = n * rows
    if finishing and not pointwise:
        chunk = max(1, _FINISH_CHUNK_BYTES // (x.dtype.itemsize * kernel.shape[3]))
    # The bias repeated over a chunk's rows, added as one flat run: broadcasting a (C,) bias over
    # rows runs numpy's inner loop C elements at a time (0.6 vs 0.2 ms for 100x28x28x32).
    tiled_bias = xp.tile(bias, min(chunk, n * rows)) if finishing and bias is not None else None
    floor = None
    if finishing and relu and xp is numpy:
        floor = _zeros(min(chunk * kernel.shape[3], _FINISH_CHUNK_BYTES // x.dtype.itemsize), x.dtype)

    def finish(block):
        flat = block.reshape(-1)
        if tiled_bias is not None:
            flat += tiled_bias[:flat.size]
        if floor is not None:
            for first in range(0, flat.size, floor.size):  # one pass unless pointwise
                part = flat[first:first + floor.size]
                numpy.maximum(part, floor[:part.size], out=part)
        elif relu:
            xp.maximum(flat, 0, out=flat)

    kernel_matrix = None if kernel is None else kernel.reshape(-1, kernel.shape[3])
    if pointwise:  # a 1x1 kernel at stride 1 reads each pixel once: x is its own patch matrix
        patches = _Patches(win.pad(xp, x).reshape(-1, c))
        output = None if kernel is None else gemm(xp, patches.matrix, kernel_matrix, split=True)
        if finishing:
            finish(output)
    else:
        lease = _patch_buffer(xp, n, c, win, x.dtype)
        buffer = lease.array
        patches = _Patches(lease, c, win)
        output = None if kernel is None else xp.empty((n * rows, kernel.shape[3]), dtype=x.dtype)
        # Rows of the whole batch's matrix: for single-channel patches, laid out transposed, the matrix
        # of a part of the batch would be a reshaped copy (a slice's 3.9 MB for 50 MNIST images).
        whole = _patch_matrix(buffer, c, win)

        def work(start, stop):
            _fill_patches(xp, win.pad(xp, x[start:stop]), win, _images(buffer, c, start, stop))
            if output is None:
                return
            matrix, block = whole[start * rows:stop * rows], output[start * rows:stop * rows]
            for first in range(0, len(block), chunk):
                xp.matmul(matrix[first:first + chunk], kernel_matrix, out=block[first:first + chunk])
                if finishing:
                    finish(block[first:first + chunk])

        flops = rows * win.kh * win.kw * c * (1 if kernel is None else kernel.shape[3])
        _split_batch(xp, n, work, flops, SMALL, uses_blas=True)
    if output is not None:
        output = output.reshape(n, win.out_h, win.out_w, kernel.shape[3])
    return output, patches


class _Patches:
    """The patch matrix a convolution's kernel gradient reads: ``x`` itself for a pointwise kernel, or
    a pooled buffer held through its :class:`_Lease` (never through a view, which would outlive it)."""

    __slots__ = ("_array", "_lease", "_channels", "_win")

    def __init__(self, source, channels=None, win=None):
        if isinstance(source, _Lease):
            self._array, self._lease = None, source
        else:
            self._array, self._lease = source, None
        self._channels, self._win = channels, win

    @property
    def matrix(self):
        """The 2-D (rows, kh*kw*C) matrix, a view valid while this object lives."""
        if self._lease is None:
            return self._array
        return _patch_matrix(self._lease.array, self._channels, self._win)


def _relu_grad(xp, grad, output):
    """``grad`` where the ReLU's ``output`` is positive, zero elsewhere: a new array, by batch slices."""
    masked = xp.empty(grad.shape, dtype=grad.dtype)

    def work(start, stop):
        xp.multiply(grad[start:stop], output[start:stop] > 0, out=masked[start:stop])

    _split_batch(xp, grad.shape[0], work, math.prod(grad.shape[1:]), SLICE_ELEMENTS)
    return masked


def _input_grad(xp, grad, kernel, x_shape, win):
    """d(conv)/d(x) for output gradient ``grad`` (N, out_h, out_w, O): one small GEMM per offset.

    Each offset's (rows, C) product is added into the strided view of the padded gradient that the
    offset read in the forward pass; overlapping offsets accumulate. That beat one big GEMM followed
    by col2im, whose scatter re-reads a matrix ``kh*kw`` times the size of the image (17.5 vs 35 ms
    for 100x14x14x32 -> 64, 5x5). Each slice of the batch accumulates into its own images.
    """
    c = x_shape[3]
    grad = xp.ascontiguousarray(grad)
    dx = win.zeros_padded(xp, x_shape, grad.dtype)

    def work(start, stop):
        grad2d = grad[start:stop].reshape(-1, grad.shape[3])
        product = xp.empty((grad2d.shape[0], c), dtype=grad.dtype)
        block = product.reshape(stop - start, win.out_h, win.out_w, c)
        images = dx[start:stop]
        for i, j in win.offsets():
            xp.matmul(grad2d, kernel[i, j].T, out=product)
            view = win.view(images, i, j)
            view += block

    flops = win.out_h * win.out_w * win.kh * win.kw * c * grad.shape[3]
    _split_batch(xp, x_shape[0], work, flops, SMALL, uses_blas=True)
    return win.crop(dx, x_shape)


def _kernel_grad(xp, patches, grad, kernel_shape):
    """d(conv)/d(kernel) = patches^T @ output gradient, in the kernel's HWIO shape."""
    grad2d = xp.ascontiguousarray(grad).reshape(-1, grad.shape[3])
    return gemm(xp, patches.matrix.T, grad2d, split=True).reshape(kernel_shape)


# -- primitives ------------------------------------------------------------------------------------
class Conv2D(Primitive):
    """y = conv(x, kernel) [+ bias] [then ReLU], the bias and ReLU fused into the convolution.

    Keeps the patch matrix for the kernel gradient rather than the input: rebuilding it in
    backward would cost a second im2col copy (3 ms of the 100x14x14x32 -> 64 layer's ~45 ms),
    and its buffer goes back to a pool when the node drops it (see :class:`_Lease`), so holding it
    until backward costs memory (kh*kw times the input) but no time. With the ReLU fused it also keeps
    the output, whose sign is the ReLU's gradient mask.
    """

    name = "conv2d"

    @staticmethod
    def forward(xp, x, kernel, *bias, strides, padding, dilation, activation=None):
        win = _Windows(x.shape[1:3], kernel.shape[:2], strides, dilation, padding)
        relu = activation == "relu"
        output, patches = _convolve(xp, x, kernel, win, bias[0] if bias else None, relu)
        return output, (patches, kernel, x.shape, output if relu else None)

    @staticmethod
    def backward(xp, grad, saved, needs, strides, padding, dilation, activation=None):
        patches, kernel, x_shape, output = saved
        if output is not None:
            grad = _relu_grad(xp, grad, output)
        win = _Windows(x_shape[1:3], kernel.shape[:2], strides, dilation, padding)
        grads = (
            _input_grad(xp, grad, kernel, x_shape, win) if needs[0] else None,
            _kernel_grad(xp, patches, grad, kernel.shape) if needs[1] else None,
        )
        if len(needs) == 3:
            grads += (reduce_to_shape(grad, (kernel.shape[3],), grad.dtype) if needs[2] else None,)
        return grads


class Conv2DTranspose(Primitive):
    """y = conv2d's input gradient applied to x; its own gradients are a conv2d forward pass."""

    name = "conv2d_transpose"

    @staticmethod
    def forward(xp, x, kernel, output_size, strides, padding):
        out_shape = (x.shape[0], *output_size, kernel.shape[2])
        win = _Windows(output_size, kernel.shape[:2], strides, (1, 1), padding)
        return _input_grad(xp, x, kernel, out_shape, win), (x, kernel)

    @staticmethod
    def backward(xp, grad, saved, needs, output_size, strides, padding):
        x, kernel = saved
        win = _Windows(output_size, kernel.shape[:2], strides, (1, 1), padding)
        grad_x, patches = _convolve(xp, grad, kernel if needs[0] else None, win)
        return grad_x, _kernel_grad(xp, patches, x, kernel.shape) if needs[1] else None


# -- public functions ------------------------------------------------------------------------------
def _check_kernel(op, x, kernel, in_axis, in_name):
    _check_rank4(op, "x", x, "NHWC")
    _check_rank4(op, "kernel", kernel, "HWIO" if in_axis == 2 else "HWOI")
    if x.shape[3] != kernel.shape[in_axis]:
        raise ValueError(
            f"{op}: the input's channels (x.shape[3]={x.shape[3]}) must equal the kernel's {in_name} "
            f"(kernel.shape[{in_axis}]={kernel.shape[in_axis]}); got x of shape {tuple(x.shape)} "
            f"and kernel of shape {tuple(kernel.shape)}."
        )
    if x.dtype != kernel.dtype:
        raise TypeError(f"{op}: `x` and `kernel` must have the same dtype; got {x.dtype} and {kernel.dtype}.")


def conv2d(x, kernel, strides=1, padding="valid", dilation=1, bias=None, activation=None):
    """2-D convolution (cross-correlation, as in TensorFlow and PyTorch) of NHWC images.

    Parameters
    ----------
    x : Tensor of shape (batch, height, width, in_channels)
    kernel : Tensor of shape (kernel_h, kernel_w, in_channels, out_channels)  (HWIO)
    strides : int or (int, int)
    padding : {"valid", "same"}, case-insensitive
        "same" pads as TensorFlow does: the output is ceil(size / stride) and an odd pixel of
        padding goes to the bottom/right.
    dilation : int or (int, int)
        Spacing between kernel taps (atrous convolution).
    bias : Tensor of shape (out_channels,), optional
        Added to every output position (as ``bias`` of PyTorch's ``F.conv2d``).
    activation : {None, "relu"}
        "relu" applies the ReLU to the result. Both are fused into the convolution: each slice of
        the batch adds the bias and applies the ReLU to its rows of the product while they are in
        cache, and the backward pass masks the gradient the same way, instead of three ops each
        making its own passes over the whole activation.

    Returns
    -------
    Tensor of shape (batch, out_h, out_w, out_channels)

    >>> import numpy as np, flowlearn as fl
    >>> x = fl.tensor(np.ones((1, 4, 4, 1)))
    >>> k = fl.tensor(np.ones((3, 3, 1, 2)))
    >>> fl.ops.conv2d(x, k, padding="same").shape
    (1, 4, 4, 2)
    """
    op = "conv2d"
    x, kernel = _as_tensors(x, kernel)
    _check_kernel(op, x, kernel, 2, "in_channels")
    strides, dilation, padding = _pair(op, "strides", strides), _pair(op, "dilation", dilation), _padding(op, padding)
    if activation not in _FUSED_ACTIVATIONS:
        raise ValueError(f"{op}: unknown fused activation {activation!r}; expected one of {_FUSED_ACTIVATIONS}.")
    inputs = (x, kernel)
    if bias is not None:
        bias = bias if isinstance(bias, Tensor) else as_tensor(bias, like=kernel)
        if tuple(bias.shape) != (kernel.shape[3],) or bias.dtype != kernel.dtype:
            raise ValueError(
                f"{op}: expected `bias` of shape ({kernel.shape[3]},) (the kernel's out_channels) and dtype "
                f"{kernel.dtype}; got shape {tuple(bias.shape)} and dtype {bias.dtype}."
            )
        inputs += (bias,)
    win = _Windows(x.shape[1:3], kernel.shape[:2], strides, dilation, padding)
    if win.out_h < 1 or win.out_w < 1:
        raise ValueError(
            f"{op}: the kernel {tuple(kernel.shape[:2])} with dilation {dilation} does not fit in the input's "
            f"spatial size {tuple(x.shape[1:3])} with padding='valid'; use padding='same' or a smaller kernel."
        )
    return apply(Conv2D, inputs, strides=strides, padding=padding, dilation=dilation, activation=activation)


def conv2d_transpose(x, kernel, output_shape=None, strides=1, padding="valid"):
    """Transposed 2-D convolution (the gradient of :func:`conv2d` with respect to its input).

    Matches ``tf.nn.conv2d_transpose`` and Keras ``Conv2DTranspose``, including the kernel layout:
    **(kernel_h, kernel_w, out_channels, in_channels)** (HWOI), i.e. the HWIO kernel of the conv2d
    that this op transposes, whose input has ``out_channels`` channels.

    Parameters
    ----------
    x : Tensor of shape (batch, height, width, in_channels)
    kernel : Tensor of shape (kernel_h, kernel_w, out_channels, in_channels)
    output_shape : (out_h, out_w) or (batch, out_h, out_w, out_channels), optional
        Defaults to Keras' sizes: ``size * stride`` for "same" and, for "valid",
        ``size * stride + max(kernel - stride, 0)`` (that is ``(size - 1) * stride + kernel`` when
        the kernel is at least the stride). Any size that ``conv2d`` with the same strides and
        padding maps back to ``x``'s size is accepted (a stride makes several sizes possible).
    strides : int or (int, int)
    padding : {"valid", "same"}, case-insensitive

    Returns
    -------
    Tensor of shape (batch, out_h, out_w, out_channels)

    >>> import numpy as np, flowlearn as fl
    >>> x = fl.tensor(np.ones((1, 3, 3, 4)))
    >>> k = fl.tensor(np.ones((2, 2, 8, 4)))
    >>> fl.ops.conv2d_transpose(x, k, strides=2, padding="same").shape
    (1, 6, 6, 8)
    """
    op = "conv2d_transpose"
    x, kernel = _as_tensors(x, kernel)
    _check_kernel(op, x, kernel, 3, "in_channels")
    strides, padding = _pair(op, "strides", strides), _padding(op, padding)
    (h, w), (kh, kw) = x.shape[1:3], kernel.shape[:2]
    if output_shape is None:
        # Keras' rule; for "valid" it is (size - 1) * stride + kernel whenever kernel >= stride.
        extra = (0, 0) if padding == "same" else (max(kh - strides[0], 0), max(kw - strides[1], 0))
        size = (h * strides[0] + extra[0], w * strides[1] + extra[1])
    else:
        size = _output_size(op, output_shape, x, kernel)
    win = _Windows(size, (kh, kw), strides, (1, 1), padding)
    if (win.out_h, win.out_w) != (h, w):
        raise ValueError(
            f"{op}: output_shape {size} does not match the input: conv2d with kernel {(kh, kw)}, "
            f"strides {strides} and padding={padding!r} maps spatial size {size} to {(win.out_h, win.out_w)}, "
            f"not to the input's {(h, w)}."
        )
    return apply(Conv2DTranspose, (x, kernel), output_size=size, strides=strides, padding=padding)


def _output_size(op, output_shape, x, kernel):
    """The (out_h, out_w) of a conv2d_transpose ``output_shape`` given as (h, w) or NHWC."""
    shape = tuple(int(v) for v in output_shape)
    if len(shape) == 4:
        if shape[0] not in (x.shape[0], -1) or shape[3] != kernel.shape[2]:
            raise ValueError(
                f"{op}: output_shape {shape} must have the input's batch size {x.shape[0]} and the kernel's "
                f"out_channels {kernel.shape[2]} (kernel layout HWOI, shape {tuple(kernel.shape)})."
            )
        shape = shape[1:3]
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(
            f"{op}: expected `output_shape` as (height, width) or (batch, height, width, channels) of positive "
            f"ints; got {tuple(output_shape)}."
        )
    return shape
