"""``flowlearn train / evaluate / predict / export / serve``: outputs checked against the library's own answers,
and every mistake on the command line ends in one line and a non-zero status."""
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy
import pandas
import pytest
from sklearn.datasets import load_diabetes, load_digits, load_iris

from flowlearn import cli
from flowlearn.estimators import load

COMMANDS = ["train", "evaluate", "predict", "export", "serve"]


def one_line(text):
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{text}"
    assert "Traceback" not in text
    return lines[0]


def run(capsys, *args):
    """``flowlearn ARGS`` in this process: (status, stdout, stderr)."""
    status = cli.main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return status, out, err


def ok(capsys, *args):
    status, out, err = run(capsys, *args)
    assert status == 0, err
    return out


def stdout_value(out, name):
    match = re.search(rf"^{re.escape(name)}: (-?\d+\.\d+)", out, flags=re.M)
    assert match, out
    return float(match.group(1))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """CSV files: iris with class names as labels, iris with a text feature, and a regression set."""
    folder = tmp_path_factory.mktemp("data")
    iris = load_iris(as_frame=True)
    frame = iris.frame.drop(columns="target")
    frame["species"] = iris.target_names[iris.target]
    frame.to_csv(folder / "iris.csv", index=False)
    frame["colour"] = numpy.where(numpy.arange(len(frame)) % 3 == 0, "red", "blue")
    frame.to_csv(folder / "iris_text.csv", index=False)
    load_diabetes(as_frame=True).frame.to_csv(folder / "diabetes.csv", index=False)
    digits = load_digits()
    pixels = pandas.DataFrame(digits.data[:300] / 16.0, columns=[f"px{i}" for i in range(64)])
    pixels["digit"] = digits.target[:300]
    pixels.to_csv(folder / "digits.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def classifier(data, tmp_path_factory):
    """A DNNClassifier trained by the command on iris: its model folder."""
    folder = tmp_path_factory.mktemp("models") / "iris"
    assert cli.main(["train", "--data", str(data / "iris.csv"), "--label", "species", "--estimator", "dnn-classifier",
                     "--hidden-units", "16", "--epochs", "300", "--learning-rate", "0.01", "--random-state", "0",
                     "--model-dir", str(folder)]) == 0
    return folder


def read_predictions(path):
    return pandas.read_csv(path, keep_default_na=False)


# --- help ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help(capsys, name):
    status, out, err = run(capsys, name, "--help")
    assert status == 0 and err == ""
    assert out.startswith(f"usage: flowlearn {name} ")
    assert "--model" in out or "--data" in out


def test_top_level_help_lists_every_command(capsys):
    status, out, _ = run(capsys, "--help")
    assert status == 0
    for name in COMMANDS + ["demo"]:
        assert re.search(rf"^\s+{name}\s", out, flags=re.M), out


def test_help_does_not_import_pandas_estimators_or_the_server():
    code = ("import sys; from flowlearn import cli; cli.build_parser(); "
            "print(sorted(m for m in ('flowlearn.estimators', 'flowlearn.io.serving', 'starlette', 'uvicorn', "
            "'onnx', 'sklearn') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --- train, evaluate, predict ------------------------------------------------------------------------------

def test_train_saves_a_loadable_model_and_prints_its_training_score(capsys, data, tmp_path):
    status, out, err = run(capsys, "train", "--data", data / "iris.csv", "--label", "species",
                           "--estimator", "dnn-classifier", "--hidden-units", "8,8", "--epochs", "40",
                           "--batch-size", "16", "--learning-rate", "0.01", "--random-state", "1",
                           "--model-dir", tmp_path / "model")
    assert status == 0, err
    # 40 epochs stop before the loss settles: scikit-learn's ConvergenceWarning, as one line of its own
    assert err and all(line.startswith("flowlearn train: warning: DNNClassifier: trained all epochs=40")
                       for line in err.splitlines()), err
    estimator = load(tmp_path / "model" / "estimator.flest")
    assert type(estimator).__name__ == "DNNClassifier"
    assert estimator.get_params()["hidden_units"] == (8, 8) and estimator.get_params()["epochs"] == 40
    assert estimator.get_params()["batch_size"] == 16 and estimator.get_params()["learning_rate"] == 0.01
    frame = pandas.read_csv(data / "iris.csv")
    expected = estimator.score(frame.drop(columns="species").astype("float32"), frame["species"])
    assert stdout_value(out, "training accuracy") == pytest.approx(expected, abs=5e-5)
    assert re.search(r"^time: \d+\.\d s \(40 epochs\)$", out, flags=re.M), out
    record = json.loads((tmp_path / "model" / "training.json").read_text())
    assert record["label"] == "species" and record["features"] == list(frame.columns[:4])


def test_evaluate_prints_accuracy_and_log_loss_of_the_saved_model(capsys, data, classifier):
    from sklearn.metrics import log_loss

    out = ok(capsys, "evaluate", "--model", classifier, "--data", data / "iris.csv")  # label from training.json
    estimator = load(classifier / "estimator.flest")
    frame = pandas.read_csv(data / "iris.csv")
    features = frame.drop(columns="species").astype("float32")
    assert stdout_value(out, "accuracy") == pytest.approx(estimator.score(features, frame["species"]), abs=5e-5)
    assert stdout_value(out, "accuracy") > 0.9
    expected_loss = log_loss(frame["species"], estimator.predict_proba(features), labels=estimator.classes_)
    assert stdout_value(out, "loss") == pytest.approx(expected_loss, abs=5e-5)
    assert "rows: 150" in out


def test_predict_writes_predictions_and_probabilities_equal_to_the_estimators(capsys, data, classifier, tmp_path):
    output = tmp_path / "out.csv"
    out = ok(capsys, "predict", "--model", classifier, "--data", data / "iris.csv", "--output", output)
    assert f"wrote 150 predictions to {output}" in out
    written = read_predictions(output)
    estimator = load(classifier / "estimator.flest")
    features = pandas.read_csv(data / "iris.csv").drop(columns="species").astype("float32")
    assert list(written.columns) == ["prediction"] + [f"probability_{c}" for c in estimator.classes_]
    assert written["prediction"].tolist() == estimator.predict(features).tolist()
    numpy.testing.assert_allclose(written.iloc[:, 1:].to_numpy(), estimator.predict_proba(features), rtol=1e-6)
    assert os.listdir(tmp_path) == ["out.csv"]  # no temporary left beside it


def test_predict_takes_the_trained_columns_by_name_from_stdin_to_stdout(capsys, data, classifier, monkeypatch):
    frame = pandas.read_csv(data / "iris.csv")
    shuffled = frame[frame.columns[::-1]].assign(extra=1.0)  # other order, a column more, label kept
    monkeypatch.setattr(sys, "stdin", io.StringIO(shuffled.to_csv(index=False)))
    out = ok(capsys, "predict", "--model", classifier, "--data", "-")
    written = pandas.read_csv(io.StringIO(out))
    features = frame.drop(columns="species").astype("float32")
    assert written["prediction"].tolist() == load(classifier / "estimator.flest").predict(features).tolist()


def test_predict_replaces_the_output_atomically(capsys, data, classifier, tmp_path, monkeypatch):
    output = tmp_path / "out.csv"
    output.write_text("old content\n")

    def half_then_fail(frame, stream, **kwargs):
        stream.write("prediction\n")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pandas.DataFrame, "to_csv", half_then_fail)
    status, _, err = run(capsys, "predict", "--model", classifier, "--data", data / "iris.csv", "--output", output)
    assert status == 1 and "No space left on device" in one_line(err)
    assert output.read_text() == "old content\n"
    assert os.listdir(tmp_path) == ["out.csv"]


def test_regressor_r2_loss_and_predictions(capsys, data, tmp_path):
    from sklearn.metrics import mean_squared_error

    out = ok(capsys, "train", "--data", data / "diabetes.csv", "--label", "target", "--estimator", "linear-regressor",
             "--epochs", "100", "--random-state", "0", "--model-dir", tmp_path / "m")
    estimator = load(tmp_path / "m" / "estimator.flest")
    frame = pandas.read_csv(data / "diabetes.csv")
    features, target = frame.drop(columns="target").astype("float32"), frame["target"]
    assert stdout_value(out, "training R^2") == pytest.approx(estimator.score(features, target), abs=5e-5)
    out = ok(capsys, "evaluate", "--model", tmp_path / "m", "--data", data / "diabetes.csv")
    assert stdout_value(out, "R^2") == pytest.approx(estimator.score(features, target), abs=5e-5)
    assert stdout_value(out, "R^2") > 0.4
    assert stdout_value(out, "loss") == pytest.approx(mean_squared_error(target, estimator.predict(features)),
                                                      rel=1e-5)
    ok(capsys, "predict", "--model", tmp_path / "m", "--data", data / "diabetes.csv", "--output", tmp_path / "p.csv")
    written = read_predictions(tmp_path / "p.csv")
    assert list(written.columns) == ["prediction"]
    numpy.testing.assert_allclose(written["prediction"], estimator.predict(features), rtol=1e-6)


def test_a_text_feature_is_one_hot_encoded_through_feature_columns(capsys, data, tmp_path):
    out = ok(capsys, "train", "--data", data / "iris_text.csv", "--label", "species", "--estimator", "dnn-classifier",
             "--hidden-units", "8", "--epochs", "30", "--random-state", "0", "--model-dir", tmp_path / "m")
    assert "text columns one-hot: ['colour']" in out
    estimator = load(tmp_path / "m" / "estimator.flest")
    assert estimator.feature_columns is not None
    frame = pandas.read_csv(data / "iris_text.csv")
    features = frame.drop(columns="species")
    ok(capsys, "predict", "--model", tmp_path / "m", "--data", data / "iris_text.csv", "--output", tmp_path / "p.csv")
    assert read_predictions(tmp_path / "p.csv")["prediction"].tolist() == estimator.predict(features).tolist()
    out = ok(capsys, "evaluate", "--model", tmp_path / "m", "--data", data / "iris_text.csv")
    assert stdout_value(out, "accuracy") == pytest.approx(estimator.score(features, frame["species"]), abs=5e-5)


def test_a_text_model_given_as_its_file_alone_takes_its_text_column(capsys, data, tmp_path):
    ok(capsys, "train", "--data", data / "iris_text.csv", "--label", "species", "--estimator", "linear-classifier",
       "--epochs", "20", "--random-state", "0", "--model-dir", tmp_path / "m")
    out = ok(capsys, "predict", "--model", tmp_path / "m" / "estimator.flest", "--data", data / "iris_text.csv",
             "--label", "species")  # no training.json beside a bare file: --label names the column to leave out
    frame = pandas.read_csv(data / "iris_text.csv")
    estimator = load(tmp_path / "m" / "estimator.flest")
    predicted = pandas.read_csv(io.StringIO(out))["prediction"].tolist()
    assert predicted == estimator.predict(frame.drop(columns="species")).tolist()


def test_autoencoder_predicts_inliers_and_scores(capsys, data, tmp_path):
    ok(capsys, "train", "--data", data / "diabetes.csv", "--estimator", "autoencoder", "--hidden-units", "8,3",
       "--epochs", "20", "--random-state", "0", "--model-dir", tmp_path / "m")
    estimator = load(tmp_path / "m" / "estimator.flest")
    assert estimator.output_activation is None  # the columns leave [0, 1]: a sigmoid could not reproduce them
    ok(capsys, "predict", "--model", tmp_path / "m", "--data", data / "diabetes.csv", "--output", tmp_path / "p.csv")
    written = read_predictions(tmp_path / "p.csv")
    features = pandas.read_csv(data / "diabetes.csv").astype("float32")
    assert list(written.columns) == ["prediction", "score"]
    assert written["prediction"].tolist() == estimator.predict(features).tolist()
    numpy.testing.assert_allclose(written["score"], estimator.score_samples(features), rtol=1e-6)
    out = ok(capsys, "evaluate", "--model", tmp_path / "m", "--data", data / "diabetes.csv")
    assert stdout_value(out, "loss") == pytest.approx(-estimator.score_samples(features).mean(), rel=1e-5)


def test_cnn_takes_flat_pixel_columns_with_image_shape(capsys, data, tmp_path):
    ok(capsys, "train", "--data", data / "digits.csv", "--label", "digit", "--estimator", "cnn", "--image-shape",
       "8,8,1", "--conv-filters", "4", "--dense-units", "16", "--epochs", "2", "--random-state", "0",
       "--model-dir", tmp_path / "m")
    estimator = load(tmp_path / "m" / "estimator.flest")
    assert tuple(estimator.image_shape) == (8, 8, 1)
    ok(capsys, "predict", "--model", tmp_path / "m", "--data", data / "digits.csv", "--output", tmp_path / "p.csv")
    features = pandas.read_csv(data / "digits.csv").drop(columns="digit").astype("float32")
    written = read_predictions(tmp_path / "p.csv")
    assert written["prediction"].tolist() == estimator.predict(features).tolist()
    assert list(written.columns)[1:] == [f"probability_{d}" for d in range(10)]


def test_predict_in_a_fresh_process_from_stdin_to_stdout(data, classifier):
    frame = pandas.read_csv(data / "iris.csv")
    result = subprocess.run([sys.executable, "-m", "flowlearn", "predict", "--model", str(classifier), "--data", "-"],
                            input=frame.to_csv(index=False), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    written = pandas.read_csv(io.StringIO(result.stdout))
    features = frame.drop(columns="species").astype("float32")
    assert written["prediction"].tolist() == load(classifier / "estimator.flest").predict(features).tolist()


# --- mistakes: one line, a non-zero status, no traceback ---------------------------------------------------

BAD_TRAIN = [
    (["--estimator", "random-forest"], "argument --estimator: invalid choice: 'random-forest'", 2),
    (["--label", "kind"], "--label: 'iris.csv' has no column 'kind'", 2),
    (["--data", "missing.csv"], "--data: no such file: 'missing.csv'", 1),
    (["--hidden-units", "64,x"], "--hidden-units: expected comma-separated positive integers such as 64,32, "
                                 "got '64,x'", 2),
    (["--hidden-units", "0"], "--hidden-units", 2),
    (["--epochs", "0"], "--epochs", 2),
    (["--learning-rate", "-1"], "--learning-rate: expected a positive number, got '-1'", 2),
    (["--estimator", "linear-regressor", "--label", "sepal width (cm)", "--hidden-units", "8"],
     "--hidden-units: does not apply to --estimator linear-regressor", 2),
    (["--estimator", "dnn-regressor"], "--label: column 'species' holds", 2),
    (["--estimator", "cnn", "--image-shape", "2,2,2"], "--image-shape: 2,2,2 holds 8 pixels, but", 2),
    (["--estimator", "cnn", "--image-shape", "2,2"], "argument --image-shape: expected three positive integers "
                                                     "height,width,channels such as 28,28,1, got '2,2'", 2),
    (["--data", "text.csv", "--estimator", "autoencoder"], "--data: column 'colour' of 'text.csv' holds text", 2),
    (["--data", "empty.csv"], "--data: 'empty.csv' is empty", 2),
    (["--data", "holes.csv"], "--data: column 'a' of 'holes.csv' has 1 empty cells (data rows [2])", 2),
    (["--label"], "argument --label: expected one argument", 2),
]


@pytest.mark.parametrize("change, message, status", BAD_TRAIN, ids=[m.split(":")[0] + str(i)
                                                                     for i, (_, m, _) in enumerate(BAD_TRAIN)])
def test_bad_train_arguments_are_one_line(capsys, data, tmp_path, monkeypatch, change, message, status):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "iris.csv").write_text((data / "iris.csv").read_text())
    (tmp_path / "text.csv").write_text((data / "iris_text.csv").read_text())
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "holes.csv").write_text("a,species\n1,x\n,y\n3,x\n")
    options = {"--data": "iris.csv", "--label": "species", "--estimator": "dnn-classifier", "--model-dir": "m"}
    args = ["train"]
    for i, item in enumerate(change):
        if item.startswith("--") and item in options:
            options[item] = change[i + 1] if i + 1 < len(change) else None
        elif item.startswith("--"):
            args += [item, change[i + 1]]
    for option, value in options.items():
        args += [option] + ([value] if value is not None else [])
    got, out, err = run(capsys, *args)
    assert got == status
    line = one_line(err)
    assert line.startswith("flowlearn train: error: ") and message in line, line
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("args, message, status", [
    (["evaluate", "--model", "nowhere", "--data", "iris.csv"], "--model: no such folder or file: 'nowhere'", 1),
    (["evaluate", "--model", "empty", "--data", "iris.csv"], "--model: 'empty' holds no estimator.flest", 1),
    (["evaluate", "--model", "MODEL", "--data", "diabetes.csv"], "--label: 'diabetes.csv' has no column 'species'", 2),
    (["evaluate", "--model", "MODEL", "--data", "iris.csv", "--label", "sepal width (cm)"],
     "--label: labels", 2),
    (["evaluate", "--model", "REGRESSOR", "--data", "iris.csv", "--label", "species"],
     "--label: column 'species' of 'iris.csv' holds ['setosa', 'versicolor', 'virginica']..., not the numbers", 2),
    (["predict", "--model", "MODEL", "--data", "diabetes.csv"], "--data: 'diabetes.csv' lacks the feature columns", 2),
    (["predict", "--model", "MODEL", "--data", "missing.csv"], "--data: no such file: 'missing.csv'", 1),
    (["predict", "--model", "MODEL", "--data", "iris.csv", "--output", "no/such/dir/out.csv"],
     "--output: no such folder: 'no/such/dir'", 1),
    (["export", "--model", "MODEL"], "expected --export-dir BASE, --onnx PATH or both; got neither", 2),
    (["export", "--model", "MODEL", "--export-dir", "x", "--opset", "17"], "--opset: applies to --onnx only", 2),
    (["serve", "--model_base_path", "nowhere", "--model_name", "iris"], "--model_base_path: no such folder", 1),
    (["serve", "--model_base_path", ".", "--model_name", "iris", "--port", "70000"],
     "--rest_api_port: expected a port number from 1 to 65535, got '70000'", 2),
    (["serve", "--model_name", "iris"], "the following arguments are required: --model-base-path", 2),
])
def test_bad_arguments_of_the_other_commands_are_one_line(capsys, data, classifier, tmp_path, monkeypatch, args,
                                                          message, status):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    for name in ("iris.csv", "diabetes.csv"):
        (tmp_path / name).write_text((data / name).read_text())
    if "REGRESSOR" in args:  # a regressor of iris' petal width from the other three
        frame = pandas.read_csv(data / "iris.csv")
        frame.drop(columns="species").to_csv(tmp_path / "widths.csv", index=False)
        assert cli.main(["train", "--data", "widths.csv", "--label", "petal width (cm)", "--estimator",
                         "linear-regressor", "--epochs", "5", "--model-dir", "regressor"]) == 0
        capsys.readouterr()
        args = [str(tmp_path / "regressor") if arg == "REGRESSOR" else arg for arg in args]
    got, out, err = run(capsys, *[str(classifier) if arg == "MODEL" else arg for arg in args])
    assert got == status
    line = one_line(err)
    assert line.startswith(f"flowlearn {args[0]}: error: ") and message in line, line


