"""serialize / deserialize: every layer class through JSON, and only registered classes come back."""
import json

import numpy
import pytest

import flowlearn as fl

L = fl.layers
CASES = [
    (lambda: L.Dense(3, activation="relu", kernel_regularizer=L.regularizers.L1L2(0.1, 0.2)), (2, 4)),
    (lambda: L.Conv2D(2, (3, 2), strides=2, padding="same", dilation_rate=1), (1, 6, 6, 3)),
    (lambda: L.Conv2DTranspose(2, 3, strides=2, activation="tanh"), (1, 3, 3, 2)),
    (lambda: L.MaxPooling2D(3, 2, "same"), (1, 6, 6, 1)),
    (lambda: L.AveragePooling2D((2, 1)), (1, 4, 4, 1)),
    (lambda: L.GlobalAveragePooling2D(), (1, 4, 4, 2)),
    (lambda: L.Flatten(), (2, 3, 2)),
    (lambda: L.Reshape((-1, 3)), (2, 6)),
    (lambda: L.Dropout(0.25, seed=3), (2, 4)),
    (lambda: L.BatchNormalization(axis=1, momentum=0.9, center=False), (4, 3)),
    (lambda: L.Activation("softmax"), (2, 4)),
    (lambda: L.Embedding(5, 2), (2, 3)),
    (lambda: L.InputLayer((4,)), (2, 4)),
]


@pytest.mark.parametrize("make, shape", CASES, ids=[type(make()).__name__ for make, _ in CASES])
def test_every_layer_class_round_trips_through_json(make, shape):
    layer = make()
    x = numpy.random.default_rng(0).integers(0, 5, shape) if isinstance(layer, L.Embedding) else \
        numpy.random.default_rng(0).standard_normal(shape)
    expected = layer(x).numpy()
    data = json.loads(json.dumps(L.serialize(layer)))
    assert data["class_name"] == type(layer).__name__
    clone = L.deserialize(data)
    assert type(clone) is type(layer) and clone.name == layer.name and not (clone.weights and clone.built)
    clone(x)
    clone.set_weights(layer.get_weights())
    numpy.testing.assert_array_equal(clone(x).numpy(), expected)


def test_unknown_classes_are_refused_and_custom_objects_are_used():
    with pytest.raises(ValueError, match="unknown layer class 'os.system'.*custom_objects"):
        L.deserialize({"class_name": "os.system", "config": {}})
    with pytest.raises(ValueError, match="expected a dict with 'class_name'"):
        L.deserialize(["Dense", {}])

    class Doubler(L.Layer):
        def call(self, inputs, training=None):
            return inputs * 2.0

    restored = L.deserialize({"class_name": "Doubler", "config": {"name": "d"}}, custom_objects={"Doubler": Doubler})
    assert isinstance(restored, Doubler) and restored.name == "d"
    with pytest.raises(TypeError, match="expected a Layer"):
        L.serialize("Dense")
