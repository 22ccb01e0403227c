"""conv2d and conv2d_transpose: numerical gradients, PyTorch parity, graph replay and bad input."""
import json

import numpy
import pytest
import torch

import flowlearn as fl
from flowlearn.core import backend
from flowlearn.core.gradient_check import check_gradients
from flowlearn.core.ops import conv2d, conv2d_transpose


def _same_pads(size, k, s, d=1):
    # TensorFlow's rule, written out independently of the implementation.
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def _run(fn, arrays, out_grad, device, needs=None):
    """Forward + backward through flowlearn; returns the output and the input gradients as numpy."""
    needs = needs or [True] * len(arrays)
    tensors = [fl.tensor(a, requires_grad=n, device=device) for a, n in zip(arrays, needs)]
    out = fn(*tensors)
    out.backward(fl.tensor(out_grad, device=device))
    grads = [None if t.grad is None else backend.to_numpy(t.grad) for t in tensors]
    return out.numpy(), grads


def _torch_run(fn, arrays, out_grad):
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = fn(*tensors)
    out.backward(torch.tensor(out_grad))
    return out.detach().numpy(), [t.grad.numpy() for t in tensors]


def _assert_close(actual, expected):
    # Sums of thousands of float32 products round at the scale of the largest values, not each element's.
    scale = max(1.0, float(numpy.abs(expected).max()))
    numpy.testing.assert_allclose(actual, expected, rtol=1e-4, atol=2e-6 * scale)


# -- conv2d ----------------------------------------------------------------------------------------
CONV_CASES = [
    # x shape, kernel shape, strides, padding, dilation
    ((2, 5, 6, 3), (3, 2, 3, 4), 1, "valid", 1),
    ((2, 5, 6, 3), (3, 2, 3, 4), 1, "same", 1),
    ((2, 7, 6, 2), (3, 3, 2, 3), 2, "valid", 1),
    ((2, 7, 6, 2), (2, 3, 2, 3), 2, "same", 1),
    ((1, 8, 7, 2), (3, 2, 2, 2), (2, 1), "SAME", 1),
    ((2, 7, 7, 2), (3, 3, 2, 2), 1, "valid", 2),
    ((1, 7, 8, 2), (2, 3, 2, 3), 1, "same", (2, 1)),
    ((2, 6, 6, 1), (3, 3, 1, 2), 2, "same", 1),   # single channel: the transposed im2col layout
    ((2, 4, 5, 3), (1, 1, 3, 2), 1, "valid", 1),  # 1x1: im2col is the input itself
]


@pytest.mark.parametrize("x_shape, k_shape, strides, padding, dilation", CONV_CASES)
def test_conv2d_gradients(device, x_shape, k_shape, strides, padding, dilation):
    rng = numpy.random.default_rng(1)
    x, k = rng.standard_normal(x_shape), rng.standard_normal(k_shape)
    assert check_gradients(
        lambda x, k: conv2d(x, k, strides=strides, padding=padding, dilation=dilation), [x, k], device=device
    )


def _torch_conv2d(x, k, strides, padding, dilation):
    s = (strides, strides) if isinstance(strides, int) else strides
    d = (dilation, dilation) if isinstance(dilation, int) else dilation
    x = x.permute(0, 3, 1, 2)
    if padding.lower() == "same":
        top, bottom = _same_pads(x.shape[2], k.shape[0], s[0], d[0])
        left, right = _same_pads(x.shape[3], k.shape[1], s[1], d[1])
        x = torch.nn.functional.pad(x, (left, right, top, bottom))
    y = torch.nn.functional.conv2d(x, k.permute(3, 2, 0, 1), stride=s, dilation=d)
    return y.permute(0, 2, 3, 1)


