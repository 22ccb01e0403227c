"""The data-parallel strategy in force on this thread, if any: where the core reads it.

A strategy (:class:`flowlearn.distributed.MPIStrategy`) is put in force by the training loop
(:func:`flowlearn.layers.training.run_training`) around each training step, with
:func:`strategy_scope`. Two places read it: :meth:`Optimizer.step
<flowlearn.core.optimizers.Optimizer.step>`, which hands it the parameters to average their gradients
across processes before every update (so that ``Sequential.fit``, the scikit-learn estimators and a
model_fn calling ``minimize`` all get the same reduction), and the training steps, which report the
loss of the whole batch rather than of their shard. The core knows a strategy only by the method it
calls (``reduce_gradients(params)``); it never imports the distributed package.
"""
import contextlib
import threading

__all__ = ["check_strategy", "current_strategy", "strategy_scope"]


class _Current(threading.local):
    strategy = None


_current = _Current()


def current_strategy():
    """The strategy in force on this thread, or None (single-process training)."""
    return _current.strategy


@contextlib.contextmanager
def strategy_scope(strategy):
    """Put ``strategy`` in force on this thread for the ``with`` block (None: none); scopes nest."""
    previous = _current.strategy
    _current.strategy = strategy
    try:
        yield strategy
    finally:
        _current.strategy = previous


# What the training loop, the optimizer and the trainers (Sequential.fit, Estimator.train) call on a strategy.
STRATEGY_METHODS = ("shard", "global_mean", "global_rows", "reduce_gradients", "gather_rows",
                    "broadcast_variables", "broadcast_generators", "barrier", "is_chief")


def check_strategy(owner, strategy):
    """``strategy`` if it offers what training calls (as :class:`flowlearn.distributed.MPIStrategy` does),
    else TypeError naming ``owner``'s argument."""
    missing = [name for name in STRATEGY_METHODS if not hasattr(strategy, name)]
    if missing:
        raise TypeError(
            f"{owner}: expected a data-parallel strategy such as flowlearn.distributed.MPIStrategy() as "
            f"`strategy`; got {type(strategy).__name__} (it lacks {', '.join(missing)})."
        )
    return strategy
