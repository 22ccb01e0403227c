"""``flowlearn train``: fit one of the scikit-learn estimators on a CSV file and save it into a model folder."""
import argparse
import os
import sys
import time
import warnings

from ..cli import command, non_negative_int, positive_int
from ._common import (ESTIMATOR_FILE, ESTIMATORS, TAKES_FEATURE_COLUMNS, check_features, int_list, positive_float,
                      read_csv, split_label, write_training_record)

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad")

# Options that apply to some estimators only: option -> (parameter, estimators that take it).
_SPECIFIC = {
    "hidden_units": ("hidden_units", ("dnn-classifier", "dnn-regressor", "autoencoder")),
    "conv_filters": ("conv_filters", ("cnn",)),
    "dense_units": ("dense_units", ("cnn",)),
    "image_shape": ("image_shape", ("cnn",)),
}


def image_shape(text):
    """argparse type: ``height,width,channels``."""
    try:
        shape = int_list(text)
    except argparse.ArgumentTypeError:
        shape = ()
    if len(shape) != 3:
        raise argparse.ArgumentTypeError(f"expected three positive integers height,width,channels such as "
                                         f"28,28,1, got {text!r}")
    return shape


def add_arguments(parser):
    parser.add_argument("--data", required=True, metavar="FILE.csv",
                        help="training data: a CSV file with a header line ('-' reads standard input)")
    parser.add_argument("--label", metavar="COL",
                        help="the column to predict (class names or numbers); required except for autoencoder")
    parser.add_argument("--estimator", required=True, choices=tuple(ESTIMATORS), metavar="NAME",
                        help=f"one of {', '.join(ESTIMATORS)}")
    parser.add_argument("--model-dir", required=True, metavar="DIR",
                        help=f"folder to write the model into ({ESTIMATOR_FILE} and training.json; created if needed)")
    parser.add_argument("--hidden-units", type=int_list, metavar="N,N,...",
                        help="units of each hidden layer, e.g. 64,32 (dnn-*, autoencoder: the last is the code size)")
    parser.add_argument("--conv-filters", type=int_list, metavar="N,N,...", help="cnn: filters of each convolution")
    parser.add_argument("--dense-units", type=int_list, metavar="N,N,...",
                        help="cnn: units of the dense layers after the convolutions")
    parser.add_argument("--image-shape", type=image_shape, metavar="H,W,C",
                        help="cnn: (height, width, channels) of the images whose pixels the feature columns hold, "
                             "e.g. 28,28,1")
    parser.add_argument("--output-activation", choices=("auto", "sigmoid", "linear"), default="auto",
                        help="autoencoder: of the reconstruction; auto (default) takes sigmoid when every feature "
                             "lies in [0, 1], else linear")
    parser.add_argument("--epochs", type=positive_int, help="passes over the data (default: the estimator's)")
    parser.add_argument("--batch-size", type=positive_int, help="rows per training step (default: the estimator's)")
    parser.add_argument("--learning-rate", type=positive_float, help="the optimizer's step size")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, help="default: adam")
    parser.add_argument("--l2", type=positive_float, help="weight decay (L2 penalty) on the kernels")
    parser.add_argument("--early-stopping", action="store_true",
                        help="hold out 10%% of the rows and stop when their score stops improving")
    parser.add_argument("--random-state", type=non_negative_int, metavar="SEED",
                        help="seeds the weights and the shuffling: one seed, one result")
    parser.add_argument("--verbose", action="store_true", help="a progress bar per epoch (on stderr)")
    parser.add_argument("--distributed", choices=("auto", "mpi", "none"), default="auto",
                        help="data-parallel training over MPI ranks (mpirun -np N flowlearn train ...): each rank "
                             "trains on its slice of every batch and rank 0 writes the model folder; auto (default) "
                             "is mpi when started by an MPI launcher with more than one rank")


def _parameters(args):
    """The estimator's keyword arguments from the options given (options left out keep its defaults)."""
    name = args.estimator
    parameters = {}
    for option, (parameter, takers) in _SPECIFIC.items():
        value = getattr(args, option)
        if value is None:
            continue
        if name not in takers:
            flag = "--" + option.replace("_", "-")
            raise ValueError(f"{flag}: does not apply to --estimator {name} (only to {', '.join(takers)})")
        parameters[parameter] = value
    if args.output_activation != "auto" and name != "autoencoder":
        raise ValueError(f"--output-activation: does not apply to --estimator {name} (only to autoencoder)")
    for option in ("epochs", "batch_size", "learning_rate", "optimizer", "l2", "random_state"):
        if getattr(args, option) is not None:
            parameters[option] = getattr(args, option)
    if args.early_stopping:
        parameters["early_stopping"] = True
    if args.verbose:
        parameters["verbose"] = 1
    return parameters


def _strategy(args):
    """The MPIStrategy to train with, or None: ``--distributed mpi``, or ``auto`` under a launcher with 2+ ranks.

    ``auto`` reads the launcher's environment (``OMPI_COMM_WORLD_SIZE`` and the like), so that a plain run
    never loads MPI, and ``mpirun -np 2 flowlearn train ...`` trains one model rather than two racing ones.
    """
    from ..distributed import launched_ranks

    if args.distributed == "none" or (args.distributed == "auto" and launched_ranks() < 2):
        return None
    from ..distributed import MPIStrategy

    try:
        return MPIStrategy()
    except ImportError as error:
        raise ValueError(f"--distributed {args.distributed}: {error}") from None


