"""Optimizer.minimize(loss, var_list=None, global_step=None): the explicit form, the store-held state, the step."""
import numpy
import pytest

import flowlearn as fl
from flowlearn import layers
from flowlearn.core import optimizers
from flowlearn.core.optimizers import schedules
from flowlearn.core.optimizers.optimizer import TrainOp, pop_state_holder, push_state_holder

RNG = numpy.random.default_rng(0)
X = RNG.standard_normal((6, 8, 3)).astype("float32")  # 6 batches of 8 rows
Y = X.sum(axis=-1, keepdims=True) ** 2


def _loss(x, y):
    """A small model_fn body: two dense layers and a batch norm, in the current scope."""
    h = layers.dense(x, 5, activation="tanh")
    h = layers.batch_normalization(h, training=True)
    p = layers.dense(h, 1)
    return ((p - y) ** 2).mean()


def test_explicit_var_list_updates_those_variables_and_returns_a_train_op():
    w = fl.tensor([1.0, 2.0], requires_grad=True)
    other = fl.tensor([3.0], requires_grad=True)
    loss = (w * w).sum() + (other * other).sum()
    op = optimizers.SGD(0.1).minimize(loss, var_list=[w])
    assert isinstance(op, TrainOp) and op.loss is loss and op.global_step is None
    numpy.testing.assert_allclose(w.numpy(), [0.8, 1.6], rtol=1e-6)
    assert other.numpy()[0] == 3.0  # not in var_list: untouched


def test_default_var_list_is_the_trainable_variables_of_the_current_store():
    store = fl.VariableStore(seed=0)
    with fl.variable_scope(store):
        fl.train.create_global_step()
        layers.get_variable("frozen", (2,), trainable=False)
        _loss(X[0], Y[0])
    before = store.get_weights()
    with fl.variable_scope(store):
        optimizers.SGD(0.1).minimize(_loss(X[0], Y[0]))
    after = store.get_weights()
    trainable = {w.name for w in store.trainable_variables}
    assert trainable == {"dense/kernel", "dense/bias", "batch_normalization/gamma", "batch_normalization/beta",
                         "dense_1/kernel", "dense_1/bias"}
    for name in before:
        changed = not numpy.array_equal(before[name], after[name])
        # moving statistics change through the forward pass in training mode, not through the optimizer
        assert changed == (name in trainable or name.startswith("batch_normalization/moving")), name
    assert after["global_step"] == 0 and numpy.array_equal(after["frozen"], before["frozen"])


def test_no_var_list_outside_a_scope_is_an_error():
    w = fl.tensor([1.0], requires_grad=True)
    with pytest.raises(ValueError, match=r"Adam.minimize: no `var_list` given and no variable store is active"):
        optimizers.Adam().minimize((w * w).sum())
    with pytest.raises(TypeError, match=r"Pass the global step by keyword"):
        optimizers.Adam().minimize((w * w).sum(), fl.tensor(numpy.int64(0)))
    with pytest.raises(TypeError, match=r"expected an integer scalar Tensor as `global_step`"):
        optimizers.Adam().minimize((w * w).sum(), [w], global_step=3)


@pytest.mark.parametrize("make", [
    lambda: optimizers.Adam(0.01),
    lambda: optimizers.Adam(0.01, amsgrad=True),
    lambda: optimizers.SGD(0.05, momentum=0.9, nesterov=True),
    lambda: optimizers.RMSProp(0.01, momentum=0.5, centered=True),
    lambda: optimizers.Adagrad(0.1),
    lambda: optimizers.Adam(schedules.ExponentialDecay(0.01, decay_steps=2, decay_rate=0.5)),
], ids=["adam", "amsgrad", "nesterov", "rmsprop-centered", "adagrad", "adam-schedule"])
def test_a_fresh_optimizer_per_run_continues_exactly_like_one_optimizer(make):
    fresh, reference = fl.VariableStore(seed=3), fl.VariableStore(seed=3)
    single = make()
    for x, y in zip(X, Y):
        with fl.variable_scope(fresh):
            make().minimize(_loss(x, y))  # a new optimizer object every run, as in a model_fn
        with fl.variable_scope(reference):
            loss = _loss(x, y)
        single.minimize(loss, reference.trainable_variables)  # outside the scope: state in the object
    got, want = fresh.get_weights(), reference.get_weights()
    assert sorted(got) == sorted(want)
    for name in want:
        numpy.testing.assert_array_equal(got[name], want[name], err_msg=name)
    prefix = type(single).__name__
    assert int(fresh.slots[f"{prefix}/iterations"]) == single.iterations == len(X)
    for w in reference.trainable_variables:
        own = single._state[id(w)][1]
        assert sorted(own) == sorted(single._slot_names())
        for slot, array in own.items():
            numpy.testing.assert_array_equal(fresh.slots[f"{w.name}/{prefix}/{slot}"], array)


