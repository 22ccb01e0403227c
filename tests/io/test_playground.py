"""The model playground of ``flowlearn serve`` (flowlearn.io.serving.playground and its routes).

Fast tests drive the routes with starlette's TestClient; the slow ones drive a real headless Chromium (selenium)
against a real server on loopback: drawing on the MNIST CNN's canvas, filling in the iris form.
"""
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import warnings

import numpy
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")  # starlette's TestClient

import flowlearn as fl  # noqa: E402
from flowlearn.io import datasets, export_saved_model, load_saved_model  # noqa: E402
from flowlearn.io.serving import create_app, playground  # noqa: E402

from .test_serving import Server  # noqa: E402  (uvicorn in a thread on a free loopback port)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's TestClient warns about its httpx backend
    from starlette.testclient import TestClient  # noqa: E402

SPECIES = numpy.array(["setosa", "versicolor", "virginica"])
UI_FILES = ("index.html", "playground.html", "style.css", "playground.js")


def _quiet_fit(estimator, x, y=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short runs warn that they stopped before converging
        return estimator.fit(x, y) if y is not None else estimator.fit(x)


# -- models ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def iris():
    from sklearn.datasets import load_iris

    from flowlearn.estimators import DNNClassifier

    x, y = load_iris(return_X_y=True)
    model = _quiet_fit(DNNClassifier(hidden_units=(16,), epochs=200, learning_rate=0.01, random_state=0),
                       x, SPECIES[y])
    return {"x": x, "y": SPECIES[y], "model": model}


@pytest.fixture(scope="module")
def iris_base(iris, tmp_path_factory):
    base = tmp_path_factory.mktemp("iris")
    export_saved_model(iris["model"], base)
    return base


@pytest.fixture(scope="module")
def tiny_cnn_base(tmp_path_factory):
    """A CNNClassifier fitted for a moment (its answers do not matter here), exported with debug outputs."""
    from flowlearn.estimators import CNNClassifier

    (x, y), _ = datasets.load_mnist()
    model = _quiet_fit(CNNClassifier(conv_filters=(3,), dense_units=(8,), epochs=1, random_state=0),
                       x[:64] / 255.0, y[:64])
    base = tmp_path_factory.mktemp("tiny_cnn")
    export_saved_model(model, base, debug_outputs=True)
    return base


def _client(base, name, **options):
    options.setdefault("poll_interval_s", 0)
    return TestClient(create_app(base, name, **options))


def _view(base, name="m"):
    with _client(base, name) as client:
        response = client.get(f"/ui/{name}/view.json")
    assert response.status_code == 200, response.text
    return response.json()


# -- routes and headers ------------------------------------------------------------------------------------------
def _check_ui_headers(response):
    policy = response.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'self'" and directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'" and directives["object-src"] == "'none'"
    assert "unsafe" not in policy and "http" not in policy  # no inline code, no eval, no other origin
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"


def test_pages_and_files_carry_a_strict_content_security_policy(iris_base):
    with _client(iris_base, "iris") as client:
        expected = {"/": "text/html", "/ui/iris": "text/html", "/ui/iris/view.json": "application/json",
                    "/static/playground.js": "text/javascript", "/static/style.css": "text/css"}
        for url, media_type in expected.items():
            response = client.get(url)
            assert response.status_code == 200, (url, response.text)
            assert response.headers["content-type"].startswith(media_type), url
            _check_ui_headers(response)
        for url in ("/static/../app.py", "/static/index.html", "/static/nope.js"):
            assert client.get(url).status_code == 404, url


def test_index_lists_the_versions_with_links(iris, tmp_path):
    for _ in range(2):
        export_saved_model(iris["model"], tmp_path)
    numbers = sorted(int(n) for n in os.listdir(tmp_path))
    with _client(tmp_path, "iris") as client:
        page = client.get("/").text
    links = re.findall(r'href="([^"]+)"', page)
    assert "/ui/iris" in links
    for number in numbers:
        assert f"/ui/iris/versions/{number}" in links
        assert f"/v1/models/iris/versions/{number}/metadata" in links
    # The newest version first, as GET /v1/models/NAME lists them.
    assert page.index(f"version {numbers[-1]}") < page.index(f"version {numbers[0]}")


def test_playground_page_for_a_version_and_errors_as_escaped_html(iris_base):
    number = int(os.listdir(iris_base)[0])
    with _client(iris_base, "iris") as client:
        page = client.get(f"/ui/iris/versions/{number}")
        assert page.status_code == 200
        assert f'data-view="/ui/iris/versions/{number}/view.json"' in page.text
        view = client.get(f"/ui/iris/versions/{number}/view.json").json()
        assert view["version"] == number and view["predict_url"] == f"/v1/models/iris/versions/{number}:predict"
        missing = client.get("/ui/iris/versions/99")
        assert missing.status_code == 404 and "text/html" in missing.headers["content-type"]
        _check_ui_headers(missing)
        other = client.get("/ui/%3Cscript%3Ealert(1)")
        assert other.status_code == 404 and "text/html" in other.headers["content-type"]
        assert "<script>" not in other.text and "&lt;script&gt;alert(1)" in other.text
        assert client.get("/ui/iris/versions/x").status_code == 400
        assert client.get("/ui/iris/versions/99/view.json").status_code == 404


def test_model_name_is_escaped_in_the_pages(iris, tmp_path):
    name = "a<b>\"&'x"
    export_saved_model(iris["model"], tmp_path)
    with _client(tmp_path, name) as client:
        index = client.get("/").text
        page = client.get("/ui/a%3Cb%3E%22%26%27x").text
    for text in (index, page):
        assert "a<b>" not in text and "a&lt;b&gt;&quot;&amp;&#x27;x" in text
    assert 'href="/ui/a%3Cb%3E%22%26%27x"' in index  # and percent-encoded in URLs


def test_no_ui_turns_the_pages_off_and_keeps_the_api(iris_base, iris):
    with _client(iris_base, "iris", ui=False) as client:
        for url in ("/", "/ui/iris", "/ui/iris/view.json", "/static/playground.js"):
            assert client.get(url).status_code == 404, url
        response = client.post("/v1/models/iris:predict", json={"instances": iris["x"][:1].tolist()})
        assert response.status_code == 200


def test_ui_files_run_no_inline_code_and_reach_no_other_origin():
    root = os.path.join(os.path.dirname(playground.__file__), "ui")
    assert sorted(os.listdir(root)) == sorted(UI_FILES)  # what pyproject's package-data ships
    for file_name in UI_FILES:
        text = open(os.path.join(root, file_name), encoding="utf-8").read()
        # Every URL is on this server: the only absolute one is the SVG namespace, an identifier, never fetched.
        assert set(re.findall(r"https?://[^\s\"')]+", text)) <= {"http://www.w3.org/2000/svg"}, file_name
        if file_name.endswith(".html"):
            assert re.findall(r"<script\b[^>]*>", text) in ([], ['<script src="/static/playground.js" defer>'])
            assert not re.search(r"\son[a-z]+\s*=|\sstyle\s*=|javascript:", text), file_name
        if file_name.endswith(".js"):
            for unsafe in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function(",
                           "setAttribute(\"style\"", "setTimeout(\""):
                assert unsafe not in text, unsafe


# -- what the page is built from ---------------------------------------------------------------------------------
def test_view_of_a_classifier_is_a_form_with_its_class_names(iris_base):
    view = _view(iris_base, "iris")
    assert view["input"]["kind"] == "tabular"
    assert [(f["label"], f["type"], f["value"]) for f in view["input"]["fields"]] == \
        [(f"inputs[{i}]", "number", 0) for i in range(4)]
    assert view["output"] == {"kind": "classes", "scores": "scores", "probabilities": True,
                              "labels": list(SPECIES)}
    assert view["feature_maps"] is None


def test_view_of_a_cnn_is_a_canvas_with_feature_maps(tiny_cnn_base):
    view = _view(tiny_cnn_base)
    assert view["input"] == {"kind": "image", "name": "inputs", "height": 28, "width": 28, "channels": 1,
                             "channel_axis": True, "flat": False, "scale": 1, "dtype": "float64"}
    assert view["output"]["labels"] == [str(d) for d in range(10)]
    assert view["feature_maps"] == {"signature": "feature_maps", "output": "conv1", "shape": [28, 28, 3]}


def test_view_of_a_regressor_an_autoencoder_and_a_sequential(tmp_path):
    from flowlearn.estimators import AutoEncoder, DNNRegressor

    x = numpy.random.default_rng(0).uniform(size=(40, 3))
    models = {
        "regressor": _quiet_fit(DNNRegressor(hidden_units=(4,), epochs=2, random_state=0), x, x.sum(axis=1)),
        "autoencoder": _quiet_fit(AutoEncoder(hidden_units=(2,), epochs=2, random_state=0), x),
        "sequential": fl.Sequential([fl.layers.Input((28, 28, 3)), fl.layers.Conv2D(2, 3),
                                     fl.layers.Flatten(), fl.layers.Dense(4)]),
        "uint8": fl.Sequential([fl.layers.Input((6, 5)), fl.layers.Flatten(), fl.layers.Dense(1)]),
        "volume": fl.Sequential([fl.layers.Input((2, 3, 4, 5)), fl.layers.Flatten(), fl.layers.Dense(1)]),
        # Flattened pixels, too many for a form: 324 = 18 x 18 is drawn as a square image; 300 is not a square.
        "flat_image": _quiet_fit(AutoEncoder(hidden_units=(2,), epochs=1, random_state=0), x[:, :1].repeat(324, 1)),
        "too_wide": fl.Sequential([fl.layers.Input((300,)), fl.layers.Dense(1)]),
    }
    views = {}
    for name, model in models.items():
        export_saved_model(model, tmp_path / name)
        views[name] = _view(tmp_path / name, name)
    assert views["regressor"]["output"] == {"kind": "value", "output": "outputs"}
    assert views["autoencoder"]["output"] == {"kind": "autoencoder", "reconstruction": "outputs", "scores": "scores"}
    sequential = views["sequential"]
    assert sequential["input"]["channels"] == 3 and sequential["input"]["height"] == 28
    # One (None, 4) output: the page decides from the values whether they are probabilities or logits.
    assert sequential["output"] == {"kind": "classes", "scores": "outputs", "probabilities": None,
                                    "labels": ["0", "1", "2", "3"]}
    assert sequential["feature_maps"] is None  # exported without debug_outputs
    assert views["uint8"]["input"]["kind"] == "image" and views["uint8"]["input"]["channel_axis"] is False
    assert views["volume"]["input"]["kind"] == "unsupported" and "(None, H, W" in views["volume"]["input"]["reason"]
    flat = views["flat_image"]["input"]
    assert (flat["kind"], flat["height"], flat["width"], flat["channels"], flat["flat"]) == ("image", 18, 18, 1, True)
    assert views["flat_image"]["output"]["kind"] == "autoencoder"
    too_wide = views["too_wide"]["input"]
    assert too_wide["kind"] == "unsupported" and "more than 256" in too_wide["reason"]


def _feature_column_classifier():
    """A DNNClassifier on raw features: a standardized number, a number with a default, a string vocabulary."""
    from flowlearn.estimators import DNNClassifier
    from flowlearn.io import feature_column as fc

    rng = numpy.random.default_rng(0)
    features = {"size": rng.normal(5.0, 1.0, 60), "colour": rng.choice(["red", "green", "blue"], 60),
                "count": rng.integers(0, 9, 60).astype(float)}
    columns = [fc.numeric_column("size", normalizer_fn=("standardize", 5.0, 1.0)),
               fc.numeric_column("count", default_value=3.0),
               fc.indicator_column(fc.categorical_column_with_vocabulary_list("colour", ["red", "green", "blue"]))]
    labels = (features["size"] + (features["colour"] == "blue") > 5.5).astype(int)
    return _quiet_fit(DNNClassifier(hidden_units=(8,), epochs=40, learning_rate=0.05, random_state=0,
                                    feature_columns=columns), features, labels)


def test_view_of_feature_columns_has_selects_and_typical_values(tmp_path):
    export_saved_model(_feature_column_classifier(), tmp_path)
    fields = {f["label"]: f for f in _view(tmp_path)["input"]["fields"]}
    assert fields["colour"]["type"] == "select" and fields["colour"]["options"] == ["red", "green", "blue"]
    assert fields["colour"]["value"] == "red"
    assert (fields["size"]["type"], fields["size"]["value"]) == ("number", 5.0)  # the standardize mean
    assert fields["count"]["value"] == 3.0  # the column's default_value


def test_feature_maps_signature_is_the_first_convolution(tmp_path):
    fl.layers.set_random_seed(0)
    model = fl.Sequential([fl.layers.Input((12, 12, 1)), fl.layers.Conv2D(3, 3, activation="tanh"),
                           fl.layers.Conv2D(2, 3), fl.layers.Flatten(), fl.layers.Dense(2)])
    plain = fl.Sequential([fl.layers.Input((4,)), fl.layers.Dense(2)])
    images = numpy.random.default_rng(0).normal(size=(3, 12, 12, 1)).astype("float32")
    loaded = load_saved_model(model.export(str(tmp_path / "cnn" / "1"), debug_outputs=True))
    maps = loaded.predict(images, signature="feature_maps")
    assert list(maps) == ["conv1"]
    expected = model.layers[0](fl.tensor(images), training=False).numpy()
    numpy.testing.assert_allclose(maps["conv1"], expected, rtol=1e-5, atol=1e-6)  # after its tanh
    # Only the first layer runs: the graph stops at the maps.
    assert [node["op"] for node in loaded.signatures["feature_maps"].graph.nodes][-1] in ("conv2d", "tanh")
    assert "conv2d" not in [n["op"] for n in loaded.signatures["feature_maps"].graph.nodes][1:]
    plain_loaded = load_saved_model(plain.export(str(tmp_path / "plain" / "1"), debug_outputs=True))
    assert "feature_maps" not in plain_loaded.signatures and "debug" in plain_loaded.signatures
    assert "feature_maps" not in load_saved_model(model.export(str(tmp_path / "cnn" / "2"))).signatures


# -- the command line --------------------------------------------------------------------------------------------
def test_serve_no_ui_reaches_the_app(monkeypatch, iris_base, capsys):
    from flowlearn import cli
    from flowlearn.io import serving

    calls = []
    monkeypatch.setattr(serving, "serve", lambda *args, **options: calls.append(options))
    port = _free_port()
    common = ["serve", "--model_base_path", str(iris_base), "--model_name", "iris", "--port", str(port)]
    assert cli.main(common) == 0
    assert f"playground: http://127.0.0.1:{port}/ui/iris" in capsys.readouterr().out
    assert cli.main(common + ["--no-ui"]) == 0
    assert "playground" not in capsys.readouterr().out
    assert [options.get("ui") for options in calls] == [None, False]  # only the options given, as the others


def test_export_debug_outputs_option(tmp_path, iris, capsys):
    from flowlearn import cli

    folder = tmp_path / "model"
    folder.mkdir()
    iris["model"].save(folder / "estimator.flest")
    assert cli.main(["export", "--model", str(folder / "estimator.flest"), "--export-dir", str(tmp_path / "out"),
                     "--debug-outputs"]) == 0
    path = capsys.readouterr().out.strip()
    assert "debug" in load_saved_model(path).signatures
    assert cli.main(["export", "--model", str(folder / "estimator.flest"), "--onnx", str(tmp_path / "m.onnx"),
                     "--debug-outputs"]) == 2
    assert "--debug-outputs: applies to --export-dir only" in capsys.readouterr().err


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _repo_root():
    return os.path.dirname(os.path.dirname(os.path.abspath(fl.__file__)))


def test_demo_serve_reuses_an_export_and_prints_the_playground_url(tiny_cnn_base, tmp_path):
    base = tmp_path / "demo"
    shutil.copytree(tiny_cnn_base, base)
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=_repo_root() + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.Popen([sys.executable, "-m", "flowlearn", "demo", "--serve", "--export-dir", str(base),
                                "--port", str(port)], cwd=_repo_root(), env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}/ui/mnist"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/view.json", timeout=10) as response:
                    view = json.load(response)
                break
            except OSError:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "the demo's server did not answer within 60 s"
                time.sleep(0.2)
        assert view["input"]["kind"] == "image" and view["feature_maps"] is not None
    finally:
        process.terminate()
        try:
            out, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
    assert "serving the export" in out and f"playground: {url}" in out, (out, err)
    assert "test accuracy" not in out  # reused: no training
    assert len(os.listdir(base)) == 1  # and no new export


