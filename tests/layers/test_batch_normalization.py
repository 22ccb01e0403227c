"""BatchNormalization: batch vs moving statistics, moving averages updated only in training, parity, config."""
import numpy
import pytest
import torch

import flowlearn as fl
from .layer_checks import assert_config_round_trip, assert_gradients_reach_weights

X = numpy.random.default_rng(0).normal(5.0, 3.0, (32, 4)).astype("float32")


def test_training_normalises_with_batch_statistics_and_updates_moving_ones():
    layer = fl.layers.BatchNormalization(momentum=0.9)
    y = layer(X, training=True).numpy()
    numpy.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-5)
    numpy.testing.assert_allclose(y.var(axis=0), X.var(axis=0) / (X.var(axis=0) + 1e-3), rtol=1e-4)
    numpy.testing.assert_allclose(layer.moving_mean.numpy(), 0.1 * X.mean(axis=0), rtol=1e-5)
    numpy.testing.assert_allclose(layer.moving_variance.numpy(), 0.9 + 0.1 * X.var(axis=0), rtol=1e-5)


def test_inference_uses_moving_statistics_and_leaves_them_alone():
    layer = fl.layers.BatchNormalization(epsilon=0.01)
    layer.build((None, 4))
    layer.set_weights([numpy.full(4, 2.0), numpy.full(4, 0.5), numpy.full(4, 1.0), numpy.full(4, 4.0)])
    before = layer.get_weights()
    y = layer(X).numpy()
    numpy.testing.assert_allclose(y, 2.0 * (X - 1.0) / numpy.sqrt(4.01) + 0.5, rtol=1e-5)
    for old, new in zip(before, layer.get_weights()):
        numpy.testing.assert_array_equal(old, new)
    with fl.training_mode():
        layer(X)  # training=None reads the flag
    assert not numpy.array_equal(before[2], layer.moving_mean.numpy())


def test_frozen_layer_runs_in_inference_mode():
    layer = fl.layers.BatchNormalization(trainable=False)
    layer(X, training=True)
    numpy.testing.assert_array_equal(layer.moving_mean.numpy(), numpy.zeros(4))


def test_weights_gradients_and_moving_statistics_are_non_trainable():
    layer = fl.layers.BatchNormalization(name="bn")
    assert_gradients_reach_weights(layer, X, training=True)
    assert [w.name for w in layer.trainable_weights] == ["bn/gamma", "bn/beta"]
    assert [w.name for w in layer.non_trainable_weights] == ["bn/moving_mean", "bn/moving_variance"]
    assert not layer.moving_mean.requires_grad and layer.moving_mean.grad is None
    assert_gradients_reach_weights(layer, X, training=False)


def test_matches_pytorch_in_training():
    x = numpy.random.default_rng(1).normal(2.0, 1.5, (8, 5, 5, 3)).astype("float32")
    layer = fl.layers.BatchNormalization(momentum=0.9, epsilon=1e-3, gamma_initializer="random_normal",
                                         beta_initializer="random_normal")
    xt = fl.tensor(x, requires_grad=True)
    y = layer(xt, training=True)
    g = numpy.random.default_rng(2).standard_normal(y.shape).astype("float32")
    y.backward(g)
    bn = torch.nn.BatchNorm2d(3, eps=1e-3, momentum=0.1)  # PyTorch's momentum is 1 - Keras's
    with torch.no_grad():
        bn.weight.copy_(torch.from_numpy(layer.gamma.numpy()))
        bn.bias.copy_(torch.from_numpy(layer.beta.numpy()))
    xr = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_()
    yr = bn(xr)
    yr.backward(torch.from_numpy(g.transpose(0, 3, 1, 2).copy()))
    tol = dict(rtol=1e-4, atol=1e-4)
    numpy.testing.assert_allclose(y.numpy(), yr.detach().numpy().transpose(0, 2, 3, 1), **tol)
    numpy.testing.assert_allclose(layer.gamma.grad, bn.weight.grad.numpy(), **tol)
    numpy.testing.assert_allclose(layer.beta.grad, bn.bias.grad.numpy(), **tol)
    numpy.testing.assert_allclose(xt.grad, xr.grad.numpy().transpose(0, 2, 3, 1), **tol)
    numpy.testing.assert_allclose(layer.moving_mean.numpy(), bn.running_mean.numpy(), **tol)
    # PyTorch's running variance takes the unbiased batch variance; Keras's the biased one.
    biased = x.reshape(-1, 3).var(axis=0)
    numpy.testing.assert_allclose(layer.moving_variance.numpy(), 0.9 + 0.1 * biased, rtol=1e-5)


def test_channel_axis_and_locked_feature_count():
    layer = fl.layers.BatchNormalization(axis=1)
    x = numpy.random.default_rng(3).standard_normal((6, 3, 4, 4))
    assert layer(x, training=True).shape == x.shape and layer.gamma.shape == (3,)
    with pytest.raises(ValueError, match=r"expected input with dimension 3 on axis 1; got shape \(6, 2, 4, 4\)"):
        layer(numpy.ones((6, 2, 4, 4)))
    with pytest.raises(ValueError, match=r"axis 2 is out of range for input of rank 2"):
        fl.layers.BatchNormalization(axis=2)(numpy.ones((3, 4)))


def test_without_center_and_scale():
    layer = fl.layers.BatchNormalization(center=False, scale=False)
    layer(X, training=True)
    assert layer.trainable_weights == [] and len(layer.weights) == 2


def test_config_round_trip_keeps_moving_statistics():
    layer = fl.layers.BatchNormalization(momentum=0.5, epsilon=0.01, gamma_regularizer="l2")
    layer(X, training=True)
    clone = assert_config_round_trip(layer, X)
    numpy.testing.assert_array_equal(clone.moving_variance.numpy(), layer.moving_variance.numpy())
    assert clone.compute_output_shape((None, 4)) == (None, 4)


@pytest.mark.parametrize("kwargs, message", [
    ({"momentum": 1.5}, r"`momentum`.*Received: momentum=1.5"),
    ({"epsilon": 0}, r"`epsilon`.*Received: epsilon=0"),
    ({"axis": "channels"}, r"`axis`.*Received: axis='channels'"),
    ({"center": 1}, r"`center`.*Received: center=1"),
])
def test_bad_arguments_name_the_argument_and_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fl.layers.BatchNormalization(**kwargs)
