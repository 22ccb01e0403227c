"""LearningRateScheduler: set the learning rate at the start of each epoch from a function."""
from .base import Callback, get_learning_rate, set_learning_rate


class LearningRateScheduler(Callback):
    """Set ``model.optimizer.learning_rate = schedule(epoch, lr)`` before each epoch.

    ``epoch`` is 0-based and ``lr`` the current rate; the rate in effect is logged as
    ``learning_rate`` in the epoch logs.

    >>> halve = LearningRateScheduler(lambda epoch, lr: lr if epoch < 2 else lr * 0.5)
    >>> model.fit(x, y, epochs=5, callbacks=[halve])  # doctest: +SKIP
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"Received an invalid value for `schedule`: expected a callable; got {schedule!r}.")
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch, logs=None):
        rate = self.schedule(epoch, get_learning_rate(self.model))
        try:
            set_learning_rate(self.model, rate)
        except (TypeError, ValueError) as error:
            raise ValueError(f"LearningRateScheduler: the schedule returned {rate!r} for epoch {epoch}: {error}") from None
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting the learning rate to {float(rate)}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = get_learning_rate(self.model)
