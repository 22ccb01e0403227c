"""``fl.train``: the global step and TensorFlow 1 names for the optimizers, for model functions.

A model function written for ``tf.estimator`` reads, in flowlearn::

    optimizer = fl.train.AdamOptimizer(learning_rate=1e-3)
    train_op = optimizer.minimize(loss, global_step=fl.train.get_global_step())

The global step is an int64 scalar Tensor named ``"global_step"`` kept (not trained) in the current
:class:`~flowlearn.layers.VariableStore`; the Estimator creates it, a hand-written loop calls
:func:`get_or_create_global_step`. The ``...Optimizer`` functions are thin factories returning
flowlearn's optimizers (:mod:`flowlearn.core.optimizers`) with TensorFlow 1's defaults and argument
names; the update formulas are flowlearn's (see each factory for where they differ from TensorFlow's).
"""
from .core.optimizers import SGD, Adagrad, Adam, Optimizer, RMSProp
from .core.optimizers.optimizer import TrainOp
from .layers.variable_scope import VariableStore, current_store

__all__ = [
    "get_global_step", "create_global_step", "get_or_create_global_step",
    "GradientDescentOptimizer", "MomentumOptimizer", "AdamOptimizer", "AdagradOptimizer", "RMSPropOptimizer",
    "Optimizer", "TrainOp",
]


def _store(caller, store):
    if store is None:
        store = current_store()
        if store is None:
            raise RuntimeError(
                f"fl.train.{caller}: no variable store: call it inside `with fl.variable_scope(store):` (an "
                "Estimator's model_fn runs inside one) or pass store=."
            )
    elif not isinstance(store, VariableStore):
        raise TypeError(f"fl.train.{caller}: expected a VariableStore as `store`; got {type(store).__name__}.")
    return store


def get_global_step(store=None):
    """The ``"global_step"`` Tensor of ``store`` (default: the current scope's), or None when there is none.

    As in TensorFlow, None also outside every scope: ``minimize(loss, global_step=None)`` then counts
    nothing.
    """
    if store is None:
        store = current_store()  # a VariableStore, or None: nothing to check (this runs every step)
        return None if store is None else store.global_step
    return _store("get_global_step", store).global_step


def create_global_step(store=None):
    """Create ``"global_step"`` (int64 scalar, 0, not trainable) in ``store`` (default: the current scope's).

    Raises ValueError when it already exists.

    >>> import flowlearn as fl
    >>> with fl.variable_scope(fl.VariableStore()):
    ...     step = fl.train.create_global_step()
    ...     fl.train.get_global_step() is step, step.dtype.name, step.name
    (True, 'int64', 'global_step')
    """
    return _store("create_global_step", store).create_global_step()


def get_or_create_global_step(store=None):
    """The ``"global_step"`` of ``store`` (default: the current scope's), created at 0 if missing."""
    store = _store("get_or_create_global_step", store)
    step = store.global_step
    return step if step is not None else store.create_global_step()


def _named(optimizer, name):
    if not isinstance(name, str) or not name:
        raise ValueError(f"expected `name` to be a non-empty string; got name={name!r}.")
    optimizer.name = name  # the prefix of its slots in the store, as TensorFlow named them
    return optimizer


def GradientDescentOptimizer(learning_rate, use_locking=False, name="GradientDescent"):  # noqa: N802 (TF's name)
    """``param -= learning_rate * grad``: :class:`~flowlearn.core.optimizers.SGD` without momentum.

    ``use_locking`` is accepted and ignored (updates run in the calling thread).
    """
    return _named(SGD(learning_rate), name)


def MomentumOptimizer(learning_rate, momentum, use_locking=False, name="Momentum", use_nesterov=False):  # noqa: N802
    """SGD with momentum. TensorFlow's ``accum = momentum * accum + grad; param -= lr * accum`` is the same
    update as flowlearn's velocity form for a constant learning rate."""
    return _named(SGD(learning_rate, momentum=momentum, nesterov=use_nesterov), name)


def AdamOptimizer(learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8, use_locking=False,  # noqa: N802
                  name="Adam"):
    """:class:`~flowlearn.core.optimizers.Adam` with TensorFlow 1's defaults (``epsilon=1e-8``).

    The epsilon placement is TensorFlow's ("epsilon hat", added to ``sqrt(v)`` before the bias
    correction), so the updates agree with ``tf.train.AdamOptimizer``.
    """
    return _named(Adam(learning_rate, beta_1=beta1, beta_2=beta2, epsilon=epsilon), name)


def AdagradOptimizer(learning_rate, initial_accumulator_value=0.1, use_locking=False, name="Adagrad"):  # noqa: N802
    """:class:`~flowlearn.core.optimizers.Adagrad` as TensorFlow 1 ran it: ``param -= lr * grad /
    sqrt(accum)`` with the accumulator starting at ``initial_accumulator_value`` (no epsilon)."""
    return _named(Adagrad(learning_rate, initial_accumulator_value=initial_accumulator_value, epsilon=0.0), name)


def RMSPropOptimizer(learning_rate, decay=0.9, momentum=0.0, epsilon=1e-10, use_locking=False,  # noqa: N802
                     centered=False, name="RMSProp"):
    """:class:`~flowlearn.core.optimizers.RMSProp` with TensorFlow 1's argument names (``decay`` is ``rho``)
    and defaults; epsilon sits inside the square root in both.

    One difference: TensorFlow 1 started the mean square at ones, flowlearn (as Keras) at zeros, so
    the first steps are larger here.
    """
    return _named(RMSProp(learning_rate, rho=decay, momentum=momentum, epsilon=epsilon, centered=centered), name)