# -- a real browser ----------------------------------------------------------------------------------------------
def _chromium():
    """``(chromium, chromedriver)`` paths, or a pytest.skip naming what is missing."""
    pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip("headless Chromium needs the chromium and chromedriver executables (apt-get install chromium "
                    "chromium-driver); missing: " + ", ".join(n for n, p in (("chromium", browser),
                                                                             ("chromedriver", driver)) if p is None))
    return browser, driver


@pytest.fixture(scope="module")
def browser():
    chromium, chromedriver = _chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1100,1000", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(chromedriver))
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def mnist_base(tmp_path_factory):
    """A small CNN that really reads digits: about 0.96 on the 2,000 test digits after ~10 s of training."""
    from flowlearn.estimators import CNNClassifier

    (x_train, y_train), (x_test, y_test) = datasets.load_mnist()
    model = _quiet_fit(CNNClassifier(conv_filters=(8,), dense_units=(64,), dropout=0.0, epochs=3, batch_size=32,
                                     learning_rate=3e-3, random_state=0), x_train / 255.0, y_train)
    accuracy = float(numpy.mean(model.predict(x_test / 255.0) == y_test))
    assert accuracy > 0.95, accuracy
    base = tmp_path_factory.mktemp("mnist")
    export_saved_model(model, base, debug_outputs=True)
    return base


