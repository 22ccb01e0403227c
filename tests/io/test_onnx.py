"""ONNX export: every file is checked by onnx.checker and run in onnxruntime against flowlearn itself.

Models are traced at one batch size and run at another (7 rows), so the free batch dimension is exercised
in every parity test.
"""
import warnings

import numpy as np
import pytest

import flowlearn as fl
from flowlearn.core import ops
from flowlearn.io.onnx import UnsupportedOpError, export_onnx, to_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

L = fl.layers
RTOL, ATOL = 1e-4, 1e-5
BATCH = 7


def _session(path):
    onnx.checker.check_model(onnx.load(path))
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run(path, *arrays):
    """Outputs by name; each input is given in the dtype the file declares (float64 for estimators)."""
    session = _session(path)
    declared = [onnx.helper.tensor_dtype_to_np_dtype(spec.type.tensor_type.elem_type)
                for spec in onnx.load(path).graph.input]
    feed = {spec.name: np.asarray(array).astype(dtype, copy=False)
            for spec, array, dtype in zip(session.get_inputs(), arrays, declared)}
    names = [spec.name for spec in session.get_outputs()]
    return dict(zip(names, session.run(None, feed)))


def _randomize(model, rng):
    """Random weights everywhere (positive variances), so that no lowering hides behind zeros and ones."""
    for weight in model.weights:
        values = rng.normal(size=weight.shape).astype(weight.data.dtype)
        weight.data[...] = np.abs(values) + 0.5 if "variance" in (weight.name or "") else values


def _inference(model, x):
    with fl.no_grad():
        return model(fl.tensor(x), training=False).numpy()


# -- Sequential models from the standard layers --------------------------------------------------------
SEQUENTIAL = {
    "dense-activations": ((5,), lambda: [
        L.Dense(8, activation="relu"), L.Dense(8, activation="elu"), L.Dense(8, activation="selu"),
        L.Dense(8, activation="sigmoid"), L.Dense(8, activation="tanh"), L.Dense(8, activation="softplus"),
        L.Dense(8, activation="leaky_relu"), L.Dense(4, activation="softmax")]),
    "conv-same-stride2-odd": ((9, 7, 2), lambda: [
        # stride 2 on odd sizes: TensorFlow's "same" pads the odd pixel at the bottom/right
        L.Conv2D(4, 3, strides=2, padding="same", activation="relu"), L.Conv2D(3, 4, strides=2, padding="same"),
        L.Flatten(), L.Dense(3)]),
    "conv-valid-dilated": ((11, 10, 3), lambda: [
        L.Conv2D(4, 3, padding="valid", dilation_rate=2, activation="relu"),
        L.Conv2D(2, (2, 3), strides=(1, 2), padding="same", dilation_rate=(2, 1)), L.Flatten()]),
    "pooling": ((11, 9, 3), lambda: [
        L.MaxPooling2D(2, padding="same"), L.AveragePooling2D(3, strides=2, padding="same"),
        L.Conv2D(4, 1), L.MaxPooling2D(2, strides=1, padding="valid"), L.AveragePooling2D(2, padding="valid")]),
    "batchnorm-dropout": ((6, 6, 3), lambda: [
        L.Conv2D(4, 3, padding="same"), L.BatchNormalization(), L.Dropout(0.5), L.Flatten(), L.Dense(6),
        L.BatchNormalization(), L.Dropout(0.3), L.Dense(2)]),
    "conv-transpose": ((5, 4, 2), lambda: [
        L.Conv2DTranspose(3, 3, strides=2, padding="same"), L.Conv2DTranspose(2, 3, strides=2, padding="valid"),
        L.Conv2DTranspose(2, (2, 3), strides=1, padding="same", activation="relu")]),
    "reshape-global-pool": ((12,), lambda: [
        L.Reshape((2, 3, 2)), L.Conv2D(3, 2, padding="same"), L.GlobalAveragePooling2D(), L.Dense(2)]),
}


@pytest.mark.parametrize("name", sorted(SEQUENTIAL))
def test_sequential_parity(name, tmp_path):
    shape, layers = SEQUENTIAL[name]
    rng = np.random.default_rng(0)
    model = L.Sequential(layers())
    model.build((None,) + shape)
    _randomize(model, rng)
    x = rng.normal(size=(BATCH,) + shape).astype(np.float32)
    path = export_onnx(model, tmp_path / "model.onnx")
    (got,) = _run(path, x).values()
    np.testing.assert_allclose(got, _inference(model, x), rtol=RTOL, atol=ATOL)


