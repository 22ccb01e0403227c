"""``flowlearn evaluate``: the score (accuracy or R^2) and the loss of a trained model on a labelled CSV file."""
from ..cli import command
from ._common import autoencoder_outputs, kind_of, load_model, model_inputs, read_csv, split_label


def add_arguments(parser):
    parser.add_argument("--model", required=True, metavar="DIR",
                        help="a model folder written by 'flowlearn train' (or its estimator.flest)")
    parser.add_argument("--data", required=True, metavar="FILE.csv",
                        help="labelled data: a CSV file with a header line ('-' reads standard input)")
    parser.add_argument("--label", metavar="COL", help="the label column (default: the one the model was trained on)")


def scores(estimator, kind, features, labels):
    """[(name, value, note)] for the model on these rows: its score first, then its loss.

    Regressors and autoencoders take one pass through the network for both (not one per number).
    """
    import numpy

    if kind == "autoencoder":
        predictions, scores = autoencoder_outputs(estimator, features)
        errors = -scores
        outliers = int((predictions == -1).sum())
        return [("loss", float(errors.mean()), "mean squared reconstruction error"),
                ("outliers", outliers, f"of {len(errors):,} rows")]
    if kind == "classifier":
        from sklearn.metrics import log_loss

        unknown = sorted(set(map(str, numpy.setdiff1d(labels, estimator.classes_))))
        if unknown:
            raise ValueError(f"--label: labels {unknown[:5]} are not classes of the model, "
                             f"{estimator.classes_.tolist()}")
        probabilities = estimator.predict_proba(features)
        return [("accuracy", float(estimator.score(features, labels)), None),
                ("loss", float(log_loss(labels, probabilities, labels=estimator.classes_)), "log loss")]
    from sklearn.metrics import mean_squared_error, r2_score

    predictions = estimator.predict(features)
    # What estimator.score returns (RegressorMixin: r2_score of predict), without predicting a second time.
    return [("R^2", float(r2_score(labels, predictions)), None),
            ("loss", float(mean_squared_error(labels, predictions)), "mean squared error")]


@command("evaluate", "print a trained model's score (accuracy or R^2) and loss on a labelled CSV file", add_arguments)
def run(args):
    estimator, record = load_model(args.model)
    kind = kind_of(estimator)
    label = args.label or record.get("label")
    frame = read_csv(args.data)
    if kind != "autoencoder":
        if label is None:
            raise ValueError("--label: required (the model folder does not say which column the label is)")
        _, labels = split_label(frame, label, args.data)
        if kind == "regressor":
            try:
                labels = labels.astype("float64")
            except ValueError:
                raise ValueError(f"--label: column {label!r} of {args.data!r} holds "
                                 f"{sorted(set(map(str, labels)))[:3]}..., not the numbers the regressor "
                                 f"predicts") from None
    else:
        labels = None
    features = model_inputs(estimator, frame, record, label, args.data)
    for name, value, note in scores(estimator, kind, features, labels):
        shown = f"{value:.4f}" if isinstance(value, float) else f"{value:,}"
        print(f"{name}: {shown}{f' ({note})' if note else ''}")
    print(f"rows: {len(frame):,}")
