"""What a model_fn run once per batch keeps between runs to stay cheap, and that it never goes stale.

VariableStore.trainable_variables keeps its list while nothing it depends on changed; optimizers keep scratch
arrays and slot names per store; variable_scope is a small class. Each test changes what a cached value
depends on and checks that the default var_list of minimize (and the property itself) follows.
"""
import gc
import weakref

import numpy
import pytest

import flowlearn as fl
from flowlearn import layers
from flowlearn.core import optimizers
from flowlearn.core.optimizers import optimizer as optimizer_module
from flowlearn.layers.base import Layer
from flowlearn.layers.variable_scope import current_store

RNG = numpy.random.default_rng(0)
X = RNG.standard_normal((8, 3)).astype("float32")
Y = X.sum(axis=-1, keepdims=True)


def _names(store):
    return [w.name for w in store.trainable_variables]


def _run(store, build, lr=0.1):
    """One run of a model_fn: build the loss in the scope and minimize it with a fresh optimizer."""
    with fl.variable_scope(store):
        loss = build()
        return optimizers.SGD(lr).minimize(loss, global_step=fl.train.get_or_create_global_step())


def _first_run(store):
    return _run(store, lambda: ((layers.dense(X, 1) - Y) ** 2).mean())


def test_the_list_is_not_rebuilt_while_nothing_changed(monkeypatch):
    store = fl.VariableStore(seed=0)
    _first_run(store)
    store.trainable_variables
    walks = []
    original = Layer._walk

    def counting(self):
        walks.append(self)
        return original(self)

    monkeypatch.setattr(Layer, "_walk", counting)
    for _ in range(3):
        _first_run(store)
    assert walks == []
    assert _names(store) == ["dense/kernel", "dense/bias"]


def test_a_layer_created_in_a_later_run_is_in_the_default_var_list():
    store = fl.VariableStore(seed=0)
    _first_run(store)
    assert _names(store) == ["dense/kernel", "dense/bias"]

    def two_layers():
        h = layers.dense(X, 1)
        return ((layers.dense(h, 1, name="head") - Y) ** 2).mean()

    with fl.variable_scope(store):  # build "head" (and read its initial values) without an update
        two_layers()
    head = store.layers[1]
    before = head.kernel.numpy().copy()
    _run(store, two_layers)
    assert _names(store) == ["dense/kernel", "dense/bias", "head/kernel", "head/bias"]
    assert not numpy.array_equal(head.kernel.numpy(), before)  # minimize's default var_list updated it


def test_a_variable_from_get_variable_in_a_later_run_is_in_the_default_var_list():
    store = fl.VariableStore(seed=0)
    _first_run(store)

    def with_offset():
        offset = layers.get_variable("offset", (1,), initializer="zeros")
        return ((layers.dense(X, 1) + offset - Y) ** 2).mean()

    _run(store, with_offset)
    assert _names(store) == ["dense/kernel", "dense/bias", "offset"]
    offset = {w.name: w for w in store.variables}["offset"]
    assert offset.numpy()[0] != 0.0  # trained by the default var_list


def test_freezing_a_layer_or_a_variable_takes_it_out_and_unfreezing_puts_it_back():
    store = fl.VariableStore(seed=0)

    def with_offset():
        offset = layers.get_variable("offset", (1,), initializer="zeros")
        return ((layers.dense(X, 1) + offset - Y) ** 2).mean()

    _run(store, with_offset)
    dense = store.layers[0]
    offset = {w.name: w for w in store.variables}["offset"]
    dense.trainable = False
    assert _names(store) == ["offset"]
    kernel = dense.kernel.numpy().copy()
    _run(store, with_offset)
    numpy.testing.assert_array_equal(dense.kernel.numpy(), kernel)  # frozen: minimize left it alone
    offset.requires_grad = False
    assert _names(store) == []
    dense.trainable = True
    offset.requires_grad = True
    assert _names(store) == ["dense/kernel", "dense/bias", "offset"]


def test_a_layer_assigned_into_a_store_layer_later_is_walked():
    store = fl.VariableStore(seed=0)
    _first_run(store)
    assert _names(store) == ["dense/kernel", "dense/bias"]
    inner = fl.layers.Dense(2, name="inner")
    inner(numpy.ones((1, 3), "float32"))
    store.layers[0].extra = inner  # a layer held in an attribute is part of its holder
    assert _names(store) == ["dense/kernel", "dense/bias", "inner/kernel", "inner/bias"]


