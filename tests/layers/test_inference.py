"""Prediction through the traced replay plan (flowlearn/layers/inference.py) equals layer-by-layer
execution bit for bit, follows the weights through training and replacement, and stays out of the way of
models it cannot replay exactly."""
import numpy
import pytest

import flowlearn as fl
from flowlearn.estimators import CNNClassifier, DNNClassifier, DNNRegressor
from flowlearn.layers import Layer, Sequential
from flowlearn.layers import inference
from flowlearn.layers.inference import replay_forward


def _eager(model, x):
    with fl.no_grad(), fl.training_mode(False):
        result = fl.tensor(x)
        for layer in model._layers:
            result = layer(result)
        return result.numpy()


def _cnn():
    model = Sequential([
        fl.layers.Input((12, 12, 2)),
        fl.layers.Conv2D(4, 3, padding="same", activation="relu"), fl.layers.MaxPooling2D(2),
        fl.layers.BatchNormalization(), fl.layers.Flatten(), fl.layers.Dense(8, activation="relu"),
        fl.layers.Dropout(0.5), fl.layers.Dense(3, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def test_replay_equals_layer_by_layer_bit_for_bit_at_any_batch_size():
    model = _cnn()
    rng = numpy.random.default_rng(0)
    model.fit(rng.random((32, 12, 12, 2), dtype=numpy.float32), rng.integers(0, 3, 32), epochs=1, verbose=0)
    for n in (1, 2, 7, 40):
        x = rng.random((n, 12, 12, 2), dtype=numpy.float32)
        replayed = replay_forward(model, x)
        assert replayed is not None, "a model of flowlearn's own layers on the CPU has a plan"
        numpy.testing.assert_array_equal(replayed, _eager(model, x))
        numpy.testing.assert_array_equal(model.predict(x, batch_size=n), _eager(model, x))


def test_the_plan_follows_training_in_place_and_retraces_when_weights_are_replaced():
    model = _cnn()
    rng = numpy.random.default_rng(1)
    x, y = rng.random((32, 12, 12, 2), dtype=numpy.float32), rng.integers(0, 3, 32)
    before = model.predict(x)
    plan = model._inference_plan
    model.fit(x, y, epochs=2, verbose=0)  # in-place updates: the same arrays, the same plan
    after = model.predict(x)
    assert model._inference_plan is plan
    assert not numpy.array_equal(before, after), "the replay must see the trained weights"
    numpy.testing.assert_array_equal(after, _eager(model, x))

    model.set_weights([numpy.full_like(w, 0.01) for w in model.get_weights()])
    replaced = model.predict(x)
    numpy.testing.assert_array_equal(replaced, _eager(model, x))
    assert not numpy.allclose(replaced, after)

    model.add(fl.layers.Dense(2))  # a new layer: a new plan with the new output
    assert model.predict(x).shape == (32, 2)
    assert model._inference_plan is not plan


class _Doubling(Layer):
    """A user's layer computing outside the ops: a trace would freeze its numbers into a constant."""

    def call(self, inputs, training=None):
        return fl.tensor(inputs.data * 2.0)


def test_a_model_with_a_layer_of_the_users_own_runs_layer_by_layer():
    model = Sequential([fl.layers.Input((3,)), _Doubling(), fl.layers.Dense(2)])
    x = numpy.arange(12, dtype=numpy.float32).reshape(4, 3)
    assert replay_forward(model, x) is None
    second = x + 1
    numpy.testing.assert_array_equal(model.predict(second), _eager(model, second))


@pytest.mark.parametrize("make", [
    lambda: CNNClassifier(conv_filters=(4,), dense_units=(8,), epochs=2, n_iter_no_change=None, random_state=0),
    lambda: DNNClassifier(hidden_units=(16, 8), epochs=3, n_iter_no_change=None, random_state=0),
])
def test_estimator_prediction_of_one_row_or_many_equals_the_layers(make):
    rng = numpy.random.default_rng(2)
    X, y = rng.random((60, 64), dtype=numpy.float32), rng.integers(0, 3, 60)
    model = make().fit(X, y)
    network = model._model
    for rows in (X[:1], X[:17], X):
        flat = rows.reshape(len(rows), -1)
        expected = _eager(network, flat).astype(numpy.float64)
        numpy.testing.assert_array_equal(model.decision_function(rows), expected)
    assert network._inference_plan.graph is not None


def test_early_stopping_validation_traces_once_per_fit(monkeypatch):
    X, y = numpy.random.default_rng(3).random((200, 5)), (numpy.arange(200) % 2).astype(float)
    model = DNNRegressor(hidden_units=(8,), epochs=6, early_stopping=True, n_iter_no_change=None, random_state=0)
    traced = []
    original = inference._trace
    monkeypatch.setattr(inference, "_trace", lambda *args: traced.append(1) or original(*args))
    model.fit(X, y)
    assert len(traced) == 1, f"the plan must survive the epochs' in-place updates; traced {len(traced)} times"


def test_rows_of_another_shape_and_nested_models_run_layer_by_layer():
    model = Sequential([fl.layers.Conv2D(2, 3, padding="same", input_shape=(None, None, 1)),
                        fl.layers.GlobalAveragePooling2D()])
    rng = numpy.random.default_rng(4)
    small, large = rng.random((2, 5, 5, 1), dtype=numpy.float32), rng.random((3, 8, 6, 1), dtype=numpy.float32)
    assert replay_forward(model, small) is not None
    assert replay_forward(model, large) is None  # the plan replays 5x5 images only
    numpy.testing.assert_array_equal(model.predict(large), _eager(model, large))

    inner = Sequential([fl.layers.Dense(3)])
    outer = Sequential([fl.layers.Input((4,)), inner, fl.layers.Dense(2)])
    x = rng.random((5, 4), dtype=numpy.float32)
    assert replay_forward(outer, x) is None  # the inner model's weights are not the outer layers' own
    numpy.testing.assert_array_equal(outer.predict(x), _eager(outer, x))
