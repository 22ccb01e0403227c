"""EarlyStopping: stop when a monitored quantity has stopped improving."""
from .base import Callback, MonitorMixin


class EarlyStopping(MonitorMixin, Callback):
    """Stop training once ``monitor`` has not improved for ``patience`` epochs.

    Parameters
    ----------
    monitor : str
        A key of the epoch logs, e.g. "val_loss" or "val_accuracy".
    min_delta : float
        Changes smaller than this do not count as improvement.
    patience : int
        Epochs without improvement after which training stops.
    mode : {"auto", "min", "max"}
        "auto" maximises accuracy-like quantities and minimises the rest.
    baseline : float, optional
        Training stops unless the quantity beats this within ``patience`` epochs.
    restore_best_weights : bool
        On stopping, put back the weights of the best epoch.
    start_from_epoch : int
        Epochs of warm-up during which nothing is counted.

    Attributes
    ----------
    stopped_epoch : int
        The epoch (0-based) in which training was stopped, 0 when it ran to the end.
    best_epoch : int

    Examples
    --------
    >>> stop = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    >>> model.fit(x, y, epochs=100, validation_split=0.2, callbacks=[stop])  # doctest: +SKIP
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        if int(patience) != patience or patience < 0:
            raise ValueError(f"Received an invalid value for `patience`: expected an integer >= 0; got {patience!r}.")
        self._init_monitor(monitor, mode, min_delta)
        self.patience = int(patience)
        self.verbose = verbose
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_epoch = 0
        self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        current = self._current(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()  # so there is always something to restore
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            if self.restore_best_weights and self.best_weights is not None:
                self.model.set_weights(self.best_weights)
                if self.verbose:
                    print(f"EarlyStopping: restoring the weights of epoch {self.best_epoch + 1}.")

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping.")