def _feature_columns(features, numeric, text):
    """Numeric columns as they are and text columns one-hot through the vocabulary of the training data."""
    from ..io import feature_column as fc

    columns = [fc.numeric_column(name) for name in numeric]
    for name in text:
        vocabulary = sorted(set(features[name].astype(str)))
        # An unseen category at prediction time contributes nothing (-1), as in tf.feature_column.
        columns.append(fc.indicator_column(fc.categorical_column_with_vocabulary_list(name, vocabulary)))
    return columns


def _prepare(args):
    """(features, labels, estimator kind, text columns) read from --data and checked against --estimator."""
    kind = ESTIMATORS[args.estimator][1]
    frame = read_csv(args.data)
    if kind == "autoencoder":
        features, labels = (frame.drop(columns=[args.label]) if args.label in frame.columns else frame), None
        if args.label is not None and args.label not in frame.columns:
            split_label(frame, args.label, args.data)  # the named error
    else:
        if args.label is None:
            raise ValueError(f"--label: required for --estimator {args.estimator} (the column to predict)")
        features, labels = split_label(frame, args.label, args.data)
    features.columns = [str(name) for name in features.columns]
    numeric, text = check_features(features, args.data, args.estimator, args.estimator in TAKES_FEATURE_COLUMNS)
    if kind == "regressor":
        import numpy
        from pandas.api import types

        if not types.is_numeric_dtype(labels) or types.is_bool_dtype(labels):
            raise ValueError(f"--label: column {args.label!r} holds {sorted(set(map(str, labels)))[:3]}..., not "
                             f"numbers; {args.estimator} predicts numbers (use a classifier for class names)")
        labels = labels.astype(numpy.float64)
    if args.estimator == "cnn" and args.image_shape is not None:
        pixels = args.image_shape[0] * args.image_shape[1] * args.image_shape[2]
        if pixels != features.shape[1]:
            raise ValueError(f"--image-shape: {','.join(map(str, args.image_shape))} holds {pixels} pixels, but "
                             f"{args.data!r} has {features.shape[1]} feature columns")
    return features, labels, kind, numeric, text


def _training_score(estimator, kind, features, labels):
    """(name, value) of the score on the training rows."""
    if kind == "autoencoder":
        return "reconstruction error", float(-estimator.score_samples(features).mean())
    return ("accuracy" if kind == "classifier" else "R^2"), float(estimator.score(features, labels))


@command("train", "fit an estimator on a CSV file and save it into a model folder", add_arguments)
def run(args):
    from .. import estimators

    strategy = _strategy(args)
    chief = strategy is None or strategy.is_chief  # the rank that prints and writes the model folder
    features, labels, kind, numeric, text = _prepare(args)
    parameters = _parameters(args)
    if text:
        parameters["feature_columns"] = _feature_columns(features, numeric, text)
    inputs = features if text else features.astype("float32")
    if kind == "autoencoder":
        # A sigmoid cannot reproduce values outside [0, 1], the usual case for raw CSV columns.
        unit = bool(((inputs >= 0) & (inputs <= 1)).all(axis=None))
        choice = args.output_activation if args.output_activation != "auto" else "sigmoid" if unit else "linear"
        parameters["output_activation"] = None if choice == "linear" else choice
    estimator = getattr(estimators, ESTIMATORS[args.estimator][0])(**parameters, strategy=strategy)
    classes = f", {len(set(labels.tolist()))} classes" if kind == "classifier" else ""
    ranks = f" on {strategy.size} MPI ranks" if strategy is not None else ""
    if chief:
        print(f"flowlearn train: {type(estimator).__name__} on {len(features):,} rows x {features.shape[1]} features of "
              f"{args.data}{f', label {args.label!r}' if labels is not None else ''}{classes}"
              f"{f' (text columns one-hot: {text})' if text else ''}{ranks}", flush=True)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        estimator.fit(inputs, labels)
    for warning in caught if chief else ():  # one line each, as the errors, not Python's two-line warning
        print(f"flowlearn train: warning: {' '.join(str(warning.message).split())}", file=sys.stderr)
    seconds = time.perf_counter() - start
    if not chief:
        return 0  # every rank holds the same model; rank 0 reports and saves it
    name, score = _training_score(estimator, kind, inputs, labels)
    os.makedirs(args.model_dir, exist_ok=True)
    path = os.path.join(args.model_dir, ESTIMATOR_FILE)
    estimator.save(path)
    write_training_record(args.model_dir, {
        "estimator": args.estimator, "label": args.label if labels is not None else None,
        "features": list(features.columns), "text_features": text, "parameters": {
            key: (list(value) if isinstance(value, tuple) else value)
            for key, value in parameters.items() if key != "feature_columns"},
    })
    print(f"training {name}: {score:.4f}")
    print(f"time: {seconds:.1f} s ({getattr(estimator, 'n_iter_', '?')} epochs)")
    print(f"saved: {path}")
