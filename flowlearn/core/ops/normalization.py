"""Batch normalization (Ioffe & Szegedy 2015) with Keras's conventions: ``axis=-1`` is the feature
axis (Dense (N, C) and NHWC images alike), ``momentum=0.99``, ``epsilon=1e-3``.

Three primitives:

``batch_moments`` (no gradient)
    the batch mean and biased variance over every axis but ``axis``, stacked as a (2, C) array;
``batch_norm_train``
    inputs ``(x, moments, [gamma], [beta])``; its backward is the fused formula for the gradient
    through the batch statistics as well, so ``moments`` must be ``batch_moments(x)``;
``batch_norm_inference``
    inputs ``(x, mean, variance, [gamma], [beta])``, with gradients for all of them.

Why the statistics are a separate node: :func:`flowlearn.core.primitive.apply` keeps a primitive's
``saved`` only when it records a node for backward, so under ``no_grad`` or ``trace`` a wrapper
could not read statistics out of it. As an input computed by a recorded primitive they are always
at hand for the moving-average update, computed once, and a traced training graph recomputes them
from each replayed batch instead of freezing the ones seen while tracing.

Moving statistics follow Keras 3 (``keras/src/layers/normalization/batch_normalization.py``):
``moving = moving * momentum + batch * (1 - momentum)`` with the *biased* batch variance (divided by
the number of values per channel, as ``keras.ops.moments`` returns it). PyTorch differs twice: its
``momentum`` is ``1 - momentum`` here, and its ``running_var`` takes the *unbiased* variance
(divided by count - 1).
"""
import numbers
from math import prod

__all__ = ["batch_norm"]

from ..config import is_training
from ..primitive import Primitive, apply
from ..tensor import Tensor, as_tensor
from ._args import float_input
from .activation import _normalize_axis


class _Layout:
    """How per-channel (C,) vectors meet an input of ``shape`` whose channels are on ``axis``.

    Channels last (Dense, NHWC), the input is viewed as rows (N, everything else) with the vectors
    tiled along a row: numpy broadcasts a (C,) vector in inner loops only C long, and one long row
    runs about twice as fast; a GEMV with a ones vector sums the rows ~10x faster than
    ``sum(axis=(0, 1, 2))``. Other axes use plain broadcasting and sums.
    """

    __slots__ = ("shape", "channels", "count", "rows", "repeat", "axes", "vector_shape")

    def __init__(self, shape, axis):
        self.shape = shape
        self.channels = shape[axis]
        self.count = prod(shape) // self.channels if self.channels else 0
        self.rows = shape
        self.axes = None
        if axis == len(shape) - 1 and len(shape) > 1:
            self.rows = (shape[0], prod(shape[1:]))
            self.repeat = prod(shape[1:-1])
        else:
            self.axes = tuple(i for i in range(len(shape)) if i != axis)
            self.vector_shape = (1,) * axis + (self.channels,) + (1,) * (len(shape) - axis - 1)

    def view(self, a):
        return a.reshape(self.rows)

    def spread(self, xp, vector):
        """A (C,) vector shaped to broadcast against :meth:`view`."""
        if self.axes is not None:
            return vector.reshape(self.vector_shape)
        return xp.tile(vector, self.repeat) if self.repeat > 1 else vector

    def total(self, xp, a):
        """Per-channel sums of ``a`` (in :meth:`view` layout), as a (C,) vector."""
        if self.axes is not None:
            return a.sum(axis=self.axes)
        sums = xp.ones(a.shape[0], dtype=a.dtype) @ a
        return sums.reshape(self.repeat, self.channels).sum(axis=0) if self.repeat > 1 else sums


def _split_params(params, scale, center):
    gamma = params[0] if scale else None
    beta = params[-1] if center else None
    return gamma, beta


class BatchMoments(Primitive):
    name = "batch_moments"
    differentiable = False

    @staticmethod
    def forward(xp, x, axis):
        layout = _Layout(x.shape, axis)
        rows = layout.view(x)
        mean = layout.total(xp, rows)
        mean /= layout.count
        # Two passes (mean, then mean squared deviation): E[x^2] - E[x]^2 loses float32 precision
        # as soon as |mean| is large next to the spread.
        centered = rows - layout.spread(xp, mean)
        centered *= centered
        variance = layout.total(xp, centered)
        variance /= layout.count
        return xp.stack((mean, variance)), None