def test_asymmetric_same_padding(tmp_path):
    # TensorFlow's "same" puts the odd pixel of padding at the bottom/right: (0, 1) rows and (1, 1) columns for
    # a 3x3 kernel at stride 2 on 8x9; the fused bias + ReLU of conv2d must survive too.
    rng = np.random.default_rng(6)
    model = L.Sequential([L.Conv2D(3, 3, strides=2, padding="same", activation="relu"),
                          L.MaxPooling2D(2, padding="same"), L.AveragePooling2D(2, strides=2, padding="same")])
    model.build((None, 8, 9, 2))
    _randomize(model, rng)
    graph = fl.trace(lambda x: model(x, training=False), np.zeros((2, 8, 9, 2), dtype=np.float32))
    conv = graph.nodes[0]
    assert conv["op"] == "conv2d" and conv["attrs"]["activation"] == "relu" and len(conv["inputs"]) == 3
    proto = onnx.load(export_onnx(model, tmp_path / "same.onnx"))
    pads = {node.op_type: list(next(a.ints for a in node.attribute if a.name == "pads"))
            for node in proto.graph.node if node.op_type in ("Conv", "MaxPool", "AveragePool")}
    # ONNX pads are [top, left, bottom, right]; the pools see 4x5 then 2x3
    assert pads == {"Conv": [0, 1, 1, 1], "MaxPool": [0, 0, 0, 1], "AveragePool": [0, 0, 0, 1]}
    assert "Relu" in [node.op_type for node in proto.graph.node]
    x = rng.normal(size=(BATCH, 8, 9, 2)).astype(np.float32)
    (got,) = _run(tmp_path / "same.onnx", x).values()
    np.testing.assert_allclose(got, _inference(model, x), rtol=RTOL, atol=ATOL)


def test_embedding_parity(tmp_path):
    rng = np.random.default_rng(1)
    model = L.Sequential([L.Embedding(10, 4), L.Flatten(), L.Dense(3, activation="tanh")])
    model.build((None, 5))
    _randomize(model, rng)
    ids = rng.integers(0, 10, size=(BATCH, 5))
    path = export_onnx(model, tmp_path / "embedding.onnx")
    (got,) = _run(path, ids).values()
    np.testing.assert_allclose(got, _inference(model, ids), rtol=RTOL, atol=ATOL)


