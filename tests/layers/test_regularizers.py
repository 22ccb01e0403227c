"""Regularizers: penalty values and gradients by hand, lookup, config, and their use in layers."""
import json

import numpy
import pytest

import flowlearn as fl
from flowlearn.layers import regularizers

W = numpy.array([[1.0, -2.0], [0.5, 0.0]], dtype="float64")


@pytest.mark.parametrize("regularizer, value, grad", [
    (regularizers.L1(0.1), 0.1 * 3.5, 0.1 * numpy.sign(W)),
    (regularizers.L2(0.01), 0.01 * 5.25, 0.02 * W),
    (regularizers.L1L2(l1=0.1, l2=0.01), 0.35 + 0.0525, 0.1 * numpy.sign(W) + 0.02 * W),
    (regularizers.L1L2(l2=0.5), 0.5 * 5.25, 1.0 * W),
    (regularizers.l1_l2(), 0.01 * 3.5 + 0.01 * 5.25, 0.01 * numpy.sign(W) + 0.02 * W),
])
def test_penalty_and_gradient_by_hand(regularizer, value, grad):
    w = fl.tensor(W, dtype="float64", requires_grad=True)
    penalty = regularizer(w)
    assert penalty.shape == () and penalty.dtype == numpy.float64
    assert penalty.item() == pytest.approx(value)
    penalty.backward()
    numpy.testing.assert_allclose(w.grad, grad)


def test_get_accepts_names_dicts_instances_and_none():
    assert regularizers.get(None) is None
    assert regularizers.get("l1") == regularizers.L1(0.01)
    assert regularizers.get("l2") == regularizers.l2()
    assert regularizers.get("l1_l2") == regularizers.L1L2(0.01, 0.01)
    l2 = regularizers.L2(0.3)
    assert regularizers.get(l2) is l2
    assert regularizers.get({"class_name": "L1L2", "config": {"l1": 0.2, "l2": 0.1}}) == regularizers.L1L2(0.2, 0.1)
    with pytest.raises(ValueError, match=r"Unknown regularizer 'l3'; expected one of \['l1', 'l1_l2', 'l1l2', 'l2'\]"):
        regularizers.get("l3")
    with pytest.raises(ValueError, match="Unknown regularizer class_name 'L3'"):
        regularizers.get({"class_name": "L3", "config": {}})


@pytest.mark.parametrize("regularizer", [regularizers.L1(0.5), regularizers.L2(1e-4), regularizers.L1L2(0.1, 0.2)])
def test_config_round_trip(regularizer):
    data = json.loads(json.dumps(regularizers.serialize(regularizer)))
    assert regularizers.get(data) == regularizer and repr(regularizer).startswith(type(regularizer).__name__)


@pytest.mark.parametrize("make, argument, value", [
    (lambda: regularizers.L1(-0.1), "l1", -0.1),
    (lambda: regularizers.L2(float("nan")), "l2", float("nan")),
    (lambda: regularizers.L1L2(l2="big"), "l2", "big"),
])
def test_bad_factors_name_the_argument(make, argument, value):
    with pytest.raises(ValueError, match=rf"`{argument}`, expected a non-negative number. Received: {argument}="):
        make()


def test_layer_penalties_follow_the_current_weights():
    layer = fl.layers.Dense(2, kernel_regularizer=regularizers.L2(0.1), bias_regularizer="l1")
    layer.build((None, 2))
    layer.set_weights([W, numpy.array([1.0, -3.0])])
    kernel_penalty, bias_penalty = layer.regularization_losses()
    assert kernel_penalty.item() == pytest.approx(0.1 * 5.25)
    assert bias_penalty.item() == pytest.approx(0.01 * 4.0)
    layer.set_weights([2 * W, numpy.zeros(2)])
    assert sum(p.item() for p in layer.regularization_losses()) == pytest.approx(0.1 * 21.0)
    sum(layer.regularization_losses()).backward()
    numpy.testing.assert_allclose(layer.kernel.grad, 0.2 * 2 * W, rtol=1e-6)
    assert fl.layers.Dense(2).regularization_losses() == []


def test_plain_callables_work_but_cannot_be_saved():
    layer = fl.layers.Dense(2, kernel_regularizer=lambda w: (w * w).sum() * 2.0)
    layer(numpy.ones((1, 3)))
    assert len(layer.regularization_losses()) == 1
    with pytest.raises(TypeError, match="only L1, L2 and L1L2 can be saved"):
        layer.get_config()
