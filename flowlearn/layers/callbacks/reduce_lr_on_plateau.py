"""ReduceLROnPlateau: lower the learning rate when a monitored quantity stops improving."""
from .base import Callback, MonitorMixin, get_learning_rate, set_learning_rate


class ReduceLROnPlateau(MonitorMixin, Callback):
    """Multiply the learning rate by ``factor`` after ``patience`` epochs without improvement.

    Parameters
    ----------
    monitor : str
    factor : float
        In (0, 1): ``new_lr = max(lr * factor, min_lr)``.
    patience : int
        Epochs without improvement before the rate is lowered.
    verbose : int
    mode : {"auto", "min", "max"}
    min_delta : float
        Smallest change that counts as improvement.
    cooldown : int
        Epochs to wait after a reduction before counting again.
    min_lr : float
        The rate never goes below this.

    >>> plateau = ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, min_lr=1e-4)
    >>> model.fit(x, y, epochs=20, validation_split=0.2, callbacks=[plateau])  # doctest: +SKIP
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0):
        super().__init__()
        if not 0.0 < factor < 1.0:
            raise ValueError(f"Received an invalid value for `factor`: expected a number in (0, 1); got {factor!r}.")
        self._init_monitor(monitor, mode, min_delta)
        self.factor = float(factor)
        self.patience = int(patience)
        self.verbose = verbose
        self.cooldown = int(cooldown)
        self.min_lr = float(min_lr)

    def on_train_begin(self, logs=None):
        self.best = None
        self.wait = 0
        self.cooldown_counter = 0

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        logs["learning_rate"] = get_learning_rate(self.model)
        current = self._current(logs)
        if current is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best = current
            self.wait = 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = get_learning_rate(self.model)
                new = max(old * self.factor, self.min_lr)
                if new < old:
                    set_learning_rate(self.model, new)
                    if self.verbose:
                        print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing the learning rate to {new}.")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0