@pytest.fixture
def artifacts(tmp_path):
    """Where screenshots go: tmp_path, and $FLOWLEARN_TEST_ARTIFACTS too when set."""
    extra = os.environ.get("FLOWLEARN_TEST_ARTIFACTS")

    def save(driver, file_name):
        driver.save_screenshot(str(tmp_path / file_name))
        if extra:
            os.makedirs(extra, exist_ok=True)
            shutil.copy(tmp_path / file_name, os.path.join(extra, file_name))
        return tmp_path / file_name

    return save


def _wait(driver, condition, what, timeout=20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: condition(d), message=what)


def _answered(driver):
    """The page has shown an answer: a prediction and no request pending."""
    status = driver.find_element("id", "status").text
    prediction = driver.find_element("id", "prediction").text
    return prediction if prediction and not status.startswith("asking") else None


def _ready_canvas(driver):
    """Wait until the page offers its canvas for drawing (its status says "draw..."); return the canvas."""
    _wait(driver, lambda d: d.find_element("id", "status").text.startswith("draw"), "the canvas to be ready")
    return driver.find_element("id", "canvas")


def _stroke(driver, canvas, points):
    """Drag the mouse through ``points`` (offsets from the canvas' centre), a few pixels per pointermove."""
    from selenium.webdriver.common.action_chains import ActionChains

    actions = ActionChains(driver, duration=0)
    actions.move_to_element_with_offset(canvas, *points[0]).click_and_hold()
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        actions.move_by_offset(x1 - x0, y1 - y0)
    actions.release().perform()


