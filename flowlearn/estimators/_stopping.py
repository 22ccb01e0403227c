"""The stopping rule of the scikit-learn estimators: scikit-learn's MLP rule, as a training callback.

Keras's EarlyStopping (kept as it is for Sequential users) moves its reference only when a value
beats it by ``min_delta``, so a loss that falls steadily by a little less than ``min_delta`` per
epoch never lets the patience run out. scikit-learn's MLP keeps the best value seen so far (updated
on every improvement, however small) and counts the epochs in a row that fail to beat it by ``tol``;
training stops when that count exceeds ``n_iter_no_change``. The estimators promise scikit-learn's
behaviour, so they use this rule.
"""
import numbers
import os
import sys

import numpy

from ..layers.callbacks import Callback

# Frames inside these folders are library code: a warning points at the first frame outside them.
_LIBRARY_FOLDERS = tuple(
    os.path.dirname(os.path.abspath(module.__file__)) + os.sep
    for module in (sys.modules["flowlearn"], sys.modules.get("sklearn"))
    if module is not None and getattr(module, "__file__", None)
)


def user_stacklevel():
    """The ``stacklevel`` for ``warnings.warn`` (called from the caller of this function) that names the
    first line outside flowlearn and scikit-learn: the user's ``fit`` call, also through a Pipeline or a
    grid search."""
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_LIBRARY_FOLDERS):
        frame, level = frame.f_back, level + 1
    return level


class NoImprovementStopper(Callback):
    """Stop training once ``monitor`` has failed ``n_iter_no_change + 1`` epochs in a row to beat its best by ``tol``.

    scikit-learn's MLP rule (``MLPClassifier._update_no_improvement_count``): an epoch counts as an
    improvement when it beats the best value so far by more than ``tol``; the best value follows every
    improvement, however small.

    Parameters
    ----------
    monitor : str
        The key of the epoch logs to watch ("loss" or "val_score").
    mode : {"min", "max"}
        Whether smaller (a loss) or larger (a score) is better.
    tol : float
        The margin by which an epoch must beat the best value to reset the count.
    n_iter_no_change : int
        Epochs without such an improvement that are tolerated; the next one stops training.
    keep_best : bool
        Keep a copy of the weights of the best epoch in ``best_weights`` (the caller restores them).
    optimizer : Optimizer, optional
        With ``decays``: the optimizer whose (constant) learning rate is cut.
    decays : int
        How many times the rule, instead of stopping, divides the learning rate by 5 and starts counting
        again (scikit-learn's ``learning_rate="adaptive"``); the rate given is put back when training ends.

    Attributes
    ----------
    best : float
        The best value seen.
    best_epoch : int
        The epoch (0-based) that reached it.
    best_weights : list of ndarray or None
    stopped_epoch : int or None
        The epoch (0-based) after which training was stopped; None when it was not.
    """

    def __init__(self, monitor, mode, tol, n_iter_no_change, keep_best=False, optimizer=None, decays=0):
        super().__init__()
        self.monitor, self.mode, self.tol = monitor, mode, float(tol)
        self.n_iter_no_change, self.keep_best = int(n_iter_no_change), keep_best
        rate = getattr(optimizer, "learning_rate", None)
        # A schedule owns its rate: nothing to cut, the rule just stops.
        self.optimizer, self.decays = optimizer, decays if isinstance(rate, numbers.Real) else 0
        self._sign = 1.0 if mode == "min" else -1.0  # the rule below is written for minimising

    def could_stop(self, epochs):
        """Whether ``epochs`` epochs are enough for the rule to fire (the first epoch always improves)."""
        return epochs > self.n_iter_no_change + 1

    def on_train_begin(self, logs=None):
        self.best, self.best_epoch, self.best_weights = None, None, None
        self.stopped_epoch, self._count, self._best_signed = None, 0, numpy.inf
        self._decays_left = self.decays
        self._rate = self.optimizer.learning_rate if self.decays else None

    def on_train_end(self, logs=None):
        if self._rate is not None:
            self.optimizer.learning_rate = self._rate

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        signed = self._sign * float(value)
        # Written as scikit-learn writes it, so that NaN (false in every comparison) acts the same there.
        self._count = self._count + 1 if signed > self._best_signed - self.tol else 0
        if signed < self._best_signed:
            self._best_signed, self.best, self.best_epoch = signed, float(value), epoch
            if self.keep_best:
                self.best_weights = self.model.get_weights()
        if self._count > self.n_iter_no_change:
            if self._decays_left:
                self._decays_left -= 1
                self.optimizer.learning_rate = self.optimizer.learning_rate / 5.0
                self._count = 0
                return
            self.stopped_epoch = epoch
            self.model.stop_training = True
