"""``flowlearn predict``: a trained model's predictions for the rows of a CSV file, as a CSV file."""
import io
import os
import sys

from ..cli import command
from ._common import autoencoder_outputs, kind_of, load_model, model_inputs, read_csv


def add_arguments(parser):
    parser.add_argument("--model", required=True, metavar="DIR",
                        help="a model folder written by 'flowlearn train' (or its estimator.flest)")
    parser.add_argument("--data", required=True, metavar="FILE.csv",
                        help="rows to predict: a CSV file with a header line ('-' reads standard input); "
                             "a label column, if present, is ignored")
    parser.add_argument("--output", default="-", metavar="OUT.csv",
                        help="where the predictions go, written atomically (default: '-', standard output)")
    parser.add_argument("--label", metavar="COL",
                        help="a column to leave out (default: the label the model was trained on)")


def prediction_frame(estimator, kind, features):
    """The output table: ``prediction``, then ``probability_<class>`` (classifiers) or ``score`` (autoencoder)."""
    import pandas

    if kind == "autoencoder":  # both columns from one pass through the network
        predictions, scores = autoencoder_outputs(estimator, features)
        return pandas.DataFrame({"prediction": predictions, "score": scores})
    columns = {"prediction": estimator.predict(features)}
    if kind == "classifier":
        for label, column in zip(estimator.classes_.tolist(), estimator.predict_proba(features).T):
            columns[f"probability_{label}"] = column
    return pandas.DataFrame(columns)


def write_csv(frame, path):
    """Write ``frame`` to ``path`` ("-": standard output); a file is replaced in one step, never half-written."""
    if path == "-":
        frame.to_csv(sys.stdout, index=False)
        return
    from ..core._atomic import atomic_write

    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--output: no such folder: {os.path.dirname(path)!r}")
    with atomic_write(path) as stream:
        text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
        try:
            frame.to_csv(text, index=False)
        finally:
            text.detach()  # flushes; atomic_write syncs and closes the binary stream itself


@command("predict", "write a trained model's predictions for the rows of a CSV file to a CSV file", add_arguments)
def run(args):
    estimator, record = load_model(args.model)
    kind = kind_of(estimator)
    frame = read_csv(args.data)
    features = model_inputs(estimator, frame, record, args.label or record.get("label"), args.data)
    write_csv(prediction_frame(estimator, kind, features), args.output)
    if args.output != "-":
        print(f"wrote {len(frame):,} predictions to {args.output}")
