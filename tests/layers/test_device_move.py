"""Layer.to / Sequential.to: a move that fails leaves the model where it was, usable."""
import numpy
import pytest

from flowlearn.core import backend
from flowlearn.layers import Dense, Sequential


def small_model():
    model = Sequential([Dense(4, activation="relu"), Dense(2)])
    model.build((None, 3))
    return model


def no_cupy():
    raise RuntimeError("device='gpu' needs cupy, which is not installed.")


def test_to_gpu_without_cupy_raises_and_leaves_the_model_on_the_cpu(monkeypatch):
    monkeypatch.setattr(backend, "_load_cupy", no_cupy)
    model = small_model()
    x = numpy.ones((2, 3), dtype="float32")
    expected = model.predict(x)
    with pytest.raises(RuntimeError, match="needs cupy"):
        model.to("gpu")
    assert model.device == "cpu"
    assert all(layer.device == "cpu" for layer in model.layers)
    assert all(isinstance(w.data, numpy.ndarray) for w in model.weights)
    numpy.testing.assert_array_equal(model.predict(x), expected)  # later calls still work


def test_a_copy_failing_half_way_moves_nothing(monkeypatch):
    model = small_model()
    before = [w.data for w in model.weights]
    calls = []

    def flaky_copy(array, device):
        calls.append(device)
        if len(calls) == 3:
            raise MemoryError("out of device memory")
        return array.copy()

    monkeypatch.setattr(backend, "_load_cupy", lambda: numpy)  # the device check passes
    monkeypatch.setattr(backend, "to_device", flaky_copy)
    with pytest.raises(MemoryError):
        model.to("gpu")
    assert model.device == "cpu" and all(layer.device == "cpu" for layer in model.layers)
    assert all(w.data is old for w, old in zip(model.weights, before))


def test_a_bad_device_name_is_refused_before_anything_changes():
    model = small_model()
    with pytest.raises(ValueError, match="expected one of"):
        model.to("tpu")
    assert model.device == "cpu"
