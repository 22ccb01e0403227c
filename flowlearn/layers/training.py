"""The one training loop of flowlearn, and the pieces it is fed with.

``Sequential.fit``, the scikit-learn estimators and the model_fn ``Estimator`` all train through
:func:`run_training`; they differ only in the ``train_step`` and the batches they hand it:

* :mod:`flowlearn.layers.data_adapter` turns every kind of input into batches (:func:`array_batches`
  cuts in-memory arrays, shuffling by permuting indices; input_fns and generators are adapted there too);
* :class:`GradientStep` is the standard step (forward in training mode, loss, backward, optimizer
  update, gradients cleared, running loss and metrics) and refuses to apply an update computed from
  a non-finite loss; :func:`evaluate_batches` runs the same forward function for evaluation;
* :func:`run_training` runs epochs of steps, drives the callbacks (History, ProgressBar, user
  callbacks), runs validation and stops on ``stop_training`` or a NaN/inf loss. Given a data-parallel
  ``strategy`` (:class:`flowlearn.distributed.MPIStrategy`) it is also where the three trainers become
  distributed: each step gets this rank's shard of the global batch, with the strategy in force so that
  ``Optimizer.step`` averages the gradients over the ranks.

Non-finite loss policy (``terminate_on_nan``, default True): the step that sees a NaN or infinite
loss applies no update, and the loop raises :class:`NonFiniteLossError` naming the epoch and batch,
so the model keeps the weights (and optimizer state) from just before that batch. With
``terminate_on_nan=False`` updates are applied whatever the loss and training goes on, as in Keras
(add :class:`~flowlearn.callbacks.TerminateOnNaN` to stop quietly instead).
"""
import math

from ..core import metrics as metrics_module
from ..core import no_grad, training_mode
from ..core.distribution import current_strategy, strategy_scope
from ..core.parallel import hands_blas_back
from .callbacks import CallbackList, History, ProgressBar
# Batching lives in the data adapter; these names stay importable from here.
from .data_adapter import array_batches, batch_length

