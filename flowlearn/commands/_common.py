"""What the model commands share: argument types, reading a CSV into features and labels, the model folder.

Nothing heavy is imported at module level (``flowlearn --help`` imports this module); pandas, numpy and
the estimators are imported inside the functions that need them.

A model folder written by ``flowlearn train`` holds two files:

- ``estimator.flest``: the fitted estimator, pickle-free (``est.save`` / :func:`flowlearn.estimators.load`);
- ``training.json``: what the command line said and the data looked like - the estimator name, the label
  column and the feature columns in order (so that ``evaluate`` and ``predict`` take the same columns from
  a CSV that has more, or has them in another order, and know the label without being told).
"""
import argparse
import json
import os
import sys

#: The ``--estimator`` names: name -> (class in flowlearn.estimators, kind).
ESTIMATORS = {
    "dnn-classifier": ("DNNClassifier", "classifier"),
    "dnn-regressor": ("DNNRegressor", "regressor"),
    "linear-classifier": ("LinearClassifier", "classifier"),
    "linear-regressor": ("LinearRegressor", "regressor"),
    "autoencoder": ("AutoEncoder", "autoencoder"),
    "cnn": ("CNNClassifier", "classifier"),
}
# The estimators whose ``feature_columns`` parameter lets text columns in (one-hot through a vocabulary).
TAKES_FEATURE_COLUMNS = ("dnn-classifier", "dnn-regressor", "linear-classifier", "linear-regressor")

ESTIMATOR_FILE = "estimator.flest"
TRAINING_FILE = "training.json"
TRAINING_FORMAT = "flowlearn.cli.training"


