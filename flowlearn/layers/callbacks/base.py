"""The callback protocol of the training loop, with the Keras hook names."""
import warnings

import numpy


class Callback:
    """Base class of training callbacks: override the hooks you need.

    The loop calls ``set_model``/``set_params`` once, then ``on_train_begin``, and per epoch
    ``on_epoch_begin``, ``on_train_batch_begin``/``on_train_batch_end`` around every batch and
    ``on_epoch_end`` (whose ``logs`` hold the epoch averages and the ``val_`` results), then
    ``on_train_end``. Setting ``self.model.stop_training = True`` ends training after the current
    batch.

    ``self.model`` is the object being trained: a :class:`flowlearn.layers.Sequential` or an
    estimator's model, offering ``stop_training``, ``get_weights``/``set_weights``, ``save`` and
    ``optimizer`` (whose ``learning_rate`` is a float attribute).

    In data-parallel training (``strategy=``) every rank runs the callbacks, except those whose class
    sets ``chief_only = True`` (the ones that write files or print: progress bars, checkpoints, CSV
    logs, TensorBoard events), which run on rank 0 only.

    >>> class Counter(Callback):
    ...     def on_train_batch_end(self, batch, logs=None):
    ...         self.seen = batch + 1
    """

    # True: under a data-parallel strategy only rank 0 runs this callback (it writes files or prints).
    chief_only = False

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_batch_begin(self, batch, logs=None):
        pass

    def on_train_batch_end(self, batch, logs=None):
        pass

    def _on_abort(self):
        """Training ended with an exception: release resources (files, progress bars) only."""


class CallbackList:
    """Calls each hook on every callback, in order."""

    def __init__(self, callbacks, model=None, params=None):
        self.callbacks = list(callbacks)
        for callback in self.callbacks:
            if not isinstance(callback, Callback):
                raise TypeError(
                    f"Received an invalid value for `callbacks`: expected Callback instances; got "
                    f"{type(callback).__name__}."
                )
            callback.set_model(model)
            callback.set_params(dict(params or {}))

    def _call(self, hook, *args):
        for callback in self.callbacks:
            getattr(callback, hook)(*args)

    def on_train_begin(self, logs=None):
        self._call("on_train_begin", logs)

    def on_train_end(self, logs=None):
        self._call("on_train_end", logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._call("on_epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._call("on_epoch_end", epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._call("on_train_batch_begin", batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._call("on_train_batch_end", batch, logs)

    def abort(self):
        for callback in self.callbacks:
            callback._on_abort()


_MODES = ("auto", "min", "max")


class MonitorMixin:
    """Tracks the best value of one logged quantity (shared by EarlyStopping, ModelCheckpoint and
    ReduceLROnPlateau so that "improved" means the same thing in all three)."""

    def _init_monitor(self, monitor, mode, min_delta):
        if mode not in _MODES:
            raise ValueError(f"Received an invalid value for `mode`: expected one of {_MODES}; got {mode!r}.")
        if mode == "auto":
            # Keras' rule: accuracy-like quantities grow, everything else (losses, errors) shrinks.
            mode = "max" if ("acc" in monitor or monitor.startswith("fmeasure") or "auc" in monitor) else "min"
        self.monitor = monitor
        self.mode = mode
        self.min_delta = abs(float(min_delta))
        self.best = None

    def _current(self, logs):
        """The monitored value in ``logs``, or None (with a warning naming what was logged)."""
        value = (logs or {}).get(self.monitor)
        if value is None:
            warnings.warn(
                f"{type(self).__name__}: the monitored quantity {self.monitor!r} is not in the logs; available: "
                f"{sorted(logs or {})}. Pass validation data for val_ quantities, or change `monitor`.",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        return float(value)

    def _is_improvement(self, value, reference):
        if reference is None:
            return not numpy.isnan(value)
        if self.mode == "min":
            return value < reference - self.min_delta
        return value > reference + self.min_delta


def get_learning_rate(model):
    """The learning rate ``model.optimizer`` uses for its next step, as a float."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not hasattr(optimizer, "learning_rate"):
        raise ValueError("This callback needs a model with an optimizer that has a `learning_rate`; compile it first.")
    # An optimizer driven by a schedule reports the rate the schedule gives now.
    return float(getattr(optimizer, "current_learning_rate", optimizer.learning_rate))


def set_learning_rate(model, value):
    """Set a constant learning rate (replacing any schedule the optimizer had)."""
    value = float(value)
    if not numpy.isfinite(value) or value < 0:
        raise ValueError(f"The learning rate must be a finite non-negative number; got {value!r}.")
    get_learning_rate(model)
    model.optimizer.learning_rate = value
