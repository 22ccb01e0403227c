"""max_pool2d and avg_pool2d: numerical gradients, PyTorch parity, first-max routing on ties, bad input."""
import numpy
import pytest
import torch

import flowlearn as fl
from flowlearn.core import backend
from flowlearn.core.gradient_check import check_gradients
from flowlearn.core.ops import avg_pool2d, max_pool2d

POOLS = {"max": max_pool2d, "avg": avg_pool2d}

CASES = [
    # x shape, pool_size, strides, padding
    ((2, 6, 4, 3), 2, None, "valid"),          # the 2x2 / stride 2 fast path
    ((2, 5, 7, 2), 2, None, "valid"),          # odd sizes: the last row/column is never pooled
    ((2, 5, 7, 2), 2, None, "same"),           # odd sizes padded at the bottom/right
    ((2, 7, 7, 2), 3, 2, "valid"),             # overlapping windows
    ((2, 7, 8, 2), 3, 2, "same"),
    ((1, 6, 7, 2), (2, 3), (1, 2), "same"),    # rectangular, overlapping in one direction
    ((1, 6, 6, 2), (3, 2), (3, 2), "Valid"),   # non-overlapping, not the fast path
    ((1, 4, 5, 1), 3, 1, "same"),
]


def _distinct(shape, rng):
    # Values at least 1e-2 apart, so a central difference of 1e-6 never changes which element is largest.
    return rng.permutation(numpy.prod(shape)).reshape(shape) * 1e-2


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("x_shape, pool_size, strides, padding", CASES)
def test_pool_gradients(device, kind, x_shape, pool_size, strides, padding):
    x = _distinct(x_shape, numpy.random.default_rng(0))
    assert check_gradients(lambda x: POOLS[kind](x, pool_size, strides, padding), [x], device=device)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _torch_pool(kind, x, pool_size, strides, padding):
    """TF-style pooling in torch: explicit (possibly asymmetric) padding; averages over valid elements."""
    F = torch.nn.functional
    k = _pair(pool_size)
    s = k if strides is None else _pair(strides)
    x = x.permute(0, 3, 1, 2)
    pads = (0, 0, 0, 0)
    if padding.lower() == "same":
        totals = [max((-(-x.shape[2 + a] // s[a]) - 1) * s[a] + k[a] - x.shape[2 + a], 0) for a in (0, 1)]
        pads = (totals[1] // 2, totals[1] - totals[1] // 2, totals[0] // 2, totals[0] - totals[0] // 2)
    if kind == "max":
        y = F.max_pool2d(F.pad(x, pads, value=-float("inf")), k, s)
    else:
        sums = F.avg_pool2d(F.pad(x, pads), k, s)
        counts = F.avg_pool2d(F.pad(torch.ones_like(x), pads), k, s)
        y = sums / counts
    return y.permute(0, 2, 3, 1)


def _compare_with_torch(kind, x, g, device, pool_size, strides, padding):
    t = fl.tensor(x, requires_grad=True, device=device)
    y = POOLS[kind](t, pool_size, strides, padding)
    y.backward(fl.tensor(g, device=device))
    tx = torch.tensor(x, requires_grad=True)
    ty = _torch_pool(kind, tx, pool_size, strides, padding)
    ty.backward(torch.tensor(g))
    assert y.dtype == t.grad.dtype == numpy.float32
    numpy.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-4, atol=1e-5)
    numpy.testing.assert_allclose(backend.to_numpy(t.grad), tx.grad.numpy(), rtol=1e-4, atol=1e-5)
    return backend.to_numpy(t.grad)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("x_shape, pool_size, strides, padding", CASES + [((4, 28, 28, 8), 2, 2, "same")])
def test_pool_matches_torch(device, kind, x_shape, pool_size, strides, padding):
    rng = numpy.random.default_rng(1)
    x = rng.standard_normal(x_shape, dtype=numpy.float32)
    y_shape = POOLS[kind](fl.tensor(x), pool_size, strides, padding).shape
    _compare_with_torch(kind, x, rng.standard_normal(y_shape, dtype=numpy.float32), device,
                        pool_size, strides, padding)


@pytest.mark.parametrize("x_shape, pool_size, strides, padding", CASES)
def test_max_pool_routes_ties_to_the_first_maximum(device, x_shape, pool_size, strides, padding):
    # A blank (constant) image: every window ties everywhere, as on MNIST's background.
    rng = numpy.random.default_rng(2)
    x = numpy.full(x_shape, 0.5, dtype=numpy.float32)
    x[:, ::3] = 1.0  # and rows of ties between two values
    y_shape = max_pool2d(fl.tensor(x), pool_size, strides, padding).shape
    g = rng.standard_normal(y_shape, dtype=numpy.float32)
    grad = _compare_with_torch("max", x, g, device, pool_size, strides, padding)
    # Each window's gradient lands on one element: the total is preserved, not multiplied by the ties.
    numpy.testing.assert_allclose(grad.sum(), g.sum(), rtol=1e-4, atol=1e-4)


def test_max_pool_2x2_tie_goes_to_the_top_left(device):
    x = fl.tensor(numpy.zeros((1, 4, 4, 1)), requires_grad=True, device=device)
    max_pool2d(x).backward(fl.tensor(numpy.ones((1, 2, 2, 1)), device=device))
    expected = numpy.zeros((4, 4))
    expected[::2, ::2] = 1
    numpy.testing.assert_array_equal(backend.to_numpy(x.grad)[0, :, :, 0], expected)


def test_max_pool_padding_never_wins(device):
    x = fl.tensor(-numpy.arange(1.0, 10.0).reshape(1, 3, 3, 1), device=device)
    y = max_pool2d(x, 2, padding="same")
    numpy.testing.assert_array_equal(y.numpy()[0, :, :, 0], [[-1, -3], [-7, -9]])


@pytest.mark.parametrize("pool_size, strides", [(2, None), (3, 2), (1, 1)])
def test_max_pool_under_no_grad_keeps_no_index_and_gives_the_same_maxima(device, pool_size, strides):
    from flowlearn.core.ops.pooling import MaxPool2D

    x = numpy.random.default_rng(0).standard_normal((2, 7, 7, 3)).astype(numpy.float32)
    data = fl.tensor(x, device=device).data
    attrs = dict(pool_size=(pool_size, pool_size), strides=(strides or pool_size,) * 2, padding="same")
    xp = backend.array_module(data)
    recorded, (index, _) = MaxPool2D.forward(xp, data, **attrs)
    assert index is not None and index.dtype == numpy.int8
    with fl.no_grad():  # prediction: nothing will ask for the gradient, so no argmax index is built
        alone, (index, _) = MaxPool2D.forward(xp, data, **attrs)
    assert index is None
    numpy.testing.assert_array_equal(backend.to_numpy(alone), backend.to_numpy(recorded))


def test_avg_pool_same_counts_only_valid_elements(device):
    x = fl.tensor(numpy.ones((1, 5, 5, 2)), device=device)
    numpy.testing.assert_allclose(avg_pool2d(x, 3, 2, "same").numpy(), 1.0)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_keeps_float64(device, kind):
    y = POOLS[kind](fl.tensor(numpy.ones((1, 4, 4, 1)), dtype="float64", device=device), 3, 1, "same")
    assert y.dtype == numpy.float64 and y.shape == (1, 4, 4, 1)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("x_shape, kwargs, match", [
    ((4, 4, 1), {}, r"pool2d: expected `x` of rank 4 \(NHWC\); got shape \(4, 4, 1\)"),
    ((1, 4, 4, 1), {"padding": "full"}, r"unknown padding 'full'; expected one of \('valid', 'same'\)"),
    ((1, 4, 4, 1), {"pool_size": 0}, r"expected `pool_size` to be a positive int or a pair of positive ints; got 0"),
    ((1, 4, 4, 1), {"strides": (2, 0)}, r"expected `strides` to be a positive int.*got \(2, 0\)"),
    ((1, 2, 2, 1), {"pool_size": 3}, r"pool_size \(3, 3\) is larger than the input's spatial size \(2, 2\)"),
])
def test_pool_rejects_bad_input(device, kind, x_shape, kwargs, match):
    x = fl.tensor(numpy.ones(x_shape), device=device)
    with pytest.raises(ValueError, match=f"{kind}_{match}" if match.startswith("pool2d") else match):
        POOLS[kind](x, **kwargs)