def test_copied_weights_and_slots_resume_identically():
    """What a checkpoint holds (get_weights + slots) is all a new store needs to continue the same training."""
    def train(store, batches):
        for x, y in batches:
            with fl.variable_scope(store):
                optimizers.Adam(0.01).minimize(_loss(x, y), global_step=fl.train.get_or_create_global_step())

    straight = fl.VariableStore(seed=5)
    train(straight, zip(X, Y))
    first = fl.VariableStore(seed=5)
    train(first, zip(X[:3], Y[:3]))
    weights, slots = first.get_weights(), {k: numpy.array(v) for k, v in first.slots.items()}
    resumed = fl.VariableStore(seed=99)  # other initial weights, overwritten below
    with fl.variable_scope(resumed):
        _loss(X[0], Y[0])
        fl.train.create_global_step()
    resumed.set_weights(weights)
    resumed.slots.update(slots)
    train(resumed, zip(X[3:], Y[3:]))
    got, want = resumed.get_weights(), straight.get_weights()
    for name in want:
        numpy.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert got["global_step"] == len(X)


def test_global_step_increments_in_place_and_bumps_its_version():
    store = fl.VariableStore(seed=0)
    with fl.variable_scope(store):
        step = fl.train.create_global_step()
    versions = [step._version]
    for i, (x, y) in enumerate(zip(X[:3], Y[:3])):
        with fl.variable_scope(store):
            op = optimizers.SGD(0.01).minimize(_loss(x, y), global_step=fl.train.get_global_step())
        assert op.global_step == i + 1 and int(step.item()) == i + 1 and step.dtype == numpy.int64
        versions.append(step._version)
    assert versions == sorted(set(versions))  # one more write each time
    assert store.global_step is step and all(w is not step for w in store.trainable_variables)


def test_a_graph_recorded_before_minimize_refuses_backward_after_it():
    store = fl.VariableStore(seed=0)
    with fl.variable_scope(store):
        stale = _loss(X[1], Y[1])
    with fl.variable_scope(store):  # the next run: the same variables, updated in place
        optimizers.SGD(0.1).minimize(_loss(X[0], Y[0]))
    with pytest.raises(RuntimeError, match="modified"):
        stale.backward()


def test_optimizers_with_different_names_keep_separate_state_in_one_store():
    """Two optimizers over disjoint variables (a GAN's generator and critic) count their own steps."""
    store = fl.VariableStore(seed=0)
    for x, y in zip(X[:2], Y[:2]):
        with fl.variable_scope(store):
            with fl.variable_scope("g"):
                g_loss = _loss(x, y)
            fl.train.AdamOptimizer(0.01, name="gen").minimize(
                g_loss, var_list=[w for w in store.trainable_variables if w.name.startswith("g/")])
            with fl.variable_scope("d"):
                d_loss = _loss(x, y)
            fl.train.AdamOptimizer(0.01, name="critic").minimize(
                d_loss, var_list=[w for w in store.trainable_variables if w.name.startswith("d/")])
    assert int(store.slots["gen/iterations"]) == 2 and int(store.slots["critic/iterations"]) == 2
    assert "g/dense/kernel/gen/m" in store.slots and "d/dense/kernel/critic/v" in store.slots
    assert not any(k.startswith("g/") and "/critic/" in k for k in store.slots)