__all__ = [
    "NonFiniteLossError", "GradientStep", "MetricTracker", "array_batches", "batch_length", "evaluate_batches",
    "forward_state", "make_metric", "run_training",
]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the weights from before that batch were kept.

    Raised by the training loop, it also tells where: ``loss`` (the value), ``epoch`` and ``batch``
    (counted from 1); these are None where an error is raised elsewhere.
    """

    def __init__(self, message, loss=None, epoch=None, batch=None):
        super().__init__(message)
        self.loss, self.epoch, self.batch = loss, epoch, batch


# -- metrics ------------------------------------------------------------------------------------
class _FunctionMetric:
    """A plain ``f(y_true, y_pred) -> number`` as a streaming metric: the sample-weighted mean of its
    per-batch values."""

    def __init__(self, function):
        self.function = function
        self.name = getattr(function, "__name__", "metric")
        self.reset_state()

    def reset_state(self):
        self._total = 0.0
        self._count = 0

    def update_state(self, y_true, y_pred, sample_weight=None):
        value = self.function(y_true, y_pred)
        value = value.item() if hasattr(value, "item") else value
        n = len(y_pred)
        self._total += float(value) * n
        self._count += n

    def result(self):
        return self._total / self._count if self._count else 0.0


def make_metric(identifier):
    """A fresh streaming metric: from a name or config dict (see :func:`flowlearn.core.metrics.get`), a
    copy of a Metric object (so training and validation never share state), or a plain function."""
    if isinstance(identifier, metrics_module.Metric):
        return type(identifier).from_config(identifier.get_config())
    if isinstance(identifier, (str, dict)):
        return metrics_module.get(identifier)
    if callable(identifier):
        return _FunctionMetric(identifier)
    raise TypeError(
        f"Received an invalid value for `metrics`: expected names such as 'accuracy', Metric objects or "
        f"functions; got {identifier!r}."
    )


class MetricTracker:
    """The running mean of the loss (weighted by batch size, as Keras) and streaming metrics."""

    def __init__(self, metrics=()):
        self.metrics = [make_metric(m) for m in metrics]
        self.reset_state()

    def reset_state(self):
        self._loss_total = 0.0
        self._count = 0
        for metric in self.metrics:
            metric.reset_state()

    def update(self, loss, n, y_true=None, y_pred=None):
        self._loss_total += loss * n
        self._count += n
        if y_pred is not None:
            for metric in self.metrics:
                metric.update_state(y_true, y_pred)

    def result(self):
        logs = {"loss": self._loss_total / self._count if self._count else 0.0}
        for metric in self.metrics:
            logs[metric.name] = float(metric.result())
        return logs


# -- steps --------------------------------------------------------------------------------------
def forward_state(model):
    """The Tensors that ``model``'s forward pass updates in training: what :class:`GradientStep` takes
    as ``state``.

    These are the weights that an active (not frozen) layer keeps out of the gradient step, i.e.
    batch-norm moving statistics; a frozen layer runs in inference mode and updates nothing.
    """
    return [w for layer, active in model._walk() if active for w, trainable in layer._weights if not trainable]


class GradientStep:
    """The standard training step: ``logs = step(batch)``, logs being running epoch values.

    Parameters
    ----------
    forward : callable
        ``forward(batch) -> (loss, y_true, y_pred)``: runs the model (called in training mode) and
        returns the scalar loss Tensor to minimise (regularization included), and the targets and
        predictions the metrics read (``y_pred`` may be None when there are no metrics). The same
        function serves :func:`evaluate_batches`.
    optimizer : Optimizer
        Its ``step(parameters)`` applies one update from the parameters' ``.grad``.
    parameters : callable
        Returns the trainable parameters. Called after the forward pass, because layers create their
        weights on their first call.
    metrics : list
        Metric names, Metric objects or functions (see :func:`make_metric`).
    skip_nonfinite : bool
        When the loss is NaN or infinite, skip backward and the update, so weights and optimizer state
        stay as they were (:func:`run_training` then raises). False applies the update anyway.
    state : callable, optional
        Returns the Tensors the forward pass itself updates (batch-norm moving statistics). With
        ``skip_nonfinite`` they are copied before each step and put back after a non-finite loss.
    batch_weight : callable, optional
        ``batch_weight(batch) -> float``: what ``forward``'s loss is normalised by, i.e. the loss is
        ``sum(per-sample losses) / batch_weight(batch)``. Default: the batch's rows (a mean loss). A
        data-parallel strategy weights each rank's gradient by its shard's share of it, so that the
        average over the ranks is the gradient of the whole batch's loss.

    The logs hold the loss's running mean since :meth:`reset_state` (the loop calls it at the start of
    each epoch) and the metrics' running results. Under a data-parallel strategy (see
    :func:`run_training`) the batch is this rank's shard and the logs are those of the global batch.
    """

    def __init__(self, forward, optimizer, parameters, metrics=(), skip_nonfinite=True, state=None,
                 batch_weight=None):
        self.forward = forward
        self.optimizer = optimizer
        self.parameters = parameters
        self.tracker = MetricTracker(metrics)
        self.skip_nonfinite = skip_nonfinite
        self.state = state
        self.batch_weight = batch_weight

    def reset_state(self):
        self.tracker.reset_state()

    def __call__(self, batch):
        state = self.state() if self.skip_nonfinite and self.state is not None else ()
        saved = [tensor.data.copy() for tensor in state]
        with training_mode(True):
            loss, y_true, y_pred = self.forward(batch)
        value = float(loss.item())
        n = batch_length(batch)
        strategy = current_strategy()
        if strategy is not None:
            # The global batch's loss, the same on every rank: all ranks then skip or apply this step alike
            # (a rank skipping alone would leave the others waiting in the gradient allreduce).
            value, n = strategy.global_mean(value), strategy.global_rows
        if self.skip_nonfinite and not math.isfinite(value):
            for tensor, array in zip(state, saved):
                tensor.assign(array)
            self.tracker.update(value, n)
            return self.tracker.result()
        if strategy is not None and self.tracker.metrics:
            y_true, y_pred = strategy.gather_rows(y_true), strategy.gather_rows(y_pred)
        parameters = self.parameters()
        loss.backward()
        self.optimizer.step(parameters)
        for parameter in parameters:
            parameter.grad = None
        self.tracker.update(value, n, y_true, y_pred)
        return self.tracker.result()


@hands_blas_back
def evaluate_batches(forward, batches, metrics=()):
    """The loss (batch-size-weighted mean) and metrics of ``forward`` over ``batches``, in inference
    mode with no graph recorded: what ``evaluate`` and every validation pass return.

    ``forward`` is the function given to :class:`GradientStep`.
    """
    tracker = MetricTracker(metrics)
    seen = False
    with no_grad(), training_mode(False):
        for batch in batches:
            loss, y_true, y_pred = forward(batch)
            tracker.update(float(loss.item()), batch_length(batch), y_true, y_pred)
            seen = True
    if not seen:
        raise ValueError("evaluate_batches: expected at least one batch; got none.")
    return tracker.result()


class _Averaged:
    """Gives a plain ``step(batch) -> per-batch logs`` function running means weighted by batch size."""

    def __init__(self, step):
        self.step = step
        self.reset_state()

    def reset_state(self):
        self.sums = {}
        self.count = 0

    def __call__(self, batch):
        logs = self.step(batch)
        n = batch_length(batch)
        self.count += n
        for key, value in logs.items():
            self.sums[key] = self.sums.get(key, 0.0) + value * n
        return {key: total / self.count for key, total in self.sums.items()}


# -- the loop -----------------------------------------------------------------------------------
class _StopFlag:
    """Stands in for a model when the caller trains something that has no ``stop_training``."""

    stop_training = False


def _epoch_source(batches, steps_per_epoch):
    """A function epoch -> iterable of at most ``steps_per_epoch`` batches.

    A re-iterable (list, dataset object) starts afresh each epoch; a one-shot iterator (an input_fn's
    generator) continues where the previous epoch stopped.
    """
    if callable(batches):
        return lambda epoch: _limit(batches(epoch), steps_per_epoch)
    return lambda epoch: _limit(batches, steps_per_epoch)


def _limit(iterable, steps):
    if steps is None:
        yield from iterable
        return
    iterator = iter(iterable)
    for _ in range(steps):
        try:
            yield next(iterator)
        except StopIteration:
            return


def _steps_known(batches, steps_per_epoch):
    if steps_per_epoch is not None:
        return steps_per_epoch
    if not callable(batches) and hasattr(batches, "__len__"):
        return len(batches)
    return None


@hands_blas_back
def run_training(train_step, batches, *, epochs=1, initial_epoch=0, steps_per_epoch=None, callbacks=None,
                 validate=None, model=None, verbose=0, terminate_on_nan=True, steps=None, strategy=None,
                 variables=None):
    """Train for epochs ``initial_epoch .. epochs - 1`` and return the :class:`History`.

    Parameters
    ----------
    train_step : callable
        ``train_step(batch) -> dict`` of scalar logs (Python floats) holding ``"loss"``; usually a
        :class:`GradientStep`. A step with a ``reset_state()`` method (called at each epoch's start)
        reports running epoch values itself; a plain function's per-batch logs are averaged here,
        weighted by batch size.
    batches : callable or iterable
        ``batches(epoch)`` returning the epoch's batches (e.g. ``lambda epoch: array_batches(...)``),
        or an iterable gone through once per epoch, or a one-shot iterator from which each epoch takes
        ``steps_per_epoch`` batches. An epoch that yields no batch ends training.
    epochs, initial_epoch : int
        As in Keras: the epochs run are ``range(initial_epoch, epochs)``.
    steps_per_epoch : int, optional
        Batches per epoch; default: all the epoch's batches.
    steps : int, optional
        Shown as the progress bar's total when the batches have no length (``steps_per_epoch`` wins).
    callbacks : list of Callback, optional
        Called in order, followed by the History that is returned and, if ``verbose``, a ProgressBar.
    validate : callable, optional
        ``validate() -> dict`` of scalar results, run at the end of every epoch; the keys are logged
        with a ``val_`` prefix.
    model : object, optional
        Given to the callbacks (``callback.model``); ``model.stop_training = True`` ends training after
        the current batch.
    verbose : {0, 1, 2}
    terminate_on_nan : bool
        Raise :class:`NonFiniteLossError` when a batch's loss is NaN or infinite (see the module docstring).
    strategy : flowlearn.distributed.MPIStrategy, optional
        Data-parallel training: ``variables`` are first overwritten with rank 0's; each step then gets
        this rank's shard of every batch and runs with the strategy in force, so that the optimizer
        averages the gradients over the ranks before updating and a :class:`GradientStep` logs the
        global batch's loss and metrics; callbacks with ``chief_only`` (and the progress bar) run on
        rank 0 only; all ranks wait for each other before returning. Every rank must get the same
        batches (same data, same shuffling).
    variables : list of Tensor or callable, optional
        With ``strategy``: the Tensors every rank must start from (rank 0's values), or a function
        returning them.

    Returns
    -------
    History
    """
    for name, value in (("epochs", epochs), ("initial_epoch", initial_epoch)):
        if int(value) != value or value < 0:
            raise ValueError(f"Received an invalid value for `{name}`: expected an integer >= 0; got {value!r}.")
    if steps_per_epoch is not None and (int(steps_per_epoch) != steps_per_epoch or steps_per_epoch < 1):
        raise ValueError(
            f"Received an invalid value for `steps_per_epoch`: expected a positive integer; got {steps_per_epoch!r}."
        )
    model = model if model is not None else _StopFlag()
    if strategy is not None:
        if not strategy.is_chief:
            verbose = 0
            callbacks = [callback for callback in callbacks or [] if not getattr(callback, "chief_only", False)]
        if variables is not None:
            strategy.broadcast_variables(variables() if callable(variables) else variables)
        step_on = _sharded(strategy, getattr(train_step, "batch_weight", None) or batch_length)
    history = History()
    all_callbacks = list(callbacks or []) + [history]
    if verbose and not any(isinstance(callback, ProgressBar) for callback in all_callbacks):
        all_callbacks.append(ProgressBar(verbose))
    params = {"epochs": int(epochs), "steps": _steps_known(batches, steps_per_epoch) or steps, "verbose": verbose}
    callback_list = CallbackList(all_callbacks, model=model, params=params)
    epoch_batches = _epoch_source(batches, steps_per_epoch)
    step = train_step if hasattr(train_step, "reset_state") else _Averaged(train_step)

    model.stop_training = False
    epoch_logs = {}
    try:
        callback_list.on_train_begin()
        for epoch in range(int(initial_epoch), int(epochs)):
            callback_list.on_epoch_begin(epoch)
            step.reset_state()
            batch_index, logs = -1, {}
            for batch_index, batch in enumerate(epoch_batches(epoch)):
                callback_list.on_train_batch_begin(batch_index)
                logs = step(batch) if strategy is None else step_on(step, batch)
                if terminate_on_nan and not math.isfinite(logs["loss"]):
                    raise NonFiniteLossError(
                        f"The training loss became {logs['loss']} at epoch {epoch + 1}, batch {batch_index + 1}; "
                        "training stopped and the model keeps the weights from before that batch. Try a lower "
                        "learning rate, check the data for NaN/inf or extreme values, or pass "
                        "terminate_on_nan=False to keep training regardless.",
                        loss=logs["loss"], epoch=epoch + 1, batch=batch_index + 1,
                    )
                callback_list.on_train_batch_end(batch_index, dict(logs))
                if model.stop_training:
                    break
            if batch_index < 0:
                break  # the data ran out: nothing more to train on
            epoch_logs = dict(logs)
            if validate is not None:
                epoch_logs.update({f"val_{key}": value for key, value in validate().items()})
            callback_list.on_epoch_end(epoch, epoch_logs)
            if model.stop_training:
                break
    except BaseException:
        callback_list.abort()
        raise
    callback_list.on_train_end(epoch_logs)
    if strategy is not None:
        strategy.barrier()  # rank 0's checkpoints, written in on_train_end, exist when any rank returns
    return history


def _sharded(strategy, weight):
    """``run(step, batch)``: ``step`` on this rank's shard of ``batch``, with ``strategy`` in force."""

    def run(step, batch):
        local = strategy.shard(batch, batch_length(batch), weight)
        with strategy_scope(strategy):
            return step(local)

    return run
