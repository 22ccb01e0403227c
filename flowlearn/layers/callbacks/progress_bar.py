"""ProgressBar: one tqdm bar per epoch showing the running loss and metrics."""
from .base import Callback


def _format_logs(logs):
    return {key: f"{value:.4g}" for key, value in logs.items() if isinstance(value, (int, float))}


class ProgressBar(Callback):
    """Shows a tqdm bar per epoch (``verbose=1``) or one line per epoch (``verbose=2``).

    ``fit(verbose=...)`` adds one for you; ``verbose=0`` shows nothing. The bar's postfix holds the
    running averages of the loss and metrics; at the end of the epoch the validation results join them.

    Parameters
    ----------
    verbose : {0, 1, 2}
    file : file-like, optional
        Where to write (tqdm's default, stderr, when None).
    """

    chief_only = True  # writes files or prints: rank 0 only under a data-parallel strategy

    def __init__(self, verbose=1, file=None):
        super().__init__()
        if verbose not in (0, 1, 2):
            raise ValueError(f"Received an invalid value for `verbose`: expected 0, 1 or 2; got {verbose!r}.")
        self.verbose = verbose
        self.file = file
        self._bar = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.verbose != 1:
            return
        from tqdm.auto import tqdm

        epochs = self.params.get("epochs")
        self._bar = tqdm(
            total=self.params.get("steps"), desc=f"Epoch {epoch + 1}/{epochs}", unit="batch",
            file=self.file, leave=True, dynamic_ncols=True,
        )

    def on_train_batch_end(self, batch, logs=None):
        if self._bar is not None:
            self._bar.set_postfix(_format_logs(logs or {}), refresh=False)
            self._bar.update(1)

    def on_epoch_end(self, epoch, logs=None):
        if self.verbose == 1 and self._bar is not None:
            self._bar.set_postfix(_format_logs(logs or {}), refresh=False)
            self._close()
        elif self.verbose == 2:
            from tqdm.auto import tqdm

            text = " - ".join(f"{key}: {value}" for key, value in _format_logs(logs or {}).items())
            tqdm.write(f"Epoch {epoch + 1}/{self.params.get('epochs')} - {text}", file=self.file)

    def _close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def on_train_end(self, logs=None):
        self._close()

    _on_abort = _close
