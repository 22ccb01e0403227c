"""InputLayer and Input: declared shape, pass-through with shape check, dtype, config."""
import json

import numpy
import pytest

import flowlearn as fl


def test_input_declares_the_shape():
    layer = fl.layers.Input((28, 28, 1), name="image")
    assert isinstance(layer, fl.layers.InputLayer) and layer.name == "image"
    assert layer.input_shape == (28, 28, 1) and layer.shape == (None, 28, 28, 1)
    assert layer.built and layer.weights == [] and layer.count_params() == 0
    assert layer.compute_output_shape((None, 28, 28, 1)) == (None, 28, 28, 1)


def test_passes_input_through_after_checking_the_shape():
    layer = fl.layers.InputLayer((None, 3))
    x = numpy.ones((2, 5, 3))
    numpy.testing.assert_array_equal(layer(x).numpy(), x)
    with pytest.raises(ValueError, match=r"expected input of shape \(None, None, 3\); got shape \(2, 5, 4\)"):
        layer(numpy.ones((2, 5, 4)))
    with pytest.raises(ValueError, match=r"expected input of shape \(None, 784\); got shape \(32, 28, 28\)"):
        fl.layers.Input((784,))(numpy.ones((32, 28, 28)))


def test_integer_dtype_keeps_ids():
    layer = fl.layers.Input((3,), dtype="int64")
    assert layer(numpy.array([[1.0, 2.0, 3.0]])).dtype == numpy.int64
    assert fl.layers.Input((3,))(numpy.array([[1, 2, 3]])).dtype == numpy.float32


def test_config_round_trip():
    layer = fl.layers.InputLayer((4, 2), batch_size=8, dtype="int32", name="ids")
    config = json.loads(json.dumps(layer.get_config()))
    clone = fl.layers.deserialize({"class_name": "InputLayer", "config": config})
    assert (clone.shape, clone.dtype, clone.name) == ((8, 4, 2), numpy.dtype("int32"), "ids")


@pytest.mark.parametrize("kwargs, message", [
    ({"shape": (0, 3)}, r"`shape`.*Received: shape=\(0, 3\)"),
    ({"shape": "784"}, r"`shape`.*Received: shape='784'"),
    ({"shape": (3,), "dtype": "complex64"}, r"`dtype`"),
    ({"shape": (3,), "batch_size": 0}, r"`batch_size`.*Received: batch_size=0"),
])
def test_bad_arguments_name_the_argument_and_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fl.layers.InputLayer(**kwargs)
