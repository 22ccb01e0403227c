"""Element-wise unary math: exp, log, sqrt, abs."""
import numpy
import pytest
import torch

import flowlearn as fl
from flowlearn.core.gradient_check import check_gradients

SHAPES = [(), (4,), (2, 3), (2, 1, 3)]
# (op, numpy reference, input sampler keeping away from the domain edges and kinks)
OPS = [
    ("exp", numpy.exp, lambda rng, s: rng.standard_normal(s)),
    ("log", numpy.log, lambda rng, s: rng.uniform(0.5, 3.0, s)),
    ("sqrt", numpy.sqrt, lambda rng, s: rng.uniform(0.5, 3.0, s)),
    ("abs", numpy.abs, lambda rng, s: rng.uniform(0.2, 2.0, s) * rng.choice([-1.0, 1.0], s)),
]


@pytest.mark.parametrize("name, reference, sample", OPS, ids=[o[0] for o in OPS])
@pytest.mark.parametrize("shape", SHAPES)
def test_gradients_and_values(device, rng, name, reference, sample, shape):
    op = getattr(fl.ops, name)
    x = sample(rng, shape)
    numpy.testing.assert_allclose(op(fl.tensor(x, dtype="float64", device=device)).numpy(), reference(x))
    check_gradients(op, [x], device=device)


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "abs"])
def test_float32_stays_float32_and_method_matches(device, name):
    x = fl.tensor([0.5, 1.5], device=device)
    y = getattr(fl.ops, name)(x)
    assert y.dtype == numpy.float32
    if name != "abs":
        numpy.testing.assert_array_equal(getattr(x, name)().numpy(), y.numpy())


def test_integer_input_becomes_default_float_except_abs(device):
    x = fl.tensor([1, 4], device=device)
    assert fl.ops.sqrt(x).dtype == numpy.float32
    numpy.testing.assert_allclose(fl.ops.sqrt(x).numpy(), [1.0, 2.0])
    assert fl.ops.abs(fl.tensor([-3, 2], device=device)).tolist() == [3, 2]


def test_abs_gradient_at_zero_is_zero_and_builtin_abs_works(device):
    x = fl.tensor([-2.0, 0.0, 3.0], requires_grad=True, device=device)
    abs(x).sum().backward()
    assert x.grad.tolist() == [-1.0, 0.0, 1.0]


def test_matches_torch(device, rng):
    data = rng.uniform(0.5, 2.0, (3, 4)).astype(numpy.float32)
    x = fl.tensor(data, requires_grad=True, device=device)
    (fl.ops.exp(x) * fl.ops.log(x) + fl.ops.sqrt(x)).sum().backward()
    t = torch.tensor(data, requires_grad=True)
    (t.exp() * t.log() + t.sqrt()).sum().backward()
    numpy.testing.assert_allclose(fl.backend.to_numpy(x.grad), t.grad.numpy(), rtol=1e-4, atol=1e-5)
