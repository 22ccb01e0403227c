"""Pooling layers: values on a known input, shapes against compute_output_shape, gradients, config."""
import numpy
import pytest

import flowlearn as fl
from .layer_checks import assert_config_round_trip

X = numpy.arange(16.0, dtype="float32").reshape(1, 4, 4, 1)


def test_max_and_average_values():
    numpy.testing.assert_array_equal(fl.layers.MaxPooling2D()(X).numpy()[0, :, :, 0], [[5, 7], [13, 15]])
    numpy.testing.assert_array_equal(fl.layers.AveragePooling2D()(X).numpy()[0, :, :, 0], [[2.5, 4.5], [10.5, 12.5]])
    numpy.testing.assert_array_equal(fl.layers.GlobalAveragePooling2D()(X).numpy(), [[7.5]])


@pytest.mark.parametrize("cls", [fl.layers.MaxPooling2D, fl.layers.AveragePooling2D])
@pytest.mark.parametrize("kwargs, in_shape, out_shape", [
    ({}, (2, 28, 28, 3), (2, 14, 14, 3)),
    ({"pool_size": 3, "strides": 2}, (2, 9, 8, 3), (2, 4, 3, 3)),
    ({"pool_size": 3, "strides": 2, "padding": "same"}, (2, 9, 8, 3), (2, 5, 4, 3)),
    ({"pool_size": (2, 1)}, (1, 4, 4, 2), (1, 2, 4, 2)),
])
def test_window_pooling_shapes(cls, kwargs, in_shape, out_shape):
    layer = cls(**kwargs)
    assert layer.compute_output_shape((None,) + in_shape[1:]) == (None,) + out_shape[1:]
    assert layer(numpy.ones(in_shape)).shape == out_shape


@pytest.mark.parametrize("layer", [fl.layers.MaxPooling2D(), fl.layers.AveragePooling2D(),
                                   fl.layers.GlobalAveragePooling2D()], ids=lambda layer: type(layer).__name__)
def test_gradients_flow_to_the_input_and_config_round_trips(layer):
    assert layer.weights == [] and layer.compute_output_shape((None, 4, 4, 2))[-1] == 2
    x = fl.tensor(numpy.random.default_rng(0).standard_normal((2, 4, 4, 2)), requires_grad=True)
    layer(x).sum().backward()
    assert x.grad.shape == x.shape and numpy.abs(x.grad).sum() > 0
    assert_config_round_trip(layer, x.numpy())


def test_max_pooling_gradient_goes_to_the_maxima():
    x = fl.tensor(X, requires_grad=True)
    fl.layers.MaxPooling2D()(x).sum().backward()
    expected = numpy.zeros((4, 4))
    expected[[1, 1, 3, 3], [1, 3, 1, 3]] = 1
    numpy.testing.assert_array_equal(x.grad[0, :, :, 0], expected)


def test_rank_and_fit_errors():
    with pytest.raises(ValueError, match=r"expected input of rank 4; got shape \(4, 4\)"):
        fl.layers.MaxPooling2D()(numpy.ones((4, 4)))
    with pytest.raises(ValueError, match="does not fit"):
        fl.layers.MaxPooling2D(5).compute_output_shape((None, 3, 3, 1))
    with pytest.raises(ValueError, match=r"expected input of rank 4; got shape \(2, 3\)"):
        fl.layers.GlobalAveragePooling2D()(numpy.ones((2, 3)))


@pytest.mark.parametrize("cls", [fl.layers.MaxPooling2D, fl.layers.AveragePooling2D])
@pytest.mark.parametrize("kwargs, message", [
    ({"pool_size": 0}, r"`pool_size`.*Received: pool_size=0"),
    ({"strides": (1, 0)}, r"`strides`.*Received: strides=\(1, 0\)"),
    ({"padding": "causal"}, r"`padding`.*Received: padding='causal'"),
])
def test_bad_arguments_name_the_argument_and_value(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)
