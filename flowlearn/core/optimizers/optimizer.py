"""The base class of every optimizer: learning rate, clipping, per-parameter slots, state and config.

A subclass names its slots (``_slot_names``), turns the learning rate and the step number into a
few scalars once per step (``_prepare``), and updates one parameter in place (``_update``) with a
handful of ufuncs writing into the parameter, its slots or one scratch buffer.

:meth:`Optimizer.minimize` may keep that state outside the optimizer object: a *state holder*
(anything with a ``slots`` dict and a ``trainable_variables`` list; ``flowlearn.layers.VariableStore``
is one, made current by ``variable_scope``) registered with :func:`push_state_holder` supplies the
default ``var_list`` and stores the slots by variable name, so that a fresh optimizer created on every
run of a model function continues the same moments and step count. The core knows holders only by
that protocol: it never imports the layers. Scratch arrays and slot names are kept per holder (and
dropped with it), so such a fresh optimizer allocates nothing and sets up no per-parameter state.
"""
import numbers
import threading
import weakref

import numpy

from .. import backend
from ..config import is_grad_enabled
from ..distribution import current_strategy
from ..parallel import parallel_slices
from ..serialization import Registry, Serializable
from ..tensor import Tensor
from . import schedules
from ._checks import check_optional_positive, check_real


# Smallest slice of a parameter worth a thread of its own for the element-wise update.
_SLICE_ELEMENTS = 1 << 18


class _Holders(threading.local):
    def __init__(self):
        self.stack = []


_holders = _Holders()


def push_state_holder(holder):
    """Make ``holder`` (``slots`` dict, ``trainable_variables``) the one :meth:`Optimizer.minimize` uses.

    Pair every push with :func:`pop_state_holder` (``variable_scope`` does both). Per thread.
    """
    _holders.stack.append(holder)


def pop_state_holder():
    """Undo the latest :func:`push_state_holder` of this thread."""
    _holders.stack.pop()


def current_state_holder():
    """The innermost state holder of this thread, or None."""
    stack = _holders.stack
    return stack[-1] if stack else None


class _HolderCache:
    """What optimizers keep per state holder besides its slots: scratch arrays (by array module and
    dtype, grown to the largest parameter) and the slots' names in the holder, ``keys[optimizer name,
    slot names][variable name]``."""

    __slots__ = ("buffers", "keys")

    def __init__(self):
        self.buffers = {}
        self.keys = {}


_holder_caches = weakref.WeakKeyDictionary()


def _holder_cache(holder):
    """The :class:`_HolderCache` of ``holder``: dropped with the holder; a fresh one for a holder that
    cannot be weakly referenced."""
    try:
        cache = _holder_caches.get(holder)
        if cache is None:
            cache = _holder_caches[holder] = _HolderCache()
    except TypeError:
        cache = _HolderCache()
    return cache


class TrainOp:
    """What :meth:`Optimizer.minimize` returns: the record of one update that has already run.

    flowlearn runs eagerly, so there is nothing left to execute; the object marks that a training step
    happened (``EstimatorSpec(train_op=...)``) and carries what it did.

    Attributes
    ----------
    loss : Tensor
        The loss that was minimised.
    optimizer : Optimizer
    global_step : int or None
        The global step's value after the increment, when one was given and the update applied.
    applied : bool
        False when minimize ran inside a variable scope under ``no_grad()`` (an Estimator's EVAL or
        PREDICT run of a model_fn that builds its train_op unconditionally) and so updated nothing.
    """

    __slots__ = ("loss", "optimizer", "global_step", "applied")

    def __init__(self, loss, optimizer, global_step=None, applied=True):
        self.loss = loss
        self.optimizer = optimizer
        self.global_step = global_step
        self.applied = applied

    def __repr__(self):
        step = "" if self.global_step is None else f", global_step={self.global_step}"
        skipped = "" if self.applied else ", not applied"
        return f"<TrainOp {type(self.optimizer).__name__}{step}{skipped}>"


