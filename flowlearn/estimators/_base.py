"""What every scikit-learn estimator of flowlearn shares: parameters, validation, training, prediction, pickling.

An estimator class only describes its network (``_build_layers``); the classifier and regressor bases
below describe the heads (targets, loss, held-out score, outputs). The rest is written once, here:

* parameters are declared once in ``_parameter_constraints`` and checked by scikit-learn's
  ``_fit_context``; ``__init__`` only stores them;
* input goes through ``sklearn.utils.validation.validate_data`` (``n_features_in_``,
  ``feature_names_in_``, DataFrames, the errors scikit-learn users know); X becomes float32
  (``fl.floatx()``) at most once and is never copied again: shuffling and the validation split
  permute row indices;
* training runs in flowlearn's one training loop (:func:`flowlearn.layers.training.run_training`) with
  sample weights in the loss, early stopping (held-out score or training loss), warm start and
  one-epoch ``partial_fit``;
* prediction runs the layers directly (no graph, inference mode) over chunks of at most
  ``_prediction_rows()`` rows, never padded: memory stays bounded for any number of rows, one row costs
  one row's work, and the early-stopping validation pass runs through the same code. A row's output
  equals its output within any other batch to float rounding (BLAS may pick different kernels for
  different numbers of rows), not bit for bit;
* pickling stores numpy arrays and layer configs, so a model trained on the GPU loads without cupy.
"""
import contextlib
import math
import numbers
import warnings

import numpy
from scipy import special
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from ..core import backend, floatx, losses, no_grad, optimizers, training_mode
from ..core.distribution import check_strategy
from ..core.parallel import BlasThreadChoice, hands_blas_back
from ..core.tensor import tensor
from ..io._signatures import network_signatures
from ..io.saved_model import export_saved_model
from ..layers import Activation, BatchNormalization, Dense, Dropout, deserialize, regularizers, serialize
from ..layers.sequential import Sequential
from ..layers.data_adapter import ArrayAdapter
from ..layers.inference import replay_forward
from ..layers.training import GradientStep, NonFiniteLossError, forward_state, run_training
from ._persistence import save_estimator
from ._stopping import NoImprovementStopper, user_stacklevel

# Multiply-adds in the largest prediction chunk (~5 ms of float32 work on two cores); see _prediction_rows.
PREDICT_WORK = 2 ** 28
# What prediction takes as it is; other dtypes go through validate_data, which converts them.
_PREDICT_DTYPES = (numpy.dtype(numpy.float32), numpy.dtype(numpy.float64))

HIDDEN_ACTIVATIONS = ("relu", "leaky_relu", "elu", "selu", "tanh", "sigmoid", "softplus", "linear")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad")


def check_unit_tuple(owner, name, value, allow_empty=True):
    """``value`` (an int or a sequence of ints >= 1) as a tuple of ints, or a scikit-learn-style ValueError."""
    items = (value,) if isinstance(value, numbers.Integral) else value
    try:
        items = tuple(items)
    except TypeError:
        items = None
    ok = items is not None and (allow_empty or len(items) > 0) and all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in items
    )
    if not ok:
        what = "a sequence of positive integers" + ("" if allow_empty else " (at least one)")
        raise ValueError(f"The '{name}' parameter of {owner} must be {what}. Got {value!r} instead.")
    return tuple(int(v) for v in items)


def column_moments(X, weights=None, chunk=4096):
    """(mean, standard deviation) of each column of X under the row ``weights``, as float64.

    A chunk of rows at a time, so no temporary of X's size is made; a zero deviation (a constant
    column) is reported as 1, so dividing by it is always safe.
    """
    total = float(X.shape[0]) if weights is None else float(numpy.sum(weights, dtype=numpy.float64))
    total = total if total > 0 else 1.0
    sums = numpy.zeros(X.shape[1])
    for first in range(0, X.shape[0], chunk):
        block = X[first:first + chunk].astype(numpy.float64)
        sums += block.sum(axis=0) if weights is None else weights[first:first + chunk] @ block
    mean = sums / total
    squares = numpy.zeros(X.shape[1])
    for first in range(0, X.shape[0], chunk):
        block = (X[first:first + chunk] - mean) ** 2
        squares += block.sum(axis=0) if weights is None else weights[first:first + chunk] @ block
    spread = numpy.sqrt(squares / total)
    # A constant column's computed spread is rounding noise (its mean is not exact), not 0: treat any
    # spread within the rounding bound of the mean as none, or dividing by it would blow the column up.
    constant = spread <= 8 * numpy.finfo(numpy.float64).eps * max(X.shape[0], 1) * numpy.abs(mean)
    return mean, numpy.where(constant | (spread == 0), 1.0, spread)


def store_parameters(estimator, arguments):
    """Set every ``__init__`` argument as the attribute of the same name, as scikit-learn expects.

    Call it first thing in ``__init__`` with ``locals()``: the arguments are stored as given, nothing else.
    """
    for name, value in arguments.items():
        if name != "self":
            setattr(estimator, name, value)


