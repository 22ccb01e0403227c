"""SavedModel export -> load -> predict equals the in-memory predictions, with TF Serving's signatures."""
import numpy
import pytest
from sklearn.datasets import load_iris

import flowlearn as fl
from flowlearn.io import load_saved_model


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return X, y


def test_sequential_cnn_round_trip(tmp_path):
    model = fl.Sequential([fl.layers.Input((8, 8, 1)), fl.layers.Conv2D(4, 3, padding="same", activation="relu"),
                           fl.layers.MaxPooling2D(2), fl.layers.Flatten(), fl.layers.Dense(3, activation="softmax")])
    path = model.export(tmp_path / "mnist" / "1")
    loaded = load_saved_model(path)
    x = numpy.random.default_rng(0).random((5, 8, 8, 1), dtype=numpy.float32)  # traced at 2 rows; 5 here
    numpy.testing.assert_allclose(loaded(x)["outputs"], model.predict(x, verbose=0), rtol=1e-5)
    assert loaded.version == 1
    assert loaded.signatures["serving_default"].inputs == [{"name": "inputs", "dtype": "float32",
                                                           "shape": [None, 8, 8, 1]}]
    assert loaded.signatures["serving_default"].outputs == [{"name": "outputs", "dtype": "float32", "shape": [None, 3]}]
