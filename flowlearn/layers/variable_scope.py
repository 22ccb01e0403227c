"""Variable scopes: where the functional forms (``layers.dense(x, ...)``) keep their weights.

A :class:`VariableStore` owns layers (and loose variables) by name. Inside
``with variable_scope(store):`` each functional call gets-or-creates its layer in the store, named
``dense``, ``dense_1``, ... in call order (the count restarts at each entry of the scope) or by an
explicit ``name=``. So a model function run again in a fresh ``with`` block finds the same layers in
the same order and reuses their weights, as ``tf.compat.v1.variable_scope`` with reuse does::

    store = fl.VariableStore()

    def model_fn(x):
        with fl.variable_scope(store):
            h = fl.layers.dense(x, 128, activation="relu")
            return fl.layers.dense(h, 10)

    model_fn(x1); model_fn(x2)   # the second call reuses dense/kernel, dense_1/kernel, ...
    optimizer.apply(store.trainable_variables)

Outside any scope, the functional forms that own weights raise RuntimeError rather than create
weights that nothing would keep or train; weightless forms (max_pooling2d, dropout, flatten) work
anywhere.
"""
import collections
import contextlib
import threading

import numpy

from ..core import backend, initializers
from ..core.config import floatx
from ..core.tensor import tensor
from . import regularizers, seeding


class VariableStore:
    """Layers and variables by scoped name, for model functions written with the functional forms.

    Parameters
    ----------
    seed : int, optional
        Draw every initial weight created in this store from one generator seeded with ``seed``
        (otherwise from the module generator, see :func:`flowlearn.layers.set_random_seed`).
    """

    def __init__(self, seed=None):
        self._layers = {}  # name -> (layer, creation arguments)
        self._variables = {}  # name -> (Tensor, regularizer) for get_variable
        self._rng = None if seed is None else numpy.random.default_rng(seed)

    def __repr__(self):
        return f"<VariableStore: {len(self._layers)} layers, {len(self.variables)} variables>"

    @property
    def layers(self):
        """The layers created in this store, in creation order."""
        return [layer for layer, _ in self._layers.values()]

    @property
    def variables(self):
        """Every variable: the layers' weights in creation order, then those from :func:`get_variable`."""
        return [w for layer in self.layers for w in layer.weights] + [w for w, _ in self._variables.values()]

    @property
    def trainable_variables(self):
        """The variables an optimizer updates."""
        loose = [w for w, _ in self._variables.values() if w.requires_grad]
        return [w for layer in self.layers for w in layer.trainable_weights] + loose

    @property
    def non_trainable_variables(self):
        """Variables kept but not optimised (batch-norm moving statistics, frozen layers)."""
        loose = [w for w, _ in self._variables.values() if not w.requires_grad]
        return [w for layer in self.layers for w in layer.non_trainable_weights] + loose

    def regularization_losses(self):
        """Penalty Tensors of every regularized variable, to add to the training loss."""
        losses = [penalty for layer in self.layers for penalty in layer.regularization_losses()]
        return losses + [reg(w) for w, reg in self._variables.values() if reg is not None]

    def get_weights(self):
        """``{name: numpy array}`` copies of every variable (a checkpoint's content)."""
        weights = {}
        for w in self.variables:
            array = backend.to_numpy(w.data)
            weights[w.name] = array.copy() if array is w.data else array
        return weights

    def set_weights(self, weights):
        """Overwrite variables in place from ``{name: array}``; names and shapes are checked first."""
        variables = {w.name: w for w in self.variables}
        unknown = sorted(set(weights) - set(variables))
        missing = sorted(set(variables) - set(weights))
        if unknown or missing:
            raise ValueError(
                f"VariableStore.set_weights: names do not match the store's variables; unknown: {unknown}, "
                f"missing: {missing}."
            )
        arrays = {name: numpy.asarray(backend.to_numpy(getattr(v, "data", v))) for name, v in weights.items()}
        for name, array in arrays.items():
            if array.shape != variables[name].shape:
                raise ValueError(
                    f"VariableStore.set_weights: variable {name!r} expected shape {variables[name].shape}; "
                    f"got {array.shape}."
                )
        for name, array in arrays.items():
            w = variables[name]
            w.assign(array)  # in place, bumping the version that recorded graphs check

    def _layer(self, name, cls, arguments):
        entry = self._layers.get(name)
        if entry is None:
            layer = cls(name=name, **arguments)
            layer._rng = self._rng
            self._layers[name] = (layer, _signature(arguments))
            return layer
        layer, signature = entry
        if type(layer) is not cls:
            raise ValueError(
                f"variable_scope: {name!r} already holds a {type(layer).__name__}; got a request for a "
                f"{cls.__name__}. Pass a different name= to create another layer."
            )
        requested = _signature(arguments)
        if requested != signature:
            old, new = dict(signature), dict(requested)
            changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
            was = ", ".join(f"{k}={old.get(k)!r}" for k in changed)
            now = ", ".join(f"{k}={new.get(k)!r}" for k in changed)
            raise ValueError(
                f"variable_scope: {name!r} already holds a {cls.__name__} created with {was}; got {now}. "
                "Pass a different name= to create another layer."
            )
        return layer


