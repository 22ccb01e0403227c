"""SavedModel export -> load -> predict equals the in-memory predictions, with TF Serving's signatures.

Every export is replayed at a batch size other than the one traced (2 rows).
"""
import json
import os
import subprocess
import sys
import threading

import numpy
import pandas
import pytest
from sklearn.datasets import load_iris
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler

import flowlearn as fl
from flowlearn.core import losses
from flowlearn.estimators import (AutoEncoder, CNNClassifier, DNNClassifier, DNNRegressor, Estimator, EstimatorSpec,
                                  LinearClassifier, LinearRegressor, ModeKeys)
from flowlearn.io import build_raw_serving_input_receiver_fn, export_saved_model, load_saved_model, numpy_input_fn

RTOL = 1e-5
ROWS = 7  # the signatures are traced at 2 rows


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return X, y


def _spec(signature, which):
    return {s["name"]: (s["dtype"], s["shape"]) for s in getattr(signature, which)}


def _check_classifier(loaded, est, X, n_classes, label_dtype):
    sigs = loaded.signatures
    assert set(sigs) == {"serving_default", "classification", "predict"}
    assert sigs["serving_default"].method_name == "tensorflow/serving/classify"
    assert sigs["predict"].method_name == "tensorflow/serving/predict"
    logits_width = 1 if n_classes == 2 else n_classes
    assert _spec(sigs["predict"], "outputs") == {
        "probabilities": ("float64", [None, n_classes]), "class_ids": ("int64", [None]),
        "classes": (label_dtype, [None]), "logits": ("float32", [None, logits_width])}
    assert _spec(sigs["classification"], "outputs") == {
        "classes": (label_dtype, [None, n_classes]), "scores": ("float64", [None, n_classes])}
    out = loaded.predict(X, signature="predict")
    numpy.testing.assert_allclose(out["probabilities"], est.predict_proba(X), rtol=RTOL)
    numpy.testing.assert_array_equal(out["classes"], est.predict(X))
    numpy.testing.assert_array_equal(out["class_ids"], numpy.searchsorted(est.classes_, est.predict(X)))
    numpy.testing.assert_allclose(out["logits"].reshape(len(X), -1),
                                  est.decision_function(X).reshape(len(X), -1), rtol=RTOL, atol=1e-6)
    scored = loaded(X)  # serving_default = classification
    numpy.testing.assert_allclose(scored["scores"], est.predict_proba(X), rtol=RTOL)
    numpy.testing.assert_array_equal(scored["classes"], numpy.tile(est.classes_, (len(X), 1)))


def _check_regressor(loaded, est, X, target_shape):
    sigs = loaded.signatures
    assert set(sigs) == {"serving_default", "regression", "predict"}
    assert sigs["serving_default"].method_name == "tensorflow/serving/regress"
    assert _spec(sigs["regression"], "outputs") == {"outputs": ("float64", [None, *target_shape])}
    assert _spec(sigs["predict"], "outputs") == {"predictions": ("float64", [None, *target_shape])}
    numpy.testing.assert_allclose(loaded(X)["outputs"], est.predict(X), rtol=RTOL)
    numpy.testing.assert_allclose(loaded.predict(X, signature="predict")["predictions"], est.predict(X), rtol=RTOL)


def test_classifiers(iris, tmp_path):
    X, y = iris
    for est in (DNNClassifier(hidden_units=(8,), epochs=5, random_state=0),
                LinearClassifier(epochs=5, random_state=0)):
        est.fit(X, y)
        loaded = load_saved_model(est.export_saved_model(tmp_path))
        assert _spec(loaded.signatures["predict"], "inputs") == {"inputs": ("float64", [None, 4])}
        _check_classifier(loaded, est, X[:ROWS * 3:3], 3, "int64")


def test_string_labels_binary_and_multiclass(iris, tmp_path):
    X, y = iris
    names = numpy.array(["setosa", "versicolor", "virginica"])[y]
    multi = LinearClassifier(epochs=5, random_state=0).fit(X, names)
    _check_classifier(load_saved_model(multi.export_saved_model(tmp_path)), multi, X[::20][:ROWS], 3, "string")
    binary = DNNClassifier(hidden_units=(4,), epochs=5, random_state=0).fit(X, numpy.where(y == 0, "cat", "dog"))
    loaded = load_saved_model(binary.export_saved_model(tmp_path))
    _check_classifier(loaded, binary, X[::20][:ROWS], 2, "string")
    with open(os.path.join(loaded.path, "assets", "labels.json")) as f:
        assert json.load(f) == {"dtype": "string", "values": ["cat", "dog"]}


