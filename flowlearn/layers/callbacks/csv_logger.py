"""CSVLogger: one CSV row of epoch logs per epoch."""
import csv
import os

from .base import Callback


class CSVLogger(Callback):
    """Write ``epoch`` and the epoch logs (columns sorted by name) to a CSV file, flushed every epoch.

    Parameters
    ----------
    filename : str or os.PathLike
    separator : str
    append : bool
        Add rows to an existing file (its header is kept) instead of overwriting it.

    >>> model.fit(x, y, epochs=3, callbacks=[CSVLogger("training.csv")])  # doctest: +SKIP
    """

    chief_only = True  # writes files or prints: rank 0 only under a data-parallel strategy

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename = os.fspath(filename)
        self.separator = separator
        self.append = append
        self._file = None
        self._writer = None
        self.keys = None

    def on_train_begin(self, logs=None):
        has_header = self.append and os.path.isfile(self.filename) and os.path.getsize(self.filename) > 0
        self._file = open(self.filename, "a" if self.append else "w", newline="", encoding="utf-8")
        self._writer = None
        self.keys = None
        self._write_header = not has_header

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._writer is None:
            self.keys = sorted(logs)
            self._writer = csv.DictWriter(
                self._file, fieldnames=["epoch"] + self.keys, delimiter=self.separator, extrasaction="ignore"
            )
            if self._write_header:
                self._writer.writeheader()
        row = {"epoch": epoch}
        # A key absent this epoch (e.g. validation skipped) stays an empty cell rather than shifting columns.
        row.update({key: logs.get(key, "") for key in self.keys})
        self._writer.writerow(row)
        self._file.flush()

    def _close(self):
        if self._file is not None:
            self._file.close()
            self._file = None
            self._writer = None

    def on_train_end(self, logs=None):
        self._close()

    _on_abort = _close