@pytest.mark.parametrize("x_shape, k_shape, strides, padding, dilation", CONV_CASES + [
    ((4, 14, 14, 8), (5, 5, 8, 16), 1, "same", 1),
    ((3, 28, 28, 1), (5, 5, 1, 8), 1, "same", 1),
])
def test_conv2d_matches_torch(device, x_shape, k_shape, strides, padding, dilation):
    rng = numpy.random.default_rng(2)
    x, k = rng.standard_normal(x_shape, dtype=numpy.float32), rng.standard_normal(k_shape, dtype=numpy.float32)
    ours = lambda x, k: conv2d(x, k, strides=strides, padding=padding, dilation=dilation)  # noqa: E731
    out_shape = ours(fl.tensor(x), fl.tensor(k)).shape
    g = rng.standard_normal(out_shape, dtype=numpy.float32)
    y, (dx, dk) = _run(ours, [x, k], g, device)
    y_ref, (dx_ref, dk_ref) = _torch_run(lambda x, k: _torch_conv2d(x, k, strides, padding, dilation), [x, k], g)
    assert y.dtype == dx.dtype == dk.dtype == numpy.float32
    _assert_close(y, y_ref)
    _assert_close(dx, dx_ref)
    _assert_close(dk, dk_ref)


# -- conv2d with the bias and ReLU fused ----------------------------------------------------------------
FUSED_CASES = [CONV_CASES[1], CONV_CASES[3], CONV_CASES[7], CONV_CASES[8]]


def _away_from_the_kink(x, k, bias, strides, padding, dilation):
    """Shift the bias so that no pre-activation lies within 0.05 of zero (finite differences at the
    ReLU's kink would measure the wrong slope)."""
    pre = conv2d(fl.tensor(x), fl.tensor(k), strides=strides, padding=padding, dilation=dilation).numpy()
    pre = pre + bias
    for channel in range(pre.shape[-1]):
        values = pre[..., channel]
        while numpy.abs(values).min() < 0.05:
            bias[channel] += 0.013
            values = values + 0.013
    return bias


@pytest.mark.parametrize("x_shape, k_shape, strides, padding, dilation", FUSED_CASES)
@pytest.mark.parametrize("activation", [None, "relu"])
def test_fused_conv2d_gradients(device, x_shape, k_shape, strides, padding, dilation, activation):
    rng = numpy.random.default_rng(4)
    x, k, b = rng.standard_normal(x_shape), rng.standard_normal(k_shape), rng.standard_normal(k_shape[3])
    if activation:
        b = _away_from_the_kink(x, k, b, strides, padding, dilation)
    assert check_gradients(
        lambda x, k, b: conv2d(x, k, strides=strides, padding=padding, dilation=dilation, bias=b,
                               activation=activation),
        [x, k, b], device=device,
    )


@pytest.mark.parametrize("x_shape, k_shape, strides, padding, dilation", FUSED_CASES + [
    ((64, 14, 14, 8), (5, 5, 8, 16), 1, "same", 1),  # large enough to split over threads
])
def test_fused_conv2d_matches_torch(device, x_shape, k_shape, strides, padding, dilation):
    rng = numpy.random.default_rng(5)
    x, k = rng.standard_normal(x_shape, dtype=numpy.float32), rng.standard_normal(k_shape, dtype=numpy.float32)
    b = rng.standard_normal(k_shape[3], dtype=numpy.float32)
    ours = lambda x, k, b: conv2d(x, k, strides=strides, padding=padding, dilation=dilation, bias=b,  # noqa: E731
                                  activation="relu")
    out_shape = ours(fl.tensor(x), fl.tensor(k), fl.tensor(b)).shape
    g = rng.standard_normal(out_shape, dtype=numpy.float32)
    y, grads = _run(ours, [x, k, b], g, device)
    y_ref, grads_ref = _torch_run(
        lambda x, k, b: torch.relu(_torch_conv2d(x, k, strides, padding, dilation) + b), [x, k, b], g)
    _assert_close(y, y_ref)
    for grad, grad_ref in zip(grads, grads_ref):
        assert grad.dtype == numpy.float32
        _assert_close(grad, grad_ref)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kernel_size", [1, 3])