def test_regressors(iris, tmp_path):
    X, y = iris
    target = X[:, 0] * 100.0 + 5000.0  # far from 0: the head's un-standardizing matters
    for est in (DNNRegressor(hidden_units=(8,), epochs=5, random_state=0), LinearRegressor(epochs=5, random_state=0)):
        est.fit(X[:, 1:], target)
        _check_regressor(load_saved_model(est.export_saved_model(tmp_path)), est, X[:ROWS, 1:], [])
    two = DNNRegressor(hidden_units=(8,), epochs=3, random_state=0).fit(X[:, :2], X[:, 2:])
    _check_regressor(load_saved_model(two.export_saved_model(tmp_path)), two, X[:ROWS, :2], [2])


def test_autoencoder(iris, tmp_path):
    X, _ = iris
    est = AutoEncoder(hidden_units=(6, 2), output_activation=None, epochs=5, random_state=0).fit(X)
    loaded = load_saved_model(est.export_saved_model(tmp_path))
    assert set(loaded.signatures) == {"serving_default", "predict"}
    assert _spec(loaded.signatures["predict"], "outputs") == {
        "outputs": ("float64", [None, 4]), "codes": ("float64", [None, 2]), "scores": ("float64", [None])}
    out = loaded.predict(X[:ROWS], signature="predict")
    numpy.testing.assert_allclose(out["outputs"], est.reconstruct(X[:ROWS]), rtol=RTOL)
    numpy.testing.assert_allclose(out["codes"], est.transform(X[:ROWS]), rtol=RTOL, atol=1e-7)
    numpy.testing.assert_allclose(out["scores"], est.score_samples(X[:ROWS]), rtol=RTOL)


def test_cnn_classifier_on_images_and_flat_rows(tmp_path):
    rng = numpy.random.default_rng(0)
    images = rng.random((40, 6, 6, 1))
    labels = (images.mean(axis=(1, 2, 3)) > 0.5).astype(int) + 2 * (images[:, 0, 0, 0] > 0.5)
    cnn = CNNClassifier(conv_filters=(3,), dense_units=(8,), kernel_size=3, epochs=2, random_state=0)
    cnn.fit(images, labels)
    loaded = load_saved_model(cnn.export_saved_model(tmp_path))
    assert _spec(loaded.signatures["predict"], "inputs") == {"inputs": ("float64", [None, 6, 6, 1])}
    _check_classifier(loaded, cnn, images[:ROWS], 4, "int64")
    flat = CNNClassifier(conv_filters=(3,), dense_units=(8,), kernel_size=3, epochs=2, random_state=0)
    flat.fit(images.reshape(40, -1), labels)
    loaded = load_saved_model(flat.export_saved_model(tmp_path))
    assert _spec(loaded.signatures["predict"], "inputs") == {"inputs": ("float64", [None, 36])}
    _check_classifier(loaded, flat, images[:ROWS].reshape(ROWS, -1), 4, "int64")


@pytest.mark.parametrize("scalers", [
    (StandardScaler(),), (MinMaxScaler(feature_range=(-1, 2)),), (MaxAbsScaler(),), (RobustScaler(),),
    (StandardScaler(with_mean=False), MinMaxScaler(clip=True)),
])
def test_pipeline_scalers_are_folded_in(iris, tmp_path, scalers):
    X, y = iris
    X = X * [1000.0, 1.0, 0.01, 10.0]  # scales far apart: a scaler left out would show
    pipe = make_pipeline(*scalers, DNNClassifier(hidden_units=(8,), epochs=3, random_state=0)).fit(X, y)
    loaded = load_saved_model(export_saved_model(pipe, tmp_path))
    out = loaded.predict(X[:ROWS * 2:2], signature="predict")
    numpy.testing.assert_allclose(out["probabilities"], pipe.predict_proba(X[:ROWS * 2:2]), rtol=RTOL)
    numpy.testing.assert_array_equal(out["classes"], pipe.predict(X[:ROWS * 2:2]))