def _check_only_this_server(driver, origin):
    """Every request the page made (the page, its script and stylesheet, the view, the predictions) went to
    ``origin``, and the browser reported no error (a Content-Security-Policy violation is one)."""
    entries = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".concat(performance.getEntriesByType('navigation').map(e => e.name));")
    assert entries and all(name.startswith(origin + "/") for name in entries), entries
    assert any(name.endswith("/static/playground.js") for name in entries)
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors


@contextlib.contextmanager
def _playground(driver, base, name):
    """Serve ``base`` as ``name`` on loopback, open ``/ui/NAME`` in ``driver`` and yield the server's origin; the
    server closes when the block ends. The browser's log is emptied first (what earlier pages left)."""
    driver.get_log("browser")
    server = Server(base, name)
    try:
        origin = f"http://127.0.0.1:{server.port}"
        driver.get(f"{origin}/ui/{name}")
        yield origin
    finally:
        server.close()


def _model_input(driver):
    """The greyscale image the page sent, read back from its "what the model sees" canvas, in [0, 1]."""
    width, height, data = driver.execute_script(
        "const c = document.getElementById('model-input'); const d = c.getContext('2d').getImageData(0, 0, "
        "c.width, c.height).data; const g = []; for (let i = 0; i < d.length; i += 4) g.push(d[i]); "
        "return [c.width, c.height, g];")
    return numpy.array(data, dtype=float).reshape(height, width) / 255


