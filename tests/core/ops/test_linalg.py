"""matmul: numpy semantics (1-D operands, broadcast batch dimensions), gradients, PyTorch parity."""
import numpy
import pytest
import torch

import flowlearn as fl
from flowlearn.core.backend import to_numpy
from flowlearn.core.gradient_check import check_gradients

SHAPES = [
    ((3, 4), (4, 2)), ((4,), (4, 2)), ((3, 4), (4,)), ((4,), (4,)),
    ((2, 3, 4), (4, 5)), ((3, 4), (2, 4, 5)), ((2, 3, 4), (2, 4, 5)), ((2, 1, 3, 4), (5, 4, 2)),
    ((1, 3, 4), (2, 4, 2)), ((4,), (2, 4, 3)), ((2, 3, 4), (4,)), ((2, 3, 4), (4, 1)),
]


@pytest.mark.parametrize("shape_a, shape_b", SHAPES)
def test_values_and_gradients(device, rng, shape_a, shape_b):
    a, b = rng.standard_normal(shape_a), rng.standard_normal(shape_b)
    y = fl.tensor(a, dtype="float64", device=device) @ fl.tensor(b, dtype="float64", device=device)
    expected = a @ b
    assert y.shape == expected.shape
    numpy.testing.assert_allclose(y.numpy(), expected, rtol=1e-12)
    check_gradients(fl.ops.matmul, [a, b], device=device)


@pytest.mark.parametrize("wrt", [[0], [1]])
def test_only_the_needed_gradient_is_computed(device, rng, wrt):
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    check_gradients(fl.ops.matmul, [a, b], wrt=wrt, device=device)


@pytest.mark.parametrize("shape_a, shape_b", [((16, 32), (32, 8)), ((4, 1, 6, 5), (3, 5, 7)), ((6, 5, 8), (8, 3))])
def test_matches_torch(device, rng, shape_a, shape_b):
    a_data = rng.standard_normal(shape_a).astype(numpy.float32)
    b_data = rng.standard_normal(shape_b).astype(numpy.float32)
    out_grad = rng.standard_normal(numpy.matmul(a_data, b_data).shape).astype(numpy.float32)
    a = fl.tensor(a_data, requires_grad=True, device=device)
    b = fl.tensor(b_data, requires_grad=True, device=device)
    y = a @ b
    y.backward(fl.tensor(out_grad, device=device))
    ta, tb = torch.tensor(a_data, requires_grad=True), torch.tensor(b_data, requires_grad=True)
    ty = ta @ tb
    ty.backward(torch.tensor(out_grad))
    assert y.dtype == a.grad.dtype == b.grad.dtype == numpy.float32
    numpy.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-4, atol=1e-5)
    numpy.testing.assert_allclose(to_numpy(a.grad), ta.grad.numpy(), rtol=1e-4, atol=1e-5)
    numpy.testing.assert_allclose(to_numpy(b.grad), tb.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_mixed_operands(device):
    w = fl.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True, device=device)
    y = numpy.array([[1, 0], [0, 1]]) @ w  # integer array on the left: float32 wins, no float64
    assert y.dtype == numpy.float32 and y.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    z = w @ fl.tensor([[1.0], [1.0]], dtype="float64", device=device)
    assert z.dtype == numpy.float64
    z.sum().backward()
    assert w.grad.dtype == numpy.float32


def test_shape_errors_name_both_shapes(device):
    a = fl.tensor(numpy.ones((4, 3)), device=device)
    with pytest.raises(ValueError, match=r"^matmul: inner dimensions do not match; got shapes \(4, 3\) and \(2, 5\)$"):
        a @ fl.tensor(numpy.ones((2, 5)), device=device)
    with pytest.raises(ValueError, match=r"matmul: inner dimensions do not match; got shapes \(4, 3\) and \(4,\)"):
        a @ fl.tensor(numpy.ones(4), device=device)
    with pytest.raises(ValueError, match=r"matmul: batch dimensions do not broadcast; got shapes \(2, 4, 3\) and \(3, 3, 5\)"):
        fl.tensor(numpy.ones((2, 4, 3)), device=device) @ fl.tensor(numpy.ones((3, 3, 5)), device=device)
    with pytest.raises(ValueError, match=r"matmul: expected operands with at least 1 dimension; got shapes \(\) and \(3,\)"):
        fl.ops.matmul(fl.tensor(1.0, device=device), fl.tensor(numpy.ones(3), device=device))