def test_the_property_returns_a_new_list_each_time():
    store = fl.VariableStore(seed=0)
    _first_run(store)
    first = store.trainable_variables
    first.append("not a variable")
    first.clear()
    assert _names(store) == ["dense/kernel", "dense/bias"]


def test_fresh_optimizers_share_the_stores_scratch_and_two_stores_do_not():
    one, two = fl.VariableStore(seed=0), fl.VariableStore(seed=0)
    for _ in range(2):
        _run(one, lambda: ((layers.dense(X, 4) - Y) ** 2).mean())
        _run(two, lambda: ((layers.dense(X, 4) - Y) ** 2).mean())
    buffers_one = optimizer_module._holder_cache(one).buffers
    buffers_two = optimizer_module._holder_cache(two).buffers
    assert buffers_one and buffers_two
    assert not any(a is b for a in buffers_one.values() for b in buffers_two.values())
    # Both stores trained identically from one seed: the shared scratch leaked nothing between them.
    for name, array in one.get_weights().items():
        numpy.testing.assert_array_equal(array, two.get_weights()[name])
    scratch = next(iter(buffers_one.values()))
    _run(one, lambda: ((layers.dense(X, 4) - Y) ** 2).mean())
    assert next(iter(optimizer_module._holder_cache(one).buffers.values())) is scratch  # nothing reallocated


def test_the_per_store_cache_goes_with_the_store():
    store = fl.VariableStore(seed=0)
    _first_run(store)
    assert store in optimizer_module._holder_caches
    ref = weakref.ref(store)
    gc.collect()
    count = len(optimizer_module._holder_caches)
    del store
    gc.collect()
    assert ref() is None and len(optimizer_module._holder_caches) == count - 1


def test_the_optimizers_state_dict_in_a_scope_holds_the_stores_slots():
    store = fl.VariableStore(seed=0)
    with fl.variable_scope(store):
        loss = ((layers.dense(X, 1) - Y) ** 2).mean()
        opt = optimizers.Adam(0.01)
        opt.minimize(loss)
    state = opt.state_dict()
    assert sorted(state["slots"]) == ["0/m", "0/v", "1/m", "1/v"]
    numpy.testing.assert_array_equal(state["slots"]["0/m"], store.slots["dense/kernel/Adam/m"])
    assert state["config"]["iterations"] == 1


def test_the_global_step_is_incremented_in_place_and_its_version_bumped():
    store = fl.VariableStore(seed=0)
    _first_run(store)
    step = store.global_step
    array, version = step.data, step._version
    op = _first_run(store)
    assert step.data is array and int(array) == 2 == op.global_step
    assert step._version == version + 1


def test_a_read_only_global_step_still_raises_assigns_error():
    store = fl.VariableStore(seed=0)
    _first_run(store)
    step = store.global_step
    step.data.flags.writeable = False
    with pytest.raises(ValueError, match="expected a writable tensor"):
        _first_run(store)


@pytest.mark.parametrize("dtype", ["int32", "uint8"])
def test_a_global_step_of_another_integer_dtype_counts(dtype):
    store = fl.VariableStore(seed=0)
    step = fl.tensor(numpy.zeros((), dtype), name="my_step")
    for _ in range(3):
        with fl.variable_scope(store):
            op = optimizers.SGD(0.1).minimize(((layers.dense(X, 1) - Y) ** 2).mean(), global_step=step)
    assert step.dtype == numpy.dtype(dtype) and int(step.data) == 3 == op.global_step


def test_variable_scope_is_a_decorator_and_an_object_entered_twice_works():
    store = fl.VariableStore(seed=0)
    scope = fl.variable_scope(store)

    @fl.variable_scope(store)
    def build():
        return layers.dense(X, 2)

    build()
    with scope:
        layers.dense(X, 2)
    with scope:  # a second run: finds "dense" again instead of raising
        layers.dense(X, 2)
    assert [layer.name for layer in store.layers] == ["dense"]
    assert current_store() is None  # every entry left