def _canvas_ink(driver):
    return driver.execute_script(
        "const c = document.getElementById('canvas'); const d = c.getContext('2d').getImageData(0, 0, c.width, "
        "c.height).data; let ink = 0; for (let i = 0; i < d.length; i += 4) ink += d[i] + d[i + 1] + d[i + 2]; "
        "return ink;")


@pytest.mark.slow
def test_browser_draws_digits_on_the_mnist_cnn(browser, mnist_base, artifacts):
    with _playground(browser, mnist_base, "mnist") as origin:
        canvas = _ready_canvas(browser)
        assert _canvas_ink(browser) == 0

        # A vertical stroke through the middle of the 280 x 280 canvas: a one.
        _stroke(browser, canvas, [(0, y) for y in range(-95, 96, 5)])
        one = _wait(browser, _answered, "a prediction for the stroke")
        # MNIST's preprocessing: the drawing's bounding box scaled to 20 pixels high (keeping its aspect, so a thin
        # stroke stays thin), its centre of mass at the centre of the 28 x 28 image.
        seen = _model_input(browser)
        rows, cols = numpy.nonzero(seen)
        assert seen.shape == (28, 28) and rows.max() - rows.min() + 1 == 20 and cols.max() - cols.min() + 1 <= 4
        centre = [(numpy.arange(28) + 0.5) @ seen.sum(axis=k) / seen.sum() for k in (1, 0)]
        numpy.testing.assert_allclose(centre, [14, 14], atol=0.5)
        assert seen.max() == 1.0 and 0 < seen[seen > 0].min() < 1  # anti-aliased grey edges
        bars = browser.find_elements("css selector", "#chart svg rect.bar")
        assert len(bars) == 10
        assert len(browser.find_elements("css selector", "#feature-maps canvas")) == 8  # one per filter
        artifacts(browser, "playground-mnist-1.png")
        assert one == "1"

        browser.find_element("id", "clear").click()
        assert _canvas_ink(browser) == 0
        assert browser.find_element("id", "prediction").text == ""
        assert browser.find_elements("css selector", "#chart rect") == []

        # A ring (an ellipse a little taller than wide, as people write it): a zero.
        ring = [(round(60 * numpy.sin(t)), round(-85 * numpy.cos(t))) for t in numpy.linspace(0, 2 * numpy.pi, 90)]
        _stroke(browser, canvas, ring)
        zero = _wait(browser, _answered, "a prediction for the ring")
        artifacts(browser, "playground-mnist-0.png")
        assert zero == "0"
        assert len(browser.find_elements("css selector", "#chart svg rect.bar")) == 10
        _check_only_this_server(browser, origin)


