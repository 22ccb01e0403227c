"""ModelCheckpoint: save the model at the end of epochs, optionally only when it improved."""
import os

from .base import Callback, MonitorMixin


class ModelCheckpoint(MonitorMixin, Callback):
    """Save the model (``model.save``) after each epoch, or only after the best ones.

    Parameters
    ----------
    filepath : str or os.PathLike
        May hold ``str.format`` fields: ``{epoch}`` (1-based) and any key of the epoch logs, e.g.
        ``"ckpt/model-{epoch:02d}-{val_loss:.3f}.flmodel"``. Missing folders are created.
    monitor : str
        The quantity that decides what "best" is when ``save_best_only``.
    verbose : int
    save_best_only : bool
        Save only when ``monitor`` improved on the best value so far (a missing value saves nothing).
    mode : {"auto", "min", "max"}

    Examples
    --------
    >>> checkpoint = ModelCheckpoint("best.flmodel", monitor="val_accuracy", save_best_only=True)
    >>> model.fit(x, y, epochs=5, validation_split=0.2, callbacks=[checkpoint])  # doctest: +SKIP
    """

    chief_only = True  # writes files or prints: rank 0 only under a data-parallel strategy

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, mode="auto"):
        super().__init__()
        self.filepath = os.fspath(filepath)
        self.verbose = verbose
        self.save_best_only = save_best_only
        self._init_monitor(monitor, mode, 0.0)

    def on_train_begin(self, logs=None):
        # Keras keeps `best` across fit calls so that a second fit does not overwrite a better model.
        pass

    def _path(self, epoch, logs):
        try:
            return self.filepath.format(epoch=epoch + 1, **(logs or {}))
        except KeyError as error:
            raise KeyError(
                f"ModelCheckpoint: `filepath` {self.filepath!r} names {error.args[0]!r}, which is not in the epoch "
                f"logs {sorted(logs or {})}."
            ) from None

    def on_epoch_end(self, epoch, logs=None):
        if self.save_best_only:
            current = self._current(logs)
            if current is None or not self._is_improvement(current, self.best):
                return
            if self.verbose:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best} to {current}; saving the model.")
            self.best = current
        path = self._path(epoch, logs)
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        self.model.save(path)