def test_pipeline_scaler_constants_stay_float64(iris, tmp_path):
    X, y = iris
    X = 1e4 + X  # a float32 mean (1e4 to within 1e-3) would shift every standardized feature by ~1e-3 / 0.4
    pipe = make_pipeline(StandardScaler(), DNNRegressor(hidden_units=(8,), epochs=3, random_state=0)).fit(X, y)
    loaded = load_saved_model(export_saved_model(pipe, tmp_path))
    arrays = loaded.signatures["regression"].graph.arrays
    assert any(a.dtype == numpy.float64 and numpy.array_equal(a, pipe[0].mean_) for a in arrays.values())
    numpy.testing.assert_allclose(loaded(X[:ROWS])["outputs"], pipe.predict(X[:ROWS]), rtol=1e-9)


def test_float64_receiver_features_stay_float64(tmp_path):
    fn = build_raw_serving_input_receiver_fn({"x": ("float64", (3,)), "n": ("int32", (None,))})
    receiver = fn()
    assert receiver.receiver_tensors["x"].dtype == numpy.float64 and receiver.receiver_tensors["n"].shape == (2,)
    assert receiver.features["n"] is receiver.receiver_tensors["n"]
    with pytest.raises(ValueError, match="feature 'x' needs a numeric dtype"):
        build_raw_serving_input_receiver_fn({"x": ("float32", (None, None))})


def test_pipeline_regressor_and_unsupported_step(iris, tmp_path):
    X, y = iris
    pipe = make_pipeline(StandardScaler(), DNNRegressor(hidden_units=(4,), epochs=3, random_state=0)).fit(X, y)
    _check_regressor(load_saved_model(export_saved_model(pipe, tmp_path)), pipe, X[:ROWS], [])
    bad = make_pipeline(StandardScaler(), PCA(2), DNNRegressor(hidden_units=(4,), epochs=1)).fit(X, y)
    with pytest.raises(ValueError, match=r"step 'pca' \(PCA\) cannot be folded"):
        export_saved_model(bad, tmp_path)


def test_feature_column_classifier_on_a_dataframe_with_strings(tmp_path):
    fc = fl.feature_column
    rng = numpy.random.default_rng(0)
    n = 120
    frame = pandas.DataFrame({"age": rng.uniform(18, 70, n), "education": rng.choice(["HS", "BSc", "MSc", "PhD"], n),
                              "city": rng.choice(list("abcde"), n)})
    y = numpy.where((frame.age > 40) ^ (frame.education == "PhD"), "yes", "no")
    age = fc.numeric_column("age", normalizer_fn=("standardize", 40.0, 15.0))
    education = fc.categorical_column_with_vocabulary_list("education", ["HS", "BSc", "MSc", "PhD"], num_oov_buckets=1)
    columns = [age, fc.bucketized_column(age, [30, 50]), fc.indicator_column(education),
               fc.embedding_column(fc.categorical_column_with_hash_bucket("city", 7), 3)]
    clf = DNNClassifier(hidden_units=(8,), epochs=5, random_state=0, feature_columns=columns).fit(frame, y)
    loaded = load_saved_model(clf.export_saved_model(tmp_path))
    assert _spec(loaded.signatures["predict"], "inputs") == {
        "age": ("float64", [None]), "city": ("string", [None]), "education": ("string", [None])}
    _check_classifier(loaded, clf, frame.iloc[:ROWS], 2, "string")
    assets = sorted(os.listdir(os.path.join(loaded.path, "assets")))
    assert assets == ["feature_columns.json", "labels.json", "vocabulary.json"]
    with open(os.path.join(loaded.path, "assets", "vocabulary.json")) as f:
        assert json.load(f) == {"vocabulary": ["HS", "BSc", "MSc", "PhD"]}
    # A dict of lists, as a REST client sends it; an unseen word (the OOV bucket) and city still get an answer.
    row = {"age": [30.0], "education": ["Unknown"], "city": ["zz"]}
    expected = clf.predict_proba(pandas.DataFrame(row))
    numpy.testing.assert_allclose(loaded.predict(row, signature="predict")["probabilities"], expected, rtol=RTOL)


