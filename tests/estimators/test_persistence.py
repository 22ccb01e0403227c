"""Pickle-free estimator files: est.save(path) and flowlearn.estimators.load(path)."""
import json
import os
import pickle
import zipfile

import numpy
import pandas
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError

import flowlearn.estimators
from flowlearn.core import optimizers
from flowlearn.estimators import (
    AutoEncoder, CNNClassifier, DNNClassifier, DNNRegressor, LinearClassifier, LinearRegressor, load,
)
from tests.estimators._helpers import assert_loads_without_cupy, fit, small as _small

ALL = [LinearRegressor, LinearClassifier, DNNClassifier, DNNRegressor, AutoEncoder, CNNClassifier]


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16.0)[:300], y[:300]


def small(cls, **params):
    return _small(cls, width=16, **{"epochs": 2, "random_state": 0, **params})


def all_outputs(estimator, X):
    names = ("predict", "predict_proba", "decision_function", "score_samples", "transform")
    return {name: getattr(estimator, name)(X) for name in names if hasattr(estimator, name)}


@pytest.fixture
def no_pickle(monkeypatch):
    """Make every way into pickle fail, so that a load that needs it fails loudly."""

    def refused(*args, **kwargs):
        raise AssertionError("pickle was used")

    for name in ("loads", "load", "Unpickler", "_loads", "_load", "_Unpickler"):
        if hasattr(pickle, name):
            monkeypatch.setattr(pickle, name, refused)


@pytest.mark.parametrize("cls", ALL, ids=lambda cls: cls.__name__)
def test_save_load_gives_identical_outputs(cls, digits, tmp_path, no_pickle):
    X, y = digits
    model = fit(small(cls), X, y)
    path = tmp_path / "model.flest"
    model.save(path)
    restored = load(path)
    assert type(restored) is cls
    assert restored.get_params() == model.get_params()
    expected, got = all_outputs(model, X), all_outputs(restored, X)
    assert got.keys() == expected.keys() and len(got) >= 1
    for name in expected:
        numpy.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    assert restored.n_features_in_ == model.n_features_in_ and restored.n_iter_ == model.n_iter_
    assert restored.loss_curve_ == model.loss_curve_ and restored.history_ == model.history_
    if hasattr(model, "classes_"):
        numpy.testing.assert_array_equal(restored.classes_, model.classes_)
        assert restored.classes_.dtype == model.classes_.dtype


def test_loaded_estimator_trains_on_exactly_as_the_original(digits, tmp_path):
    X, y = digits
    original = small(DNNClassifier).fit(X, y)
    original.save(tmp_path / "m.flest")
    copy = load(tmp_path / "m.flest")  # optimizer slots and random streams travel along
    original.partial_fit(X, y)
    copy.partial_fit(X, y)
    assert all(numpy.array_equal(a, b) for a, b in zip(original._model.get_weights(), copy._model.get_weights()))


@pytest.mark.parametrize("labels", [
    numpy.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]),
    numpy.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"], dtype=object),
    numpy.array([3, 5, 10, 11, 20, 21, 40, 41, 90, 99]),
    numpy.arange(10) * 2.0 - 3.0,
], ids=["str", "object", "int", "float"])
def test_classes_and_feature_names_round_trip(labels, digits, tmp_path, no_pickle):
    X, y = digits
    frame = pandas.DataFrame(X, columns=[f"pixel{i}" for i in range(X.shape[1])])
    model = small(LinearClassifier).fit(frame, labels[y])
    model.save(tmp_path / "m.flest")
    restored = load(tmp_path / "m.flest")
    assert restored.classes_.dtype == model.classes_.dtype
    numpy.testing.assert_array_equal(restored.classes_, model.classes_)
    numpy.testing.assert_array_equal(restored.feature_names_in_, model.feature_names_in_)
    numpy.testing.assert_array_equal(restored.predict(frame), model.predict(frame))
    with pytest.raises(ValueError, match="feature names"):
        restored.predict(frame.rename(columns={"pixel0": "other"}))