@pytest.mark.slow
def test_browser_fills_the_iris_form(browser, iris, iris_base, artifacts):
    with _playground(browser, iris_base, "iris") as origin:
        _wait(browser, _answered, "the prediction for the pre-filled form")
        fields = [browser.find_element("id", f"field-{i}") for i in range(4)]
        for row in (100, 0, 60):  # a virginica, a setosa, a versicolor of the training set
            assert iris["model"].predict(iris["x"][row:row + 1])[0] == iris["y"][row]
            for field, value in zip(fields, iris["x"][row]):
                field.clear()
                field.send_keys(str(value))
            _wait(browser, lambda d, row=row: d.find_element("id", "prediction").text == iris["y"][row]
                  and _answered(d), f"the form to show {iris['y'][row]} for row {row}")
            assert len(browser.find_elements("css selector", "#chart svg rect.bar")) == 3
        artifacts(browser, "playground-iris.png")
        _check_only_this_server(browser, origin)
        # The check itself: a request to another origin (refused by the page's CSP) fails it.
        browser.execute_script("const i = document.createElement('img'); i.src = 'http://192.0.2.1/x.png'; "
                               "document.body.appendChild(i);")

        def refused(driver):
            try:
                _check_only_this_server(driver, origin)
            except AssertionError:
                return True  # and the refusal, read from the log, is not left for the next test
            return False

        _wait(browser, refused, "the check to fail for a request to another origin", timeout=10)


