"""Variable scopes: where the functional forms (``layers.dense(x, ...)``) keep their weights.

A :class:`VariableStore` owns layers, loose variables, the optimizers' state (:attr:`VariableStore.slots`)
and the global step by name. Inside ``with variable_scope(store):`` each functional call gets-or-creates
its layer in the store, named ``dense``, ``dense_1``, ... in call order (the count restarts at each entry
of a scope) or by an explicit ``name=``. ``variable_scope("encoder")`` takes the store of the enclosing
scope and prefixes names (``encoder/dense/kernel``), as ``tf.compat.v1.variable_scope`` does.

Every outermost entry of ``variable_scope(store)`` is one *run* of a model function. Within a run
names follow tf.layers: a second layer (or :func:`get_variable`) claiming a name already used in the
same run raises ValueError unless the scope says ``reuse=True`` (share what exists, and only that) or
``reuse=fl.AUTO_REUSE`` (share or create). Across runs names are found again, so a model function
run once per batch, in a fresh ``with`` block each time, trains the same weights::

    store = fl.VariableStore()

    def model_fn(x):
        with fl.variable_scope(store):
            h = fl.layers.dense(x, 128, activation="relu")
            return fl.layers.dense(h, 10)

    model_fn(x1); model_fn(x2)   # the second call reuses dense/kernel, dense_1/kernel, ...

While a scope is active, ``optimizer.minimize(loss)`` updates the store's trainable variables and keeps
its moments in the store, so an optimizer created afresh inside each run continues where the last left.

Outside any scope, the functional forms that own weights raise RuntimeError rather than create
weights that nothing would keep or train; weightless forms (max_pooling2d, dropout, flatten) work
anywhere.
"""
import contextlib
import threading

import numpy

from ..core import backend, initializers
from ..core.config import floatx
from ..core.optimizers.optimizer import pop_state_holder, push_state_holder
from ..core.tensor import tensor
from . import regularizers, seeding


class _AutoReuse:
    """The ``reuse=AUTO_REUSE`` setting: get a variable that exists, create one that does not."""

    __slots__ = ()

    def __repr__(self):
        return "AUTO_REUSE"

    def __reduce__(self):
        return "AUTO_REUSE"


AUTO_REUSE = _AutoReuse()

GLOBAL_STEP_NAME = "global_step"