def int_list(text):
    """argparse type: comma-separated positive integers such as ``64,32`` -> a tuple."""
    parts = [part.strip() for part in text.split(",")]
    try:
        values = tuple(int(part) for part in parts)
    except ValueError:
        values = ()
    if not values or any(value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers such as 64,32, got {text!r}")
    return values


def positive_float(text):
    """argparse type: a finite number > 0."""
    return _finite_float(text, allow_zero=False)


def non_negative_float(text):
    """argparse type: a finite number >= 0."""
    return _finite_float(text, allow_zero=True)


def _finite_float(text, allow_zero):
    try:
        value = float(text)
    except ValueError:
        value = None
    low_ok = value is not None and (value >= 0 if allow_zero else value > 0)
    if not low_ok or not value < float("inf"):
        expected = "a non-negative number" if allow_zero else "a positive number"
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def port_number(text):
    """argparse type: a TCP port, 1 to 65535."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 1 to 65535, got {text!r}")
    return value


def read_csv(path, argument="--data"):
    """The CSV file ``path`` ("-": standard input) as a DataFrame; errors name ``argument`` and the file."""
    import pandas

    source = sys.stdin if path == "-" else path
    if path != "-" and os.path.isdir(path):
        raise IsADirectoryError(f"{argument}: expected a CSV file, got the directory {path!r}")
    if path != "-" and not os.path.exists(path):
        raise FileNotFoundError(f"{argument}: no such file: {path!r}")
    try:
        frame = pandas.read_csv(source)
    except pandas.errors.EmptyDataError:
        raise ValueError(f"{argument}: {path!r} is empty; expected a CSV file with a header line") from None
    except (pandas.errors.ParserError, UnicodeDecodeError) as error:
        raise ValueError(f"{argument}: {path!r} is not a readable CSV file: {error}") from None
    if len(frame) == 0:
        raise ValueError(f"{argument}: {path!r} has a header line but no rows")
    return frame


def split_label(frame, label, path):
    """(features, labels) of ``frame``: ``labels`` is the column ``label``; a missing column is a named error."""
    if label not in frame.columns:
        raise ValueError(f"--label: {path!r} has no column {label!r}; its columns are {list(map(str, frame.columns))}")
    labels = frame[label]
    if labels.isna().any():
        rows = labels.index[labels.isna()].tolist()
        raise ValueError(f"--label: column {label!r} of {path!r} is empty in {len(rows)} rows "
                         f"(data rows {[row + 1 for row in rows[:5]]}{', ...' if len(rows) > 5 else ''})")
    return frame.drop(columns=[label]), labels.to_numpy()


def check_features(features, path, estimator, allow_text):
    """Split the feature columns into numeric and text ones, refusing empty cells and, unless allowed, text.

    Returns ``(numeric_names, text_names)``.
    """
    from pandas.api import types

    if features.shape[1] == 0:
        raise ValueError(f"--data: {path!r} has no feature columns besides the label")
    numeric, text = [], []
    for name in features.columns:
        column = features[name]
        if types.is_bool_dtype(column) or types.is_numeric_dtype(column):
            numeric.append(name)
        else:
            text.append(name)
        empty = column.isna()
        if empty.any():
            rows = [row + 1 for row in column.index[empty].tolist()[:5]]
            raise ValueError(f"--data: column {name!r} of {path!r} has {int(empty.sum())} empty cells "
                             f"(data rows {rows}{', ...' if empty.sum() > 5 else ''}); fill or drop them first")
    if text and not allow_text:
        raise ValueError(
            f"--data: column {text[0]!r} of {path!r} holds text, which {estimator} cannot take (only numbers); "
            f"drop or encode it, or use one of {', '.join(TAKES_FEATURE_COLUMNS)}, which one-hot encode text columns"
        )
    return numeric, text


def model_paths(path):
    """(estimator file, training.json or None) for ``--model``: a folder written by train, or the file itself."""
    if os.path.isdir(path):
        estimator = os.path.join(path, ESTIMATOR_FILE)
        if not os.path.isfile(estimator):
            raise FileNotFoundError(f"--model: {path!r} holds no {ESTIMATOR_FILE}; expected a folder written by "
                                    f"'flowlearn train --model-dir'")
        training = os.path.join(path, TRAINING_FILE)
        return estimator, training if os.path.isfile(training) else None
    if not os.path.exists(path):
        raise FileNotFoundError(f"--model: no such folder or file: {path!r}")
    return path, None


def load_model(path):
    """(estimator, training record dict) of ``--model``; the record is empty when there is no training.json."""
    from ..estimators import load

    estimator_path, training_path = model_paths(path)
    record = {}
    if training_path is not None:
        with open(training_path, encoding="utf-8") as stream:
            try:
                record = json.load(stream)
            except json.JSONDecodeError as error:
                raise ValueError(f"--model: {training_path!r} is damaged: {error}") from None
        if not isinstance(record, dict) or record.get("format") != TRAINING_FORMAT:
            raise ValueError(f"--model: {training_path!r} is not a {TRAINING_FORMAT} file")
    return load(estimator_path), record


def write_training_record(folder, record):
    """Write ``training.json`` into ``folder`` atomically."""
    from ..core._atomic import atomic_write

    with atomic_write(os.path.join(folder, TRAINING_FILE)) as stream:
        stream.write((json.dumps({"format": TRAINING_FORMAT, **record}, indent=2) + "\n").encode("utf-8"))


def kind_of(estimator):
    """"classifier", "regressor" or "autoencoder" for a loaded estimator."""
    from ..estimators import AutoEncoder

    if isinstance(estimator, AutoEncoder):
        return "autoencoder"
    return "classifier" if hasattr(estimator, "classes_") else "regressor"


def autoencoder_outputs(estimator, features):
    """``(predictions, scores)`` of an AutoEncoder from one pass through the network: ``score_samples`` and
    the +1/-1 that ``predict`` derives from it (``score_samples - offset_ >= 0``), bit for bit."""
    import numpy

    scores = estimator.score_samples(features)
    return numpy.where(scores - estimator.offset_ >= 0, 1, -1), scores


def model_features(frame, record, label, path):
    """The feature columns of ``frame`` the model was trained on, in training order.

    With a training record, its feature names are taken (a missing one is an error, others are ignored);
    without, every column except ``label``.
    """
    names = record.get("features")
    if names:
        missing = [name for name in names if name not in frame.columns]
        if missing:
            raise ValueError(f"--data: {path!r} lacks the feature columns {missing} that the model was trained on")
        return frame[names]
    return frame.drop(columns=[label]) if label is not None and label in frame.columns else frame


def model_inputs(estimator, frame, record, label, path):
    """What ``estimator`` takes from ``frame``: its feature columns, checked, as float32 unless they hold text."""
    features = model_features(frame, record, label, path)
    features.columns = [str(name) for name in features.columns]
    text_model = bool(record.get("text_features")) or getattr(estimator, "feature_columns", None) is not None
    check_features(features, path, record.get("estimator", "the model"), allow_text=text_model)
    return features if text_model else features.astype("float32")


def fail_missing_extra(command, extra, error):
    """Print the one-line error for a missing optional dependency and return the exit status (1)."""
    from ..cli import _fail

    return _fail(command, f"needs the '{extra}' extra: pip install 'flowlearn[{extra}]' ({error})", status=1)
