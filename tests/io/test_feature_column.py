"""Feature columns: each column's dense output against numpy written out by hand, the stable hash,
out-of-vocabulary handling, embedding gradients, configs and the errors."""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import flowlearn as fl
from flowlearn.core.gradient_check import check_gradients
from flowlearn.io import feature_column as fc


def fnv1a64(text):
    """FNV-1a 64 over the UTF-8 bytes, written out from its definition (independent of the module's)."""
    value = 0xCBF29CE484222325
    for byte in text.encode("utf-8"):
        value ^= byte
        value = (value * 0x100000001B3) % 2 ** 64
    return value


def dense(features, columns):
    return fc.input_layer(features, columns).data


# -- hashing -----------------------------------------------------------------------------------------
def test_fnv1a64_published_vectors():
    # Test vectors of the FNV reference (Fowler, Noll, Vo): the hash is the documented algorithm.
    assert fc.fingerprint64(["", "a", "foobar"]).tolist() == [0xCBF29CE484222325, 0xAF63DC4C8601EC8C,
                                                                0x85944171F73967E8]
    words = ["Bachelors", "HS-grad", "é漢字", "x" * 70, ""]
    assert fc.fingerprint64(words).tolist() == [fnv1a64(w) for w in words]


def test_hash_bucket_ids_are_the_documented_hash():
    column = fc.categorical_column_with_hash_bucket("city", 97)
    cities = np.array(["Paris", "Lagos", "a", "Paris", "foobar"])
    ids = column._ids({"city": cities}, {})[:, 0]
    assert ids.tolist() == [fnv1a64(c) % 97 for c in cities]
    assert ids[2] == 0xAF63DC4C8601EC8C % 97 and ids[4] == 0x85944171F73967E8 % 97  # hard-coded published values
    # Integers hash as their decimal text, bytes as their UTF-8 text.
    assert column._ids({"city": np.array([123, 7])}, {})[:, 0].tolist() == [fnv1a64("123") % 97, fnv1a64("7") % 97]
    assert column._ids({"city": np.array([b"Paris"])}, {})[0, 0] == fnv1a64("Paris") % 97


def test_hash_is_stable_across_processes():
    code = ("import numpy as np; from flowlearn.io import feature_column as fc; "
            "print(fc.categorical_column_with_hash_bucket('k', 1000)._ids({'k': np.array(['alpha', 'beta'])}, {})"
            ".ravel().tolist())")
    # Another process, with its own string-hash salt, buckets as this one and as the definition says.
    env = dict(os.environ, PYTHONHASHSEED=str(12345 + (hash("alpha") % 1000)))
    there = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    here = fc.categorical_column_with_hash_bucket("k", 1000)._ids({"k": np.array(["alpha", "beta"])}, {}).ravel()
    assert there.stdout.strip() == str(here.tolist()) == str([fnv1a64("alpha") % 1000, fnv1a64("beta") % 1000])


# -- numeric and bucketized --------------------------------------------------------------------------
def test_numeric_normalizers_and_shape():
    x = np.array([[1.0, 2.0], [3.0, 5.0]])
    age = np.array([30.0, 50.0, 45.0])
    out = dense({"age": age}, [fc.numeric_column("age", normalizer_fn=("standardize", 40.0, 5.0))])
    np.testing.assert_allclose(out, ((age - 40) / 5)[:, None], rtol=1e-6)
    out = dense({"x": x}, [fc.numeric_column("x", shape=(2,), normalizer_fn=("minmax", [0.0, 2.0], [4.0, 6.0]))])
    np.testing.assert_allclose(out, (x - [0, 2]) / ([4, 6] - np.array([0, 2])), rtol=1e-6)
    out = dense({"x": x}, [fc.numeric_column("x", shape=2, normalizer_fn=("log1p",))])
    np.testing.assert_allclose(out, np.log1p(x), rtol=1e-6)
    out = dense({"x": x}, [fc.numeric_column("x", shape=2, normalizer_fn=lambda v: v * 10)])
    np.testing.assert_allclose(out, x * 10)


