"""TerminateOnNaN: stop quietly when the loss becomes NaN or infinite."""
import math

from .base import Callback


class TerminateOnNaN(Callback):
    """Stop training (without an error) after a batch whose loss is NaN or infinite.

    ``fit`` already stops *with an error*, keeping the last good weights, unless it is given
    ``terminate_on_nan=False``; this callback is for that case, as in Keras.

    >>> model.fit(x, y, terminate_on_nan=False, callbacks=[TerminateOnNaN()])  # doctest: +SKIP
    """

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"Batch {batch}: invalid loss {loss}, terminating training.")
            self.model.stop_training = True
