"""Flatten and Reshape: shapes, traced graphs for other batch sizes, gradients, config, errors."""
import numpy
import pytest

import flowlearn as fl
from .layer_checks import assert_config_round_trip


@pytest.mark.parametrize("shape, flat", [((2, 7, 7, 64), (2, 3136)), ((3, 5), (3, 5)), ((4,), (4, 1))])
def test_flatten_shapes(shape, flat):
    layer = fl.layers.Flatten()
    assert layer(numpy.ones(shape)).shape == flat
    assert layer.compute_output_shape((None,) + shape[1:]) == (None,) + flat[1:]


def test_flatten_traces_for_any_batch_size():
    layer = fl.layers.Flatten()
    graph = fl.trace(layer, numpy.ones((3, 2, 2)))
    x = numpy.arange(20.0).reshape(5, 2, 2)
    numpy.testing.assert_array_equal(graph.run(x), x.reshape(5, 4))


def test_reshape_with_inferred_dimension():
    layer = fl.layers.Reshape((-1, 2))
    x = numpy.arange(12.0).reshape(2, 6)
    numpy.testing.assert_array_equal(layer(x).numpy(), x.reshape(2, 3, 2))
    assert layer.compute_output_shape((None, 6)) == (None, 3, 2)
    assert fl.layers.Reshape((28, 28, 1)).compute_output_shape((None, 784)) == (None, 28, 28, 1)
    graph = fl.trace(fl.layers.Reshape((2, 2)), numpy.ones((3, 4)))
    assert graph.run(numpy.ones((7, 4))).shape == (7, 2, 2)


def test_gradients_flow_through_and_config_round_trips():
    for layer, shape in [(fl.layers.Flatten(), (2, 3, 4)), (fl.layers.Reshape((4, 3)), (2, 12))]:
        x = fl.tensor(numpy.random.default_rng(0).standard_normal(shape), requires_grad=True)
        (layer(x) * 2.0).sum().backward()
        numpy.testing.assert_array_equal(x.grad, numpy.full(shape, 2.0))
        assert_config_round_trip(layer, x.numpy())


def test_reshape_size_mismatch_names_shapes():
    message = r"cannot reshape samples of shape \(10,\) \(10 values\) into target_shape \(3, 3\)"
    with pytest.raises(ValueError, match=message):
        fl.layers.Reshape((3, 3))(numpy.ones((2, 10)))
    with pytest.raises(ValueError, match=r"cannot reshape samples of shape \(10,\)"):
        fl.layers.Reshape((-1, 3))(numpy.ones((2, 10)))


@pytest.mark.parametrize("target", [(-1, -1), (0, 3), (2.5,), "ab"])
def test_bad_target_shape_names_the_argument(target):
    with pytest.raises(ValueError, match=r"`target_shape`.*Received: target_shape="):
        fl.layers.Reshape(target)