def test_fused_relu_is_exactly_the_maximum_with_zero_of_the_biased_convolution(device, dtype, kernel_size):
    # The fused ReLU takes the maximum against a kept run of zeros, piece by piece where the output is
    # longer than the run (a pointwise kernel finishes its whole output at once: here 262,144 values).
    rng = numpy.random.default_rng(12)
    x = fl.tensor(rng.standard_normal((8, 32, 32, 4)), dtype=dtype, device=device)
    k = fl.tensor(rng.standard_normal((kernel_size, kernel_size, 4, 32)), dtype=dtype, device=device)
    b = fl.tensor(rng.standard_normal(32), dtype=dtype, device=device)
    with fl.no_grad():
        fused = conv2d(x, k, padding="same", bias=b, activation="relu").numpy()
        biased = conv2d(x, k, padding="same", bias=b).numpy()
    assert fused.dtype == dtype and (biased < 0).any()
    numpy.testing.assert_array_equal(fused, numpy.maximum(biased, 0))


def test_conv2d_layer_fuses_bias_and_relu_and_matches_the_separate_ops(device):
    rng = numpy.random.default_rng(6)
    x = rng.standard_normal((3, 9, 9, 4)).astype(numpy.float32)
    layer = fl.layers.Conv2D(6, 3, padding="same", activation="relu", bias_initializer="random_normal")
    xt = fl.tensor(x, requires_grad=True, device=device)
    fused = layer(xt)
    assert fused._node.primitive.name == "conv2d" and len(fused._node.inputs) == 3
    separate = fl.ops.relu(conv2d(xt, layer.kernel, padding="same") + layer.bias)
    numpy.testing.assert_allclose(fused.numpy(), separate.numpy(), rtol=1e-6, atol=1e-6)
    assert layer.call_logits(x).shape == (3, 9, 9, 6)


@pytest.mark.parametrize("kwargs, match", [
    ({"bias": numpy.ones(3)}, r"conv2d: expected `bias` of shape \(2,\).*float32; got shape \(3,\)"),
    ({"activation": "tanh"}, r"conv2d: unknown fused activation 'tanh'; expected one of \(None, 'relu'\)"),
])
def test_fused_conv2d_rejects_bad_bias_and_activation(device, kwargs, match):
    x = fl.tensor(numpy.ones((1, 4, 4, 2)), device=device)
    k = fl.tensor(numpy.ones((3, 3, 2, 2)), device=device)
    with pytest.raises(ValueError, match=match):
        conv2d(x, k, **kwargs)


def test_fused_conv2d_trace_replays(device):
    rng = numpy.random.default_rng(7)
    k = fl.tensor(rng.standard_normal((3, 3, 2, 4)), device=device)
    b = fl.tensor(rng.standard_normal(4), device=device)
    fn = lambda x: conv2d(x, k, padding="same", bias=b, activation="relu")  # noqa: E731
    x = fl.tensor(rng.standard_normal((2, 6, 6, 2)).astype(numpy.float32), device=device)
    graph = fl.trace(fn, x)
    assert [node["attrs"]["activation"] for node in graph.to_dict()["nodes"]] == ["relu"]
    loaded = fl.Graph.from_dict(json.loads(json.dumps(graph.to_dict())), graph.arrays)
    numpy.testing.assert_array_equal(backend.to_numpy(loaded.run(x.data)), fn(x).numpy())


@pytest.mark.parametrize("x_grad, k_grad", [(False, True), (True, False)])
def test_conv2d_computes_only_the_gradients_asked_for(device, x_grad, k_grad):
    rng = numpy.random.default_rng(3)
    x, k = rng.standard_normal((2, 6, 6, 3)), rng.standard_normal((3, 3, 3, 2))
    g = rng.standard_normal((2, 6, 6, 2))
    fn = lambda x, k: conv2d(x, k, padding="same")  # noqa: E731
    _, (dx_all, dk_all) = _run(fn, [x, k], g, device)
    _, (dx, dk) = _run(fn, [x, k], g, device, needs=[x_grad, k_grad])
    assert (dx is None) != x_grad and (dk is None) != k_grad
    _assert_close(dx if x_grad else dk, dx_all if x_grad else dk_all)


