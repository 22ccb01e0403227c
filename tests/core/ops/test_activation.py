import json
import warnings

import numpy
import pytest
import torch

import flowlearn as fl
from flowlearn.core import Graph, ops
from flowlearn.core.gradient_check import check_gradients
from flowlearn.core.ops import get_activation

# name -> (flowlearn function, torch function by name, has a kink at 0)
ACTIVATIONS = {
    "relu": (ops.relu, lambda F, t: F.relu(t), True),
    "leaky_relu": (ops.leaky_relu, lambda F, t: F.leaky_relu(t, 0.2), True),
    "leaky_relu_steep": (lambda x: ops.leaky_relu(x, alpha=1.5), lambda F, t: F.leaky_relu(t, 1.5), True),
    "leaky_relu_negative": (lambda x: ops.leaky_relu(x, alpha=-0.3), lambda F, t: F.leaky_relu(t, -0.3), True),
    "elu": (ops.elu, lambda F, t: F.elu(t), True),
    "elu_alpha": (lambda x: ops.elu(x, alpha=0.4), lambda F, t: F.elu(t, alpha=0.4), True),
    "selu": (ops.selu, lambda F, t: F.selu(t), True),
    "sigmoid": (ops.sigmoid, lambda F, t: F.sigmoid(t), False),
    "tanh": (ops.tanh, lambda F, t: F.tanh(t), False),
    "softplus": (ops.softplus, lambda F, t: F.softplus(t), False),
    "softmax": (ops.softmax, lambda F, t: F.softmax(t, dim=-1), False),
    "log_softmax": (ops.log_softmax, lambda F, t: F.log_softmax(t, dim=-1), False),
}


def _sample(rng, shape, kinked, spread=2.0):
    """Standard normal values; for kinked functions, kept at least 0.1 away from 0."""
    x = rng.standard_normal(shape) * spread
    if kinked:
        x = numpy.sign(x) * (0.1 + numpy.abs(x))
    return x


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 4)])
def test_gradients_match_finite_differences(name, shape, device, rng):
    fn, _, kinked = ACTIVATIONS[name]
    check_gradients(fn, [_sample(rng, shape, kinked)], device=device)