class VariableStore:
    """Layers and variables by scoped name, for model functions written with the functional forms.

    Parameters
    ----------
    seed : int, optional
        Draw every initial weight created in this store from one generator seeded with ``seed``
        (otherwise from the module generator, see :func:`flowlearn.layers.set_random_seed`).

    Attributes
    ----------
    slots : dict
        The optimizers' state, ``{name: array}``: ``"<variable>/<optimizer>/<slot>"`` for per-variable
        arrays (``"dense/kernel/Adam/m"``) and ``"<optimizer>/iterations"`` (an int64 scalar array) for
        the step count. ``Optimizer.minimize`` inside a scope of this store reads and writes it, so a
        checkpoint of :meth:`get_weights` plus ``slots`` is everything training needs to resume.
    """

    def __init__(self, seed=None):
        self._layers = {}  # name -> (layer, creation arguments)
        self._variables = {}  # name -> (Tensor, regularizer) for get_variable (and the global step)
        self._rng = None if seed is None else numpy.random.default_rng(seed)
        self.slots = {}
        self._trainable_cache = None  # (key, list): see trainable_variables

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
        """The variables an optimizer updates (a new list each time)."""
        # minimize() asks for this list at every step of a model_fn, and a layer's trainable_weights
        # walks its attributes for sub-layers (several microseconds a layer). The list is kept while
        # nothing it depends on changed: the layers and loose variables (the store only ever adds),
        # each layer's weights and trainable flag, each loose variable's requires_grad, and each
        # layer's attribute count (a sub-layer assigned later); a store with a layer that holds other
        # layers is walked every time.
        key = (tuple([(layer._trainable, len(layer._weights), len(layer.__dict__))
                      for layer, _ in self._layers.values()]),
               tuple([w.requires_grad for w, _ in self._variables.values()]))
        cache = self._trainable_cache
        if cache is not None and cache[0] == key and cache[1] is not None:
            return list(cache[1])
        layers = self.layers
        loose = [w for w, _ in self._variables.values() if w.requires_grad]
        variables = [w for layer in layers for w in layer.trainable_weights] + loose
        if cache is not None and cache[0] == key:  # known to hold a layer of layers
            return variables
        flat = all(len(list(layer._walk())) == 1 for layer in layers)
        self._trainable_cache = (key, list(variables) if flat else None)
        return variables

    @property
    def non_trainable_variables(self):
        """Variables kept but not optimised (batch-norm moving statistics, frozen layers, the global step)."""
        loose = [w for w, _ in self._variables.values() if not w.requires_grad]
        return [w for layer in self.layers for w in layer.non_trainable_weights] + loose

    @property
    def global_step(self):
        """The int64 scalar Tensor ``"global_step"`` (see :func:`flowlearn.train.create_global_step`), or None."""
        entry = self._variables.get(GLOBAL_STEP_NAME)
        return None if entry is None else entry[0]

    def create_global_step(self):
        """Create the store's ``"global_step"``: an int64 scalar Tensor at 0, not trainable.

        Raises ValueError when it exists (:attr:`global_step` returns it).
        """
        if GLOBAL_STEP_NAME in self._variables:
            raise ValueError(f"create_global_step: {GLOBAL_STEP_NAME!r} already exists in this VariableStore; "
                             "use get_global_step() or get_or_create_global_step().")
        step = tensor(numpy.zeros((), numpy.int64), name=GLOBAL_STEP_NAME)
        self._variables[GLOBAL_STEP_NAME] = (step, None)
        return step

    def regularization_losses(self):
        """Penalty Tensors of every regularized variable, to add to the training loss."""
        losses = [penalty for layer in self.layers for penalty in layer.regularization_losses()]
        return losses + [reg(w) for w, reg in self._variables.values() if reg is not None]

    def get_weights(self):
        """``{name: numpy array}`` copies of every variable (a checkpoint's content, slots aside)."""
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

    def _layer(self, frame, name, cls, arguments):
        entry = self._layers.get(name)
        frame.claim(name, entry is not None, lambda: _first_variable(entry[0], name))
        if entry is None:
            layer = cls(name=name, **arguments)
            layer._rng = self._rng
            layer._scope_arguments = arguments
            self._layers[name] = (layer, _signature(arguments))
            return layer
        layer, signature = entry
        if type(layer) is not cls:
            raise ValueError(
                f"variable_scope: {name!r} already holds a {type(layer).__name__}; got a request for a "
                f"{cls.__name__}. Pass a different name= to create another layer."
            )
        # Equal plain arguments were settled by the fast path of scoped_layer, the only caller; here
        # they differ by ==, or are objects (a fresh initializer) that only their configs can compare.
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


def _first_variable(layer, name):
    """How an error names an existing layer: by its first variable, as TensorFlow named variables."""
    weights = layer.weights
    return weights[0].name if weights else name


def _signature(arguments):
    """Creation arguments in a comparable form (initializer objects by class and config)."""
    def comparable(value):
        if hasattr(value, "get_config"):
            return type(value).__name__, repr(value.get_config())
        return value

    return tuple(sorted((k, comparable(v)) for k, v in arguments.items()))


class _Frame:
    """One entry of ``variable_scope``: the store, the name prefix, the reuse mode and the names handed out.

    ``run`` is the set of names claimed since the outermost entry of this store's scope (one run of a
    model function), shared by the nested entries; ``claimed`` holds those of this entry alone, which
    automatic names skip.
    """

    __slots__ = ("store", "prefix", "reuse", "run", "counts", "claimed")

    def __init__(self, store, prefix, reuse, run):
        self.store = store
        self.prefix = prefix
        self.reuse = reuse
        self.run = run
        self.counts = {}
        self.claimed = set()

    def layer_name(self, kind, name):
        if name is not None:
            return self.prefix + name
        counts = self.counts
        while True:
            count = counts.get(kind, 0)
            counts[kind] = count + 1
            full = self.prefix + (kind if count == 0 else f"{kind}_{count}")
            if full not in self.claimed:
                return full

    def claim(self, full, exists, describe, missing=None):
        """Apply the reuse rules to ``full`` (a layer or variable name).

        ``describe()`` names an existing one in errors, ``missing`` a missing one (default: any variable
        under the layer's name).
        """
        reuse = self.reuse
        if reuse is True:
            if not exists:
                raise ValueError(
                    f"Variable {missing or full + '/...'} does not exist: variable_scope(reuse=True) shares "
                    "variables created before and creates none. Pass reuse=fl.AUTO_REUSE to create what is "
                    "missing, or leave reuse unset."
                )
        elif reuse is not AUTO_REUSE and full in self.run:
            raise ValueError(
                f"Variable {describe()} already exists in this run of the scope; pass reuse=True or "
                "reuse=fl.AUTO_REUSE to variable_scope to share it, or give the layer another name=."
            )
        self.run.add(full)
        self.claimed.add(full)