def test_any_state_holder_works_without_the_layers():
    """The core knows a holder by its protocol only (slots, trainable_variables)."""
    class Holder:
        def __init__(self, variables):
            self.slots, self.trainable_variables = {}, variables

    w = fl.tensor([1.0, -1.0], requires_grad=True, name="w")
    holder = Holder([w])
    push_state_holder(holder)
    try:
        for _ in range(2):
            optimizers.Adam(0.1).minimize(lambda: (w * w).sum())
    finally:
        pop_state_holder()
    reference = fl.tensor([1.0, -1.0], requires_grad=True)
    adam = optimizers.Adam(0.1)
    for _ in range(2):
        adam.minimize(lambda: (reference * reference).sum(), [reference])
    numpy.testing.assert_array_equal(w.numpy(), reference.numpy())
    assert sorted(holder.slots) == ["Adam/iterations", "w/Adam/m", "w/Adam/v"]


def test_two_variables_with_one_name_cannot_share_store_slots():
    class Holder:
        slots, trainable_variables = {}, []

    a = fl.tensor([1.0], requires_grad=True, name="w")
    b = fl.tensor([2.0], requires_grad=True, name="w")
    push_state_holder(Holder())
    try:
        with pytest.raises(ValueError, match=r"two variables of `var_list` are named 'w'"):
            optimizers.Adam().minimize((a * b).sum(), [a, b])
    finally:
        pop_state_holder()


def test_under_no_grad_inside_a_scope_minimize_updates_nothing():
    """An Estimator's EVAL run (no_grad) of a model_fn that builds its train_op in every mode, as TF examples do."""
    store = fl.VariableStore(seed=0)
    with fl.variable_scope(store):
        _loss(X[0], Y[0])
        step = fl.train.create_global_step()
    before = store.get_weights()
    with fl.no_grad(), fl.variable_scope(store):
        op = optimizers.Adam(0.1).minimize(_loss(X[0], Y[0]), global_step=step)
    assert op.applied is False and op.global_step is None and "not applied" in repr(op)
    after = store.get_weights()
    for name in before:
        if not name.startswith("batch_normalization/moving"):
            numpy.testing.assert_array_equal(after[name], before[name], err_msg=name)
    assert store.slots == {}
    w = fl.tensor([1.0], requires_grad=True)
    with fl.no_grad():  # outside a scope: backward's error, not a silent no-op
        with pytest.raises(RuntimeError, match="does not require grad"):
            optimizers.SGD(0.1).minimize((w * w).sum(), [w])


def test_compute_then_apply_gradients_equals_minimize_and_transforms_apply():
    a, b = fl.VariableStore(seed=7), fl.VariableStore(seed=7)
    for x, y in zip(X[:3], Y[:3]):
        with fl.variable_scope(a):
            optimizers.Adam(0.01).minimize(_loss(x, y), global_step=fl.train.get_or_create_global_step())
        with fl.variable_scope(b):
            opt = optimizers.Adam(0.01)
            loss = _loss(x, y)
            with fl.variable_scope("unused"):
                layers.get_variable("w", (2,))  # trainable, outside the loss: its gradient is None
            pairs = opt.compute_gradients(loss)
            assert [v.name for _, v in pairs][-1] == "unused/w" and pairs[-1][0] is None
            assert all(isinstance(g, fl.Tensor) and not g.requires_grad for g, _ in pairs[:-1])
            op = opt.apply_gradients(pairs, global_step=fl.train.get_or_create_global_step())
    assert op.loss is None and op.global_step == 3 and "unused/w/Adam/m" not in b.slots
    got, want = b.get_weights(), a.get_weights()
    for name in want:
        numpy.testing.assert_array_equal(got[name], want[name], err_msg=name)
    w = fl.tensor([1.0, -3.0], requires_grad=True)
    opt = optimizers.SGD(0.1)
    pairs = opt.compute_gradients((w * w).sum(), [w])
    opt.apply_gradients([(fl.ops.clip(g, -1.0, 1.0), v) for g, v in pairs])
    numpy.testing.assert_allclose(w.numpy(), [0.9, -2.9], rtol=1e-6)
    with fl.no_grad(), fl.variable_scope(a):
        pairs = optimizers.Adam(0.01).compute_gradients(_loss(X[0], Y[0]))
        assert all(g is None for g, _ in pairs)
        assert optimizers.Adam(0.01).apply_gradients(pairs).applied is False