def test_an_optimizer_stepped_in_a_scope_then_outside_continues_the_same_moments():
    """The store's slots are not copied into the optimizer, yet a step outside the scope right after one
    inside continues from them, as one optimizer stepping twice outside any scope does."""
    mixed, reference = fl.VariableStore(seed=0), fl.VariableStore(seed=0)
    opt, single = optimizers.Adam(0.1), optimizers.Adam(0.1)
    with fl.variable_scope(mixed):
        opt.minimize(((layers.dense(X, 2) - Y) ** 2).mean())
    with fl.variable_scope(reference):
        loss = ((layers.dense(X, 2) - Y) ** 2).mean()
    single.minimize(loss, reference.trainable_variables)
    for store, optimizer in ((mixed, opt), (reference, single)):
        with fl.variable_scope(store):
            loss = ((layers.dense(X, 2) - Y) ** 2).mean()
        optimizer.minimize(loss, store.trainable_variables)  # outside the scope: the object's own state
    assert opt.iterations == single.iterations == 2
    for name, array in reference.get_weights().items():
        numpy.testing.assert_array_equal(mixed.get_weights()[name], array, err_msg=name)


def test_a_subclass_overriding_step_is_called_inside_a_scope():
    calls = []

    class Counting(optimizers.SGD):
        def step(self, params):
            calls.append(len(list(params)))
            super().step(params)

    store = fl.VariableStore(seed=0)
    _first_run(store)
    kernel = store.layers[0].kernel.numpy().copy()
    with fl.variable_scope(store):
        Counting(0.1).minimize(((layers.dense(X, 1) - Y) ** 2).mean())
    assert calls == [2]
    assert not numpy.array_equal(store.layers[0].kernel.numpy(), kernel)


def test_outside_inside_outside_a_scope_continues_from_the_store():
    """One optimizer object stepping outside, inside, then outside a scope: inside, the state is the store's
    (empty at first: fresh moments, step count 0); the step after continues from the store's arrays. So it
    updates as one optimizer stepping once and then a fresh one stepping twice."""
    mixed, reference = fl.VariableStore(seed=0), fl.VariableStore(seed=0)
    opt = optimizers.Adam(0.1)
    references = [optimizers.Adam(0.1), optimizers.Adam(0.1), None]
    references[2] = references[1]
    for inside, single in zip((False, True, False), references):
        with fl.variable_scope(mixed):
            loss = ((layers.dense(X, 2) - Y) ** 2).mean()
            if inside:
                opt.minimize(loss)
        if not inside:
            opt.minimize(loss, mixed.trainable_variables)
        with fl.variable_scope(reference):
            loss = ((layers.dense(X, 2) - Y) ** 2).mean()
        single.minimize(loss, reference.trainable_variables)
    assert opt.iterations == 2
    for name, array in reference.get_weights().items():
        numpy.testing.assert_array_equal(mixed.get_weights()[name], array, err_msg=name)
    kernel = mixed.layers[0].kernel
    assert opt._slots_for(kernel, kernel.data)["m"] is mixed.slots["dense/kernel/Adam/m"]  # written in place


def test_a_store_holding_a_layer_of_layers_is_walked_every_time():
    store = fl.VariableStore(seed=0)
    _first_run(store)
    outer = store.layers[0]
    outer.extra = fl.layers.Dense(2, name="inner")
    assert _names(store) == ["dense/kernel", "dense/bias"]  # the inner layer is not built yet
    outer.extra(numpy.ones((1, 3), "float32"))  # builds it: outer's own weights and attributes unchanged
    assert _names(store) == ["dense/kernel", "dense/bias", "inner/kernel", "inner/bias"]
    outer.extra.trainable = False
    assert _names(store) == ["dense/kernel", "dense/bias"]


def test_a_fresh_initializer_each_run_is_compared_once_per_lookup():
    """A model_fn that builds its initializer anew every run finds its layer again through the configs; the
    arguments are compared by == once per lookup (scoped_layer's fast path), not again inside the store."""
    from flowlearn.core.initializers import GlorotUniform

    compared = []

    class Counted(GlorotUniform):
        def __eq__(self, other):
            compared.append(1)
            return self is other

        __hash__ = GlorotUniform.__hash__

    store = fl.VariableStore()
    build = lambda: ((layers.dense(X, 1, kernel_initializer=Counted()) - Y) ** 2).mean()  # noqa: E731
    _run(store, build)
    kernel = store.trainable_variables[0]
    compared.clear()
    _run(store, build)
    assert store.trainable_variables[0] is kernel  # found again, not recreated
    assert len(compared) == 1