def test_raw_feature_inputs_keep_their_column_names(tmp_path):
    # DataFrame columns such as 'petal length (cm)' become input names: JSON keys, never file names.
    fc = fl.feature_column
    frame = pandas.DataFrame({"petal length (cm)": numpy.linspace(1.0, 7.0, 60), "kind [a/b]": ["a", "b"] * 30})
    y = (frame["petal length (cm)"] > 4).astype(int)
    columns = [fc.numeric_column("petal length (cm)"),
               fc.indicator_column(fc.categorical_column_with_vocabulary_list("kind [a/b]", ["a", "b"]))]
    clf = DNNClassifier(hidden_units=(4,), epochs=3, random_state=0, feature_columns=columns).fit(frame, y)
    loaded = load_saved_model(clf.export_saved_model(tmp_path))
    assert set(_spec(loaded.signatures["predict"], "inputs")) == {"petal length (cm)", "kind [a/b]"}
    _check_classifier(loaded, clf, frame.iloc[:ROWS], 2, "int64")


@pytest.mark.parametrize("estimator", [LinearRegressor, DNNRegressor])
def test_every_kind_of_feature_column(estimator, tmp_path):
    """Integer vocabularies with OOV buckets, multi-valued strings with missing values, sqrtn embeddings,
    crosses of a raw key and a column, bucketized multi-dimensional numbers: encoded by the loader from
    JSON, densified by the graph, equal to predict."""
    fc = fl.feature_column
    rng = numpy.random.default_rng(1)
    n = 80
    features = {"x": rng.normal(size=(n, 2)), "kind": rng.choice([3, 5, 7], n),
                "tags": rng.choice(["p", "q", "r", ""], (n, 3)).astype(object), "city": rng.choice(list("abcdef"), n)}
    kind = fc.categorical_column_with_vocabulary_list("kind", [3, 5, 7])
    columns = [fc.numeric_column("x", shape=(2,)),
               fc.indicator_column(fc.categorical_column_with_vocabulary_list("kind", [3, 5], num_oov_buckets=2)),
               fc.embedding_column(fc.categorical_column_with_vocabulary_list("tags", ["p", "q", "r"]), 2,
                                   combiner="sqrtn"),
               fc.indicator_column(fc.crossed_column(["city", kind], 11)),
               fc.bucketized_column(fc.numeric_column("x", shape=(2,)), [-1.0, 0.0, 1.0])]
    est = estimator(epochs=3, random_state=0, feature_columns=columns)
    est.fit(features, features["x"].sum(axis=1) + (features["kind"] == 5))
    loaded = load_saved_model(est.export_saved_model(tmp_path))
    assert _spec(loaded.signatures["regression"], "inputs") == {
        "city": ("string", [None]), "kind": ("int64", [None]), "tags": ("string", [None, 3]),
        "x": ("float64", [None, 2])}
    rows = {key: value[:ROWS] for key, value in features.items()}
    numpy.testing.assert_allclose(loaded(rows)["outputs"], est.predict(rows), rtol=RTOL)


def _model_fn(features, labels, mode):
    hidden = fl.layers.dense(features["x"], 8, activation="relu")
    y = fl.layers.dense(hidden, 1)
    if mode == ModeKeys.PREDICT:
        return EstimatorSpec(mode, predictions={"y": y, "hidden": hidden})
    loss = losses.mean_squared_error(labels, y)
    train_op = fl.train.GradientDescentOptimizer(0.1).minimize(loss, global_step=fl.train.get_global_step())
    return EstimatorSpec(mode, loss=loss, train_op=train_op)


@pytest.fixture(scope="module")
def trained_estimator(tmp_path_factory):
    x = numpy.linspace(-1, 1, 64, dtype="float32").reshape(-1, 2)
    est = Estimator(_model_fn, model_dir=str(tmp_path_factory.mktemp("model_dir")))
    est.train(numpy_input_fn({"x": x}, x[:, :1] * 3, batch_size=16, num_epochs=None, shuffle=True), steps=20)
    return est, x


def test_model_fn_estimator(trained_estimator, tmp_path):
    est, x = trained_estimator
    receiver_fn = build_raw_serving_input_receiver_fn({"x": ("float32", (None, 2))})
    path = est.export_saved_model(tmp_path, receiver_fn)
    loaded = load_saved_model(path)
    assert set(loaded.signatures) == {"serving_default", "predict"}
    assert _spec(loaded.signatures["serving_default"], "inputs") == {"x": ("float32", [None, 2])}
    assert _spec(loaded.signatures["serving_default"], "outputs") == {
        "y": ("float32", [None, 1]), "hidden": ("float32", [None, 8])}
    out = loaded.predict({"x": x[:ROWS]})
    memory = next(est.predict(numpy_input_fn({"x": x[:ROWS]}, shuffle=False), yield_single_examples=False))
    numpy.testing.assert_allclose(out["y"], memory["y"], rtol=RTOL)
    numpy.testing.assert_allclose(out["hidden"], memory["hidden"], rtol=RTOL)
    with pytest.raises(TypeError, match="serving_input_receiver_fn"):
        export_saved_model(est, tmp_path)


