"""Conv2D and Conv2DTranspose: shapes against compute_output_shape, PyTorch parity, gradients, config."""
import numpy
import pytest
import torch

import flowlearn as fl
from .layer_checks import assert_config_round_trip, assert_gradients_reach_weights

RNG = numpy.random.default_rng(0)


@pytest.mark.parametrize("kwargs, in_shape, out_shape", [
    ({"kernel_size": 3}, (2, 8, 8, 3), (2, 6, 6, 4)),
    ({"kernel_size": 3, "padding": "same"}, (2, 8, 8, 3), (2, 8, 8, 4)),
    ({"kernel_size": (3, 2), "strides": 2}, (2, 9, 8, 3), (2, 4, 4, 4)),
    ({"kernel_size": 3, "strides": 2, "padding": "SAME"}, (2, 9, 8, 3), (2, 5, 4, 4)),
    ({"kernel_size": 3, "dilation_rate": 2}, (1, 9, 9, 2), (1, 5, 5, 4)),
    ({"kernel_size": 5, "padding": "same"}, (1, 28, 28, 1), (1, 28, 28, 4)),
])
def test_conv2d_output_shapes(kwargs, in_shape, out_shape):
    layer = fl.layers.Conv2D(4, **kwargs)
    assert layer.compute_output_shape((None,) + in_shape[1:]) == (None,) + out_shape[1:]
    y = layer(RNG.standard_normal(in_shape))
    assert y.shape == out_shape
    assert layer.kernel.shape == layer.kernel_size + (in_shape[-1], 4)


@pytest.mark.parametrize("kwargs, in_shape, out_shape", [
    ({"kernel_size": 3}, (2, 5, 5, 3), (2, 7, 7, 4)),
    ({"kernel_size": 3, "strides": 2}, (2, 5, 5, 3), (2, 11, 11, 4)),
    ({"kernel_size": 3, "strides": 2, "padding": "same"}, (2, 7, 6, 3), (2, 14, 12, 4)),
    ({"kernel_size": (2, 4), "strides": (2, 1)}, (1, 3, 3, 2), (1, 6, 6, 4)),
])
def test_conv2d_transpose_output_shapes(kwargs, in_shape, out_shape):
    layer = fl.layers.Conv2DTranspose(4, **kwargs)
    assert layer.compute_output_shape((None,) + in_shape[1:]) == (None,) + out_shape[1:]
    assert layer(RNG.standard_normal(in_shape)).shape == out_shape
    assert layer.kernel.shape == layer.kernel_size + (4, in_shape[-1])


def _torch_check(torch, layer, x, torch_fn, torch_kernel):
    xt = fl.tensor(x, requires_grad=True)
    y = layer(xt)
    g = RNG.standard_normal(y.shape).astype("float32")
    y.backward(g)
    weight = torch.from_numpy(torch_kernel(layer.kernel.numpy())).requires_grad_()
    bias = torch.from_numpy(layer.bias.numpy()).requires_grad_()
    xr = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_()
    yr = torch.relu(torch_fn(xr, weight, bias))
    yr.backward(torch.from_numpy(g.transpose(0, 3, 1, 2).copy()))
    tol = dict(rtol=1e-4, atol=1e-4)
    numpy.testing.assert_allclose(y.numpy(), yr.detach().numpy().transpose(0, 2, 3, 1), **tol)
    numpy.testing.assert_allclose(layer.kernel.grad, torch_kernel(weight.grad.numpy(), back=True), **tol)
    numpy.testing.assert_allclose(layer.bias.grad, bias.grad.numpy(), **tol)
    numpy.testing.assert_allclose(xt.grad, xr.grad.numpy().transpose(0, 2, 3, 1), **tol)


def test_conv2d_matches_pytorch():
    layer = fl.layers.Conv2D(5, 3, strides=2, activation="relu", bias_initializer="random_normal")
    x = RNG.standard_normal((2, 9, 9, 3)).astype("float32")

    def kernel(k, back=False):  # HWIO <-> OIHW
        return k.transpose(2, 3, 1, 0).copy() if back else k.transpose(3, 2, 0, 1).copy()

    _torch_check(torch, layer, x, lambda xr, w, b: torch.nn.functional.conv2d(xr, w, b, stride=2), kernel)


def test_conv2d_transpose_matches_pytorch():
    layer = fl.layers.Conv2DTranspose(5, 3, strides=2, activation="relu", bias_initializer="random_normal")
    x = RNG.standard_normal((2, 4, 4, 3)).astype("float32")

    def kernel(k, back=False):  # HW(out)(in) <-> (in)(out)HW
        return k.transpose(2, 3, 1, 0).copy() if back else k.transpose(3, 2, 0, 1).copy()

    _torch_check(torch, layer, x, lambda xr, w, b: torch.nn.functional.conv_transpose2d(xr, w, b, stride=2),
                 kernel)


@pytest.mark.parametrize("cls", [fl.layers.Conv2D, fl.layers.Conv2DTranspose])
def test_gradients_config_and_logits(cls):
    layer = cls(3, 2, padding="same", activation="sigmoid", kernel_regularizer="l2")
    x = RNG.standard_normal((2, 4, 4, 2))
    assert_gradients_reach_weights(layer, x)
    numpy.testing.assert_allclose(fl.ops.sigmoid(layer.call_logits(x)).numpy(), layer(x).numpy(), rtol=1e-6)
    assert_config_round_trip(layer, x)


def test_conv2d_locks_channels_after_build():
    layer = fl.layers.Conv2D(4, 3)
    layer(numpy.ones((1, 5, 5, 3)))
    layer(numpy.ones((2, 7, 9, 3)))  # any image size, same channels
    with pytest.raises(ValueError, match=r"expected input with last dimension 3; got shape \(1, 5, 5, 1\)"):
        layer(numpy.ones((1, 5, 5, 1)))


def test_kernel_too_large_for_valid_padding():
    with pytest.raises(ValueError, match="does not fit"):
        fl.layers.Conv2D(4, 5).compute_output_shape((None, 3, 3, 1))


@pytest.mark.parametrize("cls", [fl.layers.Conv2D, fl.layers.Conv2DTranspose])
@pytest.mark.parametrize("kwargs, message", [
    ({"filters": 0, "kernel_size": 3}, r"`filters`.*Received: filters=0"),
    ({"filters": 2, "kernel_size": 0}, r"`kernel_size`.*Received: kernel_size=0"),
    ({"filters": 2, "kernel_size": (3, 3, 3)}, r"`kernel_size`.*Received: kernel_size=\(3, 3, 3\)"),
    ({"filters": 2, "kernel_size": 3, "strides": -1}, r"`strides`.*Received: strides=-1"),
    ({"filters": 2, "kernel_size": 3, "padding": "full"},
     r"`padding`, expected one of \('valid', 'same'\). Received: padding='full'"),
    ({"filters": 2, "kernel_size": 3, "activation": "swish"}, r"`activation`.*'swish'"),
])
def test_bad_arguments_name_the_argument_and_value(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


def test_bad_dilation_rate():
    with pytest.raises(ValueError, match=r"`dilation_rate`.*Received: dilation_rate=0"):
        fl.layers.Conv2D(2, 3, dilation_rate=0)
