"""The REST server (flowlearn.io.serving): a real uvicorn server on loopback, real HTTP, real SavedModel exports."""
import asyncio
import base64
import http.client
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import warnings

import numpy
import pytest

pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")

from flowlearn.io import datasets, export_saved_model, load_saved_model  # noqa: E402
from flowlearn.io.serving import codec, create_app  # noqa: E402
from flowlearn.io.serving.batching import Batcher  # noqa: E402


# -- a server on loopback ------------------------------------------------------------------------------------------
def _free_socket():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


class Server:
    """``create_app(...)`` under uvicorn in a thread, on a free loopback port."""

    def __init__(self, base, name="m", **options):
        options.setdefault("poll_interval_s", 0)
        self.app = create_app(base, name, **options)
        sock = _free_socket()
        self.port = sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.01)

    def connect(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def request(self, method, path, body=None, connection=None):
        """``(status, decoded JSON)``; ``body`` may be a JSON-able value or raw bytes."""
        conn = connection or self.connect()
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        if connection is None:
            conn.close()
        assert response.getheader("Content-Type") == "application/json", data
        return response.status, json.loads(data)

    def close(self):
        self.server.should_exit = True
        self.thread.join(20)
        assert not self.thread.is_alive()


@pytest.fixture
def serve():
    servers = []

    def start(base, name="m", **options):
        servers.append(Server(base, name, **options))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


# -- models ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def iris():
    from sklearn.datasets import load_iris

    from flowlearn.estimators import DNNClassifier, DNNRegressor

    x, y = load_iris(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short training runs warn that they stopped before converging
        first = DNNClassifier(hidden_units=(8,), epochs=30, random_state=0).fit(x, y)
        second = DNNClassifier(hidden_units=(8,), epochs=30, random_state=1).fit(x, y)
        regressor = DNNRegressor(hidden_units=(8,), epochs=30, random_state=0).fit(x[:, :3], x[:, 3])
    return {"x": x, "first": first, "second": second, "regressor": regressor}


@pytest.fixture(scope="module")
def exports(iris, tmp_path_factory):
    """Staged exports (outside any served directory): name -> path of the version folder."""
    root = tmp_path_factory.mktemp("staged")
    return {name: export_saved_model(iris[name], root / name) for name in ("first", "second", "regressor")}


def _install(export_path, base, version):
    """Put an export under ``base`` as ``version``, atomically (copy beside it, then rename)."""
    staging = os.path.join(base, f".staging-{version}")
    shutil.copytree(export_path, staging)
    os.rename(staging, os.path.join(base, str(version)))


@pytest.fixture
def iris_base(exports, tmp_path):
    base = tmp_path / "iris"
    base.mkdir()
    _install(exports["first"], base, 1)
    _install(exports["second"], base, 2)
    return base


@pytest.fixture(scope="module")
def loaded(exports):
    return {name: load_saved_model(path) for name, path in exports.items()}


@pytest.fixture(scope="module")
def mnist_cnn(tmp_path_factory):
    from flowlearn.estimators import CNNClassifier

    (x_train, y_train), (x_test, _) = datasets.load_mnist()
    model = CNNClassifier(conv_filters=(4, 8), dense_units=(16,), epochs=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x_train[:300] / 255.0, y_train[:300])
    base = tmp_path_factory.mktemp("mnist")
    path = export_saved_model(model, base)
    return {"base": base, "model": load_saved_model(path), "images": x_test[:4]}


def _close(received, expected):
    numpy.testing.assert_allclose(numpy.asarray(received, dtype=numpy.float64), expected, rtol=1e-6, atol=1e-12)


# -- predict -------------------------------------------------------------------------------------------------------
def test_predict_row_and_columnar_formats_match_direct_predict(serve, iris_base, iris, loaded):
    server = serve(iris_base, "iris")
    x = iris["x"][::15]
    expected = loaded["second"].predict(x)  # serving_default of the newest version: scores and classes
    status, body = server.request("POST", "/v1/models/iris:predict", {"instances": x.tolist()})
    assert status == 200
    assert [sorted(p) for p in body["predictions"]] == [["classes", "scores"]] * len(x)
    _close([p["scores"] for p in body["predictions"]], expected["scores"])
    assert [p["classes"] for p in body["predictions"]] == expected["classes"].tolist()

    status, body = server.request("POST", "/v1/models/iris:predict", {"inputs": x.tolist()})
    assert status == 200 and sorted(body["outputs"]) == ["classes", "scores"]
    _close(body["outputs"]["scores"], expected["scores"])

    # Named instances, and a signature with more outputs.
    status, body = server.request("POST", "/v1/models/iris:predict",
                                  {"signature_name": "predict", "instances": [{"inputs": row} for row in x.tolist()]})
    expected = loaded["second"].predict(x, signature="predict")
    assert status == 200
    assert set(body["predictions"][0]) == set(expected)
    for name in expected:
        _close([p[name] for p in body["predictions"]], expected[name])


def test_large_request_is_decoded_off_the_event_loop_and_answered(serve, iris_base, iris, loaded):
    server = serve(iris_base, "iris")
    x = numpy.tile(iris["x"], (20, 1))  # 3,000 rows: a body over the 64 KiB parsed inline
    body = json.dumps({"inputs": x.tolist()})
    assert len(body) > 64 * 1024
    status, answer = server.request("POST", "/v1/models/iris:predict", body)
    assert status == 200
    _close(answer["outputs"]["scores"], loaded["second"].predict(x)["scores"])


class _Broken:
    """A model whose forward pass has a bug (not an input error)."""

    def __init__(self):
        from types import SimpleNamespace

        spec = {"name": "x", "dtype": "float32", "shape": [None, 2]}
        self.signatures = {"serving_default": SimpleNamespace(inputs=[spec], outputs=[spec],
                                                              method_name="tensorflow/serving/predict")}

    def predict(self, inputs, signature="serving_default"):
        if inputs["x"][0, 0] < 0:
            raise KeyError("a bug")
        return {"y": inputs["x"]}


def test_a_bug_is_a_logged_500_and_the_server_goes_on(serve, tmp_path, caplog):
    (tmp_path / "1").mkdir()
    server = serve(tmp_path, "m", loader=lambda path: _Broken())
    with caplog.at_level("ERROR", logger="flowlearn.serving"):
        status, body = server.request("POST", "/v1/models/m:predict", {"instances": [[-1, 0]]})
    assert status == 500 and "KeyError" in body["error"]
    assert any("internal error" in record.getMessage() for record in caplog.records)
    status, body = server.request("POST", "/v1/models/m:predict", {"instances": [[1, 2]]})
    assert status == 200 and body == {"predictions": [[1.0, 2.0]]}


class _FixedBatch:
    """A graph traced at a fixed batch of 2 (its input's leading size is 2, not None): never batched with others."""

    def __init__(self):
        from types import SimpleNamespace

        spec = {"name": "x", "dtype": "float32", "shape": [2, 3]}
        self.signatures = {"serving_default": SimpleNamespace(inputs=[spec], outputs=[spec],
                                                              method_name="tensorflow/serving/predict")}

    def predict(self, inputs, signature="serving_default"):
        assert inputs["x"].shape == (2, 3)
        return {"y": inputs["x"] * 2}


def test_a_fixed_batch_signature_runs_each_request_alone(serve, tmp_path):
    (tmp_path / "1").mkdir()
    server = serve(tmp_path, "m", loader=lambda path: _FixedBatch())
    threads = [threading.Thread(target=server.request, args=("POST", "/v1/models/m:predict",
                                                             {"instances": [[1, 2, 3], [4, 5, 6]]})) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    status, body = server.request("POST", "/v1/models/m:predict", {"instances": [[1, 2, 3], [4, 5, 6]]})
    assert status == 200 and body == {"predictions": [[2, 4, 6], [8, 10, 12]]}
    status, body = server.request("POST", "/v1/models/m:predict", {"instances": [[1, 2, 3]] * 3})
    assert status == 400 and "exactly 2 examples" in body["error"] and "received 3" in body["error"]
    stats = server.app.state.batcher.stats
    assert stats["batches"] == stats["requests"] == 9 and stats["largest_batch"] == 0


def test_single_output_is_unwrapped(serve, exports, loaded, iris, tmp_path):
    base = tmp_path / "reg"
    base.mkdir()
    _install(exports["regressor"], base, 5)
    server = serve(base, "reg")
    x = iris["x"][:4, :3]
    expected = loaded["regressor"].predict(x, signature="regression")["outputs"]
    status, body = server.request("POST", "/v1/models/reg:predict",
                                  {"signature_name": "regression", "instances": x.tolist()})
    assert status == 200
    _close(numpy.ravel(body["predictions"]), numpy.ravel(expected))  # a list per row, not {"outputs": ...}
    status, body = server.request("POST", "/v1/models/reg:predict", {"signature_name": "regression",
                                                                      "inputs": x.tolist()})
    assert status == 200 and isinstance(body["outputs"], list)
    _close(numpy.ravel(body["outputs"]), numpy.ravel(expected))


def test_explicit_version_and_newest(serve, iris_base, iris, loaded):
    server = serve(iris_base, "iris")
    x = iris["x"][:3]
    for path, model in (("/v1/models/iris/versions/1:predict", "first"), ("/v1/models/iris/versions/2:predict",
                                                                          "second"), ("/v1/models/iris:predict",
                                                                                      "second")):
        status, body = server.request("POST", path, {"inputs": x.tolist()})
        assert status == 200
        _close(body["outputs"]["scores"], loaded[model].predict(x)["scores"])
    assert not numpy.allclose(loaded["first"].predict(x)["scores"], loaded["second"].predict(x)["scores"])


def test_classify_and_regress(serve, iris_base, exports, loaded, iris, tmp_path):
    server = serve(iris_base, "iris")
    x = iris["x"][[0, 60, 120]]
    status, body = server.request("POST", "/v1/models/iris:classify", {"examples": [{"inputs": r} for r in x.tolist()]})
    assert status == 200
    expected = loaded["second"].predict(x, signature="classification")
    assert [[label for label, _ in row] for row in body["result"]] == [[str(c) for c in row] for row in
                                                                        expected["classes"].tolist()]
    _close([[score for _, score in row] for row in body["result"]], expected["scores"])
    # 'context' holds features shared by every example.
    status, body2 = server.request("POST", "/v1/models/iris:classify", {"examples": [{}], "context": {
        "inputs": x[0].tolist()}})
    assert status == 200 and body2["result"][0] == body["result"][0]
    status, body = server.request("POST", "/v1/models/iris:regress", {"examples": [{"inputs": x[0].tolist()}]})
    assert status == 400 and "regress" in body["error"]
    status, body = server.request("POST", "/v1/models/iris:classify", {"signature_name": "predict",
                                                                       "examples": [{"inputs": x[0].tolist()}]})
    assert status == 400 and "'predict' is 'tensorflow/serving/predict'" in body["error"]

    base = tmp_path / "reg"
    base.mkdir()
    _install(exports["regressor"], base, 1)
    server = serve(base, "reg")
    x = iris["x"][:5, :3]
    status, body = server.request("POST", "/v1/models/reg:regress", {"examples": [{"inputs": r} for r in x.tolist()]})
    assert status == 200
    _close(body["result"], numpy.ravel(loaded["regressor"].predict(x, signature="regression")["outputs"]))


def test_status_and_metadata(serve, iris_base):
    server = serve(iris_base, "iris")
    status, body = server.request("GET", "/v1/models/iris")
    assert status == 200
    ok = {"error_code": "OK", "error_message": ""}
    assert body == {"model_version_status": [{"version": "2", "state": "AVAILABLE", "status": ok},
                                             {"version": "1", "state": "AVAILABLE", "status": ok}]}
    status, body = server.request("GET", "/v1/models/iris/versions/1")
    assert status == 200 and [v["version"] for v in body["model_version_status"]] == ["1"]
    status, body = server.request("GET", "/v1/models/iris/metadata")
    assert status == 200
    assert body["model_spec"] == {"name": "iris", "signature_name": "", "version": "2"}
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "classification", "predict"} <= set(signatures)
    assert signatures["classification"]["method_name"] == "tensorflow/serving/classify"
    status, body = server.request("GET", "/v1/models/iris/versions/1/metadata")
    assert status == 200 and body["model_spec"]["version"] == "1"


# -- bad requests --------------------------------------------------------------------------------------------------
ROW = [5.1, 3.5, 1.4, 0.2]
BAD_REQUESTS = [
    (b"{bad", "malformed JSON"),
    (b"", "empty"),
    (b"\xff\xfe\x00", "malformed JSON"),
    (b"[" * 100000, "malformed JSON"),
    ([ROW], "JSON object"),
    ({"instances": [ROW], "inputs": [ROW]}, "exactly one of"),
    ({}, "exactly one of"),
    ({"instances": []}, "non-empty"),
    ({"instances": [ROW], "instance": 1}, "unknown field"),
    ({"instances": [[1, 2, 3]]}, "shape [4]"),
    ({"instances": [[ROW]]}, "shape [4]"),
    ({"inputs": ROW}, "shape [None, 4]"),
    ({"instances": [ROW, [1, 2]]}, "different shapes"),
    ({"instances": [["a", "b", "c", "d"]]}, "received strings"),
    ({"instances": [[True, False, True, False]]}, "booleans"),
    ({"instances": [[1, None, 3, 4]]}, "not all numbers"),
    ({"instances": [[1, 2, 3, 10 ** 30]]}, "not all numbers"),
    ({"instances": [{"b64": "aGVsbG8="}]}, "b64"),
    ({"instances": [{"input": ROW}]}, "no input 'inputs'"),
    ({"instances": [{"inputs": ROW, "other": 1}]}, "unknown input"),
    ({"inputs": {"x": [ROW]}}, "exactly the signature's inputs"),
    ({"signature_name": "nope", "instances": [ROW]}, "'nope' not found"),
    ({"signature_name": 3, "instances": [ROW]}, "must be a string"),
]


def test_bad_requests_get_400_and_the_server_keeps_serving(serve, iris_base):
    server = serve(iris_base, "iris")
    conn = server.connect()
    for body, message in BAD_REQUESTS:
        status, answer = server.request("POST", "/v1/models/iris:predict", body, connection=conn)
        assert status == 400 and message in answer["error"], (body if len(str(body)) < 100 else "...", answer)
        status, answer = server.request("POST", "/v1/models/iris:predict", {"instances": [ROW]}, connection=conn)
        assert status == 200 and len(answer["predictions"]) == 1
    status, answer = server.request("POST", "/v1/models/iris:classify", {"examples": [{"x": ROW}]})
    assert status == 400 and "no feature 'inputs'" in answer["error"]
    status, answer = server.request("POST", "/v1/models/iris:classify", {"examples": [ROW]})
    assert status == 400 and "must be an object" in answer["error"]


def test_unknown_models_versions_and_routes(serve, iris_base):
    server = serve(iris_base, "iris")
    cases = [
        ("POST", "/v1/models/other:predict", 404, "'other'"),
        ("POST", "/v1/models/iris/versions/7:predict", 404, "Specific(iris, 7)"),
        ("GET", "/v1/models/other", 404, "'other'"),
        ("GET", "/v1/models/iris/versions/7", 404, "version 7"),
        ("GET", "/v1/models/iris/versions/7/metadata", 404, "Specific(iris, 7)"),
        ("POST", "/v1/models/iris/versions/x1:predict", 400, "non-negative integer"),
        ("GET", "/v1/nothing", 404, "Not Found"),
        ("POST", "/v1/models/iris:explain", 405, "Method Not Allowed"),
        ("GET", "/v1/models/iris:predict", 405, "POST only"),
        ("POST", "/v1/models/iris", 405, "Method Not Allowed"),
    ]
    for method, path, code, message in cases:
        status, body = server.request(method, path, {"instances": [ROW]} if method == "POST" else None)
        assert status == code and message in body["error"], (path, status, body)


def _raw_exchange(port, head, chunks=()):
    """Send raw request bytes; return the status line and the body of the first response."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(head)
        for chunk in chunks:
            sock.sendall(chunk)
        reader = sock.makefile("rb")
        status_line = reader.readline()
        length = 0
        while True:
            line = reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status_line, json.loads(reader.read(length))


def test_huge_bodies_get_413_before_being_read(serve, iris_base):
    server = serve(iris_base, "iris", max_body_bytes=64 * 1024)
    # Only the headers of a gigabyte body are sent: the answer comes without waiting for (or reading) the body.
    head = (b"POST /v1/models/iris:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000000\r\n\r\n")
    status_line, body = _raw_exchange(server.port, head)
    assert b" 413 " in status_line and "1000000000 bytes" in body["error"]
    # A chunked body (no declared length) is cut off once it passes the limit.
    head = (b"POST /v1/models/iris:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (32 * 1024, b" " * 32 * 1024)
    status_line, body = _raw_exchange(server.port, head, [chunk] * 3)
    assert b" 413 " in status_line and "exceeds 65536 bytes" in body["error"]
    # A whole over-limit JSON body sent on a keep-alive connection; the connection and the server go on.
    conn = server.connect()
    huge = json.dumps({"instances": [ROW] * 5000})
    assert len(huge) > 64 * 1024
    status, body = server.request("POST", "/v1/models/iris:predict", huge, connection=conn)
    assert status == 413 and "max_body_bytes" in body["error"]
    status, body = server.request("POST", "/v1/models/iris:predict", {"instances": [ROW] * 100}, connection=conn)
    assert status == 200 and len(body["predictions"]) == 100


# -- images and text ---------------------------------------------------------------------------------------------
def _png(pixels):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return {"b64": base64.b64encode(buffer.getvalue()).decode()}


def test_b64_png_images(serve, mnist_cnn):
    pytest.importorskip("PIL")
    server = serve(mnist_cnn["base"], "mnist")
    images = mnist_cnn["images"]
    expected = mnist_cnn["model"].predict(images / 255.0)
    status, body = server.request("POST", "/v1/models/mnist:predict",
                                  {"instances": [_png(image[..., 0]) for image in images]})
    assert status == 200
    _close([p["scores"] for p in body["predictions"]], expected["scores"])
    status, body = server.request("POST", "/v1/models/mnist:predict", {"inputs": [_png(images[0, ..., 0])]})
    assert status == 200
    _close(body["outputs"]["scores"], expected["scores"][:1])
    # Nested numbers still work beside images.
    status, body = server.request("POST", "/v1/models/mnist:predict", {"instances": [(images[1] / 255.0).tolist()]})
    assert status == 200
    _close([p["scores"] for p in body["predictions"]], expected["scores"][1:2])
    status, body = server.request("POST", "/v1/models/mnist:predict",
                                  {"instances": [_png(numpy.zeros((20, 28), numpy.uint8))]})
    assert status == 400 and "28x28" in body["error"] and "received 28x20" in body["error"]
    for bad, message in (({"b64": base64.b64encode(b"not an image").decode()}, "not a readable PNG or JPEG"),
                         ({"b64": "%%%"}, "not valid base64"), ({"b64": 7}, "base64 string")):
        status, body = server.request("POST", "/v1/models/mnist:predict", {"instances": [bad]})
        assert status == 400 and message in body["error"], body


def test_feature_columns_with_string_features_over_classify_and_predict(serve, tmp_path):
    import pandas

    import flowlearn as fl
    from flowlearn.estimators import DNNClassifier

    fc = fl.feature_column
    rng = numpy.random.default_rng(0)
    frame = pandas.DataFrame({"age": rng.uniform(18, 70, 80), "education": rng.choice(["HS", "BSc", "PhD"], 80),
                              "city": rng.choice(list("abc"), 80)})
    labels = numpy.where((frame.age > 40) ^ (frame.education == "PhD"), "yes", "no")
    columns = [fc.numeric_column("age"),
               fc.indicator_column(fc.categorical_column_with_vocabulary_list("education", ["HS", "BSc", "PhD"])),
               fc.embedding_column(fc.categorical_column_with_hash_bucket("city", 5), 2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = DNNClassifier(hidden_units=(4,), epochs=3, random_state=0, feature_columns=columns).fit(frame, labels)
    path = model.export_saved_model(tmp_path)
    loaded = load_saved_model(path)
    server = serve(tmp_path, "census")
    rows = {"age": [25.0, 61.0], "education": ["PhD", "HS"], "city": ["b", "zz"]}
    expected = loaded.predict(rows, signature="classification")
    # tf.Example-style examples; a string may come as {"b64": ...}; 'context' gives every example the same city.
    examples = [{"age": 25.0, "education": {"b64": base64.b64encode(b"PhD").decode()}}, {"age": 61.0,
                                                                                       "education": "HS"}]
    status, body = server.request("POST", "/v1/models/census:classify", {"examples": examples, "context": {
        "city": "b"}})
    assert status == 200
    first = [[label for label, _ in row] for row in body["result"]][0]
    assert first == [str(c) for c in expected["classes"][0]] and set(first) == {"yes", "no"}
    _close([score for _, score in body["result"][0]], expected["scores"][0])
    status, body = server.request("POST", "/v1/models/census:predict", {"signature_name": "predict", "inputs": rows})
    assert status == 200
    _close(body["outputs"]["probabilities"], loaded.predict(rows, signature="predict")["probabilities"])
    assert body["outputs"]["classes"] == loaded.predict(rows, signature="predict")["classes"].tolist()
    status, body = server.request("POST", "/v1/models/census:predict", {"instances": [{"age": 30.0, "education": 3,
                                                                                       "city": "a"}]})
    assert status == 400 and "expected strings" in body["error"]


class _Signature:
    def __init__(self, inputs, outputs=(), method_name="tensorflow/serving/predict"):
        self.inputs, self.outputs, self.method_name = inputs, list(outputs), method_name


def test_codec_b64_text_and_string_inputs():
    signature = _Signature([{"name": "words", "dtype": "string", "shape": [None, 2]}])
    text = base64.b64encode("héllo".encode()).decode()
    request = codec.decode_predict({"instances": [["a", {"b64": text}], ["b", "c"]]}, signature)
    assert request.rows == 2 and request.inputs["words"].tolist() == [["a", "héllo"], ["b", "c"]]
    assert request.inputs["words"].dtype == object  # strings of any length batch together
    with pytest.raises(codec.RequestError, match="not UTF-8"):
        codec.decode_predict({"instances": [["a", {"b64": base64.b64encode(b"\xff").decode()}]]}, signature)
    with pytest.raises(codec.RequestError, match="expected strings"):
        codec.decode_predict({"instances": [["a", 1]]}, signature)
    with pytest.raises(codec.RequestError, match="different shapes"):
        codec.decode_predict({"instances": [["a", "b"], ["c"]]}, signature)


def test_codec_integer_inputs_refuse_fractions_and_overflow():
    signature = _Signature([{"name": "ids", "dtype": "int32", "shape": [None]}])
    assert codec.decode_predict({"inputs": [1, 2.0]}, signature).inputs["ids"].dtype == numpy.int32
    with pytest.raises(codec.RequestError, match="non-integer"):
        codec.decode_predict({"inputs": [1, 2.5]}, signature)
    with pytest.raises(codec.RequestError, match="out of that range"):
        codec.decode_predict({"inputs": [2 ** 40]}, signature)


# -- versions ------------------------------------------------------------------------------------------------------
def test_broken_version_is_reported_not_served_and_retried_when_fixed(serve, iris_base, exports, iris, loaded):
    server = serve(iris_base, "iris")
    broken = iris_base / "3"
    shutil.copytree(exports["first"], broken)
    (broken / "saved_model.json").write_text("{ not json")
    server.app.state.versions.poll()
    status, body = server.request("GET", "/v1/models/iris/versions/3")
    (entry,) = body["model_version_status"]
    assert status == 200 and entry["state"] == "END" and entry["status"]["error_code"] == "UNKNOWN"
    assert "saved_model.json" in entry["status"]["error_message"]
    status, body = server.request("POST", "/v1/models/iris/versions/3:predict", {"instances": [ROW]})
    assert status == 404 and "END" in body["error"]
    status, body = server.request("POST", "/v1/models/iris:predict", {"inputs": [ROW]})  # still version 2
    _close(body["outputs"]["scores"], loaded["second"].predict(numpy.array([ROW]))["scores"])
    # Fixed in place: tried again because its files changed.
    shutil.copy(os.path.join(exports["first"], "saved_model.json"), broken / "saved_model.json")
    server.app.state.versions.poll()
    status, body = server.request("POST", "/v1/models/iris:predict", {"inputs": [ROW]})
    _close(body["outputs"]["scores"], loaded["first"].predict(numpy.array([ROW]))["scores"])
    # Removed from disk: unloaded; the newest left is served.
    shutil.rmtree(broken)
    shutil.rmtree(iris_base / "2")
    server.app.state.versions.poll()
    status, body = server.request("GET", "/v1/models/iris")
    assert [v["version"] for v in body["model_version_status"]] == ["1"]
    status, body = server.request("POST", "/v1/models/iris/versions/2:predict", {"instances": [ROW]})
    assert status == 404


def test_empty_base_path_then_a_version_appears(serve, exports, tmp_path):
    server = serve(tmp_path, "iris", poll_interval_s=0.05)
    status, body = server.request("POST", "/v1/models/iris:predict", {"instances": [ROW]})
    assert status == 404 and "no version" in body["error"]
    _install(exports["first"], tmp_path, 1)
    deadline = time.monotonic() + 20
    while server.request("POST", "/v1/models/iris:predict", {"instances": [ROW]})[0] != 200:
        assert time.monotonic() < deadline, "the new version was not picked up"
        time.sleep(0.05)


def test_model_base_path_must_exist(tmp_path):
    with pytest.raises(ValueError, match="model_base_path"):
        create_app(tmp_path / "missing", "m")
    with pytest.raises(ValueError, match="model_name"):
        create_app(tmp_path, "a:b")


# -- concurrency and batching --------------------------------------------------------------------------------------
def _client_loop(server, rows, stop, results, errors, lock):
    conn = server.connect()
    rng = numpy.random.default_rng(threading.get_ident() % 2 ** 32)
    try:
        while not stop.is_set():
            index = int(rng.integers(len(rows)))
            sent = time.monotonic()
            status, body = server.request("POST", "/v1/models/iris:predict", {"instances": [rows[index].tolist()]},
                                          connection=conn)
            with lock:
                if status != 200:
                    errors.append((status, body))
                else:
                    results.append((sent, index, body["predictions"][0]["scores"]))
    except Exception as error:  # reported by the test, not lost in the thread
        with lock:
            errors.append(repr(error))
    finally:
        conn.close()


def test_concurrent_requests_while_a_new_version_appears(serve, exports, loaded, iris, tmp_path):
    _install(exports["first"], tmp_path, 1)
    server = serve(tmp_path, "iris", poll_interval_s=0.05, batch_timeout_ms=2)
    rows = iris["x"]
    expected = {name: loaded[name].predict(rows)["scores"] for name in ("first", "second")}
    stop, lock = threading.Event(), threading.Lock()
    results, errors = [], []
    threads = [threading.Thread(target=_client_loop, args=(server, rows, stop, results, errors, lock))
               for _ in range(12)]
    for thread in threads:
        thread.start()

    def wait_for(count):
        deadline = time.monotonic() + 60
        while len(results) < count and not errors:
            assert time.monotonic() < deadline
            time.sleep(0.01)

    wait_for(150)
    _install(exports["second"], tmp_path, 2)
    deadline = time.monotonic() + 20
    while server.app.state.versions.served_versions != [1, 2]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    switched = time.monotonic()
    done = len(results)
    wait_for(done + 150)
    stop.set()
    for thread in threads:
        thread.join(30)
    assert not errors, errors[:3]
    seen = {"first": 0, "second": 0}
    for sent, index, scores in results:
        # Each answer is wholly one version's: never a mix, never a half-loaded model.
        matches = [name for name in seen if numpy.allclose(scores, expected[name][index], rtol=1e-6, atol=0)]
        assert len(matches) == 1, (index, scores)
        seen[matches[0]] += 1
        if sent > switched:
            assert matches == ["second"]
    assert seen["first"] >= 150 and seen["second"] >= 150
    stats = server.app.state.batcher.stats
    assert stats["batches"] < stats["requests"], stats  # concurrent requests shared forward passes


def test_batching_shares_forward_passes_and_splits_answers(serve, iris_base, loaded, iris):
    server = serve(iris_base, "iris", batch_timeout_ms=20, max_batch_size=16)
    rows = iris["x"]
    expected = loaded["second"].predict(rows)["scores"]
    answers, barrier = {}, threading.Barrier(16)

    def client(k):
        conn = server.connect()
        barrier.wait()
        for i in range(k, len(rows), 16):
            answers[i] = server.request("POST", "/v1/models/iris:predict", {"instances": [rows[i].tolist()]},
                                        connection=conn)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(answers) == list(range(len(rows)))
    for i, (status, body) in answers.items():
        assert status == 200
        _close(body["predictions"][0]["scores"], expected[i])
    stats = server.app.state.batcher.stats
    assert stats["requests"] == len(rows) and stats["rows"] == len(rows)
    assert stats["batches"] <= len(rows) // 2 and 1 < stats["largest_batch"] <= 16, stats


class _Doubler:
    """A model that fails on NaN inputs: stands in for a failure only the forward pass finds."""

    def __init__(self):
        self.calls = []

    def predict(self, inputs, signature="serving_default"):
        x = inputs["x"]
        self.calls.append(len(x))
        if numpy.isnan(x).any():
            raise ValueError("NaN in the input")
        return {"y": x * 2}


def test_a_failing_request_does_not_poison_its_batch():
    model = _Doubler()

    async def main():
        batcher = Batcher(max_batch_size=8, batch_timeout_ms=50, num_threads=1)
        values = [1.0, 2.0, float("nan"), 4.0]
        calls = [batcher.predict(model, "serving_default", {"x": numpy.array([[v]])}, 1) for v in values]
        results = await asyncio.gather(*calls, return_exceptions=True)
        batcher.close()
        return results

    results = asyncio.run(main())
    assert model.calls[0] == 4  # one batched pass first, then each request alone
    assert [r["y"].item() for r in (results[0], results[1], results[3])] == [2.0, 4.0, 8.0]
    assert isinstance(results[2], ValueError) and "NaN" in str(results[2])


def test_a_bug_in_a_batch_fails_its_requests_and_the_lane_recovers():
    class Flaky:
        def __init__(self):
            self.broken = True

        def predict(self, inputs, signature="serving_default"):
            if self.broken:
                return None  # not a dict of outputs: the batcher itself fails on it
            return {"y": inputs["x"] + 1}

    model = Flaky()

    async def main():
        batcher = Batcher(max_batch_size=8, batch_timeout_ms=20, num_threads=1)
        calls = [batcher.predict(model, "s", {"x": numpy.array([[float(v)]])}, 1) for v in range(3)]
        failed = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 10)
        model.broken = False
        recovered = await asyncio.wait_for(batcher.predict(model, "s", {"x": numpy.array([[5.0]])}, 1), 10)
        batcher.close()
        return failed, recovered

    failed, recovered = asyncio.run(main())
    assert all(isinstance(result, Exception) for result in failed)
    assert recovered["y"].item() == 6.0


# -- the bounded load test -----------------------------------------------------------------------------------------
_SERVER_SCRIPT = """
import socket, sys, uvicorn
from flowlearn.io.serving import create_app
sock = socket.socket(fileno=int(sys.argv[3]))
app = create_app(sys.argv[1], sys.argv[2])
uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])
"""


@pytest.mark.slow
def test_load_20000_requests_from_32_clients_without_errors(iris_base, loaded, iris):
    sock = _free_socket()
    port = sock.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-c", _SERVER_SCRIPT, str(iris_base), "iris", str(sock.fileno())],
                               pass_fds=[sock.fileno()])
    sock.close()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None, "the server did not start"
                time.sleep(0.05)
        rows = iris["x"]
        expected = loaded["second"].predict(rows)["classes"]
        bodies = [json.dumps({"instances": [row.tolist()]}).encode() for row in rows]
        failures, lock = [], threading.Lock()

        def client(k):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            for n in range(625):
                i = (k * 625 + n) % len(rows)
                try:
                    conn.request("POST", "/v1/models/iris:predict", body=bodies[i])
                    response = conn.getresponse()
                    body = json.loads(response.read())
                    ok = response.status == 200 and body["predictions"][0]["classes"] == expected[i].tolist()
                except Exception as error:
                    ok, body = False, repr(error)
                if not ok:
                    with lock:
                        failures.append(body)
            conn.close()

        started = time.monotonic()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        elapsed = time.monotonic() - started
        assert not failures, (len(failures), failures[:3])
        print(f"20,000 requests from 32 clients in {elapsed:.1f} s ({20000 / elapsed:.0f} requests/s)")
    finally:
        process.terminate()
        process.wait(20)