def dense_layers(units, activation, regularizer, prefix, *, dropout=0.0, batch_norm=False):
    """Dense layers of ``units`` named ``<prefix>_<index>``, each optionally batch-normalized before its
    activation and followed by dropout."""
    layers = []
    for index, size in enumerate(units):
        if batch_norm:
            layers += [
                Dense(size, kernel_regularizer=regularizer, name=f"{prefix}_{index}"),
                BatchNormalization(name=f"batch_norm_{index}"),
                Activation(activation, name=f"activation_{index}"),
            ]
        else:
            layers.append(Dense(size, activation=activation, kernel_regularizer=regularizer, name=f"{prefix}_{index}"))
        if dropout > 0:
            layers.append(Dropout(dropout, name=f"dropout_{index}"))
    return layers


COMMON_PARAMETERS = """\
    optimizer : {"adam", "adamw", "sgd", "rmsprop", "adagrad"} or Optimizer, default="adam"
        The optimizer, by name or as a :mod:`flowlearn.core.optimizers` instance (copied at each fit,
        its settings kept).
    learning_rate : float or None, default=None
        Step size of the optimizer. None: the instance's own rate when ``optimizer`` is an instance,
        else {learning_rate}. A float replaces an instance's own rate.
    batch_size : int or "auto", default="auto"
        Rows per training step; "auto" is ``min(200, n_samples)``, as scikit-learn's MLP.
    epochs : int, default={epochs}
        Passes over the training data (fewer when the stopping rule below triggers).
    l2 : float, default=0.0
        L2 penalty ``l2 * sum(kernel ** 2)`` on every kernel, added to each batch's mean loss.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows (stratified for classifiers), stop when their score
        has not improved by ``tol`` for ``n_iter_no_change`` epochs, and keep the best epoch's weights.
        Without it, the same rule watches the training loss.
    validation_fraction : float, default=0.1
        Share of the rows held out when ``early_stopping`` is True.
    n_iter_no_change : int or None, default=10
        Training stops once more than this many epochs in a row fail to beat the best value so far
        by ``tol`` (scikit-learn's MLP rule); None trains for all ``epochs``.
    tol : float, default=1e-4
        The margin by which an epoch must beat the best value to count as an improvement.
    warm_start : bool, default=False
        Keep the trained network and optimizer state between calls to ``fit`` and train further.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, dropout masks, shuffling and the validation split: two fits with the
        same int give bit-identical models.
    verbose : int, default=0
        1 shows a progress bar per epoch with the loss (and validation score), 2 one line per epoch.
    device : {"cpu", "gpu"}, default="cpu"
        Where the network trains ("gpu" needs cupy). The fitted estimator pickles as numpy arrays and
        loads on machines without a GPU.
    strategy : flowlearn.distributed.MPIStrategy or None, default=None
        Train data-parallel over MPI ranks (``mpirun -np N python script.py``, every rank fitting on the
        same X and y): each rank takes its slice of every batch of ``batch_size`` rows, the gradients are
        averaged over the ranks before every update, and all ranks end with the same model, the one a
        single process fits with the same ``batch_size`` (to float rounding; dropout and batch
        normalization aside). It is a handle on this run's processes: saving or pickling the estimator
        stores None in its place.
"""

COMMON_ATTRIBUTES = """\
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when X was a DataFrame with string column names.
    loss_curve_ : list of float
        Mean training loss of each epoch (the penalty included; regression on standardized targets,
        the AutoEncoder's in units of X's mean variance).
    validation_scores_ : list of float or None
        Held-out score of each epoch when ``early_stopping`` is True, else None.
    n_iter_ : int
        Epochs trained so far (they add up over warm starts and ``partial_fit`` calls).
    history_ : dict of str to list
        Everything the training loop logged per epoch (``"loss"``, ``"val_score"``).
"""


def fill_doc(**values):
    """Class decorator: put the shared parameter and attribute text into the class docstring.

    ``{common_parameters}`` and ``{common_attributes}`` are replaced by the shared text, then every
    ``{key}`` of ``values`` (blocks of text, or the class's defaults quoted in the shared text);
    ``{learning_rate}`` is the class's ``_default_learning_rate``.
    """

    def decorate(cls):
        values.setdefault("learning_rate", cls._default_learning_rate)
        doc = cls.__doc__
        for key, text in (("common_parameters", COMMON_PARAMETERS), ("common_attributes", COMMON_ATTRIBUTES)):
            doc = doc.replace("{" + key + "}", text.rstrip())
        for key, value in values.items():
            doc = doc.replace("{" + key + "}", str(value).rstrip())
        cls.__doc__ = doc
        return cls

    return decorate