def test_non_json_parameters_and_attributes_round_trip(digits, tmp_path, no_pickle):
    """An optimizer instance, a RandomState, a class_weight dict with int keys, tuples, early stopping."""
    X, y = digits
    model = small(DNNClassifier, optimizer=optimizers.SGD(learning_rate=0.05, momentum=0.9),
                  random_state=numpy.random.RandomState(3), class_weight={0: 2.0, 7: 0.5},
                  early_stopping=True, hidden_units=(8, 8)).fit(X, y)
    model.save(tmp_path / "m.flest")
    restored = load(tmp_path / "m.flest")
    assert isinstance(restored.optimizer, optimizers.SGD)
    assert optimizers.serialize(restored.optimizer) == optimizers.serialize(model.optimizer)
    assert restored.class_weight == {0: 2.0, 7: 0.5} and restored.hidden_units == (8, 8)
    assert isinstance(restored.random_state, numpy.random.RandomState)
    assert restored.random_state.randint(1000, size=5).tolist() == model.random_state.randint(1000, size=5).tolist()
    assert restored.validation_scores_ == model.validation_scores_
    numpy.testing.assert_array_equal(restored.predict_proba(X), model.predict_proba(X))


def test_multi_output_regressor_keeps_its_target_scaling(digits, tmp_path):
    X, y = digits
    targets = numpy.column_stack([y * 100.0, -y + 0.5])
    model = small(DNNRegressor).fit(X, targets)
    model.save(tmp_path / "m.flest")
    restored = load(tmp_path / "m.flest")
    numpy.testing.assert_array_equal(restored.predict(X), model.predict(X))
    assert restored.predict(X).shape == (len(X), 2)


def test_unfitted_estimator_round_trips_unfitted(tmp_path, digits):
    small(DNNClassifier, hidden_units=(5, 3)).save(tmp_path / "m.flest")
    restored = load(tmp_path / "m.flest")
    assert restored.hidden_units == (5, 3)
    with pytest.raises(NotFittedError):
        restored.predict(digits[0])


def test_file_is_json_and_numeric_npy_entries(digits, tmp_path):
    X, y = digits
    small(LinearClassifier).fit(X, numpy.array(list("abcdefghij"))[y]).save(tmp_path / "m.flest")
    with zipfile.ZipFile(tmp_path / "m.flest") as archive:
        names = archive.namelist()
        header = json.loads(archive.read("estimator.json"))
    assert names[0] == "estimator.json" and all(name.startswith("arrays/") for name in names[1:])
    assert header["class_name"] == "LinearClassifier" and header["params"]["epochs"] == 2
    assert header["state"]["classes_"]["items"] == list("abcdefghij")
    with numpy.load(tmp_path / "m.flest", allow_pickle=False) as arrays:  # also a plain npz
        assert all(arrays[name].dtype.kind in "biuf" for name in arrays.files if name.startswith("arrays/"))


def test_gpu_setting_loads_on_a_machine_without_cupy(digits, tmp_path):
    X, y = digits
    model = small(DNNClassifier).fit(X, y)
    model.set_params(device="gpu")  # as saved on a GPU machine: the state is numpy arrays only
    model.save(tmp_path / "m.flest")
    assert_loads_without_cupy(model, X[:20], tmp_path, f"load({str(tmp_path / 'm.flest')!r})")