def test_batch_dimension_is_free_and_names_kept(tmp_path):
    model = L.Sequential([L.Conv2D(2, 3, padding="same"), L.Flatten(), L.Dense(2)])
    model.build((None, 5, 5, 1))
    proto = onnx.load(export_onnx(model, tmp_path / "m.onnx"))
    (spec,) = proto.graph.input
    dims = spec.type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [5, 5, 1]
    out_dims = proto.graph.output[0].type.tensor_type.shape.dim
    assert out_dims[0].dim_param == "batch" and out_dims[1].dim_value == 2
    # parameters are initializers, not inputs
    assert len(proto.graph.input) == 1 and len(proto.graph.initializer) >= 3
    x = np.random.default_rng(2).normal(size=(1, 5, 5, 1)).astype(np.float32)
    (got,) = _run(tmp_path / "m.onnx", x).values()
    np.testing.assert_allclose(got, _inference(model, x), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("opset", [13, 17, 21])
def test_opsets(opset, tmp_path):
    rng = np.random.default_rng(3)
    model = L.Sequential([L.Conv2D(3, 3, padding="same", activation="relu"), L.AveragePooling2D(2, padding="same"),
                          L.GlobalAveragePooling2D(), L.Dense(3, activation="softmax")])
    model.build((None, 5, 5, 2))
    _randomize(model, rng)
    x = rng.normal(size=(BATCH, 5, 5, 2)).astype(np.float32)
    path = export_onnx(model, tmp_path / "m.onnx", opset=opset)
    proto = onnx.load(path)
    assert proto.opset_import[0].version == opset
    assert proto.ir_version == onnx.helper.find_min_ir_version_for(list(proto.opset_import))
    (got,) = _run(path, x).values()
    np.testing.assert_allclose(got, _inference(model, x), rtol=RTOL, atol=ATOL)


def test_bad_opset_named(tmp_path):
    model = L.Sequential([L.Dense(2)])
    model.build((None, 3))
    with pytest.raises(ValueError, match="opset.*>= 13.*got 11"):
        export_onnx(model, tmp_path / "m.onnx", opset=11)


# -- single primitives, through fl.trace ---------------------------------------------------------------
def _const(values, dtype="float32"):
    return fl.tensor(np.asarray(values, dtype=dtype))


PRIMITIVES = {
    "arithmetic": lambda x: ops.maximum(x * 2.0 - 1.0, x / 3.0) + ops.minimum(x, ops.neg(x)) ** 2.0,
    "floordiv-float": lambda x: ops.floordiv(x, _const(0.7)),
    "math": lambda x: ops.exp(x) + ops.log(ops.abs(x) + 1.0) + ops.sqrt(ops.abs(x)),
    "where-compare": lambda x: ops.where(x > 0.1, x, ops.where(ops.less_equal(x, -0.2), x * 3.0, 0.0))
    + ops.cast(ops.not_equal(x, x * 0.0), "float32") + ops.cast(ops.equal(x, x), "float32"),
    "clip": lambda x: ops.clip(x, -0.5, 0.7) + ops.clip(x, low=0.1) + ops.clip(x, high=-0.1),
    "reductions": lambda x: ops.concat([r.reshape(x.shape[0], -1) for r in (
        ops.sum(x, axis=1, keepdims=True), ops.mean(x, axis=(1, 2)), ops.max(x, axis=-1), ops.min(x, axis=2),
        ops.logsumexp(x, axis=1), ops.sum(x * ops.mean(x), axis=(1, 2), keepdims=True))], axis=1),
    "softmax-axes": lambda x: ops.softmax(x, axis=1) + ops.log_softmax(x, axis=-1),
    "shapes": lambda x: ops.squeeze(ops.expand_dims(ops.transpose(x, (0, 2, 1)), 1), 1).reshape(x.shape[0], -1),
    "stack-pad": lambda x: ops.pad(ops.stack([x, x * 2.0], axis=1), ((0, 0), (0, 0), (1, 2), (0, 1)), 0.5),
    "getitem-basic": lambda x: x[:, 1:, ::-2][:, None, ..., 0] + x[:, -1:, 1].reshape(x.shape[0], 1, 1, 1),
    "broadcast-batch": lambda x: ops.broadcast_to(_const([[1.0, 2.0, 3.0, 4.0]]), (x.shape[0], 4)) * x[:, 0],
    # kernels computed in the graph (not parameters) are transposed to ONNX's layout by a node
    "conv-computed-kernel": lambda x: ops.conv2d_transpose(
        ops.conv2d(x.reshape(x.shape[0], 3, 4, 1), _const(np.arange(12.0).reshape(2, 2, 1, 3)) * 0.1, strides=(1, 2),
                   padding="same", bias=_const([0.1, -0.2, 0.3]), activation="relu"),
        _const(np.arange(18.0).reshape(3, 2, 1, 3)) * 0.1, strides=2, padding="same"),
    # numpy promotes float32 with float64 (and ints with floats); ONNX needs the operands cast first
    "mixed-dtypes": lambda x: ops.concat([ops.cast(x, "float64") * _const([1.5, 2.0, 0.5, 1.0]),
                                          ops.where(x > 0, _const(np.arange(4), "int64"), ops.cast(x, "float64"))],
                                         axis=1) + _const(0.25, "float32") + ops.concat([x, x], axis=1),
    "argmax-onehot": lambda x: ops.one_hot(ops.argmax(x[:, 0], axis=1) - 1, depth=4),
}


@pytest.mark.parametrize("name", sorted(PRIMITIVES))
def test_primitive_parity(name, tmp_path):
    rng = np.random.default_rng(4)
    example = rng.normal(size=(3, 3, 4)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", fl.core.TraceWarning)  # the graph must replay at any batch size
        graph = fl.trace(PRIMITIVES[name], example)
    x = rng.normal(size=(BATCH, 3, 4)).astype(np.float32)
    path = export_onnx(graph, tmp_path / "p.onnx")
    (got,) = _run(path, x).values()
    want = graph.run(x)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_integer_floordiv_floors_like_numpy(tmp_path):
    graph = fl.trace(lambda x: ops.floordiv(x, fl.tensor(np.array([3, -3], dtype=np.int64))),
                     np.array([[7, 7], [-7, -7]], dtype=np.int64))
    x = np.array([[7, 7], [-7, -7], [-1, 1]], dtype=np.int64)
    (got,) = _run(export_onnx(graph, tmp_path / "f.onnx"), x).values()
    np.testing.assert_array_equal(got, x // np.array([3, -3]))


# -- estimators ----------------------------------------------------------------------------------------
def _estimators():
    from flowlearn import estimators as E

    small = dict(epochs=3, random_state=0)
    return {
        "LinearRegressor": (E.LinearRegressor(**small), "regression"),
        "LinearClassifier": (E.LinearClassifier(**small), "multiclass"),
        "LinearClassifier-binary": (E.LinearClassifier(**small), "binary"),
        "DNNClassifier": (E.DNNClassifier(hidden_units=(8, 4), batch_norm=True, dropout=0.2, **small), "multiclass"),
        "DNNRegressor": (E.DNNRegressor(hidden_units=(8,), **small), "regression"),
        "AutoEncoder": (E.AutoEncoder(hidden_units=(6, 3), **small), "unsupervised"),
        "CNNClassifier": (E.CNNClassifier(conv_filters=(3, 4), kernel_size=3, dense_units=(8,), image_shape=(7, 7, 1),
                                          **small), "multiclass"),
    }


def _expected(estimator, X, signature_name):
    """flowlearn's own predictions, by the output names the signatures use."""
    if hasattr(estimator, "predict_proba"):
        probabilities = estimator.predict_proba(X)
        if signature_name == "serving_default":  # TF's classification: every class with its score
            return {"scores": probabilities, "classes": np.tile(estimator.classes_, (len(X), 1)),
                    "probabilities": probabilities}
        return {"probabilities": probabilities, "class_ids": probabilities.argmax(axis=1),
                "classes": estimator.predict(X), "logits": estimator.decision_function(X).reshape(len(X), -1)}
    if hasattr(estimator, "reconstruct"):
        return {"outputs": estimator.reconstruct(X), "codes": estimator.transform(X),
                "scores": estimator.score_samples(X)}
    return {"predictions": estimator.predict(X), "outputs": estimator.predict(X)}


@pytest.mark.parametrize("signature_name", ["serving_default", "predict"])
@pytest.mark.parametrize("name", sorted(_estimators()))
def test_estimator_parity(name, signature_name, tmp_path):
    estimator, task = _estimators()[name]
    rng = np.random.default_rng(5)
    n_features = 49 if name == "CNNClassifier" else 6
    X = rng.normal(size=(40, n_features)).astype(np.float32)
    labels = np.array(["ant", "bee", "cat"])
    y = {"regression": X[:, 0] * 2 + X[:, 1], "multiclass": labels[rng.integers(0, 3, 40)],
         "binary": rng.integers(0, 2, 40) * 3 + 1, "unsupervised": None}[task]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # too few epochs to converge: not the point here
        estimator.fit(X, y)
    path = export_onnx(estimator, tmp_path / f"{name}.onnx", signature_name=signature_name)
    Xt = rng.normal(size=(BATCH, n_features))
    got = _run(path, Xt)
    expected = _expected(estimator, Xt, signature_name)
    assert got and set(got) <= set(expected), f"outputs {sorted(got)}, known {sorted(expected)}"
    for key, value in got.items():
        want = expected[key]
        if want.dtype.kind in "USO":  # class labels, looked up in the file
            np.testing.assert_array_equal(value.astype(want.dtype), want, err_msg=key)
        else:
            np.testing.assert_allclose(value.reshape(want.shape), want, rtol=RTOL, atol=ATOL, err_msg=key)


def test_pipeline_with_scalers_folded_in(tmp_path):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    from flowlearn.estimators import DNNRegressor

    rng = np.random.default_rng(7)
    X = rng.normal(3.0, 5.0, size=(40, 4))
    pipeline = make_pipeline(StandardScaler(), MinMaxScaler(), DNNRegressor(hidden_units=(6,), epochs=3,
                                                                             random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline.fit(X, X[:, 0] - X[:, 1])
    Xt = rng.normal(3.0, 5.0, size=(BATCH, 4))
    got = _run(export_onnx(pipeline, tmp_path / "pipeline.onnx"), Xt)
    np.testing.assert_allclose(got["outputs"], pipeline.predict(Xt), rtol=RTOL, atol=ATOL)


def test_model_fn_estimator(tmp_path):
    from flowlearn.estimators import Estimator, EstimatorSpec, ModeKeys

    def model_fn(features, labels, mode):
        hidden = fl.layers.dense(features["x"], 5, activation="tanh")
        y = fl.layers.dense(hidden, 1)
        if mode == ModeKeys.PREDICT:
            return EstimatorSpec(mode, predictions={"y": y})
        loss = fl.core.losses.mean_squared_error(labels, y)
        train_op = fl.train.GradientDescentOptimizer(0.1).minimize(loss, global_step=fl.train.get_global_step())
        return EstimatorSpec(mode, loss=loss, train_op=train_op)

    x = np.linspace(-1, 1, 32, dtype="float32").reshape(-1, 2)
    est = Estimator(model_fn, model_dir=str(tmp_path / "model_dir"))
    est.train(fl.io.numpy_input_fn({"x": x}, x[:, :1] * 2, batch_size=8, num_epochs=1, shuffle=False))
    receiver_fn = fl.io.build_raw_serving_input_receiver_fn({"x": ("float32", (None, 2))})
    got = _run(export_onnx(est, tmp_path / "fn.onnx", serving_input_receiver_fn=receiver_fn), x[:BATCH])
    memory = next(est.predict(fl.io.numpy_input_fn({"x": x[:BATCH]}, shuffle=False), yield_single_examples=False))
    np.testing.assert_allclose(got["y"], memory["y"], rtol=RTOL, atol=ATOL)


# -- refusals ------------------------------------------------------------------------------------------
def test_unsupported_ops_named_all_at_once(tmp_path):
    # A training-mode graph holds batch statistics, which an exported (inference) model cannot have.
    model = L.Sequential([L.Dense(4), L.BatchNormalization(), L.Dense(2)])
    model.build((None, 3))
    graph = fl.trace(lambda x: model(x, training=True), np.ones((4, 3), dtype=np.float32))
    with pytest.raises(UnsupportedOpError) as caught:
        export_onnx(graph, tmp_path / "bad.onnx")
    assert {"batch_moments", "batch_norm_train"} <= set(caught.value.ops)
    assert "batch_moments" in str(caught.value) and "batch_norm_train" in str(caught.value)
    assert not (tmp_path / "bad.onnx").exists()


def test_unsupported_index_named(tmp_path):
    graph = fl.trace(lambda x: x[x > 0], np.ones((4, 3), dtype=np.float32))
    with pytest.raises(UnsupportedOpError, match=r"getitem at node .*boolean-mask"):
        to_onnx(graph)


def test_feature_columns_refused(tmp_path):
    import pandas

    from flowlearn.estimators import LinearClassifier

    frame = pandas.DataFrame({"size": np.arange(20.0), "colour": ["red", "blue"] * 10})
    columns = [fl.feature_column.numeric_column("size"), fl.feature_column.indicator_column(
        fl.feature_column.categorical_column_with_vocabulary_list("colour", ["red", "blue"]))]
    clf = LinearClassifier(epochs=1, feature_columns=columns).fit(frame, np.arange(20) % 2)
    with pytest.raises(ValueError, match="raw feature columns.*no ONNX lowering"):
        export_onnx(clf, tmp_path / "fc.onnx")


def test_unknown_signature_named(tmp_path):
    model = L.Sequential([L.Dense(2)])
    model.build((None, 3))
    with pytest.raises(ValueError, match="unknown `signature_name` 'classification'.*'predict', 'serving_default'"):
        export_onnx(model, tmp_path / "m.onnx", signature_name="classification")


def test_missing_onnx_package_named(monkeypatch, tmp_path):
    import sys

    model = L.Sequential([L.Dense(2)])
    model.build((None, 3))
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if not installed: import onnx raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'flowlearn\[onnx\]'"):
        export_onnx(model, tmp_path / "m.onnx")


def test_not_a_model():
    with pytest.raises(TypeError, match="expected a Sequential model"):
        export_onnx(object(), "never.onnx")