@pytest.mark.slow
def test_browser_shows_a_value_a_reconstruction_and_a_colour_model(browser, tmp_path, artifacts):
    from flowlearn.estimators import AutoEncoder, DNNRegressor

    x = numpy.random.default_rng(0).uniform(size=(60, 3))
    regressor = _quiet_fit(DNNRegressor(hidden_units=(4,), epochs=3, random_state=0), x, x.sum(axis=1))
    autoencoder = _quiet_fit(AutoEncoder(hidden_units=(2,), epochs=3, random_state=0), x)
    fl.layers.set_random_seed(0)
    colour = fl.Sequential([fl.layers.Input((16, 16, 3)), fl.layers.Conv2D(2, 3), fl.layers.Flatten(),
                            fl.layers.Dense(4, activation="softmax")])
    digits = datasets.load_mnist()[0][0][:200].reshape(200, -1) / 255.0
    flat_autoencoder = _quiet_fit(AutoEncoder(hidden_units=(16,), epochs=2, random_state=0), digits)
    columns = _feature_column_classifier()
    for name, model in (("regressor", regressor), ("autoencoder", autoencoder), ("colour", colour),
                        ("flat", flat_autoencoder), ("columns", columns)):
        export_saved_model(model, tmp_path / name, debug_outputs=True)

    with _playground(browser, tmp_path / "regressor", "regressor") as origin:
        shown = _wait(browser, _answered, "the regressor's value")
        assert float(shown) == pytest.approx(regressor.predict(numpy.zeros((1, 3)))[0], abs=1e-4)  # fields at 0
        _check_only_this_server(browser, origin)

    with _playground(browser, tmp_path / "autoencoder", "autoencoder") as origin:
        shown = _wait(browser, _answered, "the autoencoder's score")
        assert float(shown) == pytest.approx(-autoencoder.score_samples(numpy.zeros((1, 3)))[0], abs=1e-4)
        rows = browser.find_elements("css selector", "#values tr")
        assert len(rows) == 4  # a header and one row per feature: input beside reconstruction
        artifacts(browser, "playground-autoencoder.png")
        _check_only_this_server(browser, origin)

    with _playground(browser, tmp_path / "colour", "colour") as origin:
        _stroke(browser, _ready_canvas(browser), [(x, x // 2) for x in range(-80, 81, 8)])
        assert _wait(browser, _answered, "the colour model's answer") in ("0", "1", "2", "3")
        assert len(browser.find_elements("css selector", "#chart svg rect.bar")) == 4
        assert len(browser.find_elements("css selector", "#feature-maps canvas")) == 2
        assert browser.execute_script("const c = document.getElementById('model-input'); return [c.width, c.height];") \
            == [16, 16]
        # A picked file is resized to the input (a uniformly red picture stays exactly red) and predicted.
        from PIL import Image

        Image.new("RGB", (40, 24), (255, 0, 0)).save(tmp_path / "red.png")
        browser.find_element("id", "clear").click()
        browser.find_element("id", "file").send_keys(str(tmp_path / "red.png"))
        shown = _wait(browser, _answered, "the colour model's answer for the picked file")
        red = numpy.zeros((1, 16, 16, 3), dtype="float32")
        red[..., 0] = 1
        assert shown == str(int(numpy.argmax(colour.predict(red))))
        pixel = browser.execute_script("return Array.from(document.getElementById('model-input').getContext('2d')"
                                       ".getImageData(8, 8, 1, 1).data);")
        assert pixel == [255, 0, 0, 255]
        _check_only_this_server(browser, origin)

    # An AutoEncoder of flattened 28 x 28 digits: drawn on the canvas, its reconstruction shown beside the input.
    with _playground(browser, tmp_path / "flat", "flat") as origin:
        _stroke(browser, _ready_canvas(browser), [(0, y) for y in range(-90, 91, 6)])
        assert float(_wait(browser, _answered, "the anomaly score")) > 0
        painted = browser.execute_script(
            "const c = document.getElementById('reconstruction'); const d = c.getContext('2d').getImageData(0, 0, "
            "c.width, c.height).data; let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i]; return [c.width, s];")
        assert painted[0] == 28 and painted[1] > 0
        assert browser.find_element("id", "reconstruction-figure").is_displayed()
        artifacts(browser, "playground-autoencoder-image.png")
        _check_only_this_server(browser, origin)

    # Raw features through feature columns: one input per feature (the request names each), a select for the
    # vocabulary.
    from selenium.webdriver.support.ui import Select

    with _playground(browser, tmp_path / "columns", "columns") as origin:
        _wait(browser, _answered, "the prediction for the pre-filled form")
        labels = [browser.find_element("css selector", f"label[for=field-{i}]").text for i in range(3)]
        assert labels == ["colour", "count", "size"]
        for colour_name, size in (("blue", 5.2), ("red", 4.0), ("green", 7.0)):
            Select(browser.find_element("id", "field-0")).select_by_visible_text(colour_name)
            size_field = browser.find_element("id", "field-2")
            size_field.clear()
            size_field.send_keys(str(size))
            expected = str(columns.predict({"colour": numpy.array([colour_name]), "count": numpy.array([3.0]),
                                            "size": numpy.array([size])})[0])
            _wait(browser, lambda d, expected=expected: d.find_element("id", "prediction").text == expected
                  and _answered(d), f"{expected} for colour={colour_name}, size={size}")
        _check_only_this_server(browser, origin)