def _generators(random_state, count):
    """``count`` independent numpy Generators from a scikit-learn ``random_state``.

    An int always gives the same streams, None fresh ones; a RandomState instance is drawn from (it
    advances, as scikit-learn's own estimators advance it).
    """
    if isinstance(random_state, numpy.random.RandomState):
        random_state = int(random_state.randint(numpy.iinfo(numpy.int32).max))
    return [numpy.random.default_rng(seed) for seed in numpy.random.SeedSequence(random_state).spawn(count)]


def _weight_total(batch):
    """What the estimators' batch loss is normalised by: the sum of the sample weights (else the rows)."""
    _, _, weights = batch
    return float(weights.sum(dtype=numpy.float64)) if weights is not None else len(batch[0])


class _BaseNetwork(BaseEstimator):
    """Base class of the network estimators (use the concrete classes)."""

    _parameter_constraints: dict = {
        "optimizer": [StrOptions(set(OPTIMIZERS)), optimizers.Optimizer],
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither"), None],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "l2": [Interval(numbers.Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
        "verbose": [Interval(numbers.Integral, 0, 2, closed="both"), "boolean"],
        "device": [StrOptions({"cpu", "gpu"})],
        "strategy": [None, HasMethods(["shard", "reduce_gradients"])],
    }

    # Times a plateau divides the learning rate by 5 before the stopping rule ends training.
    _plateau_decays = 0
    # The step size of an optimizer given by name when learning_rate is None (see fill_doc).
    _default_learning_rate = 0.001
    # The most rows in a prediction batch (see _prediction_rows).
    _predict_batch_size = 8192
    # Keyword arguments for validate_data's y check; None: the estimator takes no y.
    _y_check = None

    # -- what subclasses define ---------------------------------------------------------------------
    def _build_layers(self, n_features, n_outputs):
        """The network as a list of unbuilt layers: 2-D rows in, ``n_outputs`` columns out."""
        raise NotImplementedError

    def _prepare_targets(self, y, weights, first_call, classes):
        """``(targets, n_outputs)``: the array the loss compares the outputs with (None: X itself)."""
        return None, self.n_features_in_

    def _batch_loss(self, outputs, targets, weights):
        """The loss of one batch summed over its rows (weighted when ``weights`` is not None)."""
        return losses.mean_squared_error(targets, outputs, weights=weights, reduction="sum")

    def _validation_score(self, X, targets, weights, rows):
        """Score of the held-out ``rows`` (higher is better) that early stopping watches."""
        raise NotImplementedError

    def _check_parameters(self):
        """Checks of parameter values that ``_parameter_constraints`` cannot express (sequences)."""

    def _fit_input_statistics(self, X, weights):
        """Remember what the first fit needs to know of X (e.g. its scale), before the network is built."""

    def _after_fit(self, X, weights):
        """Fitted attributes computed from the trained network (e.g. an outlier threshold)."""

    # -- fitting ------------------------------------------------------------------------------------
    def _validate_training_data(self, X, y, reset):
        """X as ``floatx()`` (float32; copied only when it is not that already) and y checked against it."""
        if self._y_check is None:
            return validate_data(self, X, reset=reset, dtype=floatx()), None
        return validate_data(self, X, y, reset=reset, dtype=floatx(), **self._y_check)

    def _fit(self, X, y=None, sample_weight=None, *, partial=False, classes=None):
        self._check_parameters()
        if partial and self.early_stopping:
            raise ValueError(
                "partial_fit does not support early_stopping=True: there is no held-out set across calls. "
                "Use fit, or set early_stopping=False."
            )
        first_call = not hasattr(self, "_model") or (not partial and not self.warm_start)
        X, y = self._validate_training_data(X, y, reset=first_call)
        weights = None
        if sample_weight is not None:
            weights = _check_sample_weight(sample_weight, X, dtype=floatx(), ensure_non_negative=True)
        targets, n_outputs = self._prepare_targets(y, weights, first_call, classes)
        weights = self._combine_weights(y, weights, partial)
        if first_call:
            self._fit_input_statistics(X, weights)
            self._initialize(X.shape[1], n_outputs)
        elif n_outputs != self._n_outputs:
            raise ValueError(
                f"{type(self).__name__} was fitted with {self._n_outputs} output(s); y has {n_outputs}. "
                "Fit anew (warm_start=False) to change the number of outputs."
            )
        if self.strategy is not None:
            # Everything training calls on it (scikit-learn's check above looks for two methods), then rank 0's
            # streams everywhere: all ranks hold out the same rows and cut the same batches.
            check_strategy(f"{type(self).__name__}.fit", self.strategy).broadcast_generators(
                [self._dropout_rng, self._batch_rng, self._split_rng])

        train_rows = validation_rows = validate = None
        if self.early_stopping:
            train_rows, validation_rows = self._split(X.shape[0], y)

            def validate():
                return {"score": self._validation_score(X, targets, weights, validation_rows)}

        n_train = X.shape[0] if train_rows is None else len(train_rows)
        batch_size = min(200 if self.batch_size == "auto" else self.batch_size, n_train)
        stopper = None
        if self.n_iter_no_change is not None and not partial:
            stopper = NoImprovementStopper(
                monitor="val_score" if self.early_stopping else "loss", mode="max" if self.early_stopping else "min",
                tol=self.tol, n_iter_no_change=self.n_iter_no_change, keep_best=self.early_stopping,
                optimizer=self._optimizer, decays=self._plateau_decays,
            )
        epochs = 1 if partial else self.epochs
        history = self._run_epochs(X, targets, weights, train_rows, batch_size, epochs,
                                   [] if stopper is None else [stopper], validate)
        if stopper is not None and stopper.best_weights is not None:
            self._model.set_weights(stopper.best_weights)  # the held-out score's best epoch, as scikit-learn
        self._record(history)
        self._after_fit(X, weights)
        trained = len(history.epoch)
        if stopper is not None and stopper.stopped_epoch is None and trained == epochs and stopper.could_stop(trained):
            watched = "validation score" if self.early_stopping else "training loss"
            warnings.warn(
                f"{type(self).__name__}: trained all epochs={epochs} before the {watched} settled (an epoch "
                f"within the last n_iter_no_change={self.n_iter_no_change} beat the best by more than "
                f"tol={self.tol}). Raise `epochs` (or `learning_rate`) to train to convergence.",
                ConvergenceWarning,
                stacklevel=user_stacklevel(),
            )
        return self

    def _combine_weights(self, y, weights, partial):
        """Sample weights with anything the estimator adds (class weights); None means all ones."""
        return weights

    def _initialize(self, n_features, n_outputs):
        """A fresh network, optimizer, random streams and records: what every fit without warm start rebuilds."""
        backend.module_for_device(self.device)  # fails now, with the reason, when device="gpu" has no GPU
        init_rng, self._dropout_rng, self._batch_rng, self._split_rng = _generators(self.random_state, 4)
        layers = self._build_layers(n_features, n_outputs)
        for layer in layers:
            layer._rng = self._dropout_rng if isinstance(layer, Dropout) else init_rng
        model = Sequential(layers, name=type(self).__name__)
        model.build((None, n_features))
        if self.device != "cpu":
            model.to(self.device)
        self._model = model
        self._optimizer = self._make_optimizer()
        self._n_outputs = n_outputs
        self.loss_curve_ = []
        self.validation_scores_ = [] if self.early_stopping else None
        self.history_ = {}
        self.n_iter_ = 0

    def _make_optimizer(self):
        if isinstance(self.optimizer, optimizers.Optimizer):
            # A fresh copy from its config: the instance given is never trained, so clones stay independent.
            # Its own learning rate stands unless learning_rate is set.
            overrides = {} if self.learning_rate is None else {"learning_rate": self.learning_rate}
            return optimizers.deserialize(optimizers.serialize(self.optimizer), **overrides)
        rate = self._default_learning_rate if self.learning_rate is None else self.learning_rate
        return optimizers.get(self.optimizer, learning_rate=rate)

    def _kernel_regularizer(self):
        return regularizers.L2(self.l2) if self.l2 > 0 else None

    def _split(self, n_samples, y):
        """(train rows, validation rows): a seeded split of row indices, stratified for classifiers."""
        seed = int(self._split_rng.integers(numpy.iinfo(numpy.int32).max))
        stratify = y if isinstance(self, ClassifierMixin) else None
        if stratify is not None:
            self._check_stratified_split(n_samples, y)
        train, validation = train_test_split(
            numpy.arange(n_samples), test_size=self.validation_fraction, random_state=seed, stratify=stratify
        )
        if len(validation) < 2:
            raise ValueError(
                f"The validation set is too small: {len(validation)} sample(s) from validation_fraction="
                f"{self.validation_fraction} of {n_samples}. Increase 'validation_fraction' or the size of your "
                "dataset, or set early_stopping=False."
            )
        return numpy.sort(train), numpy.sort(validation)

    def _check_stratified_split(self, n_samples, y):
        """The conditions of a stratified hold-out, as an error naming early_stopping and validation_fraction."""
        name = type(self).__name__
        labels, counts = numpy.unique(y, return_counts=True)
        held_out = math.ceil(self.validation_fraction * n_samples)
        advice = "Set early_stopping=False, or provide more rows of the rare classes."
        if counts.min() < 2:
            rare = labels[counts < 2].tolist()
            raise ValueError(
                f"{name}: early_stopping=True holds out a validation set with rows of every class, which needs at "
                f"least 2 rows per class; class(es) {rare} have 1. {advice}"
            )
        if held_out < len(labels) or n_samples - held_out < len(labels):
            raise ValueError(
                f"{name}: early_stopping=True holds out validation_fraction={self.validation_fraction} of the "
                f"{n_samples} rows ({held_out}), and both parts need a row of each of the {len(labels)} classes. "
                f"Raise `validation_fraction` (or lower it, if the training part is the one short). {advice}"
            )

    def _run_epochs(self, X, targets, weights, train_rows, batch_size, epochs, callbacks, validate):
        model, device = self._model, self.device
        for layer in model.layers:  # after unpickling, dropout draws from the estimator's stream again
            if isinstance(layer, Dropout):
                layer._rng = self._dropout_rng

        def forward(batch):
            xb, tb, wb = batch
            outputs = model(tensor(xb, device=device))
            # The batch's weighted mean, sum(w * loss) / sum(w), as scikit-learn's MLP.
            total = float(wb.sum(dtype=numpy.float64)) if wb is not None else len(xb)
            loss = self._batch_loss(outputs, xb if tb is None else tb, wb) * (1.0 / total if total > 0 else 0.0)
            for penalty in model.regularization_losses():
                loss = loss + penalty
            return loss, None, None

        parameters = model.trainable_weights
        state = forward_state(model)  # batch-norm statistics, put back after a non-finite loss
        step = GradientStep(forward, self._optimizer, lambda: parameters, state=lambda: state,
                            batch_weight=_weight_total)
        # The data adapter's array path, as Sequential.fit's: each epoch a new permutation of the training
        # rows' indices, the data never copied whole.
        batches = ArrayAdapter((X, targets, weights), batch_size, shuffle=True, rng=self._batch_rng, indices=train_rows)
        try:
            return run_training(step, batches.epoch, epochs=epochs, steps=batches.num_batches, callbacks=callbacks,
                                validate=validate, model=model, verbose=int(self.verbose), strategy=self.strategy,
                                variables=model.weights)
        except NonFiniteLossError as error:
            # The loop's advice (terminate_on_nan=False) is for Sequential.fit; say what an estimator can change.
            what = (f"the training loss became {error.loss} at epoch {error.epoch}, batch {error.batch}"
                    if error.epoch is not None else "the training loss became NaN or infinite")
            raise NonFiniteLossError(
                f"{type(self).__name__}: {what}; training stopped and the estimator keeps the weights from before "
                f"that batch. Lower `learning_rate` (the optimizer steps at {self._optimizer.learning_rate!r}), "
                "scale the features (e.g. with StandardScaler), or check X and y for NaN, inf or extreme values.",
                loss=error.loss, epoch=error.epoch, batch=error.batch,
            ) from None

    def _record(self, history):
        logs = history.history
        self.loss_curve_.extend(logs.get("loss", []))
        if "val_score" in logs:
            self.validation_scores_ = (self.validation_scores_ or []) + logs["val_score"]
        for key, values in logs.items():
            self.history_.setdefault(key, []).extend(values)
        self.n_iter_ = len(self.loss_curve_)

    # -- prediction ---------------------------------------------------------------------------------
    def __sklearn_is_fitted__(self):
        return hasattr(self, "_model")

    def _validate_input(self, X):
        """X for prediction, checked against the fit (feature count and names); float32/float64 kept as is.

        A clean 2-D float ndarray of the fitted width, from an estimator fitted without feature names,
        takes a short path (a one-row call spends microseconds here, not the ~40 of ``validate_data``);
        anything else, and any X with NaN or inf, goes through ``validate_data`` for its checks and errors.
        The finiteness check is one sum, as scikit-learn's: no temporary array the size of X.
        """
        if not hasattr(self, "_model"):
            check_is_fitted(self)  # raises NotFittedError with scikit-learn's message
        if (type(X) is numpy.ndarray and X.ndim == 2 and X.dtype in _PREDICT_DTYPES and X.shape[0] > 0
                and X.shape[1] == self.n_features_in_ and not hasattr(self, "feature_names_in_")):
            with numpy.errstate(over="ignore", invalid="ignore"):
                total = X.sum()
            if math.isfinite(total):  # NaN or inf make the sum so; an overflow only sends X the long way
                return X
        return validate_data(self, X, reset=False, dtype=(numpy.float32, numpy.float64))

    def _prediction_rows(self):
        """The most rows in one prediction chunk: a power of two giving about ``PREDICT_WORK`` multiply-adds.

        Large enough for BLAS to run at full speed and to amortize the per-layer overhead, small enough
        to bound memory for any number of rows; between 64 and ``_predict_batch_size``. Fewer rows go
        through as they are: a chunk is never padded.
        """
        rows = PREDICT_WORK // max(self._model.count_params(), 1)
        return int(min(self._predict_batch_size, max(64, 2 ** int(math.log2(max(rows, 1))))))

    def _one_row_threads(self):
        """The timed BLAS regime of one one-row call (see ``BlasThreadChoice``), kept per network."""
        choice = self._model.__dict__.get("_blas_thread_choice")
        if choice is None:
            choice = self._model._blas_thread_choice = BlasThreadChoice()
        return choice.call()

    @hands_blas_back
    def _forward(self, X, rows=None, start=0, stop=None):
        """Outputs of the layers ``start:stop`` for ``X`` (or ``X[rows]``) as a float64 array.

        Rows go through the network in chunks of at most ``_prediction_rows()``, each of its real size
        (no padding), so memory is bounded for any number of rows and one row costs one row's work.
        Only one chunk at a time is converted to the network's dtype. The matrix products see
        different shapes for different numbers of rows, and BLAS may pick different kernels for them:
        a row's output equals its output in any other batch to float rounding, not bit for bit.
        Predictions, ``decision_function`` and the early-stopping validation score all run here.
        """
        model = self._model
        layers = model.layers[start:stop]
        dtype, device = model.dtype, model.device
        n = X.shape[0] if rows is None else len(rows)
        size = max(n, 1) if n <= 64 else self._prediction_rows()  # few rows: one chunk, no parameter count
        # A lone row makes matrix-vector products (and one image's convolutions, which cannot split over a
        # batch): on an idle host BLAS's threads nearly halve one CNN image's time, next to a busy process they
        # stall now and then for a time slice. Each network times its one-row calls both ways and runs the
        # cheaper (BlasThreadChoice); larger calls keep the usual policy (products split or held at one thread).
        timed = self._one_row_threads() if n == 1 else contextlib.nullcontext()
        outputs = None
        whole = start == 0 and stop is None  # the whole network: its traced replay (layers/inference.py)
        with timed, no_grad(), training_mode(False):
            for first in range(0, n, size):
                last = min(first + size, n)
                chunk = X[first:last] if rows is None else X[rows[first:last]]
                chunk = chunk.astype(dtype, copy=False)
                values = replay_forward(model, chunk) if whole else None
                if values is None:
                    result = tensor(chunk, device=device)
                    for layer in layers:
                        result = layer(result)
                    values = backend.to_numpy(result.data)
                if last - first == n:  # one chunk: no output buffer to fill
                    return values.astype(numpy.float64)
                if outputs is None:
                    outputs = numpy.empty((n,) + values.shape[1:], dtype=numpy.float64)
                outputs[first:last] = values
        if outputs is None:  # no rows: the right shape, with nothing run
            shape = model._output_shapes[len(model.layers) - 1 if stop is None else stop - 1]
            return numpy.empty((0,) + tuple(shape[1:]), dtype=numpy.float64)
        return outputs

    # -- pickling -----------------------------------------------------------------------------------
    def __getstate__(self):
        state = dict(super().__getstate__())  # a copy: object.__getstate__ hands out the live __dict__
        if state.get("strategy") is not None:
            state["strategy"] = None  # a handle on the processes of this run, not part of the model
        model = state.pop("_model", None)
        optimizer = state.pop("_optimizer", None)
        if model is not None:
            state["_network"] = {
                "layers": [serialize(layer) for layer in model.layers],
                "input_shape": [None, self.n_features_in_],
                "weights": model.get_weights(),
                "optimizer": optimizer.state_dict(model.trainable_weights),
            }
        return state

    def __setstate__(self, state):
        network = state.pop("_network", None)
        super().__setstate__(state)
        if network is None:
            return
        model = Sequential([deserialize(layer) for layer in network["layers"]], name=type(self).__name__)
        model.build(tuple(network["input_shape"]))
        model.set_weights(network["weights"])
        optimizer = optimizers.deserialize(network["optimizer"]["config"])
        optimizer.load_state_dict(network["optimizer"], model.trainable_weights)
        # A model trained on the GPU goes back there where there is one, and stays on the CPU elsewhere.
        if self.device == "gpu" and backend.gpu_available():
            model.to("gpu")
        self._model = model
        self._optimizer = optimizer

    def save(self, path):
        """Write this estimator to the file ``path`` without pickle; :func:`flowlearn.estimators.load` reads it.

        Parameters, fitted attributes (``classes_`` included), weights and optimizer state are stored as
        JSON and numeric ``.npy`` arrays in one zip file, written atomically; loading it imports and
        unpickles nothing, so files from anywhere are safe to load.

        >>> clf.save("clf.flest")  # doctest: +SKIP
        >>> flowlearn.estimators.load("clf.flest").predict(X)  # doctest: +SKIP
        """
        save_estimator(self, path)

    # -- export -------------------------------------------------------------------------------------
    def _saved_model_description(self):
        """What :mod:`flowlearn.io` traces the serving signatures from, as a plain dict (io never imports
        estimators); the classifier and regressor heads add theirs."""
        check_is_fitted(self)
        image = getattr(self, "_data_image_shape", None)  # a CNN fitted on images takes images
        return {"kind": "autoencoder", "model": self._model,
                "input_shape": tuple(image) if image else (self.n_features_in_,),
                "n_encoder_layers": getattr(self, "_n_encoder_layers", None)}

    def _saved_model_signatures(self, transform=None, serving_input_receiver_fn=None):
        if serving_input_receiver_fn is not None:
            raise ValueError(f"{type(self).__name__}.export_saved_model: serving_input_receiver_fn is for the model_fn "
                             "Estimator; this estimator's inputs come from its fit.")
        return network_signatures(self._saved_model_description(), transform=transform)

    def export_saved_model(self, export_dir_base, *, as_text=None, debug_outputs=False):
        """Export the fitted model as a SavedModel under ``export_dir_base/<timestamp>/``; returns that path.

        Signatures as TF Serving names them (``serving_default``; ``classification`` and ``predict`` for
        classifiers, ``regression`` and ``predict`` for regressors, ``predict`` for the AutoEncoder);
        :func:`flowlearn.io.load_saved_model` reads it back without this class, and the REST server
        serves it. See docs/export-and-serving.md.

        >>> path = clf.export_saved_model("exports/iris")  # doctest: +SKIP
        >>> flowlearn.io.load_saved_model(path).predict(X, signature="predict")["classes"]  # doctest: +SKIP
        """
        return export_saved_model(self, export_dir_base, as_text=as_text, debug_outputs=debug_outputs)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


