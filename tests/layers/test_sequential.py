import numpy
import pytest

import flowlearn as fl
from flowlearn.core import losses, optimizers
from flowlearn.layers import Activation, BatchNormalization, Dense, Dropout, Embedding, Flatten, Input, Layer
from flowlearn.layers.training import NonFiniteLossError

@pytest.fixture(autouse=True)
def _seeded():
    fl.layers.clear_session()
    fl.layers.set_random_seed(0)


def _blobs(n=120, features=4, classes=3, seed=0):
    """Separable clusters: class c centred at 2 * e_c."""
    rng = numpy.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.normal(0.0, 0.5, (n, features))
    x[numpy.arange(n), y] += 2.0
    return x, y


def _classifier(features=4, classes=3, hidden=16, **compile_kwargs):
    model = fl.Sequential([Input((features,)), Dense(hidden, activation="relu"), Dense(classes, activation="softmax")])
    compile_kwargs.setdefault("optimizer", optimizers.Adam(learning_rate=0.05))
    compile_kwargs.setdefault("loss", "sparse_categorical_crossentropy")
    model.compile(**compile_kwargs)
    return model


class _Spy(Layer):
    """Records what reaches it and passes it on."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen = []

    def call(self, inputs, training=None):
        self.seen.append((inputs.shape, inputs.dtype, inputs.data, training))
        return inputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


# -- structure ------------------------------------------------------------------------------------
def test_input_layer_builds_at_once_and_layers_exclude_it():
    model = fl.Sequential([Input((4,)), Dense(3)])
    assert model.built and model.output_shape == (None, 3)
    assert [type(layer).__name__ for layer in model.layers] == ["Dense"]
    assert model.layers[0].kernel.shape == (4, 3)


def test_input_shape_argument_on_first_layer_builds_too():
    model = fl.Sequential()
    model.add(Dense(5, input_shape=(7,)))
    model.add(Dense(2))
    assert model.built and model.output_shape == (None, 2) and model.layers[1].kernel.shape == (5, 2)


def test_lazy_build_on_first_call_and_explicit_build():
    model = fl.Sequential([Dense(3), Dense(2)])
    assert not model.built
    out = model(numpy.ones((5, 6)))
    assert isinstance(out, fl.Tensor) and out.shape == (5, 2) and model.built
    other = fl.Sequential([Dense(3), Flatten()])
    other.build((None, 2, 4))
    assert other.output_shape == (None, 6) and other.layers[0].kernel.shape == (4, 3)


def test_call_checks_the_built_input_shape():
    model = fl.Sequential([Input((4,)), Dense(3)])
    with pytest.raises(ValueError, match=r"expected input of shape \(None, 4\); got shape \(2, 5\)"):
        model(numpy.ones((2, 5)))


def test_add_validation():
    model = fl.Sequential([Dense(2)])
    with pytest.raises(TypeError, match="expected a Layer instance; got function"):
        model.add(lambda x: x)
    with pytest.raises(ValueError, match="InputLayer can only be the first layer"):
        model.add(Input((3,)))
    with pytest.raises(ValueError, match="already in the model"):
        model.add(model.layers[0])
    with pytest.raises(ValueError, match="cannot build a model with no layers"):
        fl.Sequential().build((None, 3))


def test_add_to_a_built_model_builds_the_new_layer():
    model = fl.Sequential([Input((4,)), Dense(3)])
    model.add(Dense(6))
    assert model.output_shape == (None, 6) and model.layers[-1].kernel.shape == (3, 6)


def test_summary_table():
    model = fl.Sequential([Input((3,)), Dense(4, name="hidden"), BatchNormalization(name="bn"), Dense(2, name="out")],
                          name="tiny")
    text = model.summary(print_fn=None)
    lines = text.splitlines()
    assert lines[0] == 'Model: "tiny"'
    assert lines[2].split() == ["Layer", "(type)", "Output", "Shape", "Param", "#"]
    rows = [line.split() for line in lines if line.startswith(("hidden", "bn", "out"))]
    assert rows == [["hidden", "(Dense)", "(None,", "4)", "16"], ["bn", "(BatchNormalization)", "(None,", "4)", "16"],
                    ["out", "(Dense)", "(None,", "2)", "10"]]
    assert "Total params: 42" in lines and "Trainable params: 34" in lines and "Non-trainable params: 8" in lines
    assert len({len(line) for line in lines if set(line) <= {"_", "="} and line}) == 1  # rules of one width


def test_summary_prints_by_default_and_needs_a_built_model(capsys):
    model = fl.Sequential([Input((3,)), Dense(1000)])
    assert model.summary() is None
    out = capsys.readouterr().out
    assert "dense (Dense)" in out and "Total params: 4,000" in out
    with pytest.raises(ValueError, match="needs the model built"):
        fl.Sequential([Dense(2)]).summary()


def test_weights_get_set_round_trip():
    model = _classifier()
    weights = model.get_weights()
    assert [w.shape for w in weights] == [(4, 16), (16,), (16, 3), (3,)]
    model.set_weights([numpy.zeros_like(w) for w in weights])
    assert all((w == 0).all() for w in model.get_weights())
    model.set_weights(weights)
    for got, want in zip(model.get_weights(), weights):
        numpy.testing.assert_array_equal(got, want)


def test_config_round_trip_rebuilds_the_same_architecture():
    model = fl.Sequential([Input((4,)), Dense(8, activation="relu", kernel_regularizer="l2"), Dropout(0.3),
                           Dense(3, activation="softmax")], name="net")
    config = model.get_config()
    clone = fl.Sequential.from_config(config)
    assert clone.get_config() == config
    clone.set_weights(model.get_weights())
    x = numpy.random.default_rng(1).normal(size=(5, 4))
    numpy.testing.assert_array_equal(clone.predict(x), model.predict(x))


# -- compile and the fused loss --------------------------------------------------------------------
@pytest.mark.parametrize("loss, activation, fused", [
    ("sparse_categorical_crossentropy", "softmax", True),
    ("categorical_crossentropy", "softmax", True),
    ("binary_crossentropy", "sigmoid", True),
    ("binary_crossentropy", "softmax", False),
    ("sparse_categorical_crossentropy", None, False),
    (losses.SparseCategoricalCrossentropy(from_logits=True), None, False),
    ("mse", "softmax", False),
])
def test_softmax_or_sigmoid_is_fused_with_the_matching_crossentropy(loss, activation, fused):
    model = fl.Sequential([Input((4,)), Dense(3, activation=activation)])
    model.compile("sgd", loss)
    loss_fn, from_logits, _ = model._loss_plan()
    assert from_logits is fused
    if fused:
        assert loss_fn.from_logits and type(loss_fn) is type(losses.get(loss))


def test_fused_loss_equals_the_probability_loss_and_trains_identically():
    x, y = _blobs(40)
    fused = _classifier(optimizer=optimizers.SGD(learning_rate=0.1))
    plain = _classifier(optimizer=optimizers.SGD(learning_rate=0.1),
                        loss=lambda y_true, y_pred: losses.sparse_categorical_crossentropy(y_true, y_pred))
    plain.set_weights(fused.get_weights())
    assert fused._loss_plan()[1] and not plain._loss_plan()[1]
    assert fused.evaluate(x, y) == pytest.approx(plain.evaluate(x, y), rel=1e-5)
    fused.train_on_batch(x, y)
    plain.train_on_batch(x, y)
    for a, b in zip(fused.get_weights(), plain.get_weights()):
        numpy.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_fused_loss_stays_finite_where_probabilities_saturate():
    model = fl.Sequential([Input((1,)), Dense(2, activation="softmax", use_bias=False)])
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.set_weights([numpy.array([[200.0, -200.0]])])
    loss = model.evaluate(numpy.array([[1.0]]), numpy.array([1]))
    assert loss == pytest.approx(400.0, rel=1e-5)  # the probability form would clip at -log(1e-7) ~ 16.1


def test_compile_rejects_unknown_names():
    model = fl.Sequential([Dense(2)])
    with pytest.raises(ValueError, match="Unknown optimizer 'adamx'"):
        model.compile("adamx", "mse")
    with pytest.raises(ValueError, match="Unknown loss 'msee'"):
        model.compile("adam", "msee")
    with pytest.raises(ValueError, match="Unknown metric 'acuracy'"):
        model.compile("adam", "mse", metrics=["acuracy"])
    with pytest.raises(TypeError, match="`metrics` to be a list"):
        model.compile("adam", "mse", metrics="accuracy")


# -- fit ------------------------------------------------------------------------------------------
def test_fit_learns_and_history_has_train_and_validation_logs():
    x, y = _blobs(200)
    model = _classifier(metrics=["accuracy"])
    history = model.fit(x, y, batch_size=16, epochs=5, validation_split=0.2, verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["val_accuracy"][-1] >= 0.9
    assert model.history is history and history.epoch == [0, 1, 2, 3, 4]


def test_validation_split_holds_out_the_last_samples():
    x, y = _blobs(40)
    model = _classifier(metrics=["accuracy"])
    history = model.fit(x, y, batch_size=8, epochs=1, validation_split=0.25, verbose=0, shuffle=False)
    assert history.history["val_loss"][0] == pytest.approx(model.evaluate(x[30:], y[30:])[0], rel=1e-6)


def test_validation_data_with_weights():
    x, y = _blobs(40)
    model = _classifier()
    history = model.fit(x[:30], y[:30], epochs=1, verbose=0, validation_data=(x[30:], y[30:], numpy.full(10, 2.0)))
    assert history.history["val_loss"][0] == pytest.approx(2 * model.evaluate(x[30:], y[30:]), rel=1e-6)
    with pytest.raises(ValueError, match="`validation_data` as"):
        model.fit(x, y, epochs=1, verbose=0, validation_data=(x,))


def test_float64_input_is_converted_once_and_batches_are_views_without_shuffle():
    spy = _Spy()
    model = fl.Sequential([Input((4,)), spy, Dense(3, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = _blobs(50)
    assert x.dtype == numpy.float64
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    assert [shape for shape, *_ in spy.seen] == [(16, 4), (16, 4), (16, 4), (2, 4)] * 2
    assert {dtype for _, dtype, _, _ in spy.seen} == {numpy.dtype("float32")}
    bases = {id(data.base) for _, _, data, _ in spy.seen}
    assert len(bases) == 1  # every batch is a view of the one converted copy
    assert all(training for *_, training in spy.seen)


def test_shuffle_visits_every_sample_once_per_epoch_and_is_seeded():
    def run():
        fl.layers.set_random_seed(3)
        spy = _Spy()
        model = fl.Sequential([Input((1,)), spy, Dense(2, activation="softmax")])
        model.compile("sgd", "sparse_categorical_crossentropy")
        model.fit(numpy.arange(10.0).reshape(10, 1), numpy.zeros(10, int), batch_size=4, epochs=2, verbose=0)
        return [numpy.asarray(data).ravel().tolist() for _, _, data, _ in spy.seen]

    first, second = run(), run()
    assert first == second
    epoch = sum(first[:3], [])
    assert sorted(epoch) == list(range(10)) and epoch != list(range(10))


def test_class_weight_equals_the_matching_sample_weight():
    x, y = _blobs(30)
    a, b = _classifier(optimizer="sgd"), _classifier(optimizer="sgd")
    b.set_weights(a.get_weights())
    a.train_on_batch(x, y, class_weight={0: 3.0, 2: 0.5})
    b.train_on_batch(x, y, sample_weight=numpy.select([y == 0, y == 2], [3.0, 0.5], 1.0))
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        numpy.testing.assert_allclose(wa, wb, rtol=1e-6)


def test_sample_weight_scales_the_loss():
    x, y = _blobs(20)
    model = _classifier()
    base = model.evaluate(x, y)
    assert model.evaluate(x, y, sample_weight=numpy.full(20, 3.0)) == pytest.approx(3 * base, rel=1e-6)


def test_regularization_penalty_is_part_of_the_loss():
    x, y = _blobs(20)
    model = fl.Sequential([Input((4,)), Dense(3, activation="softmax", kernel_regularizer=fl.layers.regularizers.l2(0.1))])
    model.compile("sgd", "sparse_categorical_crossentropy")
    kernel = model.layers[0].kernel.numpy()
    plain = losses.sparse_categorical_crossentropy(y, fl.tensor(model.predict(x))).item()
    assert model.evaluate(x, y) == pytest.approx(plain + 0.1 * float((kernel ** 2).sum()), rel=1e-5)


def test_integer_inputs_reach_an_embedding_uncast():
    model = fl.Sequential([Embedding(10, 3), Flatten(), Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    x = numpy.random.default_rng(0).integers(0, 10, (32, 5))
    history = model.fit(x, x[:, 0] % 2, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and model.predict(x).shape == (32, 2)


def test_verbose_1_shows_a_progress_bar(capsys):
    x, y = _blobs(40)
    _classifier().fit(x, y, batch_size=10, epochs=2, verbose=1)
    err = capsys.readouterr().err
    assert "Epoch 1/2" in err and "Epoch 2/2" in err and "4/4" in err and "loss=" in err


def test_initial_epoch_and_callbacks_see_the_model():
    seen = []
    callback = fl.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: seen.append(epoch))
    x, y = _blobs(20)
    model = _classifier()
    history = model.fit(x, y, epochs=4, initial_epoch=2, verbose=0, callbacks=[callback])
    assert seen == [2, 3] and history.epoch == [2, 3] and callback.model is model


# -- evaluate, predict, on-batch --------------------------------------------------------------------
def test_evaluate_returns_loss_or_loss_and_metrics():
    x, y = _blobs(30)
    model = _classifier()
    assert isinstance(model.evaluate(x, y), float)
    model = _classifier(metrics=["accuracy", "acc"])
    result = model.evaluate(x, y, batch_size=7)
    assert isinstance(result, list) and len(result) == 3 and result[1] == result[2]
    assert model.metrics_names == ["loss", "accuracy", "acc"]
    as_dict = model.evaluate(x, y, return_dict=True)
    assert list(as_dict) == ["loss", "accuracy", "acc"]
    assert as_dict["accuracy"] == pytest.approx(float((model.predict(x).argmax(1) == y).mean()))


def test_evaluate_does_not_depend_on_batch_size():
    x, y = _blobs(50)
    model = _classifier(metrics=["accuracy"])
    small, large = model.evaluate(x, y, batch_size=3), model.evaluate(x, y, batch_size=50)
    numpy.testing.assert_allclose(small, large, rtol=1e-5)


def test_predict_runs_in_batches_in_inference_mode_without_graph():
    spy = _Spy()
    model = fl.Sequential([Input((4,)), spy, Dense(3), Dropout(0.5)])
    x = numpy.random.default_rng(0).normal(size=(23, 4))
    out = model.predict(x, batch_size=10)
    assert isinstance(out, numpy.ndarray) and out.shape == (23, 3) and out.dtype == numpy.float32
    assert [shape for shape, *_ in spy.seen] == [(10, 4), (10, 4), (3, 4)]
    assert not any(training for *_, training in spy.seen)
    numpy.testing.assert_array_equal(out, model.predict(x, batch_size=23))  # dropout off: deterministic
    numpy.testing.assert_allclose(out, model(x).numpy(), rtol=1e-6)
    assert all(not w.requires_grad or w.grad is None for w in model.weights)


def test_on_batch_methods():
    x, y = _blobs(16)
    model = _classifier(metrics=["accuracy"])
    before = model.test_on_batch(x, y)
    loss, accuracy = model.train_on_batch(x, y)
    assert loss == pytest.approx(before[0], rel=1e-6) and 0.0 <= accuracy <= 1.0
    assert model.test_on_batch(x, y)[0] < before[0]
    numpy.testing.assert_array_equal(model.predict_on_batch(x), model.predict(x, batch_size=16))
    assert model.optimizer.iterations == 1


def test_set_weights_and_train_on_batch_change_weights_in_place():
    model = _classifier()
    kernel = model.layers[0].kernel
    x, y = _blobs(8)
    before = kernel.numpy().copy()
    model.train_on_batch(x, y)
    assert model.layers[0].kernel is kernel and not numpy.array_equal(kernel.numpy(), before)


# -- bad input --------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, received", [((10, 5), r"\(10, 5\)"), ((10, 4, 1), r"\(10, 4, 1\)"), ((10,), r"\(10,\)")])
def test_wrong_feature_count_or_rank_names_expected_and_received_shapes(shape, received):
    model = _classifier()
    x = numpy.ones(shape)
    with pytest.raises(ValueError, match=rf"fit: .*expected input of shape \(None, 4\); got shape {received}"):
        model.fit(x, numpy.zeros(10, int), verbose=0)
    with pytest.raises(ValueError, match=r"predict: .*expected input of shape \(None, 4\)"):
        model.predict(x)


def test_unbuilt_model_reports_the_layer_that_refuses_the_shape():
    model = fl.Sequential([Flatten(), Dense(3), Dense(2)])
    model.build((None, 2, 3))
    with pytest.raises(ValueError, match=r"expected input of shape \(None, 2, 3\); got shape \(4, 3, 2\)"):
        model.predict(numpy.ones((4, 3, 2)))


@pytest.mark.parametrize("labels, values", [([0, 1, 3], r"\[3\]"), ([-1, 0, 1], r"\[-1\]"), ([0, 7, 9], r"\[7, 9\]")])
def test_sparse_labels_out_of_range(labels, values):
    model = _classifier()
    with pytest.raises(ValueError, match=rf"class indices in \[0, 3\) for a model with 3 outputs.*{values}"):
        model.fit(numpy.ones((3, 4)), numpy.array(labels), verbose=0)


def test_target_shape_and_value_checks():
    model = _classifier()
    with pytest.raises(ValueError, match=r"same number of samples; got 5 and 4"):
        model.fit(numpy.ones((5, 4)), numpy.zeros(4, int), verbose=0)
    with pytest.raises(ValueError, match=r"integer class labels of shape \(5,\).*got y of shape \(5, 3\)"):
        model.fit(numpy.ones((5, 4)), numpy.zeros((5, 3)), verbose=0)
    with pytest.raises(ValueError, match="got fractions"):
        model.fit(numpy.ones((2, 4)), numpy.array([0.5, 1.0]), verbose=0)
    categorical = _classifier(loss="categorical_crossentropy")
    with pytest.raises(ValueError, match=r"one-hot targets of shape \(5, 3\); got y of shape \(5,\).*sparse_categorical"):
        categorical.fit(numpy.ones((5, 4)), numpy.zeros(5, int), verbose=0)
    binary = fl.Sequential([Input((4,)), Dense(1, activation="sigmoid")])
    binary.compile("sgd", "binary_crossentropy")
    with pytest.raises(ValueError, match=r"targets in \[0, 1\]; got values from 0 to 2"):
        binary.fit(numpy.ones((3, 4)), numpy.array([0, 1, 2]), verbose=0)


@pytest.mark.parametrize("x", [numpy.ones((0, 4)), [], numpy.float32(1.0)])
def test_empty_inputs_raise(x):
    model = _classifier()
    with pytest.raises(ValueError, match="at least one sample"):
        model.fit(x, numpy.zeros(0, int), verbose=0)
    with pytest.raises(ValueError, match="at least one sample"):
        model.predict(x)


def test_nan_in_x_raises_unless_allowed():
    model = _classifier()
    x, y = _blobs(10)
    x[7, 2] = numpy.nan
    with pytest.raises(ValueError, match=r"`x` contains NaN or infinite values \(first in sample 7\).*allow_nan=True"):
        model.fit(x, y, verbose=0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.evaluate(x, y)
    with pytest.raises(NonFiniteLossError):  # allowed in: the data check passes, the loss then turns NaN
        model.fit(x, y, verbose=0, allow_nan=True)


def test_fit_needs_compile_and_valid_arguments():
    x, y = _blobs(10)
    with pytest.raises(ValueError, match=r"needs a loss; call compile"):
        fl.Sequential([Dense(2)]).fit(x, y, verbose=0)
    model = _classifier()
    with pytest.raises(ValueError, match="fit: received an invalid value for `batch_size`.*Received: batch_size=0"):
        model.fit(x, y, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match=r"`validation_split`.*\[0, 1\); got 1.5"):
        model.fit(x, y, validation_split=1.5, verbose=0)
    with pytest.raises(ValueError, match="leaves 0 for training"):
        model.fit(x[:1], y[:1], validation_split=0.5, verbose=0)
    with pytest.raises(ValueError, match="`verbose`"):
        model.fit(x, y, verbose=5)


# -- non-finite loss --------------------------------------------------------------------------------
def _diverging_model():
    model = fl.Sequential([Input((4,)), Dense(16, activation="relu"), Dense(1)])
    model.compile(optimizers.SGD(learning_rate=10.0), "mse")
    return model


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_weights():
    x, y = _blobs(64)
    y = y * 100.0
    model = _diverging_model()
    snapshots = []
    keep = fl.callbacks.LambdaCallback(on_train_batch_begin=lambda batch, logs: snapshots.append(model.get_weights()))
    with pytest.raises(NonFiniteLossError, match=r"loss became (nan|inf) at epoch \d+, batch \d+.*weights from before"):
        model.fit(x, y, batch_size=8, epochs=50, verbose=0, callbacks=[keep])
    assert all(numpy.isfinite(w).all() for w in model.get_weights())
    for got, want in zip(model.get_weights(), snapshots[-1]):
        numpy.testing.assert_array_equal(got, want)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_terminate_on_nan_false_lets_training_run_on():
    x, y = _blobs(64)
    model = _diverging_model()
    history = model.fit(x, y * 100.0, batch_size=8, epochs=30, verbose=0, terminate_on_nan=False,
                        callbacks=[fl.callbacks.TerminateOnNaN()])
    assert not numpy.isfinite(history.history["loss"][-1])
    assert len(history.epoch) < 30  # TerminateOnNaN stopped it, quietly


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_train_on_batch_refuses_a_nan_update():
    model = fl.Sequential([Input((4,)), Dense(1)])
    model.compile("sgd", "mse")
    model.set_weights([numpy.full((4, 1), 1e30, numpy.float32), numpy.zeros(1, numpy.float32)])
    before = model.get_weights()
    with pytest.raises(NonFiniteLossError, match="train_on_batch: the loss is inf; the update was not applied"):
        model.train_on_batch(numpy.ones((3, 4)), numpy.zeros(3))
    for got, want in zip(model.get_weights(), before):
        numpy.testing.assert_array_equal(got, want)
    assert model.optimizer.iterations == 0


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_nan_loss_keeps_batch_norm_statistics_from_before_the_batch():
    model = fl.Sequential([Input((4,)), BatchNormalization(), Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = _blobs(32)
    x[16:24, 0] = numpy.inf  # the third batch turns the batch statistics, and the loss, into NaN
    snapshots = []
    keep = fl.callbacks.LambdaCallback(on_train_batch_begin=lambda batch, logs: snapshots.append(model.get_weights()))
    with pytest.raises(NonFiniteLossError, match="at epoch 1, batch 3"):
        model.fit(x, y, batch_size=8, shuffle=False, verbose=0, callbacks=[keep], allow_nan=True)
    assert len(snapshots) == 3
    for got, want in zip(model.get_weights(), snapshots[-1]):
        numpy.testing.assert_array_equal(got, want)  # moving mean and variance included


def test_activation_layer_last_is_fused_too():
    model = fl.Sequential([Input((4,)), Dense(3), Activation("softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    assert model._loss_plan()[1]
    x, y = _blobs(12)
    probs = model.predict(x)
    numpy.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    expected = losses.sparse_categorical_crossentropy(y, fl.tensor(probs)).item()
    assert model.evaluate(x, y) == pytest.approx(expected, rel=1e-5)


def test_call_passes_the_training_flag_to_every_layer():
    model = fl.Sequential([Input((50,)), Dropout(0.5)])
    x = numpy.ones((4, 50), numpy.float32)
    numpy.testing.assert_array_equal(model(x).numpy(), x)
    dropped = model(x, training=True).numpy()
    assert set(numpy.unique(dropped)) == {0.0, 2.0}
    with fl.training_mode(True):
        assert (model(x).numpy() == 0).any()
        numpy.testing.assert_array_equal(model(x, training=False).numpy(), x)


def test_fit_evaluate_predict_on_device(device):
    x, y = _blobs(48)
    model = _classifier(metrics=["accuracy"]).to(device)
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0, validation_split=0.25)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert all(w.device == device for w in model.weights)
    out = model.predict(x)
    assert isinstance(out, numpy.ndarray) and out.shape == (48, 3)
    loss, accuracy = model.evaluate(x, y)
    assert numpy.isfinite(loss) and accuracy == pytest.approx(float((out.argmax(1) == y).mean()))