def test_numeric_default_fills_missing_and_no_default_raises():
    values = pd.Series([1.0, None, 3.0])
    out = dense({"v": values}, [fc.numeric_column("v", default_value=-7.0)])
    assert out.ravel().tolist() == [1.0, -7.0, 3.0]
    with pytest.raises(ValueError, match=r"numeric_column 'v': 1 missing .* no default_value"):
        dense({"v": values}, [fc.numeric_column("v")])
    # An integer column reads whole numbers; a gap is still a gap (not the cast of NaN to an integer).
    out = dense({"v": pd.Series([1.7, None, -2.2])}, [fc.numeric_column("v", dtype="int64", default_value=5)])
    assert out.ravel().tolist() == [1.0, 5.0, -2.0]


def test_bucketized_one_hot_edges_and_multi_dimensional():
    column = fc.bucketized_column(fc.numeric_column("a"), [0.0, 10.0])
    out = dense({"a": np.array([-1.0, 0.0, 9.99, 10.0, 50.0])}, [column])
    expected = np.eye(3)[[0, 1, 1, 2, 2]]  # b0 itself opens bucket 1, as in TensorFlow
    np.testing.assert_array_equal(out, expected)
    column = fc.bucketized_column(fc.numeric_column("p", shape=(2,)), [5.0])
    out = dense({"p": np.array([[1.0, 7.0], [6.0, 2.0]])}, [column])
    np.testing.assert_array_equal(out, [[1, 0, 0, 1], [0, 1, 1, 0]])
    assert column.num_buckets == 4
    # As a categorical column: ids bucket + element * (boundaries + 1).
    assert column._ids({"p": np.array([[1.0, 7.0]])}, {}).tolist() == [[0, 3]]


# -- vocabularies ------------------------------------------------------------------------------------
def test_vocabulary_indicator_miss_default_and_oov():
    words = np.array(["b", "a", "zzz", "c", None], dtype=object)
    known = words[[0, 1, 3, 4]]
    column = fc.categorical_column_with_vocabulary_list("w", ["a", "b", "c"])
    np.testing.assert_array_equal(dense({"w": known}, [fc.indicator_column(column)]),
                                  [[0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 0, 0]])  # missing is not a miss
    # A miss with no OOV bucket and no default id is the "clear error", not TensorFlow's silent id -1;
    # None (its name before) means the same.
    for column in (column, fc.categorical_column_with_vocabulary_list("w", ["a", "b", "c"], default_value=None)):
        with pytest.raises(ValueError, match=r"feature 'w': 1 value\(s\) not in the vocabulary of 3 entries, such as "
                                             r"\['zzz'\], and the column has no OOV bucket; pass num_oov_buckets > 0"):
            dense({"w": words}, [fc.indicator_column(column)])
    column = fc.categorical_column_with_vocabulary_list("w", ["a", "b", "c"], default_value=0)
    assert column._ids({"w": words}, {}).ravel().tolist() == [1, 0, 0, 2, -1]
    column = fc.categorical_column_with_vocabulary_list("w", ["a", "b", "c"], num_oov_buckets=4)
    ids = column._ids({"w": words}, {}).ravel().tolist()
    assert ids == [1, 0, 3 + fnv1a64("zzz") % 4, 2, -1] and column.num_buckets == 7


def test_integer_vocabulary_and_multivalent_counts():
    column = fc.categorical_column_with_vocabulary_list("n", [10, 20, 30])
    # A pandas integer column with a gap arrives as floats with NaN: whole floats match, NaN is missing.
    values = pd.Series([20, None, 30], dtype="float64")
    np.testing.assert_array_equal(dense({"n": values}, [fc.indicator_column(column)]), [[0, 1, 0], [0, 0, 0],
                                                                                       [0, 0, 1]])
    # Several values per row: counts (a missing value counts nothing).
    tags = np.array([["a", "b"], ["a", "a"], ["", None]], dtype=object)
    column = fc.categorical_column_with_vocabulary_list("tags", ["a", "b"])
    np.testing.assert_array_equal(dense({"tags": tags}, [fc.indicator_column(column)]), [[1, 1], [2, 0], [0, 0]])
    with pytest.raises(TypeError, match="'n': the vocabulary holds integers; got the string 'x'"):
        dense({"n": np.array(["x"])}, [fc.indicator_column(fc.categorical_column_with_vocabulary_list("n", [1]))])