# -- refused files and refused content --------------------------------------------------------------------
def _edit_header(path, edit):
    with zipfile.ZipFile(path) as archive:
        entries = [(info.filename, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries:
            if name == "estimator.json":
                header = json.loads(data)
                edit(header)
                data = json.dumps(header)
            archive.writestr(name, data)


@pytest.fixture
def saved(digits, tmp_path):
    X, y = digits
    path = tmp_path / "m.flest"
    small(LinearClassifier).fit(X, y).save(path)
    return path


@pytest.mark.parametrize("class_name", ["Pipeline", "os.system", "_BaseNetwork", "Estimator", "load"])
def test_a_class_name_outside_the_allow_list_is_refused(saved, class_name, no_pickle):
    _edit_header(saved, lambda header: header.update(class_name=class_name))
    with pytest.raises(ValueError, match=f"names the estimator class '{class_name}', which is not one of "
                                         "flowlearn's estimators"):
        load(saved)


@pytest.mark.parametrize("edit, message", [
    (lambda h: h.update(format="flowlearn.model"), "not a flowlearn estimator file"),
    (lambda h: h.update(format_version=2), "format version 2"),
    (lambda h: h["params"].update(shell="rm -rf /"), "parameters it does not have: \\['shell'\\]"),
    (lambda h: h["state"].update(x_={"__fl__": "function", "name": "os.system"}), "tagged 'function'"),
    (lambda h: h["state"].update(r={"__fl__": "generator", "state": {"bit_generator": "os.system"}}),
     "random generator of unknown kind 'os.system'"),
    (lambda h: h["state"].update(a={"__fl__": "array", "entry": "arrays/99999.npy"}), "which the file lacks"),
    (lambda h: h.update(state=[]), "not a JSON object"),
])
def test_damaged_or_hostile_headers_are_one_value_error_naming_the_file(saved, edit, message, no_pickle):
    _edit_header(saved, edit)
    with pytest.raises(ValueError, match=f"load: '{saved}'.*{message}"):
        load(saved)


def test_pickled_array_entry_is_refused(saved, no_pickle):
    import io
    buffer = io.BytesIO()
    numpy.lib.format.write_array(buffer, numpy.array([print], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(saved, "a") as archive:
        archive.writestr("arrays/evil.npy", buffer.getvalue())
    _edit_header(saved, lambda h: h["state"].update(evil_={"__fl__": "array", "entry": "arrays/evil.npy"}))
    with pytest.raises(ValueError, match="cannot read 'arrays/evil.npy' as a numeric array"):
        load(saved)


def test_not_a_file_of_ours(tmp_path):
    junk = tmp_path / "junk.flest"
    junk.write_bytes(b"\x80\x04\x95 a pickle, say")
    with pytest.raises(ValueError, match="not a zip archive"):
        load(junk)
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.flest")


def test_state_that_needs_pickle_is_refused_on_save(digits, tmp_path):
    X, y = digits
    model = small(LinearClassifier).fit(X, y)
    model.callback_ = lambda: None  # something only pickle (and not even pickle) could store
    with pytest.raises(TypeError, match="cannot store attribute 'callback_' without pickle.*function"):
        model.save(tmp_path / "m.flest")
    assert not os.listdir(tmp_path)  # nothing written, no temporary left
    with pytest.raises(ValueError, match="is a directory"):
        small(LinearClassifier).save(tmp_path)


def test_load_is_exported_and_listed():
    assert flowlearn.estimators.load is load and "load" in flowlearn.estimators.__all__


def test_the_no_pickle_fixture_does_block_pickle(no_pickle):
    with pytest.raises(AssertionError, match="pickle was used"):
        pickle.loads(pickle.dumps([1]))


def test_estimators_with_feature_columns_round_trip(tmp_path, no_pickle):
    import flowlearn as fl
    fc = fl.feature_column
    rng = numpy.random.default_rng(0)
    frame = pandas.DataFrame({"age": rng.uniform(20, 60, 120), "city": rng.choice(["a", "b", "c"], 120)})
    y = numpy.where(frame["age"] > 40, "old", "young")
    columns = [fc.numeric_column("age", normalizer_fn=("standardize", 40.0, 10.0)),
               fc.indicator_column(fc.categorical_column_with_vocabulary_list("city", ["a", "b", "c"])),
               fc.embedding_column(fc.categorical_column_with_hash_bucket("city", 10), 2)]
    for model in (small(DNNClassifier, feature_columns=columns), small(LinearClassifier, feature_columns=columns[:2])):
        model.fit(frame, y).save(tmp_path / "m.flest")
        restored = load(tmp_path / "m.flest")
        assert restored.feature_columns == model.feature_columns
        numpy.testing.assert_array_equal(restored.predict_proba(frame), model.predict_proba(frame))
        numpy.testing.assert_array_equal(restored.predict(frame), model.predict(frame))
    with_code = small(LinearClassifier, feature_columns=[fc.numeric_column("age", normalizer_fn=numpy.log1p)])
    with pytest.raises(TypeError, match=r"cannot store parameter 'feature_columns'\[0\] without pickle.*callable"):
        with_code.save(tmp_path / "code.flest")
