"""Every layer, and a whole CNN, traced at one batch size and replayed at others equals eager execution.

The cases are checked against the layer classes that ``fl.layers`` exports, so a new layer without a
case here fails ``test_every_exported_layer_has_a_trace_case`` instead of going untested.
"""
import inspect
import json
import warnings

import numpy
import pytest

import flowlearn as fl
from flowlearn.core import Graph, TraceWarning
from flowlearn.layers import Layer


def _images(channels=3, size=6):
    return lambda rng, n: rng.standard_normal((n, size, size, channels)).astype(numpy.float32)


def _rows(features=5):
    return lambda rng, n: rng.standard_normal((n, features)).astype(numpy.float32)


def _batch_normalization():
    layer = fl.layers.BatchNormalization()
    data = numpy.random.default_rng(1).standard_normal((16, 6, 6, 3)).astype(numpy.float32) * 3 + 1
    with fl.training_mode():  # moving statistics away from their initial 0 and 1, so inference is not a no-op
        for _ in range(3):
            layer(data)
    return layer


def _sequential():
    return fl.layers.Sequential([fl.layers.Dense(4, activation="tanh"), fl.layers.Dense(2)])


# layer class -> (a fresh layer, example input for a batch of n)
CASES = {
    fl.layers.Dense: (lambda: fl.layers.Dense(4, activation="relu"), _rows()),
    fl.layers.Conv2D: (lambda: fl.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu"), _images()),
    fl.layers.Conv2DTranspose: (lambda: fl.layers.Conv2DTranspose(2, 3, strides=2, padding="valid"), _images()),
    fl.layers.MaxPooling2D: (lambda: fl.layers.MaxPooling2D(2), _images()),
    fl.layers.AveragePooling2D: (lambda: fl.layers.AveragePooling2D(3, strides=1, padding="same"), _images()),
    fl.layers.GlobalAveragePooling2D: (fl.layers.GlobalAveragePooling2D, _images()),
    fl.layers.Flatten: (fl.layers.Flatten, _images()),
    fl.layers.Reshape: (lambda: fl.layers.Reshape((-1, 9)), _images(channels=2)),
    fl.layers.Dropout: (lambda: fl.layers.Dropout(0.5), _rows()),
    fl.layers.BatchNormalization: (_batch_normalization, _images()),
    fl.layers.Activation: (lambda: fl.layers.Activation("softmax"), _rows()),
    fl.layers.Embedding: (lambda: fl.layers.Embedding(10, 3), lambda rng, n: rng.integers(0, 10, (n, 4))),
    fl.layers.InputLayer: (lambda: fl.layers.InputLayer((5,)), _rows()),
    fl.layers.Sequential: (_sequential, _rows()),
}


def _eager(layer, x):
    with fl.no_grad(), fl.training_mode(False):
        return layer(fl.tensor(x)).numpy()


def _trace_quietly(fn, x):
    """fl.trace, with any TraceWarning an error: a layer must neither freeze a value nor fix the batch size."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", TraceWarning)
        return fl.trace(fn, x)


def test_every_exported_layer_has_a_trace_case():
    exported = {
        obj for obj in (getattr(fl.layers, name) for name in fl.layers.__all__)
        if inspect.isclass(obj) and issubclass(obj, Layer) and obj is not Layer
    }
    assert exported, "found no layer classes in fl.layers"
    missing = sorted(cls.__name__ for cls in exported - set(CASES))
    assert not missing, f"layers without a trace case in {__file__}: {missing}"


@pytest.mark.parametrize("cls", list(CASES), ids=lambda cls: cls.__name__)
def test_layer_replays_like_eager_at_other_batch_sizes(cls, rng):
    make, example = CASES[cls]
    layer = make()
    graph = _trace_quietly(layer, example(rng, 3))
    assert graph.fixed_batch is None and graph.inputs[0]["shape"][0] is None
    restored = Graph.from_dict(json.loads(json.dumps(graph.to_dict())), graph.arrays)
    for n in (1, 7):
        x = example(rng, n)
        expected = _eager(layer, x)
        for g in (graph, restored):
            got = g.run(x)
            assert got.shape == expected.shape
            numpy.testing.assert_array_equal(got, expected)


def _cnn(classes=3):
    layers = fl.layers
    model = layers.Sequential([
        layers.Conv2D(4, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(6, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(8, activation="relu"),
        layers.Dropout(0.5),
        layers.Dense(classes, activation="softmax"),
    ])
    model.build((None, 12, 12, 1))
    return model


@pytest.mark.parametrize("traced_batch", [2, 3])
def test_whole_cnn_replays_like_eager_and_predict(traced_batch, rng):
    model = _cnn()
    graph = _trace_quietly(model, rng.standard_normal((traced_batch, 12, 12, 1)).astype(numpy.float32))
    assert [n["op"] for n in graph.nodes].count("conv2d") == 2
    assert all(n["shape"][0] is None and n["batch"] for n in graph.nodes)  # the batch reaches every node
    restored = Graph.from_dict(json.loads(json.dumps(graph.to_dict())), graph.arrays)
    for n in (1, 7):
        x = rng.standard_normal((n, 12, 12, 1)).astype(numpy.float32)
        expected = _eager(model, x)
        numpy.testing.assert_array_equal(graph.run(x), expected)
        numpy.testing.assert_array_equal(restored.run(x), expected)
        numpy.testing.assert_allclose(graph.run(x), model.predict(x), rtol=1e-6, atol=1e-7)
