"""The one data path: iterate_batches' checks, the epoch rules of the adapters, and Sequential fed by
input_fns, generators and iterables (the same batches give the same model as arrays)."""
import warnings

import numpy
import pandas
import pytest

import flowlearn as fl
from flowlearn.callbacks import Callback
from flowlearn.core import optimizers
from flowlearn.layers import Dense, Input
from flowlearn.layers.data_adapter import (
    INFINITE, UNKNOWN, ArrayAdapter, BatchSourceAdapter, cardinality, host_array, is_batch_source, iterate_batches,
)


@pytest.fixture(autouse=True)
def _seeded():
    fl.layers.clear_session()
    fl.layers.set_random_seed(0)


def _numbered(n_batches, size=2):
    """Batches whose labels are running row numbers, so the order they came in can be read back."""
    return [(numpy.zeros((size, 3)), numpy.arange(i * size, (i + 1) * size)) for i in range(n_batches)]


def _labels(batches):
    return [batch[1][0] // 2 for batch in batches]  # the batch number of each batch


# -- iterate_batches ------------------------------------------------------------------------------
def test_iterate_batches_from_an_input_fn_a_generator_and_a_list():
    batches = _numbered(3)
    for source in (lambda: batches, lambda: iter(batches), iter(batches), batches):
        got = list(iterate_batches(source))
        assert _labels(got) == [0, 1, 2] and all(len(batch) == 2 for batch in got)


def test_iterate_batches_converts_pandas_and_lists():
    frame = pandas.DataFrame({"a": [1.0, 2.0], "b": [3, 4]})
    (features, labels), = iterate_batches([(frame, pandas.Series([0, 1]))])
    assert sorted(features) == ["a", "b"] and features["b"].tolist() == [3, 4]
    assert isinstance(labels, numpy.ndarray) and labels.tolist() == [0, 1]
    (features, labels), = iterate_batches([([[1.0], [2.0]], None)])
    assert features.shape == (2, 1) and labels is None


@pytest.mark.parametrize("item, message", [
    (numpy.zeros((4, 2)), r"input_fn must yield \(features, labels\) tuples; got ndarray of shape \(4, 2\) as batch 1"),
    ((numpy.zeros(2), numpy.zeros(2), numpy.zeros(2)), r"must yield \(features, labels\) tuples; got tuple of 3 items"),
    ((None, numpy.zeros(2)), r"features of batch 1 is None"),
    ((5, numpy.zeros(2)), r"features of batch 1 must be an array \(or a dict of arrays\) with the batch dimension "
                          r"first; got int 5"),
    ((numpy.zeros((3, 2)), numpy.zeros(2)), r"same number of rows; batch 1 has features 3, labels 2"),
    (({"a": numpy.zeros(3), "b": numpy.zeros(2)}, None), r"batch 1 has features\['a'\] 3, features\['b'\] 2"),
    ((numpy.zeros((0, 2)), numpy.zeros(0)), r"batch 1 has no rows"),
    (({}, numpy.zeros(2)), r"features of batch 1 must be a non-empty dict or an array; got dict with keys \[\]"),
])
def test_a_wrong_batch_structure_says_what_was_expected_and_received(item, message):
    with pytest.raises(ValueError, match=message):
        list(iterate_batches(lambda: [item]))


def test_structure_errors_name_the_caller_and_the_batch():
    def input_fn():
        yield numpy.zeros((2, 1)), numpy.zeros(2)
        yield "oops"

    batches = iterate_batches(input_fn, what="Estimator.train")
    next(batches)
    with pytest.raises(ValueError, match=r"^Estimator.train: input_fn must yield .* got str 'oops' as batch 2\.$"):
        next(batches)
    with pytest.raises(TypeError, match=r"keys of features must be strings .* key 1"):
        list(iterate_batches([({1: numpy.zeros(2)}, None)]))


def test_input_fns_returning_the_wrong_thing():
    with pytest.raises(TypeError, match=r"returned one \(features, labels\) pair.*return \[\(features, labels\)\]"):
        iterate_batches(lambda: (numpy.zeros((2, 1)), numpy.zeros(2)))
    with pytest.raises(TypeError, match=r"must return an iterable of \(features, labels\) batches; .* returned int 3"):
        iterate_batches(lambda: 3)
    with pytest.raises(TypeError, match=r"expected an input_fn .* got int 3"):
        iterate_batches(3)
    with pytest.raises(TypeError, match=r"called with no arguments; the input_fn requires \['params'\]"):
        iterate_batches(lambda params: [])


def test_sample_weights_and_bare_features_when_asked():
    weights = numpy.ones(2)
    (features, labels, got), = iterate_batches([(numpy.zeros(2), numpy.zeros(2), weights)], sample_weight=True)
    assert got is weights
    (features, labels, got), = iterate_batches([(numpy.zeros(2), numpy.zeros(2))], sample_weight=True)
    assert got is None
    assert [labels for _, labels in iterate_batches([numpy.zeros(2), (numpy.zeros(2),)], bare_features=True)] == [
        None, None]


def test_cardinality_and_what_counts_as_a_batch_source():
    class Dataset:
        def __iter__(self):
            return iter([])

        def cardinality(self):
            return INFINITE

    assert cardinality([1, 2, 3]) == 3 and cardinality(iter([1])) == UNKNOWN and cardinality(Dataset()) == INFINITE
    for source in (lambda: [], iter([]), (i for i in range(2)), Dataset()):
        assert is_batch_source(source)
    for data in (numpy.zeros(2), [1.0, 2.0], (1.0,), {"x": numpy.zeros(2)}, pandas.DataFrame({"a": [1]}),
                 pandas.Series([1.0]), fl.tensor([1.0]), None, "text"):
        assert not is_batch_source(data)


def test_host_array_takes_a_dict_of_one_array_only():
    numpy.testing.assert_array_equal(host_array("fit", "x", {"x": [[1.0, 2.0]]}), [[1.0, 2.0]])
    with pytest.raises(ValueError, match=r"fit: expected `x` as one array .* got a dict with keys \['a', 'b'\]"):
        host_array("fit", "x", {"a": numpy.zeros(2), "b": numpy.zeros(2)})


# -- epochs over a source -------------------------------------------------------------------------
def _adapter(source, **kwargs):
    kwargs.setdefault("training", True)
    return BatchSourceAdapter(source, what="fit", name="x", sample_weight=False, **kwargs)


def test_an_input_fn_is_gone_through_afresh_each_epoch():
    calls = []

    def input_fn():  # a generator function: each call gives a one-shot iterator
        calls.append(1)
        yield from _numbered(3)

    adapter = _adapter(input_fn)
    assert [_labels(adapter.epoch(e)) for e in range(3)] == [[0, 1, 2]] * 3
    assert len(calls) == 3
    assert adapter.num_batches is None  # a generator's length is unknown
    assert _adapter(lambda: _numbered(3)).num_batches == 3


def test_a_generator_is_used_up_by_the_first_epoch_and_then_training_stops_with_a_warning():
    adapter = _adapter(iter(_numbered(3)))
    assert adapter.one_shot
    assert _labels(adapter.epoch(0)) == [0, 1, 2]
    with pytest.warns(UserWarning, match=r"used up by the epochs before epoch 2; training stops.*input_fn"):
        assert list(adapter.epoch(1)) == []


def test_steps_per_epoch_goes_on_where_the_last_epoch_stopped_and_restarts_an_input_fn():
    adapter = _adapter(lambda: _numbered(3), steps=2)
    assert adapter.num_batches == 2
    assert [_labels(adapter.epoch(e)) for e in range(3)] == [[0, 1], [2, 0], [1, 2]]


def test_steps_per_epoch_on_a_generator_that_runs_out_warns_once():
    adapter = _adapter(iter(_numbered(3)), steps=2)
    assert _labels(adapter.epoch(0)) == [0, 1]
    with pytest.warns(UserWarning, match=r"ran out of data after 1 of the 2 batches of epoch 2"):
        assert _labels(adapter.epoch(1)) == [2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(adapter.epoch(2)) == []


def test_a_source_that_repeats_forever_needs_steps():
    forever = fl.io.numpy_input_fn(numpy.zeros(4), numpy.zeros(4), num_epochs=None, shuffle=False)
    with pytest.raises(ValueError, match=r"fit: `x` repeats forever .* pass `steps_per_epoch`"):
        _adapter(forever, steps_name="steps_per_epoch")
    adapter = _adapter(forever, steps=3)
    assert [len(list(adapter.epoch(e))) for e in range(4)] == [3, 3, 3, 3]


def test_evaluation_restarts_a_restartable_source_and_takes_at_most_steps():
    adapter = _adapter(lambda: _numbered(3), steps=2, training=False)
    assert [_labels(adapter.epoch(e)) for e in range(2)] == [[0, 1], [0, 1]]  # the same batches each time
    adapter = _adapter(lambda: _numbered(3), steps=5, training=False)
    assert _labels(adapter.epoch(0)) == [0, 1, 2]  # no batch counted twice
    used_up = _adapter(iter(_numbered(2)), training=False)
    list(used_up.epoch(0))
    with pytest.raises(ValueError, match="yielded no batches for epoch 2. A generator can be gone through only once"):
        list(used_up.epoch(1))


def test_peek_is_the_first_batch_of_the_first_epoch():
    adapter = _adapter(iter(_numbered(3)))
    assert _labels([adapter.peek(), adapter.peek()]) == [0, 0]
    assert _labels(adapter.epoch(0)) == [0, 1, 2]
    with pytest.raises(ValueError, match="fit: `x` yielded no batches"):
        _adapter(lambda: []).peek()


def test_array_adapter_with_steps_streams_over_passes():
    y = numpy.arange(5)
    adapter = ArrayAdapter((y,), 2, steps=2)
    assert [[b[0].tolist() for b in adapter.epoch(e)] for e in range(3)] == [
        [[0, 1], [2, 3]], [[4], [0, 1]], [[2, 3], [4]]]
    assert ArrayAdapter((y,), 2).num_batches == 3


# -- Sequential fed by batch sources --------------------------------------------------------------
def _data(n=60, seed=0):
    rng = numpy.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0.0, 0.5, (n, 4))
    x[numpy.arange(n), y] += 2.0
    return x, y


def _model(input_layer=True):
    fl.layers.set_random_seed(0)
    layers = [Dense(8, activation="relu"), Dense(3, activation="softmax")]
    model = fl.Sequential(([Input((4,))] if input_layer else []) + layers)
    model.compile(optimizers.Adam(learning_rate=0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _same_weights(a, b):
    return all(numpy.array_equal(p, q) for p, q in zip(a.get_weights(), b.get_weights()))


def test_fit_on_an_input_fn_equals_fit_on_arrays_for_the_same_batches():
    x, y = _data()
    arrays, fed = _model(), _model()
    expected = arrays.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0).history
    got = fed.fit(fl.io.numpy_input_fn(x, y, batch_size=16, shuffle=False), epochs=3, verbose=0).history
    assert got == expected
    assert _same_weights(arrays, fed)


def test_fit_on_a_shuffling_input_fn_equals_fit_on_a_generator_of_its_batches():
    x, y = _data()
    input_fn = fl.io.numpy_input_fn(x, y, batch_size=16, shuffle=True, seed=2)
    batches = input_fn()
    epochs = [list(batches), list(batches)]  # each epoch of fit iterates the input_fn's batches again
    assert _labels(epochs[0]) != _labels(epochs[1])
    a, b, c = _model(), _model(), _model()
    a.fit(input_fn, epochs=2, verbose=0)
    b.fit(iter(epochs[0] + epochs[1]), steps_per_epoch=4, epochs=2, verbose=0)
    # ... and the same as one input_fn that holds both epochs, read 4 batches per epoch
    c.fit(fl.io.numpy_input_fn(x, y, batch_size=16, num_epochs=2, shuffle=True, seed=2), steps_per_epoch=4,
          epochs=2, verbose=0)
    assert _same_weights(a, b) and _same_weights(a, c)


def test_sample_weights_in_batches_equal_fit_with_sample_weight():
    x, y = _data()
    weights = numpy.linspace(0.5, 2.0, len(y))
    arrays, fed = _model(), _model()
    arrays.fit(x, y, batch_size=20, epochs=2, shuffle=False, sample_weight=weights, verbose=0)
    fed.fit(lambda: [(x[i:i + 20], y[i:i + 20], weights[i:i + 20]) for i in range(0, 60, 20)], epochs=2, verbose=0)
    assert _same_weights(arrays, fed)


def test_class_weight_applies_to_each_batch_of_a_source():
    x, y = _data()
    arrays, fed = _model(), _model()
    arrays.fit(x, y, batch_size=30, epochs=1, shuffle=False, class_weight={0: 3.0}, verbose=0)
    fed.fit(fl.io.numpy_input_fn(x, y, batch_size=30, shuffle=False), class_weight={0: 3.0}, verbose=0)
    assert _same_weights(arrays, fed)


def test_dict_features_of_one_array_and_an_unbuilt_model_built_by_the_first_batch():
    x, y = _data()
    arrays = _model(input_layer=False)
    arrays.fit(x, y, batch_size=16, shuffle=False, verbose=0)
    fed = _model(input_layer=False)  # reseeds: its weights, drawn when the first batch builds it, are the same
    assert not fed.built
    fed.fit(fl.io.numpy_input_fn({"x": x}, y, batch_size=16, shuffle=False), verbose=0)
    assert fed.built and _same_weights(arrays, fed)


def test_validation_data_from_an_input_fn_equals_validation_arrays():
    x, y = _data()
    arrays, fed = _model(), _model()
    expected = arrays.fit(x[:40], y[:40], batch_size=8, epochs=2, shuffle=False, verbose=0,
                          validation_data=(x[40:], y[40:])).history
    got = fed.fit(fl.io.numpy_input_fn(x[:40], y[:40], batch_size=8, shuffle=False), epochs=2, verbose=0,
                  validation_data=fl.io.numpy_input_fn(x[40:], y[40:], batch_size=8, shuffle=False)).history
    assert got == expected
    limited = _model().fit(x[:40], y[:40], epochs=1, verbose=0, validation_steps=1,
                           validation_data=fl.io.numpy_input_fn(x[40:], y[40:], batch_size=5, shuffle=False))
    assert limited.history["val_loss"][0] == pytest.approx(_model().fit(
        x[:40], y[:40], epochs=1, verbose=0, validation_data=(x[40:45], y[40:45])).history["val_loss"][0])


def test_a_one_shot_validation_generator_needs_validation_steps_for_several_epochs():
    x, y = _data()
    with pytest.raises(ValueError, match=r"`validation_data` is a generator, .* after each of the 2 epochs"):
        _model().fit(x, y, epochs=2, verbose=0, validation_data=iter([(x, y)]))
    repeating = ((x[:10], y[:10]) for _ in range(100))
    history = _model().fit(x, y, epochs=2, verbose=0, validation_data=repeating, validation_steps=1)
    assert len(history.history["val_loss"]) == 2


def test_an_infinite_generator_with_steps_per_epoch_and_the_progress_total():
    x, y = _data()

    def forever():
        while True:
            for start in range(0, 60, 20):
                yield x[start:start + 20], y[start:start + 20]

    class Params(Callback):
        def on_train_begin(self, logs=None):
            self.steps = self.params["steps"]

    seen = Params()
    history = _model().fit(forever(), steps_per_epoch=3, epochs=4, verbose=0, callbacks=[seen])
    assert len(history.epoch) == 4 and seen.steps == 3
    arrays = _model()
    arrays.fit(x, y, batch_size=20, epochs=4, shuffle=False, verbose=0)
    fed = _model()
    fed.fit(forever(), steps_per_epoch=3, epochs=4, verbose=0)
    assert _same_weights(arrays, fed)


def test_a_finite_generator_trains_one_epoch_then_warns():
    x, y = _data()
    with pytest.warns(UserWarning, match="used up by the epochs before epoch 2"):
        history = _model().fit(((x[i:i + 20], y[i:i + 20]) for i in range(0, 60, 20)), epochs=3, verbose=0)
    assert history.epoch == [0]


def test_evaluate_and_predict_on_sources_equal_arrays():
    x, y = _data()
    model = _model()
    model.fit(x, y, epochs=2, verbose=0)
    assert model.evaluate(fl.io.numpy_input_fn(x, y, batch_size=32, shuffle=False)) == model.evaluate(x, y)
    assert model.evaluate(fl.io.numpy_input_fn(x, y, batch_size=10, shuffle=False), steps=2) == pytest.approx(
        model.evaluate(x[:20], y[:20], batch_size=10), rel=1e-6)
    expected = model.predict(x)
    numpy.testing.assert_allclose(model.predict(fl.io.numpy_input_fn(x, batch_size=32, shuffle=False)), expected,
                                  rtol=1e-6)
    numpy.testing.assert_allclose(model.predict(x[i:i + 25] for i in range(0, 60, 25)), expected, rtol=1e-6)
    assert model.predict(fl.io.numpy_input_fn(x, y, batch_size=7, shuffle=False), steps=2).shape == (14, 3)
    assert model.predict(x, batch_size=7, steps=2).shape == (14, 3)


def test_arguments_that_only_arrays_take_are_refused_with_a_source():
    x, y = _data()
    source = fl.io.numpy_input_fn(x, y, shuffle=False)
    model = _model()
    with pytest.raises(ValueError, match=r"fit: `y` cannot be given when `x` is an input_fn.*carry the labels. "
                                         r"Received: y as ndarray of shape \(60,\)"):
        model.fit(source, y, verbose=0)
    with pytest.raises(ValueError, match=r"`batch_size` cannot be given .* Received: batch_size=16"):
        model.fit(source, batch_size=16, verbose=0)
    with pytest.raises(ValueError, match=r"`sample_weight` cannot be given .* \(features, labels, sample_weight\)"):
        model.fit(source, sample_weight=numpy.ones(60), verbose=0)
    with pytest.raises(ValueError, match=r"`validation_split` cannot be given .* pass validation_data"):
        model.fit(source, validation_split=0.2, verbose=0)
    with pytest.raises(ValueError, match=r"evaluate: `y` cannot be given"):
        model.evaluate(source, y)
    with pytest.raises(ValueError, match=r"predict: `batch_size` cannot be given"):
        model.predict(source, batch_size=8)


def test_bad_batches_from_a_source_are_named():
    x, y = _data()
    model = _model()
    with pytest.raises(ValueError, match=r"fit \(batch 1\): the batch has no labels .* only suits predict"):
        model.fit(fl.io.numpy_input_fn(x, shuffle=False), verbose=0)
    bad = x.copy()
    bad[45, 1] = numpy.nan
    with pytest.raises(ValueError, match=r"fit \(batch 2\): `x` contains NaN or infinite values \(first in sample 13\)"):
        model.fit(fl.io.numpy_input_fn(bad, y, batch_size=32, shuffle=False), verbose=0)
    with pytest.raises(ValueError, match=r"fit \(batch 1\): labels must be class indices in \[0, 3\)"):
        model.fit(lambda: [(x, y + 5)], verbose=0)
    with pytest.raises(ValueError, match=r"fit: the input_fn given as `x` must yield \(features, labels\) or "
                                         r"\(features, labels, sample_weight\) tuples; got ndarray"):
        model.fit(lambda: [x], verbose=0)
    with pytest.raises(ValueError, match=r"expected `x` as one array .* got a dict with keys \['a', 'b'\]"):
        model.fit(fl.io.numpy_input_fn({"a": x, "b": x}, y, shuffle=False), verbose=0)
    with pytest.raises(ValueError, match=r"fit: expected targets `y`; got None"):
        model.fit(x, verbose=0)
    with pytest.raises(ValueError, match=r"fit: received an invalid value for `steps_per_epoch`"):
        model.fit(lambda: [(x, y)], steps_per_epoch=0, verbose=0)


@pytest.mark.parametrize("steps", [float("inf"), float("nan"), "3", "three", 2.5])
def test_a_steps_count_that_is_no_whole_number_is_refused_by_name(steps):
    x, y = _data()
    model = _model()
    with pytest.raises(ValueError, match=r"^fit: received an invalid value for `steps_per_epoch`, expected a positive "
                                         r"integer or None\. Received: steps_per_epoch="):
        model.fit(lambda: [(x, y)], steps_per_epoch=steps, verbose=0)
    with pytest.raises(ValueError, match=r"^fit: received an invalid value for `validation_steps`"):
        model.fit(x, y, validation_data=lambda: [(x, y)], validation_steps=steps, verbose=0)
    assert len(model.fit(x, y, batch_size=30, steps_per_epoch=2.0, verbose=0).history["loss"]) == 1  # still taken


def test_a_refused_fit_takes_no_batch_from_a_generator():
    x, y = _data()
    generator = iter([(x[:30], y[:30]), (x[30:], y[30:])])
    model = _model()
    with pytest.raises(ValueError, match="`validation_data` is a generator"):
        model.fit(generator, epochs=2, verbose=0, validation_data=iter([(x, y)]))
    assert [len(labels) for _, labels in generator] == [30, 30]


def test_dataframes_and_series_are_data_in_memory():
    x, y = _data()
    frame = pandas.DataFrame(x, columns=list("abcd"))
    arrays = _model()
    arrays.fit(x, y, batch_size=16, epochs=2, verbose=0)
    fed = _model()  # reseeds weights and the shuffling stream alike
    fed.fit(frame, pandas.Series(y), batch_size=16, epochs=2, verbose=0)
    assert _same_weights(arrays, fed)


def test_batches_of_plain_arrays_skip_the_dataframe_and_series_probes(monkeypatch):
    """A training loop checks every batch: numpy arrays (and dicts of them) take the short path, whose
    result is the same (a batch of mismatched rows is still refused by name)."""
    from flowlearn.layers import data_adapter

    def probe(value):
        raise AssertionError(f"probed {type(value).__name__}")

    monkeypatch.setattr(data_adapter, "_is_dataframe", probe)
    monkeypatch.setattr(data_adapter, "_is_series", probe)
    x, y = numpy.ones((4, 3), "float32"), numpy.arange(4)
    (features, labels), = list(data_adapter.iterate_batches([({"x": x}, y)]))
    assert features["x"] is x and labels is y
    with pytest.raises(ValueError, match=r"same number of rows; batch 1 has features\['x'\] 4, labels 3"):
        list(data_adapter.iterate_batches([({"x": x}, y[:3])]))