@pytest.mark.parametrize("fn", [ops.softmax, ops.log_softmax], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3])
def test_softmax_gradients_along_every_axis(fn, axis, device, rng):
    x = rng.standard_normal((3, 4, 5)) * 3
    check_gradients(lambda t: fn(t, axis=axis), [x], device=device)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_sums_to_one_and_matches_log_softmax(axis, device, rng):
    x = fl.tensor(rng.standard_normal((3, 4, 5)) * 10, device=device)
    p = ops.softmax(x, axis=axis).numpy()
    numpy.testing.assert_allclose(p.sum(axis=axis), 1.0, rtol=1e-6)
    numpy.testing.assert_allclose(numpy.log(p), ops.log_softmax(x, axis=axis).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_matches_pytorch_in_float32(name, device, rng):
    fn, torch_fn, kinked = ACTIVATIONS[name]
    x = _sample(rng, (6, 9), kinked, spread=4.0).astype(numpy.float32)
    x[0, :3] = [25.0, -25.0, 60.0]  # the saturated tails as well
    upstream = rng.standard_normal(x.shape).astype(numpy.float32)

    ours = fl.tensor(x, requires_grad=True, device=device)
    y = fn(ours)
    y.backward(fl.tensor(upstream, device=device))

    theirs = torch.tensor(x, requires_grad=True)
    expected = torch_fn(torch.nn.functional, theirs)
    expected.backward(torch.tensor(upstream))

    assert y.dtype == numpy.float32 and ours.grad.dtype == numpy.float32
    numpy.testing.assert_allclose(y.numpy(), expected.detach().numpy(), rtol=1e-4, atol=1e-6)
    numpy.testing.assert_allclose(fl.backend.to_numpy(ours.grad), theirs.grad.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", [name for name in ACTIVATIONS if "softmax" not in name])
@pytest.mark.parametrize("value", [-1.3, 0.7])
def test_elementwise_activations_take_a_scalar_tensor(name, value, device):
    # A 0-d input (a single weight times a scalar, as in a hand-written logistic regression): numpy's ufuncs
    # return a numpy scalar, not an array, for 0-d arrays, which a later `out=` argument then refused.
    fn, torch_fn, _ = ACTIVATIONS[name]
    ours = fl.tensor(value, requires_grad=True, device=device)
    y = fn(ours)
    y.backward()
    theirs = torch.tensor(value, dtype=torch.float32, requires_grad=True)
    expected = torch_fn(torch.nn.functional, theirs)
    expected.backward()
    assert y.shape == () and ours.grad.shape == ()
    numpy.testing.assert_allclose(y.numpy(), expected.detach().numpy(), rtol=1e-5)
    numpy.testing.assert_allclose(fl.backend.to_numpy(ours.grad), theirs.grad.numpy(), rtol=1e-5)


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_stable_at_large_magnitudes(name, dtype, device):
    fn, _, _ = ACTIVATIONS[name]
    x = fl.tensor([[-1e4, -100.0, -1.0, 1.0, 100.0, 1e4]], dtype=dtype, device=device, requires_grad=True)
    with warnings.catch_warnings(), numpy.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        y = fn(x)
        y.backward(fl.tensor(numpy.ones(y.shape), dtype=dtype, device=device))
    assert numpy.isfinite(y.numpy()).all()
    grad = fl.backend.to_numpy(x.grad)
    assert numpy.isfinite(grad).all() and grad.dtype == dtype


def test_saturated_values(device):
    x = fl.tensor([-1e4, 1e4], dtype="float64", device=device)
    numpy.testing.assert_allclose(ops.sigmoid(x).numpy(), [0.0, 1.0], rtol=0, atol=1e-300)
    numpy.testing.assert_array_equal(ops.softplus(x).numpy(), [0.0, 1e4])
    numpy.testing.assert_array_equal(ops.elu(x).numpy(), [-1.0, 1e4])
    # tiny probabilities keep their relative precision instead of rounding to 0
    numpy.testing.assert_allclose(ops.sigmoid(fl.tensor([-30.0], device=device)).numpy(), [numpy.exp(-30.0)],
                                  rtol=1e-5)
    logits = fl.tensor([[1e4, 0.0, -1e4]], device=device)
    numpy.testing.assert_array_equal(ops.softmax(logits).numpy(), [[1.0, 0.0, 0.0]])
    numpy.testing.assert_allclose(ops.log_softmax(logits).numpy(), [[0.0, -1e4, -2e4]])


@pytest.mark.parametrize("fn", [ops.relu, ops.sigmoid, ops.tanh, ops.softmax], ids=lambda f: f.__name__)
def test_keeps_only_its_output_for_backward(fn, device, rng):
    y = fn(fl.tensor(rng.standard_normal((3, 4)), requires_grad=True, device=device))
    assert y._node.saved is y.data


def test_relu_gradient_is_zero_at_and_below_zero(device):
    x = fl.tensor([-2.0, 0.0, 3.0], requires_grad=True, device=device)
    y = ops.relu(x)
    y.backward(fl.tensor([1.0, 1.0, 1.0], device=device))
    numpy.testing.assert_array_equal(y.numpy(), [0.0, 0.0, 3.0])
    numpy.testing.assert_array_equal(fl.backend.to_numpy(x.grad), [0.0, 0.0, 1.0])


def test_tensor_methods_are_bound(device):
    x = fl.tensor([-1.0, 0.5], device=device)
    numpy.testing.assert_array_equal(x.relu().numpy(), ops.relu(x).numpy())
    numpy.testing.assert_array_equal(x.sigmoid().numpy(), ops.sigmoid(x).numpy())
    numpy.testing.assert_array_equal(x.tanh().numpy(), ops.tanh(x).numpy())


def test_attrs_replay_from_json(rng):
    x = rng.standard_normal((4, 5)).astype(numpy.float32)
    graph = fl.trace(lambda t: ops.log_softmax(ops.elu(ops.leaky_relu(t, alpha=0.1), alpha=0.5), axis=0), x)
    restored = Graph.from_dict(json.loads(json.dumps(graph.to_dict())), graph.arrays)
    expected = ops.log_softmax(ops.elu(ops.leaky_relu(fl.tensor(x), alpha=0.1), alpha=0.5), axis=0).numpy()
    numpy.testing.assert_array_equal(restored.run(x), expected)


def test_bad_inputs_name_the_problem(device):
    x = fl.tensor(numpy.ones((2, 3)), device=device)
    with pytest.raises(ValueError, match=r"softmax: expected `axis` in \[-2, 2\) .* got axis=2"):
        ops.softmax(x, axis=2)
    with pytest.raises(TypeError, match="log_softmax: expected an integer `axis`; got 0.5"):
        ops.log_softmax(x, axis=0.5)
    with pytest.raises(TypeError, match="sigmoid: expected a float tensor; got dtype int64"):
        ops.sigmoid(fl.tensor([1, 2], device=device))
    with pytest.raises(TypeError, match="leaky_relu: expected a real number for `alpha`; got 'big'"):
        ops.leaky_relu(x, alpha="big")


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "elu", "selu", "sigmoid", "tanh", "softplus", "softmax",
                                  "log_softmax"])
def test_get_activation_by_name(name):
    fn = get_activation(name)
    assert fn is getattr(ops, name)
    assert get_activation(fn.__name__) is fn


def test_get_activation_identity_callable_and_errors():
    x = fl.tensor([-1.0, 2.0])
    assert get_activation(None)(x) is x
    assert get_activation("linear")(x) is x
    assert get_activation(None).__name__ == "linear"
    custom = lambda t: t * 2  # noqa: E731
    assert get_activation(custom) is custom
    with pytest.raises(ValueError, match=r"unknown activation 'gelu'; expected one of \[.*'relu'.*'tanh'\]"):
        get_activation("gelu")
    with pytest.raises(TypeError, match="expected an activation name, None or a callable; got int 3"):
        get_activation(3)