def test_conv2d_repeated_steps_do_not_share_saved_buffers(device):
    # im2col buffers are recycled between calls: a graph still alive must keep its own.
    rng = numpy.random.default_rng(4)
    k = fl.tensor(rng.standard_normal((5, 5, 8, 4)), requires_grad=True, device=device)
    xs = [rng.standard_normal((8, 16, 16, 8)).astype("float32") for _ in range(2)]
    g = numpy.ones((8, 16, 16, 4), dtype="float32")
    first = conv2d(fl.tensor(xs[0], device=device), k, padding="same")
    second = conv2d(fl.tensor(xs[1], device=device), k, padding="same")  # same shapes, made while first lives
    first.backward(fl.tensor(g, device=device))
    _, (_, expected) = _run(lambda x, k: conv2d(x, k, padding="same"), [xs[0], k.numpy()], g, device)
    _assert_close(backend.to_numpy(k.grad), expected)
    del second  # alive until here on purpose


def test_conv2d_reads_strided_and_broadcast_arrays(device):
    # im2col reads through as_strided with the array's own strides: views and zero strides must work.
    rng = numpy.random.default_rng(9)
    x = rng.standard_normal((2, 6, 5, 3)).astype("float32")
    k = rng.standard_normal((3, 3, 3, 2)).astype("float32")
    expected = conv2d(fl.tensor(x, device=device), fl.tensor(k, device=device), strides=2).numpy()
    xp = backend.module_for_device(device)
    strided = xp.asarray(numpy.ascontiguousarray(x.transpose(0, 2, 1, 3))).transpose(0, 2, 1, 3)
    _assert_close(conv2d(fl.tensor(strided, device=device), fl.tensor(k, device=device), strides=2).numpy(),
                  expected)
    # conv2d_transpose's backward runs im2col on the incoming gradient, here a broadcast constant.
    kt = fl.tensor(k.transpose(0, 1, 3, 2), requires_grad=True, device=device)
    y = conv2d_transpose(fl.tensor(x, device=device), kt, strides=2)
    y.backward(fl.Tensor(xp.broadcast_to(xp.ones((), dtype="float32"), y.shape)))
    _, (_, dk) = _run(lambda x, k: conv2d_transpose(x, k, strides=2), [x, kt.numpy()],
                      numpy.ones(y.shape, dtype="float32"), device)
    _assert_close(backend.to_numpy(kt.grad), dk)


def test_conv2d_trace_replays_after_json_round_trip(device):
    rng = numpy.random.default_rng(5)
    k = fl.tensor(rng.standard_normal((3, 2, 2, 3)), requires_grad=True, device=device, name="kernel")
    x = rng.standard_normal((2, 7, 6, 2)).astype("float32")
    fn = lambda x: conv2d(x, k, strides=[2, 1], padding="Same", dilation=[1, 2])  # noqa: E731
    graph = fl.trace(fn, fl.tensor(x, device=device))
    loaded = fl.Graph.from_dict(graph.to_dict(), graph.arrays)
    x = fl.tensor(x, device=device)
    _assert_close(backend.to_numpy(loaded.run(x.data)), fn(x).numpy())


# -- conv2d_transpose ------------------------------------------------------------------------------
TRANSPOSE_CASES = [
    # x shape, kernel shape (kh, kw, out, in), strides, padding, output_shape
    ((2, 4, 3, 3), (3, 2, 2, 3), 1, "valid", None),
    ((2, 4, 3, 3), (3, 2, 2, 3), 1, "same", None),
    ((2, 3, 4, 2), (3, 3, 3, 2), 2, "valid", None),
    ((2, 3, 4, 2), (3, 2, 3, 2), 2, "same", None),
    ((1, 3, 3, 2), (2, 2, 1, 2), 2, "same", None),           # kernel == stride: no overlap
    ((1, 3, 3, 2), (3, 3, 2, 2), 2, "valid", (1, 8, 8, 2)),  # the other size stride 2 maps to 3
    ((1, 3, 2, 2), (3, 3, 2, 2), (2, 3), "same", (5, 6)),
    ((2, 3, 3, 2), (1, 2, 2, 2), 3, "valid", None),          # kernel < stride: gaps of zeros
]