def test_model_fn_with_a_single_prediction_and_a_single_receiver_tensor(tmp_path):
    def model_fn(features, labels, mode):
        y = fl.layers.dense(features, 3)
        if mode == ModeKeys.PREDICT:
            return EstimatorSpec(mode, predictions=fl.ops.softmax(y))
        loss = losses.mean_squared_error(labels, y)
        return EstimatorSpec(mode, loss=loss, train_op=fl.train.GradientDescentOptimizer(0.1).minimize(
            loss, global_step=fl.train.get_global_step()))

    x = numpy.random.default_rng(0).random((32, 5), dtype=numpy.float32)
    est = Estimator(model_fn, model_dir=str(tmp_path / "model"))
    est.train(numpy_input_fn(x, x[:, :3], batch_size=8, num_epochs=1, shuffle=False))

    def receiver_fn():
        placeholder = fl.tensor(numpy.zeros((2, 5), dtype=numpy.float32))
        return fl.io.ServingInputReceiver(placeholder, placeholder)

    loaded = load_saved_model(est.export_saved_model(tmp_path / "export", receiver_fn))
    assert _spec(loaded.signatures["serving_default"], "inputs") == {"input": ("float32", [None, 5])}
    memory = next(est.predict(numpy_input_fn(x[:ROWS], shuffle=False), yield_single_examples=False))
    numpy.testing.assert_allclose(loaded(x[:ROWS])["output"], memory["predictions"], rtol=RTOL)

    def computed_features():
        placeholder = fl.tensor(numpy.zeros((2, 5), dtype=numpy.float32))
        return fl.io.ServingInputReceiver(placeholder * 2, placeholder)

    with pytest.raises(ValueError, match="must be its receiver tensors"):
        est.export_saved_model(tmp_path / "export", computed_features)


def test_model_fn_reading_its_features_outside_tensor_ops_is_refused(tmp_path):
    """Feature columns' input_layer reads raw arrays: traced, the input would be a frozen constant."""
    column = fl.feature_column.numeric_column("x", shape=(2,))

    def model_fn(features, labels, mode):
        y = fl.layers.dense(fl.feature_column.input_layer(features, [column]), 1)
        if mode == ModeKeys.PREDICT:
            return EstimatorSpec(mode, predictions={"y": y})
        loss = losses.mean_squared_error(labels, y)
        return EstimatorSpec(mode, loss=loss, train_op=fl.train.GradientDescentOptimizer(0.1).minimize(
            loss, global_step=fl.train.get_global_step()))

    x = numpy.ones((8, 2), dtype=numpy.float32)
    est = Estimator(model_fn, model_dir=str(tmp_path / "model"))
    est.train(numpy_input_fn({"x": x}, x[:, :1], batch_size=4, num_epochs=1, shuffle=False))
    with pytest.raises(ValueError, match=r"inputs \['x'\] do not reach any output"):
        est.export_saved_model(tmp_path / "export", build_raw_serving_input_receiver_fn({"x": ("float32", (2,))}))