class _ClassifierNetwork(ClassifierMixin, _BaseNetwork):
    """Classification head: one logit and the sigmoid cross-entropy for two classes, softmax for more."""

    _y_check = {}

    def _class_weight(self):
        """The ``class_weight`` parameter where the estimator has one."""
        return None

    def _validate_training_data(self, X, y, reset):
        X, y = super()._validate_training_data(X, y, reset)
        check_classification_targets(y)
        return X, y

    def _prepare_targets(self, y, weights, first_call, classes):
        name = type(self).__name__
        if classes is not None:
            classes = unique_labels(classes)
            if not first_call and not numpy.array_equal(classes, self.classes_):
                raise ValueError(
                    f"`classes={classes.tolist()}` differs from the classes of the first call to partial_fit: "
                    f"{self.classes_.tolist()}."
                )
        if first_call:
            self.classes_ = classes if classes is not None else unique_labels(y)
            if len(self.classes_) < 2:
                raise ValueError(
                    f"{name} needs samples of at least 2 classes; the data contains only one class: "
                    f"{self.classes_.tolist()[0]!r}."
                )
        unseen = numpy.setdiff1d(unique_labels(y), self.classes_)
        if len(unseen):
            raise ValueError(
                f"y contains labels not in classes_ {self.classes_.tolist()}: {unseen.tolist()}. The classes are "
                "fixed by the first fit, or by `classes` in the first call to partial_fit (pass every label there)."
            )
        codes = numpy.searchsorted(self.classes_, y)
        if len(self.classes_) == 2:
            return codes.astype(floatx()).reshape(-1, 1), 1
        return codes, len(self.classes_)

    def _combine_weights(self, y, weights, partial):
        class_weight = self._class_weight()
        if class_weight is None:
            return weights
        if partial and class_weight == "balanced":
            raise ValueError(
                "class_weight='balanced' is not supported by partial_fit: the class frequencies of the whole "
                "data are unknown. Pass class_weight as a dict {label: weight}."
            )
        if class_weight == "balanced":
            extra = compute_sample_weight(class_weight, y).astype(floatx())
        else:
            extra = self._class_weight_rows(class_weight, y)
        return extra if weights is None else weights * extra

    def _class_weight_rows(self, class_weight, y):
        """The weight of each row from a ``{label: weight}`` dict (classes left out weigh 1), checked
        against ``classes_`` so that a typo names the argument rather than failing inside scikit-learn."""
        name = type(self).__name__
        unknown = [label for label in class_weight if not numpy.isin(label, self.classes_).item()]
        if unknown:
            raise ValueError(
                f"{name}: received an invalid value for `class_weight`, expected labels among classes_ "
                f"{self.classes_.tolist()} as its keys; {unknown} are not classes of y. "
                f"Received: class_weight={class_weight!r}"
            )
        bad = {label: value for label, value in class_weight.items()
               if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0
               or not math.isfinite(value)}
        if bad:
            raise ValueError(
                f"{name}: received an invalid value for `class_weight`, expected finite weights >= 0; got {bad}. "
                f"Received: class_weight={class_weight!r}"
            )
        per_class = numpy.array([float(class_weight.get(label, 1.0)) for label in self.classes_.tolist()])
        return per_class[numpy.searchsorted(self.classes_, y)].astype(floatx())

    def _saved_model_description(self):
        return dict(super()._saved_model_description(), kind="classifier", classes=self.classes_)

    def _batch_loss(self, outputs, targets, weights):
        if len(self.classes_) == 2:
            return losses.sigmoid_cross_entropy(targets, outputs, weights=weights, reduction="sum")
        return losses.sparse_softmax_cross_entropy(targets, outputs, weights=weights, reduction="sum")

    def _predicted_codes(self, scores):
        return (scores > 0).astype(numpy.intp) if scores.ndim == 1 else scores.argmax(axis=1)

    def _validation_score(self, X, targets, weights, rows):
        codes = self._predicted_codes(self._decision(X, rows))
        truth = targets[rows].ravel().astype(numpy.intp)
        # accuracy_score's value without its input checks, which cost twice the forward pass
        # they score on a small held-out set; zero total weight is left to it (and its error).
        hits = codes == truth
        if weights is None:
            return float(hits.mean())
        held_out = weights[rows]
        total = float(held_out.sum(dtype=numpy.float64))
        if total <= 0:
            return accuracy_score(truth, codes, sample_weight=held_out)
        return float(numpy.dot(hits, held_out.astype(numpy.float64)) / total)

    def _decision(self, X, rows=None):
        scores = self._forward(X, rows)
        return scores.ravel() if len(self.classes_) == 2 else scores

    def decision_function(self, X):
        """The logits: shape (n_samples,) for two classes (> 0 means ``classes_[1]``), else (n_samples, n_classes)."""
        return self._decision(self._validate_input(X))

    def predict(self, X):
        """The most probable class of each row, from ``classes_``."""
        codes = self._predicted_codes(self.decision_function(X))
        return self.classes_[codes]

    def predict_log_proba(self, X):
        """Log-probabilities of the classes, shape (n_samples, n_classes), columns in the order of ``classes_``."""
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return numpy.column_stack([special.log_expit(-scores), special.log_expit(scores)])
        return special.log_softmax(scores, axis=1)

    def predict_proba(self, X):
        """Probabilities of the classes, shape (n_samples, n_classes), columns in the order of ``classes_``."""
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return numpy.column_stack([special.expit(-scores), special.expit(scores)])
        # scipy.special.softmax in plain numpy, in place: the same values without its array-API
        # dispatch, which costs more than the arithmetic for a few rows.
        scores -= scores.max(axis=1, keepdims=True)
        numpy.exp(scores, out=scores)
        scores /= scores.sum(axis=1, keepdims=True)
        return scores

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Train on X, y (with per-row ``sample_weight`` if given) and return self."""
        return self._fit(X, y, sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over X, y. ``classes`` (every label there will ever be) is required on the first call."""
        if not hasattr(self, "_model") and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        return self._fit(X, y, sample_weight, partial=True, classes=classes)


