"""Reductions: sum, mean, max, min, logsumexp over axes, with and without keepdims."""
import numpy
import pytest
import torch

import flowlearn as fl
from flowlearn.core.backend import to_numpy
from flowlearn.core.gradient_check import check_gradients


def _logsumexp(x, axis=None, keepdims=False):
    shift = x.max(axis=axis, keepdims=True)
    y = numpy.log(numpy.exp(x - shift).sum(axis=axis, keepdims=True)) + shift
    return y if keepdims else numpy.squeeze(y, axis=axis)


REFERENCES = {
    "sum": numpy.sum, "mean": numpy.mean, "max": numpy.max, "min": numpy.min, "logsumexp": _logsumexp,
}
CASES = [
    ((), None), ((5,), None), ((5,), 0), ((5,), -1), ((3, 4), None), ((3, 4), 0), ((3, 4), -1),
    ((3, 4), (0, 1)), ((2, 3, 4), 1), ((2, 3, 4), (0, 2)), ((2, 3, 4), (-1, 0)), ((2, 1, 3), 1),
]


@pytest.mark.parametrize("name", list(REFERENCES))
@pytest.mark.parametrize("shape, axis", CASES)
@pytest.mark.parametrize("keepdims", [False, True])
def test_values_and_gradients(device, rng, name, shape, axis, keepdims):
    op = getattr(fl.ops, name)
    # Distinct values: max/min are only differentiable away from ties.
    x = rng.permutation(numpy.arange(numpy.prod(shape, dtype=int))).reshape(shape) * 0.37 + rng.uniform(0, 0.1, shape)
    y = op(fl.tensor(x, dtype="float64", device=device), axis=axis, keepdims=keepdims)
    expected = REFERENCES[name](x, axis=axis, keepdims=keepdims)
    assert y.shape == numpy.shape(expected)
    numpy.testing.assert_allclose(y.numpy(), expected, rtol=1e-12)
    check_gradients(lambda t: op(t, axis=axis, keepdims=keepdims), [x], device=device)


@pytest.mark.parametrize("name", list(REFERENCES))
def test_tensor_method_and_float32_kept(device, name):
    x = fl.tensor([[1.0, 2.0], [3.0, 5.0]], device=device)
    y = getattr(x, name)(axis=0)
    assert y.dtype == numpy.float32
    numpy.testing.assert_allclose(y.numpy(), getattr(fl.ops, name)(x, 0).numpy())


def test_mean_of_integers_is_default_float(device):
    y = fl.tensor([[1, 2], [3, 5]], device=device).mean(axis=1)
    assert y.dtype == numpy.float32 and y.tolist() == [1.5, 4.0]


@pytest.mark.parametrize("name, torch_name", [("max", "amax"), ("min", "amin")])
def test_ties_share_the_gradient_evenly_like_torch(device, name, torch_name):
    data = numpy.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [0.0, -1.0, 5.0, -1.0]], dtype=numpy.float32)
    weights = numpy.array([1.0, 2.0, 3.0], dtype=numpy.float32)
    x = fl.tensor(data, requires_grad=True, device=device)
    (getattr(x, name)(axis=1) * fl.tensor(weights, device=device)).sum().backward()
    t = torch.tensor(data, requires_grad=True)
    (getattr(t, torch_name)(dim=1) * torch.tensor(weights)).sum().backward()
    numpy.testing.assert_allclose(to_numpy(x.grad), t.grad.numpy(), rtol=1e-6)


def test_max_over_all_axes_with_ties(device):
    x = fl.tensor([[4.0, 1.0], [4.0, 4.0]], requires_grad=True, device=device)
    x.max().backward()
    numpy.testing.assert_allclose(to_numpy(x.grad), [[1 / 3, 0.0], [1 / 3, 1 / 3]], rtol=1e-6)


@pytest.mark.filterwarnings("ignore:divide by zero encountered in log")  # log(0) = -inf is the answer
def test_logsumexp_is_stable_for_large_and_infinite_values(device):
    x = fl.tensor([[1e4, 1e4, -1e4], [-numpy.inf, -numpy.inf, -numpy.inf]], requires_grad=True, device=device)
    y = fl.ops.logsumexp(x, axis=1)
    numpy.testing.assert_allclose(y.numpy(), [1e4 + numpy.log(2.0), -numpy.inf], rtol=1e-6)
    y[0].backward()
    numpy.testing.assert_allclose(to_numpy(x.grad), [[0.5, 0.5, 0.0], [0.0, 0.0, 0.0]], atol=1e-7)


def test_logsumexp_matches_torch(device, rng):
    data = (rng.standard_normal((4, 5, 3)) * 30).astype(numpy.float32)
    x = fl.tensor(data, requires_grad=True, device=device)
    y = fl.ops.logsumexp(x, axis=(0, -1), keepdims=True)
    y.sum().backward()
    t = torch.tensor(data, requires_grad=True)
    ty = torch.logsumexp(t, dim=(0, 2), keepdim=True)
    ty.sum().backward()
    numpy.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-5)
    numpy.testing.assert_allclose(to_numpy(x.grad), t.grad.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", list(REFERENCES))
def test_axis_out_of_range(device, name):
    x = fl.tensor(numpy.ones((2, 3)), device=device)
    with pytest.raises(ValueError, match=r"axis`=2 is out of range for a tensor of rank 2; expected an integer in \[-2, 1\]"):
        getattr(fl.ops, name)(x, axis=2)
    with pytest.raises(ValueError, match=r"axis`=-3 is out of range"):
        getattr(fl.ops, name)(x, axis=(0, -3))


def test_repeated_and_non_integer_axes(device):
    x = fl.tensor(numpy.ones((2, 3)), device=device)
    with pytest.raises(ValueError, match=r"sum: expected distinct axes; got axis=\(1, -1\)"):
        x.sum(axis=(1, -1))
    with pytest.raises(TypeError, match="mean: expected `axis` to be an integer; got 0.5"):
        x.mean(axis=0.5)


@pytest.mark.parametrize("name", ["max", "min", "logsumexp"])
def test_empty_reduction_is_an_error(device, name):
    x = fl.tensor(numpy.ones((0, 3)), device=device)
    with pytest.raises(ValueError, match=rf"{name}: cannot reduce over an empty axis.*shape \(0, 3\)"):
        getattr(fl.ops, name)(x, axis=0)
    assert getattr(fl.ops, name)(x, axis=1).shape == (0,)
