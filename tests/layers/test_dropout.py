"""Dropout: identity in inference, inverted dropout in training, seeds, gradients, config, bad rates."""
import numpy
import pytest

import flowlearn as fl
from .layer_checks import assert_config_round_trip

X = numpy.ones((200, 50), dtype="float32")


def test_inference_is_the_identity():
    layer = fl.layers.Dropout(0.5)
    x = fl.tensor(X)
    assert layer(x) is x
    assert layer(x, training=False) is x
    with fl.training_mode(False):
        assert layer(x) is x


@pytest.mark.parametrize("rate", [0.2, 0.5])
def test_training_drops_about_rate_and_scales_the_rest(rate):
    layer = fl.layers.Dropout(rate, seed=0)
    y = layer(X, training=True).numpy()
    kept = y != 0
    assert abs(1 - kept.mean() - rate) < 0.02
    numpy.testing.assert_allclose(y[kept], 1 / (1 - rate), rtol=1e-6)
    with fl.training_mode():
        assert (layer(X).numpy() == 0).any()  # training=None reads the global flag


def test_gradient_is_the_mask():
    x = fl.tensor(X[:4], requires_grad=True)
    y = fl.layers.Dropout(0.5, seed=1)(x, training=True)
    y.sum().backward()
    numpy.testing.assert_array_equal(x.grad, y.numpy())  # x is ones: y is the scaled mask


def test_seeds_and_set_random_seed_make_masks_repeatable():
    a, b = fl.layers.Dropout(0.5, seed=7), fl.layers.Dropout(0.5, seed=7)
    first = a(X, training=True).numpy()
    numpy.testing.assert_array_equal(first, b(X, training=True).numpy())
    assert not numpy.array_equal(first, a(X, training=True).numpy())  # successive calls differ
    unseeded = fl.layers.Dropout(0.5)
    fl.layers.set_random_seed(5)
    one = unseeded(X, training=True).numpy()
    fl.layers.set_random_seed(5)
    numpy.testing.assert_array_equal(one, unseeded(X, training=True).numpy())


def test_rate_zero_keeps_everything_and_config_round_trips():
    numpy.testing.assert_array_equal(fl.layers.Dropout(0.0)(X, training=True).numpy(), X)
    layer = assert_config_round_trip(fl.layers.Dropout(0.3, seed=2), X)
    assert (layer.rate, layer.seed) == (0.3, 2) and layer.compute_output_shape((None, 50)) == (None, 50)


@pytest.mark.parametrize("rate", [1.5, 1.0, -0.1, "half", None])
def test_bad_rate_names_the_argument_and_value(rate):
    with pytest.raises(ValueError, match=rf"`rate`, expected a number in \[0.0, 1.0\)\. Received: rate={rate!r}"):
        fl.layers.Dropout(rate)


def test_bad_seed():
    with pytest.raises(ValueError, match=r"`seed`.*Received: seed=-1"):
        fl.layers.Dropout(0.5, seed=-1)