class BatchNormTrain(Primitive):
    name = "batch_norm_train"

    @staticmethod
    def forward(xp, x, moments, *params, axis, epsilon, scale, center):
        layout = _Layout(x.shape, axis)
        dtype = x.dtype
        gamma, beta = _split_params(params, scale, center)
        inv_std = 1 / xp.sqrt(moments[1].astype(dtype, copy=False) + epsilon)
        x_hat = layout.view(x) - layout.spread(xp, moments[0].astype(dtype, copy=False))
        x_hat *= layout.spread(xp, inv_std)
        y = x_hat
        if gamma is not None:
            y = x_hat * layout.spread(xp, gamma.astype(dtype, copy=False))
        if beta is not None:
            beta = layout.spread(xp, beta.astype(dtype, copy=False))
            if y is x_hat:
                y = x_hat + beta
            else:
                y += beta
        return y.reshape(x.shape), (layout, x_hat, inv_std, gamma, None if beta is None else params[-1].dtype)

    @staticmethod
    def backward(xp, grad, saved, needs, axis, epsilon, scale, center):
        layout, x_hat, inv_std, gamma, beta_dtype = saved
        need_gamma = scale and needs[2]
        need_beta = center and needs[-1]
        grad = layout.view(grad)
        d_beta = layout.total(xp, grad) if needs[0] or need_beta else None
        d_gamma = layout.total(xp, grad * x_hat) if needs[0] or need_gamma else None
        d_x = None
        if needs[0]:
            # dx = gamma / std * (g - mean(g) - x_hat * mean(g * x_hat)), means over the batch axes.
            d_x = x_hat * layout.spread(xp, d_gamma / -layout.count)
            d_x += grad
            d_x -= layout.spread(xp, d_beta / layout.count)
            d_x *= layout.spread(xp, inv_std if gamma is None else inv_std * gamma.astype(grad.dtype, copy=False))
            d_x = d_x.reshape(layout.shape)
        grads = [d_x, None]
        if scale:
            grads.append(d_gamma.astype(gamma.dtype, copy=False) if need_gamma else None)
        if center:
            grads.append(d_beta.astype(beta_dtype, copy=False) if need_beta else None)
        return tuple(grads)


class BatchNormInference(Primitive):
    name = "batch_norm_inference"

    @staticmethod
    def forward(xp, x, mean, variance, *params, axis, epsilon, scale, center):
        layout = _Layout(x.shape, axis)
        dtype = x.dtype
        gamma, beta = _split_params(params, scale, center)
        # A copy: moving statistics are updated in place, and backward must see today's values.
        mean = mean.astype(dtype)
        inv_std = 1 / xp.sqrt(variance.astype(dtype, copy=False) + epsilon)
        multiplier = inv_std if gamma is None else inv_std * gamma.astype(dtype, copy=False)
        shift = mean * -multiplier
        if beta is not None:
            shift += beta.astype(dtype, copy=False)
        y = layout.view(x) * layout.spread(xp, multiplier)
        y += layout.spread(xp, shift)
        saved = (layout, x, mean, inv_std, multiplier, gamma, variance.dtype, None if beta is None else beta.dtype)
        return y.reshape(x.shape), saved

    @staticmethod
    def backward(xp, grad, saved, needs, axis, epsilon, scale, center):
        layout, x, mean, inv_std, multiplier, gamma, variance_dtype, beta_dtype = saved
        need_gamma = scale and needs[3]
        need_beta = center and needs[-1]
        grad = layout.view(grad)
        d_x = (grad * layout.spread(xp, multiplier)).reshape(layout.shape) if needs[0] else None
        d_mean = d_variance = d_gamma = d_beta = None
        if needs[1] or need_beta:
            d_beta = layout.total(xp, grad)
            if needs[1]:
                d_mean = (d_beta * -multiplier).astype(mean.dtype, copy=False)
        if needs[2] or need_gamma:
            # s = sum(g * (x - mean)): dgamma = s / std, dvariance = -gamma * s / (2 std^3).
            centered = layout.view(x) - layout.spread(xp, mean)
            centered *= grad
            s = layout.total(xp, centered)
            if need_gamma:
                d_gamma = (s * inv_std).astype(gamma.dtype, copy=False)
            if needs[2]:
                d_variance = (s * multiplier * inv_std * inv_std * -0.5).astype(variance_dtype, copy=False)
        grads = [d_x, d_mean, d_variance]
        if scale:
            grads.append(d_gamma)
        if center:
            grads.append(d_beta.astype(beta_dtype, copy=False) if need_beta else None)
        return tuple(grads)


def _check_number(name, value, high):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= high:
        raise ValueError(f"batch_norm: expected `{name}` in [0, {high}]; got {name}={value!r}.")
    return float(value)