def test_vocabulary_file(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("red\ngreen\nblue\n", encoding="utf-8")
    column = fc.categorical_column_with_vocabulary_file("color", path, vocabulary_size=2, num_oov_buckets=1)
    assert column._ids({"color": np.array(["green", "blue", "red"])}, {}).ravel().tolist() == [1, 2, 0]
    config = json.loads(json.dumps(fc.serialize(column)))
    path.unlink()  # the vocabulary travels in the config: no file needed to rebuild the column
    rebuilt = fc.deserialize(config)
    assert rebuilt.vocabulary_list == ["red", "green"] and rebuilt == column
    with pytest.raises(ValueError, match="vocabulary_size=5 but .* has 3 lines"):
        path.write_text("a\nb\nc\n")
        fc.categorical_column_with_vocabulary_file("color", path, vocabulary_size=5)


def test_crossed_column_hashes_joined_values():
    kind = fc.categorical_column_with_vocabulary_list("kind", ["x", "y"])
    column = fc.crossed_column(["city", kind], 50)
    features = {"city": np.array(["Paris", "Rome", None]), "kind": np.array(["y", "x", "x"])}
    ids = column._ids(features, {}).ravel().tolist()
    assert ids == [fnv1a64("Paris\x1f1") % 50, fnv1a64("Rome\x1f0") % 50, -1]
    assert column.name == "city_X_kind"
    # Several values per row cross with each other; three keys join in order.
    three = fc.crossed_column(["a", "b", "c"], 1000)
    crossed = three._ids({"a": np.array([["x", "y"], ["x", None]], dtype=object), "b": np.array(["p", "p"]),
                      "c": np.array([7, 7])}, {})
    assert crossed.tolist() == [[fnv1a64("x\x1fp\x1f7") % 1000, fnv1a64("y\x1fp\x1f7") % 1000],
                                [fnv1a64("x\x1fp\x1f7") % 1000, -1]]
    np.testing.assert_array_equal(dense(features, [fc.indicator_column(column)]),
                                  np.eye(50)[[ids[0], ids[1]]].tolist() + [[0] * 50])


# -- embeddings --------------------------------------------------------------------------------------
def _embedding_expectation(table, ids, combiner):
    out = np.zeros((len(ids), table.shape[1]))
    for row, row_ids in enumerate(ids):
        live = [i for i in row_ids if i >= 0]
        if live:
            total = table[live].sum(axis=0)
            out[row] = {"sum": total, "mean": total / len(live), "sqrtn": total / np.sqrt(len(live))}[combiner]
    return out


@pytest.mark.parametrize("combiner", ["mean", "sum", "sqrtn"])
def test_embedding_combiners_and_gradient(combiner):
    column = fc.embedding_column(fc.categorical_column_with_vocabulary_list("t", ["a", "b", "c", "d"]), 3,
                                 combiner=combiner)
    tags = np.array([["a", "b"], ["c", "c"], ["", None], ["d", ""]], dtype=object)
    layer = fc.DenseFeatures([column], dtype="float64")
    out = layer({"t": tags})
    table = layer.weights[0].data
    ids = column._transform({"t": tags}, {})
    assert ids.tolist() == [[0, 1], [2, 2], [-1, -1], [3, -1]]
    np.testing.assert_allclose(out.data, _embedding_expectation(table, ids, combiner), rtol=1e-12)
    # Gradients into the table: against central differences, and end to end through the layer.
    check_gradients(lambda t: column._dense(ids, t), [table.copy()])
    weights = np.random.default_rng(1).normal(size=out.shape)
    (out * fl.tensor(weights, dtype="float64")).sum().backward()
    expected = np.zeros_like(table)
    for row, row_ids in enumerate(ids):
        live = [i for i in row_ids if i >= 0]
        scale = {"sum": 1.0, "mean": 1.0 / max(len(live), 1), "sqrtn": 1.0 / np.sqrt(max(len(live), 1))}[combiner]
        for i in live:
            expected[i] += scale * weights[row]
    np.testing.assert_allclose(layer.weights[0].grad, expected, rtol=1e-12)


def test_embedding_default_initializer_is_tensorflows():
    column = fc.embedding_column(fc.categorical_column_with_hash_bucket("h", 2000), 16)
    layer = fc.DenseFeatures([column])
    layer.build((None, 1))
    table = layer.weights[0].data
    assert table.shape == (2000, 16)
    assert np.abs(table).max() <= 2 / 4 + 1e-6  # truncated at two deviations of 1/sqrt(16)
    assert 0.8 * 0.25 < table.std() < 0.25


def test_input_layer_embeddings_live_in_the_variable_scope():
    column = fc.embedding_column(fc.categorical_column_with_hash_bucket("w", 10), 2)
    features = {"w": np.array(["a", "b"]), "x": np.array([1.0, 2.0])}
    columns = [column, fc.numeric_column("x")]
    store = fl.VariableStore(seed=0)
    with fl.variable_scope(store):
        first = fc.input_layer(features, columns)
    with fl.variable_scope(store):
        second = fc.input_layer(features, columns)
    assert [v.name for v in store.variables] == ["input_layer/w_embedding/embedding_weights"]
    np.testing.assert_array_equal(first.data, second.data)
    table = store.variables[0].data
    ids = column._transform(features, {})[:, 0]
    # Columns sorted by name ("w_embedding" < "x"), whatever their order in the list.
    np.testing.assert_allclose(first.data, np.column_stack([table[ids], [1.0, 2.0]]), rtol=1e-6)
    loss = first.sum()
    loss.backward()
    assert store.trainable_variables[0].grad is not None
    with pytest.raises(RuntimeError, match="variable_scope"):
        fc.input_layer(features, columns)
    # Twice in one run is the scope's reuse question, as for any variable: an error unless reuse says to share.
    with fl.variable_scope(store):
        fc.input_layer(features, columns)
        with pytest.raises(ValueError, match="input_layer/w_embedding/embedding_weights already exists in this run"):
            fc.input_layer(features, columns)
    with fl.variable_scope(store, reuse=fl.AUTO_REUSE):
        np.testing.assert_array_equal(fc.input_layer(features, columns).data, first.data)
        np.testing.assert_array_equal(fc.input_layer(features, columns).data, first.data)
    assert len(store.variables) == 1
    assert dense(features, [fc.numeric_column("x")]).ravel().tolist() == [1.0, 2.0]  # no weights: no scope needed


# -- the layer, configs ------------------------------------------------------------------------------
def _all_columns():
    age = fc.numeric_column("age", normalizer_fn=("standardize", 40.0, 10.0), default_value=40.0)
    education = fc.categorical_column_with_vocabulary_list("education", ["HS", "BSc", "MSc"], num_oov_buckets=2)
    city = fc.categorical_column_with_hash_bucket("city", 20)
    return [age, fc.bucketized_column(age, [30, 50]), fc.indicator_column(education),
            fc.embedding_column(city, 3, combiner="sqrtn"),
            fc.indicator_column(fc.crossed_column([education, "city"], 15))]


FEATURES = {
    "age": np.array([25.0, np.nan, 61.0, 45.0]),
    "education": np.array(["HS", "PhD", "MSc", "BSc"]),
    "city": np.array(["Oslo", "Lima", "Oslo", "Pune"]),
}


def test_dense_features_encoded_path_matches_dict_path_and_config_round_trip():
    columns = _all_columns()
    layer = fc.DenseFeatures(columns)
    out = layer(FEATURES).data
    assert out.shape == (4, 1 + 3 + 5 + 3 + 15)
    np.testing.assert_array_equal(layer(layer.encode(FEATURES)).data, out)
    config = json.loads(json.dumps(fl.layers.serialize(layer)))
    rebuilt = fl.layers.deserialize(config)
    rebuilt.build((None, layer.encoded_width))
    rebuilt.set_weights(layer.get_weights())
    np.testing.assert_array_equal(rebuilt(FEATURES).data, out)
    # Every column's config is JSON and rebuilds an equal column.
    for column in columns:
        again = fc.deserialize(json.loads(json.dumps(fc.serialize(column))))
        assert again == column and again.name == column.name


def test_input_layer_matches_dense_features():
    columns = _all_columns()
    store = fl.VariableStore(seed=0)
    with fl.variable_scope(store):
        out = fc.input_layer(FEATURES, columns).data
    layer = fc.DenseFeatures(columns)
    layer.build((None, 5))
    layer.set_weights([v.data for v in store.variables])
    np.testing.assert_allclose(layer(pd.DataFrame(FEATURES)).data, out, rtol=1e-6)


# -- errors ------------------------------------------------------------------------------------------
def test_missing_feature_names_key_and_available_keys():
    with pytest.raises(KeyError, match=r"feature column 'education' needs the feature 'education'.*\['age', 'city'\]"):
        fc.DenseFeatures(_all_columns())({"age": FEATURES["age"], "city": FEATURES["city"]})


def test_shape_and_width_errors():
    with pytest.raises(ValueError, match=r"numeric_column 'x': expected feature values of shape \(n, 2\).*\(3, 3\)"):
        dense({"x": np.ones((3, 3))}, [fc.numeric_column("x", shape=(2,))])
    layer = fc.DenseFeatures([fc.indicator_column(fc.categorical_column_with_hash_bucket("t", 5))])
    layer({"t": np.array(["a", "b"])})
    with pytest.raises(ValueError, match=r"feature 't': expected 1 value\(s\) per row.*shape \(2, 2\)"):
        layer({"t": np.array([["a", "b"], ["c", "d"]])})
    with pytest.raises(ValueError, match="same number of rows"):
        dense({"x": np.ones(3), "y": np.ones(2)}, [fc.numeric_column("x")])
    with pytest.raises(ValueError, match="numeric_column 'x': expected numbers"):
        dense({"x": np.array(["a", "b"])}, [fc.numeric_column("x")])


def test_argument_errors():
    with pytest.raises(ValueError, match="'c' is categorical; wrap it in indicator_column or embedding_column"):
        fc.DenseFeatures([fc.categorical_column_with_hash_bucket("c", 3)])
    with pytest.raises(ValueError, match="repeated: \\['b'\\]"):
        fc.categorical_column_with_vocabulary_list("c", ["a", "b", "b"])
    with pytest.raises(ValueError, match="either default_value or num_oov_buckets"):
        fc.categorical_column_with_vocabulary_list("c", ["a"], default_value=0, num_oov_buckets=1)
    with pytest.raises(ValueError, match="strictly increasing"):
        fc.bucketized_column(fc.numeric_column("a"), [3, 1])
    with pytest.raises(ValueError, match="normalizer_fn to be None, \\('standardize', mean, std\\)"):
        fc.numeric_column("a", normalizer_fn=("zscore", 1, 2))
    with pytest.raises(ValueError, match="combiner"):
        fc.embedding_column(fc.categorical_column_with_hash_bucket("c", 3), 2, combiner="max")
    column = fc.numeric_column("a", normalizer_fn=np.tanh)
    with pytest.raises(ValueError, match="callable normalizer_fn cannot be exported"):
        column.get_config()
    with pytest.raises(ValueError, match="names must be unique"):
        fc.DenseFeatures([fc.numeric_column("a"), fc.numeric_column("a")])


def test_import_as_tensorflow_spelled_it():
    import flowlearn.feature_column as alias

    assert alias is fc and fl.feature_column is fc


def test_dense_features_on_each_device(device):
    columns = _all_columns()
    reference = fc.DenseFeatures(columns, dtype="float64")
    encoded = reference.encode(FEATURES)
    expected = reference(encoded)
    weights = np.random.default_rng(2).normal(size=expected.shape)
    (expected * fl.tensor(weights, dtype="float64")).sum().backward()
    layer = fc.DenseFeatures(columns, value_widths=reference.value_widths, dtype="float64")
    layer.build((None, encoded.shape[1]))
    layer.set_weights(reference.get_weights())
    layer.to(device)
    out = layer(fl.tensor(encoded, dtype="float64", device=device))
    assert out.device == device
    np.testing.assert_allclose(fl.backend.to_numpy(out.data), expected.data, rtol=1e-12)
    (out * fl.tensor(weights, dtype="float64", device=device)).sum().backward()
    np.testing.assert_allclose(fl.backend.to_numpy(layer.weights[0].grad), reference.weights[0].grad, rtol=1e-12)
