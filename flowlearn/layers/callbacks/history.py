"""History: the per-epoch logs of a training run, returned by ``fit``."""
from .base import Callback


class History(Callback):
    """Records the epoch logs: ``history.history["loss"]`` is the list of epoch losses.

    ``fit`` always adds one and returns it; it is also left on ``model.history``.

    >>> history = model.fit(x, y, epochs=3, validation_split=0.2)  # doctest: +SKIP
    >>> sorted(history.history)  # doctest: +SKIP
    ['loss', 'val_loss']
    """

    def __init__(self):
        super().__init__()
        self.epoch = []
        self.history = {}

    def set_model(self, model):
        super().set_model(model)
        if model is not None:
            model.history = self

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)