def _channel_vector(name, value, x, channels):
    value = as_tensor(value, like=x)
    if value.shape != (channels,):
        raise ValueError(
            f"batch_norm: expected `{name}` of shape ({channels},) to match input axis of size {channels}; "
            f"got shape {value.shape}."
        )
    return value


def _check_moving(name, moving, x, channels):
    if not isinstance(moving, Tensor):
        raise TypeError(
            f"batch_norm: expected `{name}` to be a Tensor (training updates it in place); "
            f"got {type(moving).__name__}."
        )
    if moving.device != x.device:
        raise ValueError(f"batch_norm: expected `{name}` on the input's device {x.device!r}; got {moving.device!r}.")
    _channel_vector(name, moving, x, channels)


def _update_moving(moving, batch, momentum):
    data = moving.data
    data *= momentum
    data += batch * (1.0 - momentum)
    moving._bump_version()  # a batch_norm inference node may have saved the old values


def batch_norm(x, gamma, beta, moving_mean=None, moving_variance=None, training=False, momentum=0.99,
               epsilon=1e-3, axis=-1):
    """Normalise ``x`` per channel of ``axis``, then scale by ``gamma`` and shift by ``beta``.

    In training, the statistics are the batch's (over every axis but ``axis``) and, when
    ``moving_mean`` and ``moving_variance`` Tensors are given, they are updated in place, outside
    autodiff: ``moving = moving * momentum + batch * (1 - momentum)``, with the biased batch
    variance as in Keras (PyTorch's running_var uses the unbiased one). In inference the moving
    statistics normalise instead and are required.

    Parameters
    ----------
    x : Tensor
        Float input, e.g. (N, C) or NHWC (N, H, W, C).
    gamma, beta : Tensor of shape (C,) or None
        Scale and offset; None leaves that step out (Keras's ``scale=False`` / ``center=False``).
    moving_mean, moving_variance : Tensor of shape (C,), optional
    training : bool or None
        None reads :func:`flowlearn.core.config.is_training`.
    momentum : float in [0, 1]
    epsilon : float >= 0
        Added to the variance.
    axis : int
        The channel axis.

    >>> import flowlearn as fl
    >>> x = fl.tensor([[1.0, 10.0], [3.0, 30.0]])
    >>> mean, var = fl.tensor([0.0, 0.0]), fl.tensor([1.0, 1.0])
    >>> fl.ops.batch_norm(x, None, None, mean, var, training=True, momentum=0.5, epsilon=0.0)
    tensor([[-1., -1.],
           [ 1.,  1.]], dtype=float32)
    >>> mean, var  # 0.5 * old + 0.5 * batch: batch mean [2, 20], biased variance [1, 100]
    (tensor([ 1., 10.], dtype=float32), tensor([ 1. , 50.5], dtype=float32))
    """
    x = float_input("batch_norm", x)
    axis = _normalize_axis("batch_norm", axis, x.ndim)
    epsilon = _check_number("epsilon", epsilon, float("inf"))
    channels = x.shape[axis]
    params = [_channel_vector(name, value, x, channels)
              for name, value in (("gamma", gamma), ("beta", beta)) if value is not None]
    attrs = {"axis": axis, "epsilon": epsilon, "scale": gamma is not None, "center": beta is not None}
    if training is None:
        training = is_training()
    if not training:
        if moving_mean is None or moving_variance is None:
            raise ValueError(
                "batch_norm: inference (training=False) normalises with `moving_mean` and `moving_variance`; "
                f"got moving_mean={'None' if moving_mean is None else 'given'}, "
                f"moving_variance={'None' if moving_variance is None else 'given'}."
            )
        statistics = [_channel_vector(name, value, x, channels)
                      for name, value in (("moving_mean", moving_mean), ("moving_variance", moving_variance))]
        return apply(BatchNormInference, (x, *statistics, *params), **attrs)
    momentum = _check_number("momentum", momentum, 1)
    if (moving_mean is None) != (moving_variance is None):
        raise ValueError("batch_norm: expected both `moving_mean` and `moving_variance`, or neither; got one.")
    if moving_mean is not None:
        _check_moving("moving_mean", moving_mean, x, channels)
        _check_moving("moving_variance", moving_variance, x, channels)
    if x.size == 0:
        raise ValueError(f"batch_norm: training needs at least one value per channel; got shape {x.shape}.")
    moments = apply(BatchMoments, (x,), axis=axis)
    y = apply(BatchNormTrain, (x, moments, *params), **attrs)
    if moving_mean is not None:
        _update_moving(moving_mean, moments.data[0], momentum)
        _update_moving(moving_variance, moments.data[1], momentum)
    return y
