"""Checks every layer test runs: gradient flow to each trainable weight, and config round trips.

Imported by the test modules next to it (pytest puts this folder on sys.path).
"""
import json

import numpy

import flowlearn as fl


def assert_gradients_reach_weights(layer, x, training=False, seed=0):
    """Back-propagate a random projection of the output; every trainable weight gets a finite, non-zero grad.

    A random projection (not a plain sum) so that layers whose output sums to a constant (softmax,
    batch normalization) still pass non-zero gradients back.
    """
    for w in layer.trainable_weights:
        w.zero_grad()
    y = layer(x, training=training)
    projection = numpy.random.default_rng(seed).standard_normal(y.shape).astype(y.dtype)
    (y * fl.tensor(projection, dtype=y.dtype, device=y.device)).sum().backward()
    assert layer.trainable_weights, "layer has no trainable weights to check"
    for w in layer.trainable_weights:
        assert w.grad is not None, f"{w.name}: no gradient"
        grad = fl.backend.to_numpy(w.grad)
        assert grad.shape == w.shape, f"{w.name}: gradient of shape {grad.shape} for weight {w.shape}"
        assert numpy.isfinite(grad).all() and numpy.abs(grad).sum() > 0, f"{w.name}: gradient is zero or not finite"


def assert_config_round_trip(layer, x):
    """``from_config(get_config())`` (through JSON) plus ``set_weights`` reproduces the outputs exactly."""
    if not layer.built:
        layer(x)
    config = json.loads(json.dumps(layer.get_config()))
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    clone(x)
    clone.set_weights(layer.get_weights())
    numpy.testing.assert_array_equal(clone(x, training=False).numpy(), layer(x, training=False).numpy())
    data = json.loads(json.dumps(fl.layers.serialize(layer)))
    again = fl.layers.deserialize(data)
    assert type(again) is type(layer) and again.get_config() == config
    return clone