@pytest.mark.parametrize("x_shape, k_shape, strides, padding, output_shape", TRANSPOSE_CASES)
def test_conv2d_transpose_gradients(device, x_shape, k_shape, strides, padding, output_shape):
    rng = numpy.random.default_rng(6)
    x, k = rng.standard_normal(x_shape), rng.standard_normal(k_shape)
    assert check_gradients(
        lambda x, k: conv2d_transpose(x, k, output_shape=output_shape, strides=strides, padding=padding),
        [x, k], device=device,
    )


def _torch_conv2d_transpose(x, k, strides, padding, out_hw):
    """torch's conv_transpose2d gives the full (size-1)*s+k output; TF-style padding crops it."""
    s = (strides, strides) if isinstance(strides, int) else strides
    y = torch.nn.functional.conv_transpose2d(x.permute(0, 3, 1, 2), k.permute(3, 2, 0, 1), stride=s)
    tops = [_same_pads(out_hw[a], k.shape[a], s[a])[0] if padding == "same" else 0 for a in (0, 1)]
    short = [max(tops[a] + out_hw[a] - y.shape[2 + a], 0) for a in (0, 1)]
    y = torch.nn.functional.pad(y, (0, short[1], 0, short[0]))
    return y[:, :, tops[0]:tops[0] + out_hw[0], tops[1]:tops[1] + out_hw[1]].permute(0, 2, 3, 1)


@pytest.mark.parametrize("x_shape, k_shape, strides, padding, output_shape", TRANSPOSE_CASES + [
    ((4, 7, 7, 16), (5, 5, 8, 16), 2, "same", None),
])
def test_conv2d_transpose_matches_torch(device, x_shape, k_shape, strides, padding, output_shape):
    rng = numpy.random.default_rng(7)
    x, k = rng.standard_normal(x_shape, dtype=numpy.float32), rng.standard_normal(k_shape, dtype=numpy.float32)
    ours = lambda x, k: conv2d_transpose(x, k, output_shape, strides, padding)  # noqa: E731
    out_shape = ours(fl.tensor(x), fl.tensor(k)).shape
    assert out_shape[0] == x_shape[0] and out_shape[3] == k_shape[2]
    g = rng.standard_normal(out_shape, dtype=numpy.float32)
    y, (dx, dk) = _run(ours, [x, k], g, device)
    y_ref, (dx_ref, dk_ref) = _torch_run(
        lambda x, k: _torch_conv2d_transpose(x, k, strides, padding, out_shape[1:3]), [x, k], g
    )
    _assert_close(y, y_ref)
    _assert_close(dx, dx_ref)
    _assert_close(dk, dk_ref)


@pytest.mark.parametrize("in_hw, k, strides, padding, expected_hw", [
    ((5, 4), (3, 3), 1, "valid", (7, 6)),
    ((5, 4), (3, 2), 2, "valid", (11, 8)),
    ((5, 4), (3, 3), 2, "same", (10, 8)),
    ((5, 4), (1, 1), (3, 2), "same", (15, 8)),
    ((5, 4), (1, 3), (3, 2), "valid", (15, 9)),  # kernel < stride: size * stride, as Keras
])
def test_conv2d_transpose_default_output_size_follows_keras(device, in_hw, k, strides, padding, expected_hw):
    x = fl.tensor(numpy.ones((2, *in_hw, 3)), device=device)
    kernel = fl.tensor(numpy.ones((*k, 4, 3)), device=device)
    assert conv2d_transpose(x, kernel, strides=strides, padding=padding).shape == (2, *expected_hw, 4)


