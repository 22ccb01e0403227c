"""Dense: shapes, activations and logits, gradients (with PyTorch parity), config, bad arguments."""
import numpy
import pytest
import torch

import flowlearn as fl
from flowlearn.core.gradient_check import check_gradients
from .layer_checks import assert_config_round_trip, assert_gradients_reach_weights


@pytest.mark.parametrize("shape", [(32, 784), (4, 5, 6), (2, 3, 4, 5)])
def test_output_shape_on_the_last_axis(shape):
    layer = fl.layers.Dense(7)
    y = layer(numpy.random.default_rng(0).standard_normal(shape))  # builds for any rank >= 2
    assert y.shape == shape[:-1] + (7,)
    assert layer.compute_output_shape((None,) + shape[1:]) == (None,) + shape[1:-1] + (7,)
    # Same as applying it to the rows of the flattened input.
    rows = numpy.random.default_rng(0).standard_normal(shape).reshape(-1, shape[-1])
    numpy.testing.assert_allclose(y.numpy().reshape(-1, 7), layer(rows).numpy(), rtol=1e-5, atol=1e-6)


def test_matches_pytorch_forward_and_gradients():
    rng = numpy.random.default_rng(1)
    x = rng.standard_normal((6, 5)).astype("float32")
    layer = fl.layers.Dense(3, activation="tanh")
    xt = fl.tensor(x, requires_grad=True)
    y = layer(xt)
    g = rng.standard_normal(y.shape).astype("float32")
    y.backward(g)
    linear = torch.nn.Linear(5, 3)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(layer.kernel.numpy().T))
        linear.bias.copy_(torch.from_numpy(layer.bias.numpy()))
    xr = torch.from_numpy(x).requires_grad_()
    yr = torch.tanh(linear(xr))
    yr.backward(torch.from_numpy(g))
    numpy.testing.assert_allclose(y.numpy(), yr.detach().numpy(), rtol=1e-4, atol=1e-5)
    numpy.testing.assert_allclose(layer.kernel.grad, linear.weight.grad.numpy().T, rtol=1e-4, atol=1e-5)
    numpy.testing.assert_allclose(layer.bias.grad, linear.bias.grad.numpy(), rtol=1e-4, atol=1e-5)
    numpy.testing.assert_allclose(xt.grad, xr.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_input_gradient_matches_finite_differences():
    layer = fl.layers.Dense(3, activation="sigmoid", dtype="float64")
    layer.build((None, 4))
    check_gradients(layer, [numpy.random.default_rng(2).standard_normal((2, 4))])


@pytest.mark.parametrize("activation", [None, "relu", "softmax", "sigmoid"])
def test_gradients_reach_every_weight(activation):
    assert_gradients_reach_weights(fl.layers.Dense(4, activation=activation),
                                   numpy.random.default_rng(3).standard_normal((5, 3)))


def test_call_logits_is_the_pre_activation_output():
    layer = fl.layers.Dense(4, activation="softmax")
    x = numpy.random.default_rng(4).standard_normal((5, 3))
    assert layer.activation == "softmax"
    logits = layer.call_logits(x)
    numpy.testing.assert_allclose(fl.ops.softmax(logits).numpy(), layer(x).numpy(), rtol=1e-6)
    assert not numpy.allclose(logits.numpy(), layer(x).numpy())
    linear = fl.layers.Dense(2, activation="linear")
    assert linear.activation is None
    numpy.testing.assert_array_equal(linear.call_logits(x).numpy(), linear(x).numpy())


def test_activation_can_be_given_as_a_registered_function():
    assert fl.layers.Dense(2, activation=fl.ops.relu).activation == "relu"
    with pytest.raises(ValueError, match="custom functions cannot be saved"):
        fl.layers.Dense(2, activation=lambda x: x)


def test_no_bias_and_initializers():
    layer = fl.layers.Dense(3, use_bias=False, kernel_initializer="ones")
    y = layer(numpy.ones((2, 4)))
    assert [w.name.split("/")[1] for w in layer.weights] == ["kernel"] and layer.bias is None
    numpy.testing.assert_array_equal(y.numpy(), numpy.full((2, 3), 4.0))
    custom = fl.layers.Dense(3, bias_initializer=fl.core.initializers.Constant(0.5))
    custom(numpy.zeros((1, 2)))
    numpy.testing.assert_array_equal(custom.bias.numpy(), [0.5, 0.5, 0.5])
    assert custom.get_config()["bias_initializer"] == {"class_name": "Constant", "config": {"value": 0.5}}


def test_config_round_trip():
    layer = fl.layers.Dense(5, activation="relu", use_bias=True, kernel_initializer="he_normal",
                            kernel_regularizer=fl.layers.regularizers.L2(1e-3), bias_regularizer="l1")
    clone = assert_config_round_trip(layer, numpy.random.default_rng(5).standard_normal((3, 4)))
    assert clone.kernel_regularizer == layer.kernel_regularizer
    assert len(clone.regularization_losses()) == 2


@pytest.mark.parametrize("kwargs, message", [
    ({"units": 0}, r"`units`, expected a positive integer. Received: units=0"),
    ({"units": -3}, r"Received: units=-3"),
    ({"units": 2.5}, r"Received: units=2.5"),
    ({"units": True}, r"Received: units=True"),
    ({"units": 2, "activation": "relux"}, r"`activation`: .*unknown activation 'relux'.*'relu'.*'softmax'"),
    ({"units": 2, "use_bias": "no"}, r"`use_bias`.*Received: use_bias='no'"),
    ({"units": 2, "kernel_initializer": "glorot_unicorn"}, r"`kernel_initializer` \('glorot_unicorn'\)"),
    ({"units": 2, "kernel_regularizer": "l3"}, r"`kernel_regularizer` \('l3'\)"),
])
def test_bad_arguments_name_the_argument_and_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fl.layers.Dense(**kwargs)