# --- export and serve --------------------------------------------------------------------------------------

def test_export_onnx_runs_in_onnxruntime_as_the_estimator_predicts(capsys, data, classifier, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    path = tmp_path / "iris.onnx"
    out = ok(capsys, "export", "--model", classifier, "--onnx", path)
    assert out.strip() == str(path)
    session = onnxruntime.InferenceSession(str(path))
    features = pandas.read_csv(data / "iris.csv").drop(columns="species").to_numpy("float64")
    outputs = dict(zip([o.name for o in session.get_outputs()],
                       session.run(None, {session.get_inputs()[0].name: features})))
    estimator = load(classifier / "estimator.flest")
    expected = estimator.predict_proba(pandas.DataFrame(features, columns=estimator.feature_names_in_))
    numpy.testing.assert_allclose(outputs["scores"], expected, rtol=1e-4, atol=1e-6)  # serving_default's scores


def test_export_onnx_without_the_extra_is_one_line(capsys, classifier, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "flowlearn.io.onnx", None)  # as if onnx were missing: the import fails
    status, _, err = run(capsys, "export", "--model", classifier, "--onnx", tmp_path / "x.onnx")
    assert status == 1
    assert "pip install 'flowlearn[onnx]'" in one_line(err)


@pytest.fixture(scope="module")
def exported(classifier, tmp_path_factory):
    """The iris classifier exported as a SavedModel: (export base, version folder)."""
    pytest.importorskip("flowlearn.io.saved_model")
    base = tmp_path_factory.mktemp("export")
    stdout = io.StringIO()
    sys.stdout, saved = stdout, sys.stdout
    try:
        assert cli.main(["export", "--model", str(classifier), "--export-dir", str(base)]) == 0
    finally:
        sys.stdout = saved
    return base, stdout.getvalue().strip()


def test_export_writes_a_version_that_load_saved_model_predicts_with(data, classifier, exported):
    from flowlearn.io.saved_model import load_saved_model

    base, version = exported
    assert os.path.dirname(version) == str(base) and os.path.basename(version).isdigit()
    loaded = load_saved_model(version)
    features = pandas.read_csv(data / "iris.csv").drop(columns="species").to_numpy("float64")
    outputs = loaded.predict(features[:37], signature="predict")
    estimator = load(classifier / "estimator.flest")
    expected = estimator.predict_proba(pandas.DataFrame(features[:37], columns=estimator.feature_names_in_))
    numpy.testing.assert_allclose(outputs["probabilities"], expected, rtol=1e-5, atol=1e-7)


def test_an_export_that_does_not_load_back_is_removed(capsys, classifier, tmp_path, monkeypatch):
    saved_model = pytest.importorskip("flowlearn.io.saved_model")

    def refuse(path):
        raise ValueError(f"load_saved_model: {path!r}: refused for the test")

    monkeypatch.setattr(saved_model, "load_saved_model", refuse)
    status, out, err = run(capsys, "export", "--model", classifier, "--export-dir", tmp_path / "base")
    assert status == 2 and out == ""
    line = one_line(err)
    assert "--export-dir: the export does not load back, so it was removed" in line and "refused for the test" in line
    assert os.listdir(tmp_path / "base") == []


def test_serve_options_take_tf_servings_spellings():
    parser = cli.build_parser()
    tf_style = parser.parse_args(["serve", "--model_base_path", "/m", "--model_name", "iris", "--rest_api_port", "9001",
                                  "--file_system_poll_wait_seconds", "2"])
    dashed = parser.parse_args(["serve", "--model-base-path", "/m", "--model-name", "iris", "--port", "9001",
                                "--poll-interval-s", "2"])
    for args in (tf_style, dashed):
        assert (args.model_base_path, args.model_name, args.port, args.poll_interval_s) == ("/m", "iris", 9001, 2.0)
    assert (tf_style.host, tf_style.max_batch_size) == ("127.0.0.1", None)


def test_serve_without_the_extra_is_one_line(capsys, tmp_path, monkeypatch):
    for name in [name for name in sys.modules if name.startswith("flowlearn.io.serving")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "flowlearn.io.serving", None)  # as if starlette/uvicorn were missing
    status, _, err = run(capsys, "serve", "--model_base_path", tmp_path, "--model_name", "m")
    assert status == 1
    line = one_line(err)
    assert line.startswith("flowlearn serve: error: ") and "pip install 'flowlearn[serve]'" in line


def test_serve_on_a_port_in_use_is_one_line(capsys, tmp_path, monkeypatch):
    serving = pytest.importorskip("flowlearn.io.serving")
    monkeypatch.setattr(serving, "serve", lambda *a, **k: pytest.fail("serve called on a busy port"), raising=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, _, err = run(capsys, "serve", "--model_base_path", tmp_path, "--model_name", "m", "--port", port)
    assert status == 1
    assert f"--port: cannot listen on 127.0.0.1:{port}" in one_line(err)


def test_serve_passes_only_the_options_given(tmp_path, monkeypatch):
    serving = pytest.importorskip("flowlearn.io.serving")
    calls = []
    monkeypatch.setattr(serving, "serve", lambda *a, **k: calls.append((a, k)), raising=False)
    port = _free_port()
    assert cli.main(["serve", "--model_base_path", str(tmp_path), "--model_name", "m", "--port", str(port),
                     "--max-batch-size", "16", "--batch-timeout-ms", "2.5"]) == 0
    assert calls == [((str(tmp_path), "m"), {"host": "127.0.0.1", "port": port, "max_batch_size": 16,
                                             "batch_timeout_ms": 2.5})]


def test_serve_batch_timeout_may_be_zero_but_not_negative(tmp_path, monkeypatch, capsys):
    serving = pytest.importorskip("flowlearn.io.serving")
    calls = []
    monkeypatch.setattr(serving, "serve", lambda *a, **k: calls.append(k), raising=False)
    args = ["serve", "--model_base_path", str(tmp_path), "--model_name", "m", "--port", str(_free_port())]
    assert cli.main(args + ["--batch-timeout-ms", "0"]) == 0
    assert calls[-1]["batch_timeout_ms"] == 0.0
    assert cli.main(args + ["--batch-timeout-ms", "-1"]) == 2
    assert "expected a non-negative number, got '-1'" in capsys.readouterr().err


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _request(url, body=None):
    request = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_serve_answers_a_real_http_predict(data, classifier, exported):
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    base, version = exported
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "flowlearn", "serve", "--model_base_path", str(base),
                               "--model_name", "iris", "--rest_api_port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, body = _request(f"http://127.0.0.1:{port}/v1/models/iris")
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, server.communicate()[1]
                assert time.monotonic() < deadline, "the server did not answer within 60 s"
                time.sleep(0.2)
        assert status == 200, body
        assert body["model_version_status"][0]["version"] == os.path.basename(version)
        features = pandas.read_csv(data / "iris.csv").drop(columns="species").to_numpy("float32")
        status, body = _request(f"http://127.0.0.1:{port}/v1/models/iris:predict",
                                {"signature_name": "predict", "instances": features[:3].tolist()})
        assert status == 200, body
        probabilities = [row["probabilities"] for row in body["predictions"]]
        estimator = load(classifier / "estimator.flest")
        expected = estimator.predict_proba(pandas.DataFrame(features[:3], columns=estimator.feature_names_in_))
        numpy.testing.assert_allclose(probabilities, expected, rtol=1e-5, atol=1e-7)
        status, body = _request(f"http://127.0.0.1:{port}/v1/models/nope:predict", {"instances": [[1, 2, 3, 4]]})
        assert status == 404 and "error" in body
    finally:
        server.terminate()
        try:
            server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()
    assert server.returncode is not None


def test_evaluate_and_predict_pass_the_data_through_the_network_once(capsys, data, tmp_path, monkeypatch):
    """A regressor's R^2 and loss, an autoencoder's loss and outlier count, and its prediction and score columns
    each come from one forward pass (every number from the same pass, as the estimator's own methods give them)."""
    from flowlearn.estimators import _base

    forward, calls = _base._BaseNetwork._forward, []

    def counted(self, *args, **kwargs):
        calls.append(type(self).__name__)
        return forward(self, *args, **kwargs)

    for estimator, extra in (("linear-regressor", ["--label", "target"]),
                             ("autoencoder", ["--hidden-units", "8,3"])):
        ok(capsys, "train", "--data", data / "diabetes.csv", "--estimator", estimator, *extra, "--epochs", "2",
           "--random-state", "0", "--model-dir", tmp_path / estimator)
        monkeypatch.setattr(_base._BaseNetwork, "_forward", counted)
        out = ok(capsys, "evaluate", "--model", tmp_path / estimator, "--data", data / "diabetes.csv")
        assert len(calls) == 1, (estimator, calls)
        assert stdout_value(out, "loss") > 0
        if estimator == "autoencoder":
            calls.clear()
            ok(capsys, "predict", "--model", tmp_path / estimator, "--data", data / "diabetes.csv",
               "--output", tmp_path / "p.csv")
            assert len(calls) == 1, calls
        calls.clear()
        monkeypatch.setattr(_base._BaseNetwork, "_forward", forward)