class _State(threading.local):
    def __init__(self):
        self.frames = []


_state = _State()


def _check_reuse(reuse):
    if reuse is None or reuse is False:
        return None  # as in TensorFlow 1: both inherit the enclosing scope's mode
    if reuse is True or reuse is AUTO_REUSE:
        return reuse
    raise ValueError(f"variable_scope: expected `reuse` to be None, True, False or fl.AUTO_REUSE; got reuse={reuse!r}.")


def variable_scope(name_or_scope=None, reuse=None, store=None, name=None):
    """Context manager in which the functional forms get-or-create their layers in a :class:`VariableStore`.

    Parameters
    ----------
    name_or_scope : str or VariableStore, optional
        A name prefixing the names inside (``"encoder"`` gives ``encoder/dense/kernel``), nesting like
        ``tf.compat.v1.variable_scope``; or the store itself (the older ``variable_scope(store)`` form).
    reuse : {None, True, fl.AUTO_REUSE}, optional
        None (or False) inherits the enclosing scope's mode; creating a name already claimed in this run
        then raises ValueError. True shares existing variables and raises for missing ones;
        ``fl.AUTO_REUSE`` shares or creates. True and AUTO_REUSE hold for nested scopes too.
    store : VariableStore, optional
        Defaults to the enclosing scope's store (required at the outermost level; an Estimator's
        model_fn runs inside one). An outermost entry, or one with another store, starts a new run.
    name : str, optional
        The prefix, when the store is given first (``variable_scope(store, name="encoder")``).

    Yields the store.

    >>> import numpy as np, flowlearn as fl
    >>> store = fl.VariableStore()
    >>> for _ in range(2):                       # two runs: the second finds the first's weights
    ...     with fl.variable_scope(store):
    ...         with fl.variable_scope("encoder"):
    ...             y = fl.layers.dense(np.ones((4, 3)), 2)
    >>> [w.name for w in store.variables]
    ['encoder/dense/kernel', 'encoder/dense/bias']
    """
    return _ScopeEntry(name_or_scope, reuse, store, name)


class _ScopeEntry(contextlib.ContextDecorator):
    """What :func:`variable_scope` returns: the arguments are checked and the frame pushed on entry.

    A small class rather than a generator-based context manager: an Estimator enters one per batch.
    """

    __slots__ = ("_arguments",)

    def __init__(self, *arguments):
        self._arguments = arguments

    def __enter__(self):
        return self._enter(*self._arguments)

    def __exit__(self, *exc):
        pop_state_holder()
        _state.frames.pop()

    @staticmethod
    def _enter(name_or_scope, reuse, store, name):
        if isinstance(name_or_scope, VariableStore):
            if store is not None and store is not name_or_scope:
                raise ValueError("variable_scope: got two different VariableStores (first argument and store=).")
            store = name_or_scope
        elif isinstance(name_or_scope, str):
            if name is not None:
                raise TypeError(
                    f"variable_scope: got a name twice: {name_or_scope!r} as the first argument and name={name!r}."
                )
            name = name_or_scope
        elif name_or_scope is not None:
            raise TypeError(
                "variable_scope: expected a scope name (str) or a VariableStore as the first argument; got "
                f"{type(name_or_scope).__name__}."
            )
        reuse = _check_reuse(reuse)
        outer = _state.frames[-1] if _state.frames else None
        if store is None:
            if outer is None:
                raise TypeError(
                    "variable_scope: expected a VariableStore (no enclosing scope to take one from); got None. "
                    "Pass store=fl.VariableStore() at the outermost level."
                )
            store = outer.store
        if not isinstance(store, VariableStore):
            raise TypeError(f"variable_scope: expected a VariableStore as `store`; got {type(store).__name__}.")
        same_run = outer is not None and outer.store is store
        prefix = outer.prefix if same_run else ""
        if name is not None:
            if not isinstance(name, str) or not name:
                raise ValueError(f"variable_scope: expected `name` to be a non-empty string; got {name!r}.")
            prefix += name + "/"
        if reuse is None and same_run:
            reuse = outer.reuse
        _state.frames.append(_Frame(store, prefix, reuse, outer.run if same_run else set()))
        push_state_holder(store)  # where Optimizer.minimize finds the variables and keeps its slots
        return store


