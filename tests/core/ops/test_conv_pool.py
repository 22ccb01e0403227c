"""The pool of convolution patch buffers: a buffer is checked out by a forward pass, kept by the node
that saves it, and reused only once that node has let it go (backward done, node freed, or no_grad)."""
import threading

import numpy
import pytest
import torch

import flowlearn as fl
from flowlearn.core.ops import conv, conv2d


def _weights(seed, x_shape=(8, 16, 16, 8), k_shape=(5, 5, 8, 4)):
    rng = numpy.random.default_rng(seed)
    return (rng.standard_normal(x_shape).astype(numpy.float32),
            (rng.standard_normal(k_shape) * 0.1).astype(numpy.float32))


def _buffer(output):
    """The pooled patch buffer the output's node keeps (None when it keeps none)."""
    lease = output._node.saved[0]._lease
    return None if lease is None else lease.array


def _is_free(array):
    return any(buffer is array for buffer in conv._patch_pool.free_buffers())


def _torch_kernel_grad(x, k, out_grad):
    xt, kt = torch.tensor(x), torch.tensor(k, requires_grad=True)
    y = torch.nn.functional.conv2d(xt.permute(0, 3, 1, 2), kt.permute(3, 2, 0, 1), padding=2).permute(0, 2, 3, 1)
    y.backward(torch.tensor(out_grad))
    return kt.grad.numpy()


def _assert_close(actual, expected):
    scale = max(1.0, float(numpy.abs(expected).max()))
    numpy.testing.assert_allclose(actual, expected, rtol=1e-4, atol=2e-6 * scale)


@pytest.fixture(autouse=True)
def empty_pool():
    conv._patch_pool.clear()
    yield
    conv._patch_pool.clear()


def test_a_step_reuses_the_buffer_the_previous_step_gave_back():
    x, k = _weights(0)
    kernel = fl.tensor(k, requires_grad=True)
    first = conv2d(fl.tensor(x), kernel, padding="same")
    buffer = _buffer(first)
    assert buffer is not None and buffer.nbytes >= conv._patch_pool.min_bytes  # pooled, not a plain array
    assert not _is_free(buffer)  # checked out while the node keeps it
    first.sum().backward()
    assert _is_free(buffer)  # backward used it, the node let it go
    second = conv2d(fl.tensor(x), kernel, padding="same")
    assert _buffer(second) is buffer


def test_a_forward_under_no_grad_gives_its_buffer_back_at_once():
    x, k = _weights(1)
    with fl.no_grad():
        conv2d(fl.tensor(x), fl.tensor(k), padding="same")
    free = conv._patch_pool.free_buffers()
    assert [b.shape for b in free] == [(8, 16, 16, 5, 5, 8)]
    assert _buffer(conv2d(fl.tensor(x), fl.tensor(k, requires_grad=True), padding="same")) is free[0]


def test_a_node_freed_without_backward_gives_its_buffer_back():
    x, k = _weights(2)
    output = conv2d(fl.tensor(x), fl.tensor(k, requires_grad=True), padding="same")
    buffer = _buffer(output)
    assert not _is_free(buffer)
    del output
    assert _is_free(buffer)


def test_a_retained_graph_keeps_its_buffer_and_backward_twice_gives_the_same_gradient():
    x, k = _weights(3)
    other_x, _ = _weights(4)
    kernel = fl.tensor(k, requires_grad=True)
    output = conv2d(fl.tensor(x), kernel, padding="same")
    output.sum().backward(retain_graph=True)
    first = kernel.grad.copy()
    assert not _is_free(_buffer(output))
    other = conv2d(fl.tensor(other_x), kernel, padding="same")  # must not overwrite the retained patches
    assert not numpy.shares_memory(_buffer(other), _buffer(output))
    kernel.grad = None
    output.sum().backward()
    numpy.testing.assert_array_equal(kernel.grad, first)


def test_two_live_forwards_keep_separate_buffers_and_both_gradients_match_torch():
    x1, k = _weights(5)
    x2, _ = _weights(6)
    rng = numpy.random.default_rng(7)
    grads = [rng.standard_normal((8, 16, 16, 4)).astype(numpy.float32) for _ in range(2)]
    kernel = fl.tensor(k, requires_grad=True)
    y1 = conv2d(fl.tensor(x1), kernel, padding="same")
    y2 = conv2d(fl.tensor(x2), kernel, padding="same")  # before y1's backward: the pool must not hand y1's out
    assert not numpy.shares_memory(_buffer(y1), _buffer(y2))
    y2.backward(fl.tensor(grads[1]))
    g2, kernel.grad = kernel.grad.copy(), None
    y3 = conv2d(fl.tensor(x2), kernel, padding="same")  # takes y2's buffer back, never y1's
    assert _buffer(y3) is not _buffer(y1)
    y1.backward(fl.tensor(grads[0]))
    _assert_close(kernel.grad, _torch_kernel_grad(x1, k, grads[0]))
    _assert_close(g2, _torch_kernel_grad(x2, k, grads[1]))
    del y3


def test_threads_training_at_once_get_the_same_gradients_as_one_after_the_other():
    data = [_weights(10 + i) for i in range(3)]

    def steps(x, k, out):
        kernel = fl.tensor(k, requires_grad=True)
        for _ in range(4):
            kernel.grad = None
            y = conv2d(fl.tensor(x), kernel, padding="same", activation="relu")
            (y * y).sum().backward()
        out.append(kernel.grad.copy())

    serial = []
    for x, k in data:
        steps(x, k, serial)
    results = [[] for _ in data]
    workers = [threading.Thread(target=steps, args=(x, k, out)) for (x, k), out in zip(data, results)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for expected, out in zip(serial, results):
        _assert_close(out[0], expected)


def test_the_pool_keeps_the_most_recently_given_back_buffers_up_to_its_bound():
    pool = conv._BufferPool(min_bytes=1000, max_bytes=3000)
    leases = [pool.checkout(numpy, (250,), numpy.float32) for _ in range(4)]  # 1000 bytes each
    arrays = [lease.array for lease in leases]
    assert len({id(a) for a in arrays}) == 4
    for index in range(4):
        leases[index] = None  # given back in this order: arrays[0] is the least recently given back
    other = pool.checkout(numpy, (500,), numpy.float32)  # another shape: a new buffer; the pool trims
    assert not any(other.array is a for a in arrays)
    free = pool.free_buffers()
    assert len(free) == 3 and all(b is a for b, a in zip(free, arrays[1:]))  # arrays[0] dropped
    assert pool.checkout(numpy, (250,), numpy.float32).array is arrays[3]  # the most recent of its shape
    small = pool.checkout(numpy, (10,), numpy.float32)  # under min_bytes: a plain array, never pooled
    small_array = small.array
    del small
    assert not any(b is small_array for b in pool.free_buffers())


def test_a_buffer_given_back_from_another_thread_is_reused():
    pool = conv._BufferPool(min_bytes=1, max_bytes=1 << 20)
    lease = pool.checkout(numpy, (4, 4), numpy.float32)
    array = lease.array
    holder = [lease]
    del lease
    drop = threading.Thread(target=holder.clear)
    drop.start()
    drop.join()
    assert pool.checkout(numpy, (4, 4), numpy.float32).array is array