class _RegressorNetwork(RegressorMixin, _BaseNetwork):
    """Regression head: linear outputs and the squared error, trained on standardized targets.

    Targets are standardized with the (weighted) mean and standard deviation of the first fit, so the
    default learning rate suits targets of any scale; predictions are mapped back.
    """

    _y_check = {"multi_output": True, "y_numeric": True}

    def _prepare_targets(self, y, weights, first_call, classes):
        columns = y.reshape(-1, 1) if y.ndim == 1 else y
        if first_call:
            self._single_target = y.ndim == 1
            mean = numpy.average(columns, axis=0, weights=weights)
            spread = numpy.sqrt(numpy.average((columns - mean) ** 2, axis=0, weights=weights))
            self._y_mean, self._y_scale = mean, numpy.where(spread > 0, spread, 1.0)
        targets = ((columns - self._y_mean) / self._y_scale).astype(floatx())
        return targets, columns.shape[1]

    def _validation_score(self, X, targets, weights, rows):
        # r2_score's value (averaged over outputs; a constant column scores 1 if hit exactly, else 0)
        # without its input checks, which cost more than the forward pass on a small held-out set;
        # zero total weight is left to it (and its error).
        predicted, truth = self._forward(X, rows), targets[rows].astype(numpy.float64)
        held_out = None if weights is None else weights[rows].astype(numpy.float64)
        if held_out is not None and not held_out.sum() > 0:
            return r2_score(truth, predicted, sample_weight=held_out)
        residual = (truth - predicted) ** 2
        spread = (truth - numpy.average(truth, axis=0, weights=held_out)) ** 2
        if held_out is not None:
            residual *= held_out[:, None]
            spread *= held_out[:, None]
        error, total = residual.sum(axis=0), spread.sum(axis=0)
        varied = total > 0
        scores = numpy.where(varied, 1.0 - error / numpy.where(varied, total, 1.0), numpy.where(error > 0, 0.0, 1.0))
        return float(scores.mean())

    def _saved_model_description(self):
        return dict(super()._saved_model_description(), kind="regressor", y_mean=self._y_mean, y_scale=self._y_scale,
                    single_target=self._single_target)

    def predict(self, X):
        """Predicted targets: shape (n_samples,) when fitted on a 1-D y, else (n_samples, n_outputs)."""
        outputs = self._forward(self._validate_input(X)) * self._y_scale + self._y_mean
        return outputs.ravel() if self._single_target else outputs

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Train on X, y (with per-row ``sample_weight`` if given) and return self."""
        return self._fit(X, y, sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over X, y; the first call fixes the target standardization."""
        return self._fit(X, y, sample_weight, partial=True)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