def _signature(arguments):
    """Creation arguments in a comparable form (initializer objects by class and config)."""
    def comparable(value):
        if hasattr(value, "get_config"):
            return type(value).__name__, repr(value.get_config())
        return value

    return tuple(sorted((k, comparable(v)) for k, v in arguments.items()))


class _Frame:
    """One entry of ``variable_scope``: the store, the name prefix and the names handed out so far."""

    __slots__ = ("store", "prefix", "counts", "claimed")

    def __init__(self, store, prefix):
        self.store = store
        self.prefix = prefix
        self.counts = collections.Counter()
        self.claimed = set()

    def layer_name(self, kind, name):
        if name is not None:
            full = self.prefix + name
        else:
            while True:
                count = self.counts[kind]
                self.counts[kind] += 1
                full = self.prefix + (kind if count == 0 else f"{kind}_{count}")
                if full not in self.claimed:
                    break
        self.claimed.add(full)
        return full


class _State(threading.local):
    def __init__(self):
        self.frames = []


_state = _State()


@contextlib.contextmanager
def variable_scope(store=None, name=None):
    """Context manager in which the functional forms get-or-create their layers in ``store``.

    Parameters
    ----------
    store : VariableStore, optional
        Defaults to the enclosing scope's store (required at the outermost level).
    name : str, optional
        Prefix for the names inside (``"encoder"`` gives ``encoder/dense/kernel``), nesting like
        ``tf.variable_scope``.

    >>> import numpy as np, flowlearn as fl
    >>> store = fl.VariableStore()
    >>> for _ in range(2):
    ...     with fl.variable_scope(store):
    ...         y = fl.layers.dense(np.ones((4, 3)), 2)
    >>> [w.name for w in store.variables]
    ['dense/kernel', 'dense/bias']
    """
    outer = _state.frames[-1] if _state.frames else None
    if store is None:
        if outer is None:
            raise TypeError("variable_scope: expected a VariableStore (no enclosing scope to take one from); got None.")
        store = outer.store
    if not isinstance(store, VariableStore):
        raise TypeError(f"variable_scope: expected a VariableStore; got {type(store).__name__}.")
    prefix = outer.prefix if outer is not None and outer.store is store else ""
    if name is not None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"variable_scope: expected `name` to be a non-empty string; got {name!r}.")
        prefix += name + "/"
    _state.frames.append(_Frame(store, prefix))
    try:
        yield store
    finally:
        _state.frames.pop()


def _current_frame(caller):
    if not _state.frames:
        raise RuntimeError(
            f"{caller} creates weights, so it must run inside `with fl.variable_scope(store):` (store = "
            "fl.VariableStore()); outside a scope its weights would be created afresh on every call and never "
            "trained. Use the layer classes (fl.layers.Dense, ...) to own weights without a scope."
        )
    return _state.frames[-1]


def scoped_layer(caller, kind, cls, name, arguments):
    """The layer of class ``cls`` for a functional call, got or created in the current scope."""
    frame = _current_frame(caller)
    return frame.store._layer(frame.layer_name(kind, name), cls, arguments)


def get_variable(name, shape, initializer="glorot_uniform", trainable=True, regularizer=None, dtype=None):
    """Get or create a variable named ``name`` (under the scope's prefix) in the current scope's store.

    A second call with the same name returns the same Tensor; its shape must match.

    >>> import flowlearn as fl
    >>> store = fl.VariableStore()
    >>> with fl.variable_scope(store):
    ...     w = fl.layers.get_variable("w", (3, 2))
    >>> with fl.variable_scope(store):
    ...     fl.layers.get_variable("w", (3, 2)) is w
    True
    """
    frame = _current_frame("get_variable")
    full = frame.prefix + name
    shape = tuple(int(d) for d in shape)
    store = frame.store
    if full in store._variables:
        variable = store._variables[full][0]
        if variable.shape != shape:
            raise ValueError(f"get_variable: {full!r} exists with shape {variable.shape}; got shape {shape}.")
        return variable
    dtype = numpy.dtype(dtype or floatx())
    rng = store._rng if store._rng is not None else seeding.weights_rng()
    array = initializers.get(initializer)(shape, dtype=dtype.name, rng=rng)
    variable = tensor(array, requires_grad=trainable, dtype=dtype, name=full)
    store._variables[full] = (variable, regularizers.get(regularizer))
    return variable
