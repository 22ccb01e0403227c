"""Embedding: lookup shapes and values, gradients of repeated ids, range errors, config."""
import numpy
import pytest

import flowlearn as fl
from .layer_checks import assert_config_round_trip

IDS = numpy.array([[1, 2, 1], [0, 9, 3]])


def test_lookup_returns_the_rows():
    layer = fl.layers.Embedding(10, 4)
    y = layer(IDS)
    assert y.shape == (2, 3, 4) and layer.compute_output_shape((None, 3)) == (None, 3, 4)
    numpy.testing.assert_array_equal(y.numpy(), layer.embeddings.numpy()[IDS])
    assert fl.layers.Embedding(10, 4)(numpy.array([3, 4])).shape == (2, 4)
    numpy.testing.assert_array_equal(layer(IDS.astype("float32")).numpy(), y.numpy())  # whole floats are ids
    assert numpy.abs(layer.embeddings.numpy()).max() <= 0.05  # Keras's default uniform(-0.05, 0.05)


def test_repeated_ids_add_up_their_gradients():
    layer = fl.layers.Embedding(10, 4)
    layer(IDS).sum().backward()
    counts = numpy.bincount(IDS.ravel(), minlength=10)
    numpy.testing.assert_array_equal(layer.embeddings.grad, numpy.repeat(counts[:, None], 4, axis=1))


@pytest.mark.parametrize("ids, low, high", [([[0, 10]], 0, 10), ([[-1, 3]], -1, 3)])
def test_out_of_range_ids_name_the_range(ids, low, high):
    layer = fl.layers.Embedding(10, 4)
    message = rf"ids must be in \[0, 10\) \(input_dim=10\); got values in \[{low}, {high}\]"
    with pytest.raises(ValueError, match=message):
        layer(numpy.array(ids))


def test_non_integer_ids_are_rejected():
    with pytest.raises(ValueError, match="expected integer ids; got non-integral values"):
        fl.layers.Embedding(10, 4)(numpy.array([[0.5]]))


def test_config_round_trip():
    assert_config_round_trip(fl.layers.Embedding(10, 3, embeddings_initializer="random_normal"), IDS)


@pytest.mark.parametrize("kwargs, message", [
    ({"input_dim": 0, "output_dim": 4}, r"`input_dim`.*Received: input_dim=0"),
    ({"input_dim": 10, "output_dim": -4}, r"`output_dim`.*Received: output_dim=-4"),
])
def test_bad_arguments_name_the_argument_and_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fl.layers.Embedding(**kwargs)