class Optimizer(Serializable):
    """Updates Tensors in place from their ``.grad``.

    Parameters
    ----------
    learning_rate : float or LearningRateSchedule
        A non-negative float, or a schedule called with :attr:`iterations` at every step.
        Settable at any time (callbacks such as ReduceLROnPlateau do): ``opt.learning_rate = 1e-4``.
    clipnorm : float, optional
        Rescale each parameter's gradient so that its L2 norm is at most this.
    clipvalue : float, optional
        Clip each gradient element to ``[-clipvalue, clipvalue]``.
    global_clipnorm : float, optional
        Rescale all gradients together so that their joint L2 norm is at most this.
        At most one of the three clipping arguments may be set (as in Keras).
    weight_decay : float, optional
        Decoupled weight decay (Keras 3 semantics): ``param *= 1 - lr * weight_decay`` before the
        update, for any optimizer. This is PyTorch's AdamW decay; PyTorch's ``weight_decay`` of
        SGD/Adam/RMSprop/Adagrad instead adds ``weight_decay * param`` to the gradient.

    Notes
    -----
    State is kept per parameter object (lazily created at the first step where the parameter has a
    gradient) and dropped when the parameter is garbage-collected. Gradients are never written to
    (``.grad`` may be an array the caller set and still uses), so clipping makes scaled copies. A
    gradient of another dtype is cast to the parameter's dtype; a float32 parameter stays float32
    and keeps its array (``param.data`` is updated in place).

    Every update bumps the parameter's version: a graph recorded before :meth:`step` that needs
    the old values raises on ``backward()`` instead of giving a wrong gradient.
    """

    # Slots of the last step's parameters kept outside this object (in a state holder), by id(param);
    # replaced, never mutated, so one empty dict serves every instance.
    _held_slots = _NO_SLOTS = {}
    # (held slots, scratch buffers) of the state holder that minimize is stepping in, else None.
    _holder_step = None

    # Names for get(): the class names and the short ones, in any case, with or without underscores.
    registry = Registry("optimizer", fold=lambda name: name.lower().replace("_", ""))

    # True when ``_update`` treats every element on its own (no norms or sums over the parameter),
    # so that a large parameter may be updated in slices on several threads. A subclass opts in.
    elementwise_update = False

    def __init__(self, learning_rate, clipnorm=None, clipvalue=None, global_clipnorm=None, weight_decay=None):
        owner = type(self).__name__
        self.learning_rate = learning_rate
        self.clipnorm = check_optional_positive(owner, "clipnorm", clipnorm)
        self.clipvalue = check_optional_positive(owner, "clipvalue", clipvalue)
        self.global_clipnorm = check_optional_positive(owner, "global_clipnorm", global_clipnorm)
        if (clipnorm is not None) + (clipvalue is not None) + (global_clipnorm is not None) > 1:
            raise ValueError(
                f"{owner}: only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. "
                f"Received: clipnorm={clipnorm}, clipvalue={clipvalue}, global_clipnorm={global_clipnorm}"
            )
        self.weight_decay = check_optional_positive(owner, "weight_decay", weight_decay)
        self.iterations = 0
        # Prefix of the slots kept in a state holder ("dense/kernel/Adam/m"); fl.train's TF-style
        # factories set TensorFlow's names ("GradientDescent"); two optimizers of one class training
        # different variables in one store need different names to count their steps apart.
        self.name = type(self).__name__
        self._state = {}  # id(param) -> (weakref to param, {slot name: array})
        self._last_params = []
        self._buffers = {}  # (array module, dtype) -> flat scratch array, grown to the largest parameter

    # -- learning rate ---------------------------------------------------------------------------
    @property
    def learning_rate(self):
        """The learning rate as set: a float or a schedule (see :attr:`current_learning_rate`)."""
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        owner = type(self).__name__
        # A float first, before the slower abstract-class check: a model_fn creates an optimizer every step.
        if type(value) is float or (isinstance(value, numbers.Real) and not isinstance(value, bool)):
            value = check_real(owner, "learning_rate", value, 0.0)
        elif isinstance(value, dict):
            value = schedules.deserialize(value)
        elif not callable(value):
            raise TypeError(
                f"{owner}: expected a non-negative float or a learning-rate schedule for `learning_rate`; "
                f"got learning_rate={value!r} ({type(value).__name__})."
            )
        self._learning_rate = value

    @property
    def current_learning_rate(self):
        """The learning rate the next step uses, as a float (a schedule evaluated at :attr:`iterations`)."""
        rate = self._learning_rate
        return rate if type(rate) is float else float(rate(self.iterations))

    # -- the update ------------------------------------------------------------------------------
    def step(self, params):
        """Update every Tensor of ``params`` that has a ``.grad`` (the others are skipped).

        >>> import flowlearn as fl
        >>> from flowlearn.core.optimizers import SGD
        >>> w = fl.tensor([1.0, 2.0], requires_grad=True)
        >>> w.grad = fl.tensor([0.5, -0.5]).data
        >>> SGD(learning_rate=0.1).step([w])
        >>> w
        tensor([0.95, 2.05], dtype=float32, requires_grad=True)
        """
        params = self._param_list(params)
        strategy = current_strategy()
        if strategy is not None:
            # Data-parallel training: every process's gradients are replaced by their average over all
            # processes here, the one place every update (fit, minimize, apply_gradients) goes through.
            strategy.reduce_gradients(params)
        holder_step = self._holder_step  # set by _step_in while minimize runs inside a scope
        if holder_step is None:
            self._run_step(params, None, self._buffers)
        else:
            self._run_step(params, *holder_step)

    def _run_step(self, params, held, buffers):
        """:meth:`step` on a checked list; ``held`` maps ``id(param)`` to slots kept elsewhere (a state
        holder's), which the other parameters keep in this object; scratch arrays come from ``buffers``."""
        updates = []
        for index, param in enumerate(params):
            grad = param.grad
            if grad is None:
                continue
            if isinstance(grad, Tensor):
                grad = grad.data
            data = param.data
            if grad.dtype != data.dtype:
                grad = grad.astype(data.dtype)
            if grad.shape != data.shape:
                raise ValueError(
                    f"{type(self).__name__}.step: parameter {index} ({param.name or 'unnamed'}) has shape "
                    f"{data.shape} but its gradient has shape {grad.shape}."
                )
            updates.append((param, grad))
        if updates and (self.clipnorm or self.clipvalue or self.global_clipnorm):
            updates = self._clip(updates)
        lr = self.current_learning_rate
        constants = self._prepare(lr, self.iterations + 1)
        decay = 1.0 - lr * self.weight_decay if self.weight_decay else None
        for param, grad in updates:
            data = param.data
            xp = backend.array_module(data)
            param._bump_version()  # graphs recorded before this update can no longer use its values
            if decay is not None:
                data *= decay
            slots = None if held is None else held.get(id(param))
            if slots is None:
                slots = self._slots_for(param, data)
            else:
                self._complete_slots(param, data, slots)
            tmp = self._scratch(xp, data, buffers)
            if xp is numpy and self.elementwise_update and data.size >= 2 * _SLICE_ELEMENTS:
                self._update_in_slices(data, grad, slots, tmp, constants)
            else:
                self._update(xp, data, grad, slots, tmp, constants)
        self._last_params = params
        self._held_slots = Optimizer._NO_SLOTS if held is None else held
        self.iterations += 1

    def _update_in_slices(self, data, grad, slots, tmp, constants):
        """:meth:`_update` over slices of the flattened arrays, one per thread.

        Every update is element-wise, and a large parameter's update is a dozen memory-bound
        passes (7 ms for Adam on 3.2 M floats): each thread runs them all on its own slice.
        """
        arrays = [data, tmp, *slots.values()]
        if not all(array.flags.c_contiguous for array in arrays):
            self._update(numpy, data, grad, slots, tmp, constants)
            return
        flat_grad = numpy.ascontiguousarray(grad).reshape(-1)
        flat = [array.reshape(-1) for array in arrays]
        names = list(slots)

        def work(start, stop):
            part = [array[start:stop] for array in flat]
            self._update(numpy, part[0], flat_grad[start:stop], dict(zip(names, part[2:])), part[1], constants)

        parallel_slices(data.size, work, grain=_SLICE_ELEMENTS)

    def zero_grad(self, params):
        """Set ``.grad`` of every parameter to None."""
        for param in self._param_list(params):
            param.grad = None

    def minimize(self, loss, var_list=None, global_step=None):
        """One training step: clear the gradients, back-propagate ``loss``, :meth:`step`, count it.

        Parameters
        ----------
        loss : Tensor or callable
            A scalar Tensor, or a function of no arguments that computes one (called here).
        var_list : iterable of Tensors, optional
            The variables to update (the older name of this argument is ``params``; it may be given
            by position). Defaults to the trainable variables of the current state holder: inside
            ``fl.variable_scope`` (and so inside an Estimator's model_fn), those of its VariableStore.
        global_step : Tensor, optional
            An integer scalar Tensor (``fl.train.get_global_step()``) incremented by one, in place.

        Returns
        -------
        TrainOp
            Marks the update (already applied); ``.loss`` is ``loss``.

        Inside a variable scope under ``no_grad()`` (how an Estimator runs a model_fn in EVAL and PREDICT
        mode) nothing is computed or updated and the TrainOp says ``applied=False``: a model_fn may build
        its train_op in every mode, as TensorFlow's examples do.

        Inside a variable scope the optimizer's slots and step count live in the store's ``slots``
        under the variables' names, not in this object, so a new optimizer created on every call of
        a model function continues exactly where the previous one stopped.

        >>> import flowlearn as fl
        >>> from flowlearn.core.optimizers import SGD
        >>> w = fl.tensor([1.0, 2.0], requires_grad=True)
        >>> SGD(learning_rate=0.1).minimize((w * w).sum(), [w]).loss.item()
        5.0
        >>> w
        tensor([0.8, 1.6], dtype=float32, requires_grad=True)
        """
        owner = f"{type(self).__name__}.minimize"
        holder = current_state_holder()
        params = self._var_list(owner, holder, var_list)
        _check_global_step(owner, global_step)
        loss = _check_loss(owner, loss)
        if holder is not None and not is_grad_enabled():
            # A model_fn written for tf.estimator builds its train_op in every mode, and TensorFlow ran it
            # in TRAIN only; the Estimator runs EVAL and PREDICT under no_grad, where there is nothing to
            # differentiate: no update, no step. (Outside a scope, backward's own error still says why.)
            return TrainOp(loss, self, None, applied=False)
        for param in params:  # checked by _var_list already: zero_grad would check them again
            param.grad = None
        loss.backward()
        return self._apply(holder, params, global_step, loss)

    def compute_gradients(self, loss, var_list=None):
        """The first half of :meth:`minimize`, as TensorFlow 1 split it: ``[(gradient, variable), ...]``.

        Gradients are Tensors (None for a variable ``loss`` does not depend on), to transform with
        flowlearn ops (clipping, noise) before :meth:`apply_gradients`. ``var_list`` as in minimize.
        Inside a variable scope under ``no_grad()`` every gradient is None.

        >>> import flowlearn as fl
        >>> from flowlearn.core.optimizers import SGD
        >>> w = fl.tensor([1.0, -3.0], requires_grad=True)
        >>> opt = SGD(learning_rate=0.1)
        >>> pairs = opt.compute_gradients((w * w).sum(), [w])
        >>> op = opt.apply_gradients([(fl.ops.clip(g, -1.0, 1.0), v) for g, v in pairs])
        >>> w
        tensor([ 0.9, -2.9], dtype=float32, requires_grad=True)
        """
        owner = f"{type(self).__name__}.compute_gradients"
        holder = current_state_holder()
        params = self._var_list(owner, holder, var_list)
        loss = _check_loss(owner, loss)
        if holder is not None and not is_grad_enabled():
            return [(None, param) for param in params]
        for param in params:  # checked by _var_list already: zero_grad would check them again
            param.grad = None
        loss.backward()
        return [(None if param.grad is None else Tensor(param.grad), param) for param in params]

    def apply_gradients(self, grads_and_vars, global_step=None):
        """The second half of :meth:`minimize`: update each variable from its gradient (None: skipped).

        Gradients may be Tensors or arrays of the variable's shape; they become the variables' ``.grad``.
        The slots live in the current store as in minimize; ``global_step`` is incremented by one.
        Returns a :class:`TrainOp` (``loss`` None).
        """
        owner = f"{type(self).__name__}.apply_gradients"
        _check_global_step(owner, global_step)
        holder = current_state_holder()
        pairs = list(grads_and_vars)
        params = self._param_list([var for _, var in pairs])
        if holder is not None and not is_grad_enabled():
            return TrainOp(None, self, None, applied=False)
        grads = [grad.data if isinstance(grad, Tensor) else grad for grad, _ in pairs]
        for index, grad in enumerate(grads):
            if grad is not None and not (hasattr(grad, "dtype") and hasattr(grad, "shape")):
                raise TypeError(
                    f"{owner}: expected a Tensor, an array or None as the gradient of pair {index}; "
                    f"got {type(grad).__name__}."
                )
        for grad, param in zip(grads, params):
            param.grad = grad
        return self._apply(holder, params, global_step, None)

    def _var_list(self, owner, holder, var_list):
        if var_list is None:
            if holder is None:
                raise ValueError(
                    f"{owner}: no `var_list` given and no variable store is active to take the trainable "
                    "variables from; pass var_list=[...] or call it inside `with fl.variable_scope(...)` "
                    "(an Estimator's model_fn runs inside one)."
                )
            var_list = holder.trainable_variables
        elif isinstance(var_list, Tensor) and var_list.dtype.kind in "iu" and var_list.ndim == 0:
            raise TypeError(
                f"{owner}: expected Tensors to update as `var_list` (the second argument); got the integer "
                f"scalar {var_list._describe()}. Pass the global step by keyword: minimize(loss, "
                "global_step=...)."
            )
        return self._param_list(var_list)

    def _apply(self, holder, params, global_step, loss):
        if holder is None:
            self.step(params)
        else:
            self._step_in(holder, params)
        step = None
        if global_step is not None:
            data = global_step.data
            if global_step._node is None and type(data) is numpy.ndarray and data.flags.writeable:
                # What assign(data + 1) does for the usual int64 leaf, without its checks and new array:
                # this runs every training step.
                data += 1
                global_step._bump_version()
            else:
                global_step.assign(data + 1)  # in place: the version counter records the write
            step = int(data)
        return TrainOp(loss, self, step)

    def _step_in(self, holder, params):
        """:meth:`step` with the slots and the step count read from, and written back to, ``holder.slots``.

        The arrays are shared, not copied: the update writes into the store's own arrays; new slots
        (first step) and moved ones (device change) are put back after the step. Unnamed parameters
        keep their state in this object. Scratch arrays and slot names are kept per holder
        (:func:`_holder_cache`), so that an optimizer created afresh for every step allocates nothing.
        """
        store = holder.slots
        cache = _holder_cache(holder)
        prefix = self.name
        count_key = prefix + "/iterations"
        count = store.get(count_key)
        self.iterations = 0 if count is None else int(count)
        names = self._slot_names()
        keys_of = cache.keys.get((prefix, names))
        if keys_of is None:
            keys_of = cache.keys[prefix, names] = {}
        held = {}  # id(param) -> its slots, shared with the store
        named = []
        seen = set()
        for param in params:
            name = param.name
            if not name or param.grad is None:
                continue
            if name in seen:
                raise ValueError(
                    f"{type(self).__name__}.minimize: two variables of `var_list` are named {name!r}; "
                    "inside a variable scope the optimizer keeps its slots by variable name, so names must be "
                    "unique (pass distinct name= to the tensors)."
                )
            seen.add(name)
            keys = keys_of.get(name)
            if keys is None:
                keys = keys_of[name] = tuple(f"{name}/{prefix}/{slot}" for slot in names)
            slots = {}  # the store is the state: what it lacks starts afresh
            for slot, key in zip(names, keys):
                array = store.get(key)
                if array is not None:
                    slots[slot] = array
            held[id(param)] = slots
            named.append((slots, keys))
        # Through step(), so that a subclass overriding it is still called inside a scope.
        self._holder_step = (held, cache.buffers)
        try:
            self.step(params)
        finally:
            self._holder_step = None
        for slots, keys in named:
            for slot, key in zip(names, keys):
                store[key] = slots[slot]
        store[count_key] = numpy.array(self.iterations, dtype=numpy.int64)

    # -- what subclasses define ------------------------------------------------------------------
    def _slot_names(self):
        """Names of the per-parameter arrays this optimizer keeps, given its hyperparameters."""
        return ()

    def _initial_slot_value(self, name):
        return 0.0

    def _prepare(self, lr, t):
        """Scalars shared by every parameter of step ``t`` (1 for the first step)."""
        return lr

    def _update(self, xp, param, grad, slots, tmp, constants):
        """Update the array ``param`` in place; ``tmp`` is scratch of its shape and dtype."""
        raise NotImplementedError(f"{type(self).__name__} does not define _update.")

    # -- helpers ---------------------------------------------------------------------------------
    def _param_list(self, params):
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, dict):
            params = list(params.values())
        else:
            params = list(params)
        for index, param in enumerate(params):
            if not isinstance(param, Tensor):
                raise TypeError(
                    f"{type(self).__name__}: expected an iterable of Tensors as `params`; item {index} is "
                    f"{type(param).__name__}."
                )
        return params

    def _slots_for(self, param, data):
        """The slots this object keeps for ``param``, created or moved as :meth:`_complete_slots` says."""
        entry = self._state.get(id(param))
        if entry is None or entry[0]() is not param:
            entry = self._new_entry(param)
        slots = entry[1]
        held = self._held_slots.get(id(param))
        if held is not None:  # stepped inside a scope last: continue from (and write into) the store's arrays
            slots.clear()
            slots.update(held)
        self._complete_slots(param, data, slots)
        return slots

    def _complete_slots(self, param, data, slots):
        """Create the slots ``slots`` lacks (zeros or the initial value), check their shape, move them
        to ``data``'s device; in place."""
        names = self._slot_names()
        if len(slots) != len(names):  # first step, or a hyperparameter changed what is needed
            xp = backend.array_module(data)
            for name in names:
                if name not in slots:
                    slots[name] = xp.full(data.shape, self._initial_slot_value(name), dtype=data.dtype)
        elif slots:
            first = next(iter(slots.values()))
            if first.shape != data.shape:
                raise ValueError(
                    f"{type(self).__name__}: parameter {param.name or 'unnamed'} changed shape to {data.shape} "
                    f"after the optimizer created its state of shape {first.shape}."
                )
            if type(first) is not type(data):  # the parameter moved to another device (model.to("gpu"))
                device = backend.device_of(data)
                for name in slots:
                    slots[name] = backend.to_device(slots[name], device)

    def _new_entry(self, param):
        key = id(param)
        state = self._state
        # The callback drops the state when the parameter dies, before its id can be reused.
        entry = (weakref.ref(param, lambda _, key=key, state=state: state.pop(key, None)), {})
        state[key] = entry
        return entry

    @staticmethod
    def _scratch(xp, like, buffers):
        """Scratch of ``like``'s shape and dtype: a view of the flat array of ``buffers``, grown as needed."""
        key = (xp, like.dtype)
        buffer = buffers.get(key)
        size = like.size
        if buffer is None or buffer.size < size:
            buffer = buffers[key] = xp.empty(size, dtype=like.dtype)
        return buffer[:size].reshape(like.shape)

    def _clip(self, updates):
        """Clipped copies of the gradients; the gradient arrays themselves are left as they were."""
        if self.clipvalue:
            limit = self.clipvalue
            return [(param, backend.array_module(grad).clip(grad, -limit, limit)) for param, grad in updates]
        norms = [_l2_norm(grad) for _, grad in updates]
        if self.clipnorm:
            limit = self.clipnorm
            return [
                (param, grad * (limit / norm) if norm > limit else grad)
                for (param, grad), norm in zip(updates, norms)
            ]
        total = float(numpy.sqrt(sum(norm * norm for norm in norms)))
        if total <= self.global_clipnorm:
            return updates
        scale = self.global_clipnorm / total
        return [(param, grad * scale) for param, grad in updates]

    # -- config and state ------------------------------------------------------------------------
    def get_config(self):
        """The constructor arguments as plain JSON (a schedule as ``{"class_name": ..., "config": ...}``)."""
        config = super().get_config()
        rate = self._learning_rate
        config["learning_rate"] = rate if isinstance(rate, float) else schedules.serialize(rate)
        return config

    def state_dict(self, params=None):
        """Everything needed to resume: ``{"config": ..., "slots": {"<i>/<slot>": numpy array}}``.

        ``config`` is JSON (``class_name``, the hyperparameters under ``config``, ``iterations``);
        the slot arrays are numpy copies, keyed by the position ``i`` of their parameter in
        ``params`` (by default the list given to the last :meth:`step`). Save both with
        ``json`` and ``numpy.savez`` (no pickle) and restore with :meth:`load_state_dict`,
        passing the same parameters in the same order.
        """
        params = self._last_params if params is None else self._param_list(params)
        slots = {}
        held = self._held_slots
        for index, param in enumerate(params):
            own = held.get(id(param))  # its ids are those of live parameters: _last_params holds them
            if own is None:
                entry = self._state.get(id(param))
                if entry is None or entry[0]() is not param:
                    continue
                own = entry[1]
            for name, array in own.items():
                host = backend.to_numpy(array)
                slots[f"{index}/{name}"] = host.copy() if host is array else host
        config = {"class_name": type(self).__name__, "config": self.get_config(), "iterations": self.iterations}
        return {"config": config, "slots": slots}

    def load_state_dict(self, state, params):
        """Restore :meth:`state_dict` output onto ``params`` (the same parameters, in the same order).

        Replaces everything: hyperparameters (the learning rate included), ``iterations`` and the
        slots; parameters without saved slots start fresh at their next step.
        """
        owner = f"{type(self).__name__}.load_state_dict"
        params = self._param_list(params)
        config = state["config"]
        if config.get("class_name") != type(self).__name__:
            raise ValueError(
                f"{owner}: the state was saved by {config.get('class_name')!r}; expected {type(self).__name__!r}."
            )
        fresh = type(self).from_config(config["config"])
        loaded = {}
        for key, array in state["slots"].items():
            index, _, name = key.partition("/")
            if not index.isdigit() or int(index) >= len(params) or name not in fresh._slot_names():
                raise ValueError(
                    f"{owner}: unexpected slot {key!r}: expected '<index>/<slot>' with index below "
                    f"{len(params)} and slot one of {fresh._slot_names()}."
                )
            data = params[int(index)].data
            if tuple(array.shape) != data.shape:
                raise ValueError(
                    f"{owner}: slot {key!r} has shape {tuple(array.shape)}; parameter {index} has shape {data.shape}."
                )
            loaded.setdefault(int(index), {})[name] = backend.array_module(data).array(array, dtype=data.dtype)
        name = self.name
        vars(self).clear()
        vars(self).update(vars(fresh))
        self.name = name
        self.iterations = int(config["iterations"])
        for index, slots in loaded.items():
            self._new_entry(params[index])[1].update(slots)
        self._last_params = params

    def __repr__(self):
        rate = self._learning_rate
        return f"{type(self).__name__}(learning_rate={rate!r}, iterations={self.iterations})"


def _check_global_step(owner, global_step):
    if global_step is not None and not (
            isinstance(global_step, Tensor) and global_step.ndim == 0 and global_step.dtype.kind in "iu"):
        raise TypeError(
            f"{owner}: expected an integer scalar Tensor as `global_step` (fl.train.get_global_step()); "
            f"got {global_step!r}."
        )


def _check_loss(owner, loss):
    if callable(loss) and not isinstance(loss, Tensor):
        loss = loss()
    if not isinstance(loss, Tensor):
        raise TypeError(f"{owner}: expected a scalar Tensor as `loss` (or a function returning one); got "
                        f"{type(loss).__name__}.")
    return loss


def _l2_norm(grad):
    flat = grad.ravel()
    return float(numpy.sqrt(float(backend.array_module(grad).vdot(flat, flat))))


def serialize(optimizer):
    """``{"class_name": ..., "config": ...}`` for ``optimizer`` (no state; see ``state_dict``)."""
    return Optimizer.registry.serialize(optimizer, "expected an Optimizer.")