class VariableScope:
    """A view of the innermost active scope (:func:`get_variable_scope`), as TensorFlow 1 gave one.

    Attributes
    ----------
    name : str
        The prefix without its trailing slash (``"encoder/inner"``; ``""`` at the top).
    reuse : None, True or AUTO_REUSE
    store : VariableStore
    """

    __slots__ = ("_frame",)

    def __init__(self, frame):
        self._frame = frame

    @property
    def name(self):
        return self._frame.prefix[:-1]

    @property
    def reuse(self):
        return self._frame.reuse

    @property
    def store(self):
        return self._frame.store

    def reuse_variables(self):
        """Share existing variables from here to the end of this scope entry (``reuse=True``), as in TF 1."""
        self._frame.reuse = True

    def __repr__(self):
        return f"<VariableScope name={self.name!r} reuse={self.reuse!r}>"


def get_variable_scope():
    """The innermost active scope as a :class:`VariableScope`; RuntimeError outside every scope.

    TensorFlow 1's GAN idiom works: after the first tower, ``fl.get_variable_scope().reuse_variables()``
    makes the rest of the scope share the weights.

    >>> import numpy as np, flowlearn as fl
    >>> with fl.variable_scope(fl.VariableStore()):
    ...     with fl.variable_scope("tower"):
    ...         a = fl.layers.dense(np.ones((2, 3)), 4)
    ...         fl.get_variable_scope().reuse_variables()
    ...         b = fl.layers.dense(np.ones((2, 3)), 4, name="dense")
    ...         fl.get_variable_scope()
    <VariableScope name='tower' reuse=True>
    """
    return VariableScope(_current_frame("get_variable_scope"))


def current_store():
    """The VariableStore of the innermost active scope, or None outside every scope."""
    return _state.frames[-1].store if _state.frames else None


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
    frames = _state.frames
    frame = frames[-1] if frames else _current_frame(caller)
    full = frame.layer_name(kind, name)
    store = frame.store
    # A model_fn run once per batch finds every layer again, unclaimed in this run, of the same class and
    # with equal plain arguments: that case is settled here in a few lookups (it runs for every layer at
    # every step). Anything else (a new layer, a name already used in this run, another class or changed
    # arguments) takes VariableStore._layer, which applies the reuse rules and raises their errors.
    entry = store._layers.get(full)
    if entry is not None:
        layer = entry[0]
        run = frame.run
        reuse = frame.reuse
        if type(layer) is cls and (reuse is not None or full not in run):
            try:
                same = layer._scope_arguments == arguments
            except Exception:  # an argument whose == is not a bool (an array): _layer compares signatures
                same = False
            if same is True:
                run.add(full)
                frame.claimed.add(full)
                return layer
    return store._layer(frame, full, cls, arguments)


def get_variable(name, shape, initializer="glorot_uniform", trainable=True, regularizer=None, dtype=None):
    """Get or create a variable named ``name`` (under the scope's prefix) in the current scope's store.

    The reuse rules of :func:`variable_scope` apply: a second call with the same name in one run raises
    unless the scope says ``reuse=``; a later run gets the same Tensor. Its shape must match.

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
    frame.claim(full, full in store._variables, lambda: full, missing=full)
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
