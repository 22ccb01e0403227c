"""The Activation layer: values, logits, names, config."""
import numpy
import pytest

import flowlearn as fl
from .layer_checks import assert_config_round_trip

X = numpy.array([[-1.0, 0.5, 2.0]], dtype="float32")


@pytest.mark.parametrize("name, expected", [
    ("relu", numpy.maximum(X, 0)),
    ("tanh", numpy.tanh(X)),
    ("softmax", numpy.exp(X) / numpy.exp(X).sum()),
    ("linear", X),
])
def test_values(name, expected):
    layer = fl.layers.Activation(name)
    numpy.testing.assert_allclose(layer(X).numpy(), expected, rtol=1e-6)
    numpy.testing.assert_array_equal(layer.call_logits(X).numpy(), X)
    assert layer.compute_output_shape((None, 3)) == (None, 3) and layer.weights == []


def test_gradient_flows_to_the_input_and_config_round_trips():
    x = fl.tensor(X, requires_grad=True)
    fl.layers.Activation("relu")(x).sum().backward()
    numpy.testing.assert_array_equal(x.grad, [[0.0, 1.0, 1.0]])
    layer = assert_config_round_trip(fl.layers.Activation("sigmoid"), X)
    assert layer.activation == "sigmoid" and fl.layers.Activation(None).activation is None


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"`activation`.*unknown activation 'gelu2'.*'relu'.*'sigmoid'.*'softmax'"):
        fl.layers.Activation("gelu2")
    with pytest.raises(ValueError, match=r"`activation`.*Received: activation=3"):
        fl.layers.Activation(3)
