"""fl.train: the global step in the current store, and TF1-named optimizer factories over flowlearn's optimizers."""
import math

import numpy
import pytest

import flowlearn as fl
from flowlearn.core import optimizers


def test_global_step_lives_in_the_current_store():
    assert fl.train.get_global_step() is None  # outside every scope, as TensorFlow returned None
    store = fl.VariableStore()
    with fl.variable_scope(store):
        assert fl.train.get_global_step() is None
        step = fl.train.create_global_step()
        with fl.variable_scope("deep"):  # not prefixed by the scope
            assert fl.train.get_global_step() is step
        with pytest.raises(ValueError, match="'global_step' already exists in this VariableStore"):
            fl.train.create_global_step()
    with fl.variable_scope(store):  # a later run finds it
        assert fl.train.get_or_create_global_step() is step
    assert step.name == "global_step" and step.shape == () and step.dtype == numpy.int64
    assert not step.requires_grad and store.global_step is step
    assert store.get_weights()["global_step"] == 0
    assert [w.name for w in store.non_trainable_variables] == ["global_step"] and store.trainable_variables == []


def test_global_step_functions_take_an_explicit_store():
    store = fl.VariableStore()
    created = fl.train.get_or_create_global_step(store)
    assert fl.train.get_global_step(store) is created and fl.train.get_or_create_global_step(store) is created
    with pytest.raises(RuntimeError, match=r"fl.train.create_global_step: no variable store"):
        fl.train.create_global_step()
    with pytest.raises(TypeError, match=r"expected a VariableStore as `store`; got dict"):
        fl.train.create_global_step({})


def test_factories_return_flowlearn_optimizers_with_tensorflow_defaults_and_names():
    sgd = fl.train.GradientDescentOptimizer(0.5)
    assert type(sgd) is optimizers.SGD and sgd.learning_rate == 0.5 and sgd.momentum == 0
    assert sgd.name == "GradientDescent"
    momentum = fl.train.MomentumOptimizer(0.1, 0.9, use_nesterov=True)
    assert type(momentum) is optimizers.SGD and momentum.momentum == 0.9 and momentum.nesterov
    adam = fl.train.AdamOptimizer()
    assert type(adam) is optimizers.Adam and (adam.learning_rate, adam.beta_1, adam.beta_2, adam.epsilon) == (
        0.001, 0.9, 0.999, 1e-8) and adam.name == "Adam"
    adagrad = fl.train.AdagradOptimizer(0.1)
    assert type(adagrad) is optimizers.Adagrad and adagrad.initial_accumulator_value == 0.1 and adagrad.epsilon == 0
    rms = fl.train.RMSPropOptimizer(0.01, decay=0.8, centered=True, name="rms")
    assert type(rms) is optimizers.RMSProp
    assert (rms.rho, rms.epsilon, rms.centered, rms.name) == (0.8, 1e-10, True, "rms")
    with pytest.raises(ValueError, match="expected `name` to be a non-empty string"):
        fl.train.AdamOptimizer(name="")


def _tf1_adam(w, grads, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    """tf.train.AdamOptimizer's documented update, in float64."""
    m = v = 0.0
    for t, g in enumerate(grads, start=1):
        lr_t = lr * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        w = w - lr_t * m / (numpy.sqrt(v) + eps)
    return w


def _tf1_adagrad(w, grads, lr, init=0.1):
    acc = init
    for g in grads:
        acc = acc + g * g
        w = w - lr * g / numpy.sqrt(acc)
    return w


def _tf1_momentum(w, grads, lr, mu):
    accum = 0.0
    for g in grads:
        accum = mu * accum + g
        w = w - lr * accum
    return w


@pytest.mark.parametrize("make, reference", [
    (lambda: fl.train.AdamOptimizer(0.1), lambda w, g: _tf1_adam(w, g, 0.1)),
    (lambda: fl.train.AdagradOptimizer(0.1), lambda w, g: _tf1_adagrad(w, g, 0.1)),
    (lambda: fl.train.MomentumOptimizer(0.1, 0.9), lambda w, g: _tf1_momentum(w, g, 0.1, 0.9)),
    (lambda: fl.train.GradientDescentOptimizer(0.1), lambda w, g: w - 0.1 * sum(g)),
], ids=["adam", "adagrad", "momentum", "gradient-descent"])
def test_updates_follow_tensorflow_1_formulas(make, reference):
    start = numpy.array([0.5, -1.5, 2.0])
    grads = [numpy.array([0.3, -0.2, 1.0]) * k for k in (1.0, -0.5, 2.0)]
    w = fl.tensor(start.copy(), requires_grad=True, dtype="float64")
    optimizer = make()
    for g in grads:
        w.grad = g
        optimizer.step([w])
    numpy.testing.assert_allclose(w.numpy(), reference(start, grads), rtol=1e-12)


def test_model_fn_style_training_with_the_tf_names():
    rng = numpy.random.default_rng(0)
    x = rng.standard_normal((64, 2)).astype("float32")
    y = x @ numpy.array([[2.0], [-1.0]], numpy.float32) + 0.5
    store = fl.VariableStore(seed=0)
    losses = []
    for _ in range(60):
        with fl.variable_scope(store):
            pred = fl.layers.dense(x, 1)
            loss = ((pred - y) ** 2).mean()
            op = fl.train.AdamOptimizer(0.1).minimize(loss, global_step=fl.train.get_or_create_global_step())
        losses.append(loss.item())
    assert op.global_step == 60 and int(store.slots["Adam/iterations"]) == 60
    assert losses[-1] < 0.01 * losses[0]