def test_loading_imports_no_estimator_and_no_user_code(trained_estimator, iris, tmp_path):
    est, x = trained_estimator
    receiver_fn = build_raw_serving_input_receiver_fn({"x": ("float32", (2,))})
    fn_path = est.export_saved_model(tmp_path / "fn", receiver_fn)
    X, y = iris
    clf = DNNClassifier(hidden_units=(4,), epochs=2, random_state=0).fit(X, numpy.array(["a", "b", "c"])[y])
    clf_path = clf.export_saved_model(tmp_path / "clf")
    script = f"""
import sys, numpy, flowlearn
a = flowlearn.io.load_saved_model({fn_path!r}).predict({{"x": numpy.zeros((3, 2))}})
b = flowlearn.io.load_saved_model({clf_path!r}).predict(numpy.zeros((3, 4)), signature="predict")
assert a["y"].shape == (3, 1) and b["classes"].shape == (3,)
bad = sorted(m for m in sys.modules if m.startswith("flowlearn.estimators") or "test_saved_model" in m
             or m.startswith("sklearn"))
print(bad)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_export_folders_are_numeric_new_and_complete(tmp_path):
    model = fl.Sequential([fl.layers.Input((3,)), fl.layers.Dense(2)])
    first, second = export_saved_model(model, tmp_path), export_saved_model(model, tmp_path)
    assert first != second and os.path.basename(first).isdigit() and os.path.basename(second).isdigit()
    assert int(os.path.basename(second)) > int(os.path.basename(first))
    assert sorted(os.listdir(tmp_path)) == sorted([os.path.basename(first), os.path.basename(second)])  # no temporaries
    assert sorted(os.listdir(first)) == ["assets", "saved_model.json", "variables"]
    assert os.listdir(os.path.join(first, "variables")) == ["variables.npz"]
    with numpy.load(os.path.join(first, "variables", "variables.npz")) as arrays:  # a plain npz
        assert sorted(arrays.files) == sorted(w.name for w in model.weights)
    with open(os.path.join(first, "saved_model.json")) as f:
        document = json.load(f)
    assert document["format"] == "flowlearn.saved_model" and document["format_version"] == 1
    node = document["graphs"]["serving_default"]["nodes"][0]
    assert {"op", "inputs", "attrs", "output", "shape", "dtype"} <= set(node)
    with pytest.raises(ValueError, match="not an empty folder"):
        model.export(first)
    with pytest.raises(ValueError, match="format"):
        model.export(tmp_path / "x", format="tflite")


def test_concurrent_exports_get_distinct_complete_versions(tmp_path):
    model = fl.Sequential([fl.layers.Input((3,)), fl.layers.Dense(2)])
    paths, errors = [], []

    def work():
        try:
            paths.append(export_saved_model(model, tmp_path))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(paths)) == 4
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in paths)
    for path in paths:
        load_saved_model(path)


def test_as_text_and_debug_outputs(tmp_path):
    model = fl.Sequential([fl.layers.Input((3,)), fl.layers.Dense(4, activation="relu"), fl.layers.Dense(2)])
    path = export_saved_model(model, tmp_path, as_text=True, debug_outputs=True)
    with open(os.path.join(path, "saved_model.json")) as f:
        assert f.read().startswith("{\n")
    loaded = load_saved_model(path)
    debug = loaded.predict(numpy.ones((3, 3), dtype="float32"), signature="debug")
    assert len(debug) >= 3  # every node: matmul, bias, relu, ...
    final = loaded(numpy.ones((3, 3), dtype="float32"))["outputs"]
    assert any(v.shape == final.shape and numpy.allclose(v, final) for v in debug.values())


def test_input_errors_name_the_input_and_what_was_expected(iris, tmp_path):
    X, y = iris
    loaded = load_saved_model(DNNClassifier(hidden_units=(4,), epochs=1, random_state=0).fit(X, y)
                              .export_saved_model(tmp_path))
    expected = r"input 'inputs': expected dtype float64 and shape \(None, 4\); received shape \(3, 5\)"
    with pytest.raises(ValueError, match=expected):
        loaded.predict(numpy.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"input 'inputs'.*received <U1 values"):
        loaded.predict([["a", "b", "c", "d"]])
    with pytest.raises(ValueError, match="not a rectangular array"):
        loaded.predict([[1.0, 2.0, 3.0, 4.0], [1.0]])
    with pytest.raises(ValueError, match="unknown signature 'regress'"):
        loaded.predict(X[:2], signature="regress")
    with pytest.raises(ValueError, match=r"missing \['inputs'\], unknown \['x'\]"):
        loaded.predict({"x": X[:2]})
    with pytest.raises(ValueError, match=r"input 'inputs'.*received bool values"):
        loaded.predict(numpy.ones((2, 4), dtype=bool))
    assert loaded.predict([[1, 2, 3, 4]])["scores"].shape == (1, 3)  # integers are numbers too


def test_integer_inputs_take_whole_numbers_in_range(tmp_path):
    model = fl.Sequential([fl.layers.Input((3,), dtype="int64"), fl.layers.Embedding(10, 2), fl.layers.Flatten()])
    loaded = load_saved_model(model.export(tmp_path / "1"))
    assert loaded.signatures["serving_default"].inputs == [{"name": "inputs", "dtype": "int64", "shape": [None, 3]}]
    ids = numpy.array([[1, 2, 3], [9, 0, 4], [5, 5, 5]])
    numpy.testing.assert_allclose(loaded(ids)["outputs"], model.predict(ids, verbose=0), rtol=RTOL)
    numpy.testing.assert_array_equal(loaded(ids.astype(float))["outputs"], loaded(ids)["outputs"])
    with pytest.raises(ValueError, match="not whole"):
        loaded([[1.5, 2, 3]])
    with pytest.raises(ValueError, match="out of its range"):
        loaded(numpy.array([[2 ** 64 - 1, 0, 0]], dtype=numpy.uint64))


def test_sequential_with_dropout_and_batch_norm_exports_inference(tmp_path):
    model = fl.Sequential([fl.layers.Input((4,)), fl.layers.Dense(8), fl.layers.BatchNormalization(),
                           fl.layers.Activation("relu"), fl.layers.Dropout(0.5), fl.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    x = numpy.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    model.fit(x, x[:, :2], epochs=2, verbose=0)  # moving statistics away from their start
    loaded = load_saved_model(model.export(tmp_path / "1"))
    numpy.testing.assert_allclose(loaded(x[:ROWS])["outputs"], model.predict(x[:ROWS], verbose=0), rtol=RTOL)


def test_concurrent_predictions_match_serial(iris, tmp_path):
    X, y = iris
    clf = DNNClassifier(hidden_units=(8,), epochs=2, random_state=0).fit(X, numpy.array(["a", "b", "c"])[y])
    loaded = load_saved_model(clf.export_saved_model(tmp_path))
    expected = [loaded.predict(X[i:i + 3], signature="predict") for i in range(0, 60, 3)]
    results, errors = {}, []

    def work(i):
        try:
            for _ in range(5):
                results[i] = loaded.predict(X[i * 3:i * 3 + 3], signature="predict")
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, want in enumerate(expected):
        numpy.testing.assert_array_equal(results[i]["classes"], want["classes"])
        numpy.testing.assert_array_equal(results[i]["probabilities"], want["probabilities"])


def test_signature_def_is_tf_serving_metadata(iris, tmp_path):
    X, y = iris
    loaded = load_saved_model(LinearRegressor(epochs=2, random_state=0).fit(X, y).export_saved_model(tmp_path))
    regression = loaded.signature_def["regression"]
    assert regression["method_name"] == "tensorflow/serving/regress"
    assert regression["inputs"]["inputs"]["dtype"] == "DT_DOUBLE"
    assert [d["size"] for d in regression["inputs"]["inputs"]["tensor_shape"]["dim"]] == ["-1", "4"]
    json.dumps(loaded.signature_def)


def test_sequential_cnn_round_trip(tmp_path):
    model = fl.Sequential([fl.layers.Input((8, 8, 1)), fl.layers.Conv2D(4, 3, padding="same", activation="relu"),
                           fl.layers.MaxPooling2D(2), fl.layers.Flatten(), fl.layers.Dense(3, activation="softmax")])
    path = model.export(tmp_path / "mnist" / "1")
    loaded = load_saved_model(path)
    x = numpy.random.default_rng(0).random((5, 8, 8, 1), dtype=numpy.float32)
    numpy.testing.assert_allclose(loaded(x)["outputs"], model.predict(x, verbose=0), rtol=RTOL)
    assert loaded.version == 1
    assert loaded.signatures["serving_default"].inputs == [{"name": "inputs", "dtype": "float32",
                                                           "shape": [None, 8, 8, 1]}]
    assert loaded.signatures["serving_default"].outputs == [{"name": "outputs", "dtype": "float32", "shape": [None, 3]}]


def test_a_write_that_fails_midway_leaves_neither_the_export_nor_its_temporary(tmp_path, monkeypatch):
    from flowlearn.io import saved_model

    model = fl.Sequential([fl.layers.Input((3,)), fl.layers.Dense(2)])

    def broken(name):
        raise OSError(f"disk full writing {name}")

    real_write = saved_model.atomic_write
    monkeypatch.setattr(saved_model, "atomic_write",
                        lambda path: broken(path) if path.endswith(saved_model.MODEL_FILE) else real_write(path))
    with pytest.raises(OSError, match="disk full"):
        saved_model.write_saved_model(model, tmp_path / "exports" / "1")
    assert os.listdir(tmp_path / "exports") == []  # the variables and the folders written before went too