def test_conv2d_transpose_is_the_input_gradient_of_conv2d(device):
    rng = numpy.random.default_rng(8)
    x_shape, k = (2, 9, 8, 3), rng.standard_normal((3, 3, 3, 5))
    g = rng.standard_normal((2, 5, 4, 5))
    _, (dx, _) = _run(lambda x, k: conv2d(x, k, strides=2, padding="same"), [numpy.zeros(x_shape), k], g, device)
    y = conv2d_transpose(fl.tensor(g, device=device), fl.tensor(k, device=device), output_shape=x_shape,
                         strides=2, padding="same")
    _assert_close(y.numpy(), dx)


# -- bad input -------------------------------------------------------------------------------------
def _inputs(device, x_shape=(2, 8, 8, 3), k_shape=(3, 3, 3, 4)):
    return fl.tensor(numpy.ones(x_shape), device=device), fl.tensor(numpy.ones(k_shape), device=device)


@pytest.mark.parametrize("x_shape, k_shape, match", [
    ((3, 28, 28), (3, 3, 28, 4), r"conv2d: expected `x` of rank 4 \(NHWC\); got shape \(3, 28, 28\)"),
    ((2, 8, 8, 3), (3, 3, 3), r"expected `kernel` of rank 4 \(HWIO\); got shape \(3, 3, 3\)"),
    ((2, 8, 8, 3), (3, 3, 2, 4), r"x\.shape\[3\]=3.*kernel\.shape\[2\]=2.*\(2, 8, 8, 3\).*\(3, 3, 2, 4\)"),
    ((2, 4, 4, 3), (5, 5, 3, 4), r"kernel \(5, 5\).*does not fit.*\(4, 4\)"),
])
def test_conv2d_rejects_bad_shapes(device, x_shape, k_shape, match):
    x, k = _inputs(device, x_shape, k_shape)
    with pytest.raises(ValueError, match=match):
        conv2d(x, k)


@pytest.mark.parametrize("kwargs, match", [
    ({"padding": "full"}, r"unknown padding 'full'; expected one of \('valid', 'same'\)"),
    ({"strides": 0}, r"expected `strides` to be a positive int or a pair of positive ints; got 0"),
    ({"strides": (1, -2)}, r"`strides`.*got \(1, -2\)"),
    ({"strides": (1, 2, 3)}, r"`strides`.*got \(1, 2, 3\)"),
    ({"strides": 1.5}, r"`strides`.*got 1\.5"),
    ({"dilation": 0}, r"expected `dilation` to be a positive int"),
])
def test_conv2d_rejects_bad_options(device, kwargs, match):
    x, k = _inputs(device)
    with pytest.raises(ValueError, match=match):
        conv2d(x, k, **kwargs)


def test_conv2d_rejects_mixed_dtypes(device):
    x = fl.tensor(numpy.ones((1, 4, 4, 2)), dtype="float32", device=device)
    k = fl.tensor(numpy.ones((3, 3, 2, 2)), dtype="float64", device=device)
    with pytest.raises(TypeError, match="same dtype; got float32 and float64"):
        conv2d(x, k)


@pytest.mark.parametrize("k_shape, kwargs, match", [
    ((3, 3, 4, 2), {}, r"x\.shape\[3\]=3.*kernel\.shape\[3\]=2.*\(2, 8, 8, 3\).*\(3, 3, 4, 2\)"),
    ((3, 3, 4, 3), {"strides": 2, "output_shape": (20, 20)}, r"output_shape \(20, 20\) does not match"),
    ((3, 3, 4, 3), {"output_shape": (2, 10, 10, 5)}, r"out_channels 4"),
    ((3, 3, 4, 3), {"output_shape": (10, 0)}, r"expected `output_shape` as \(height, width\)"),
    ((3, 3, 4, 3), {"padding": "causal"}, r"expected one of \('valid', 'same'\)"),
])
def test_conv2d_transpose_rejects_bad_input(device, k_shape, kwargs, match):
    x, k = _inputs(device, k_shape=k_shape)
    with pytest.raises(ValueError, match=match):
        conv2d_transpose(x, k, **kwargs)
