"""Losses as fused primitives: one forward for the loss values, one backward formula for the gradient.

Conventions (shared by every loss here)
---------------------------------------
* Argument order is TensorFlow's ``tf.losses``: ``(labels, predictions)`` or ``(labels, logits)``.
  The Keras-style objects (:class:`MeanSquaredError`, ...) take ``(y_true, y_pred, sample_weight)``.
* Axis 0 is the batch. The *per-sample* loss is the element loss averaged over every other axis
  (for the cross-entropies: over every axis but the batch and the last, class, axis), as Keras
  averages over the last axis: ``mean_squared_error`` of ``(N, D)`` arrays has per-sample shape ``(N,)``.
* ``weights`` (sample weights) is None, a scalar, or one weight per sample (shape ``(N,)``, or
  ``(N, 1)``); weights are data and receive no gradient.
* ``reduction``: ``"mean"`` (Keras's "sum_over_batch_size", accepted as an alias) gives
  ``sum(weights * per_sample) / N``; ``"sum"`` gives ``sum(weights * per_sample)``; ``"none"`` gives
  the weighted per-sample vector of shape ``(N,)``.  With no weights, "mean" is the mean over all
  elements, as in PyTorch; "sum" is the sum of per-sample means (PyTorch's sum divided by the number
  of elements per sample).
* Labels and predictions of the element-wise losses may differ by a trailing axis of 1
  (``(N,)`` labels with ``(N, 1)`` predictions); any other shape difference is an error.
* Gradients go to the predictions / logits.  The regression losses (mse, mae, huber) also give one to
  ``labels`` when it requires grad; the cross-entropies treat labels as data (no gradient).
* The ``*_cross_entropy`` losses take logits and are stable for any finite logits (|x| = 1e4 gives
  exact limits, no overflow warnings). The Keras-named ``*_crossentropy`` losses take probabilities
  (clipped to ``[epsilon, 1 - epsilon]``, as Keras does) unless ``from_logits=True``.

>>> import flowlearn as fl
>>> from flowlearn.core import losses
>>> logits = fl.tensor([[2.0, 0.0], [0.0, 2.0]], requires_grad=True)
>>> loss = losses.sparse_softmax_cross_entropy([0, 1], logits)
>>> round(loss.item(), 4)
0.1269
>>> loss.backward()
>>> logits.grad.round(4)
array([[-0.0596,  0.0596],
       [ 0.0596, -0.0596]], dtype=float32)
"""
import math

import numpy

from . import backend
from .primitive import Primitive, apply
from .serialization import Registry, Serializable
from .tensor import Tensor, as_tensor

__all__ = [
    "mean_squared_error", "mean_absolute_error", "huber",
    "softmax_cross_entropy", "sparse_softmax_cross_entropy", "sigmoid_cross_entropy",
    "binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy",
    "Loss", "MeanSquaredError", "MeanAbsoluteError", "Huber",
    "BinaryCrossentropy", "CategoricalCrossentropy", "SparseCategoricalCrossentropy", "get",
]

REDUCTIONS = ("mean", "sum", "none")
EPSILON = 1e-7  # Keras's backend epsilon, used to clip probabilities


# -- reduction: shared by every primitive -------------------------------------------------------
def _sample_weights(xp, weights, n, dtype):
    """The optional weights input as an (n,) array of the loss dtype, or None."""
    if not weights:
        return None
    w = weights[0].astype(dtype, copy=False)
    if w.shape != (n,):
        w = xp.broadcast_to(w.reshape(-1), (n,))
    return w


def _reduce(xp, loss, weights, reduction):
    """Reduce element losses of shape (N, ...) to the requested output (see the module docstring)."""
    n = loss.shape[0]
    if weights is None and reduction != "none":
        total = loss.sum()
        divisor = max(loss.size, 1) if reduction == "mean" else math.prod(loss.shape[1:])
        return xp.asarray(total / divisor if divisor != 1 else total)
    per_sample = loss if loss.ndim == 1 else loss.reshape(n, math.prod(loss.shape[1:])).mean(axis=1)
    if weights is not None:
        per_sample = per_sample * weights
    if reduction == "none":
        return per_sample
    total = per_sample.sum()
    return xp.asarray(total / max(n, 1) if reduction == "mean" else total)


def _scale(grad, weights, reduction, loss_shape, ndim):
    """d(output)/d(element loss), shaped to broadcast against an array of rank ``ndim``."""
    n = loss_shape[0]
    divisor = math.prod(loss_shape[1:]) * (max(n, 1) if reduction == "mean" else 1)
    scale = grad / divisor if divisor != 1 else grad
    if weights is not None:
        scale = scale * weights
    if scale.ndim:
        scale = scale.reshape((n,) + (1,) * (ndim - 1))
    return scale


# -- the primitives -----------------------------------------------------------------------------
class _ElementwiseLoss(Primitive):
    """Losses comparing labels and predictions element by element.

    Subclasses give ``values(xp, labels, predictions, **attrs) -> (loss, saved)`` and
    ``derivative(xp, saved, **attrs)``: d loss / d predictions as a *fresh* array, which backward
    scales in place.
    """

    labels_grad = False  # True where the loss also differentiates w.r.t. labels (-derivative)

    @classmethod
    def forward(cls, xp, labels, predictions, *weights, reduction="mean", **attrs):
        label_info = (labels.shape, labels.dtype)
        if labels.shape != predictions.shape:  # a trailing axis of 1, checked by the caller
            labels = labels.reshape(predictions.shape)
        labels = labels.astype(predictions.dtype, copy=False)
        loss, saved = cls.values(xp, labels, predictions, **attrs)
        w = _sample_weights(xp, weights, loss.shape[0], predictions.dtype)
        return _reduce(xp, loss, w, reduction), (saved, w, label_info)

    @classmethod
    def backward(cls, xp, grad, saved, needs, reduction="mean", **attrs):
        inner, w, (label_shape, label_dtype) = saved
        g = cls.derivative(xp, inner, **attrs)
        g *= _scale(grad, w, reduction, g.shape, g.ndim)
        grad_labels = None
        if needs[0] and cls.labels_grad:
            grad_labels = (-g).reshape(label_shape).astype(label_dtype, copy=False)
        return (grad_labels, g if needs[1] else None) + (None,) * (len(needs) - 2)


class _SquaredError(_ElementwiseLoss):
    name = "mean_squared_error"
    labels_grad = True

    @staticmethod
    def values(xp, labels, predictions):
        diff = predictions - labels
        return diff * diff, diff

    @staticmethod
    def derivative(xp, diff):
        return diff * 2


class _AbsoluteError(_ElementwiseLoss):
    name = "mean_absolute_error"
    labels_grad = True

    @staticmethod
    def values(xp, labels, predictions):
        diff = predictions - labels
        return xp.abs(diff), diff

    @staticmethod
    def derivative(xp, diff):
        return xp.sign(diff)  # 0 where labels == predictions, as PyTorch's l1_loss


class _Huber(_ElementwiseLoss):
    name = "huber"
    labels_grad = True

    @staticmethod
    def values(xp, labels, predictions, delta):
        diff = predictions - labels
        size = xp.abs(diff)
        loss = xp.where(size <= delta, 0.5 * diff * diff, delta * (size - 0.5 * delta))
        return loss, diff

    @staticmethod
    def derivative(xp, diff, delta):
        return xp.clip(diff, -delta, delta)


class _SigmoidCrossEntropy(_ElementwiseLoss):
    name = "sigmoid_cross_entropy"

    @staticmethod
    def values(xp, labels, logits):
        # max(x, 0) - x z + log(1 + exp(-|x|)): exp only ever sees non-positive arguments.
        decay = xp.exp(-xp.abs(logits))
        loss = xp.maximum(logits, 0) - logits * labels + xp.log1p(decay)
        return loss, (logits, labels, decay)

    @staticmethod
    def derivative(xp, saved):
        logits, labels, decay = saved
        inverse = 1 / (1 + decay)
        grad = xp.where(logits >= 0, inverse, decay * inverse)  # sigmoid(x), from exp(-|x|)
        grad -= labels
        return grad


class _BinaryCrossentropy(_ElementwiseLoss):
    name = "binary_crossentropy"

    @staticmethod
    def values(xp, labels, probs, epsilon):
        clipped = xp.clip(probs, epsilon, 1 - epsilon)
        loss = -(labels * xp.log(clipped) + (1 - labels) * xp.log1p(-clipped))
        return loss, (probs, labels, clipped)

    @staticmethod
    def derivative(xp, saved, epsilon):
        probs, labels, clipped = saved
        grad = (clipped - labels) / (clipped * (1 - clipped))
        grad *= (probs >= epsilon) & (probs <= 1 - epsilon)  # the clip passes no gradient outside
        return grad


def _log_softmax(xp, logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    shifted -= xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))
    return shifted


def _class_rows(xp, array, labels):
    """(rows of ``array`` flattened to (M, C), row indices, class indices) for integer ``labels``."""
    rows = array.reshape(-1, array.shape[-1])
    return rows, xp.arange(rows.shape[0]), labels.reshape(-1)


def _integer_labels(labels, shape):
    labels = labels.reshape(shape) if labels.shape != shape else labels
    return labels if labels.dtype.kind in "iu" else labels.astype("int64")


class _SoftmaxCrossEntropy(Primitive):
    name = "softmax_cross_entropy"

    @staticmethod
    def forward(xp, labels, logits, *weights, reduction="mean"):
        labels = labels.astype(logits.dtype, copy=False)
        log_probs = _log_softmax(xp, logits)
        loss = -(labels * log_probs).sum(axis=-1)
        w = _sample_weights(xp, weights, loss.shape[0], logits.dtype)
        return _reduce(xp, loss, w, reduction), (log_probs, labels, w)

    @staticmethod
    def backward(xp, grad, saved, needs, reduction="mean"):
        # Fused (softmax - labels) * scale on one fresh array; exact when label rows sum to 1.
        log_probs, labels, w = saved
        g = xp.exp(log_probs)
        g -= labels
        g *= _scale(grad, w, reduction, g.shape[:-1], g.ndim)
        return (None, g) + (None,) * (len(needs) - 2)


class _SparseSoftmaxCrossEntropy(Primitive):
    name = "sparse_softmax_cross_entropy"

    @staticmethod
    def forward(xp, labels, logits, *weights, reduction="mean"):
        labels = _integer_labels(labels, logits.shape[:-1])
        log_probs = _log_softmax(xp, logits)
        rows, index, classes = _class_rows(xp, log_probs, labels)
        loss = -rows[index, classes].reshape(labels.shape)
        w = _sample_weights(xp, weights, loss.shape[0], logits.dtype)
        return _reduce(xp, loss, w, reduction), (log_probs, labels, w)

    @staticmethod
    def backward(xp, grad, saved, needs, reduction="mean"):
        log_probs, labels, w = saved
        g = xp.exp(log_probs)
        rows, index, classes = _class_rows(xp, g, labels)
        rows[index, classes] -= 1
        g *= _scale(grad, w, reduction, g.shape[:-1], g.ndim)
        return (None, g) + (None,) * (len(needs) - 2)


class _CategoricalCrossentropy(Primitive):
    """Keras's probability form: rows renormalised to sum to 1, clipped, then -sum(labels * log p)."""

    name = "categorical_crossentropy"

    @staticmethod
    def forward(xp, labels, probs, *weights, reduction="mean", epsilon=EPSILON):
        labels = labels.astype(probs.dtype, copy=False)
        total = probs.sum(axis=-1, keepdims=True)
        normalized = probs / total
        clipped = xp.clip(normalized, epsilon, 1 - epsilon)
        loss = -(labels * xp.log(clipped)).sum(axis=-1)
        w = _sample_weights(xp, weights, loss.shape[0], probs.dtype)
        return _reduce(xp, loss, w, reduction), (labels, normalized, clipped, total, w)

    @staticmethod
    def backward(xp, grad, saved, needs, reduction="mean", epsilon=EPSILON):
        labels, normalized, clipped, total, w = saved
        g_norm = -labels / clipped
        g_norm *= (normalized >= epsilon) & (normalized <= 1 - epsilon)
        # back through p = q / sum(q): dq = (dp - sum(dp * p)) / sum(q)
        g = g_norm - (g_norm * normalized).sum(axis=-1, keepdims=True)
        g /= total
        g *= _scale(grad, w, reduction, g.shape[:-1], g.ndim)
        return (None, g) + (None,) * (len(needs) - 2)


class _SparseCategoricalCrossentropy(_CategoricalCrossentropy):
    name = "sparse_categorical_crossentropy"

    @staticmethod
    def forward(xp, labels, probs, *weights, reduction="mean", epsilon=EPSILON):
        labels = _integer_labels(labels, probs.shape[:-1])
        one_hot = xp.zeros(probs.shape, dtype=probs.dtype)
        rows, index, classes = _class_rows(xp, one_hot, labels)
        rows[index, classes] = 1
        return _CategoricalCrossentropy.forward(xp, one_hot, probs, *weights, reduction=reduction, epsilon=epsilon)


# -- argument checking shared by the public functions ----------------------------------------------
def _check_reduction(fn, reduction):
    if reduction == "sum_over_batch_size":
        return "mean"
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"{fn}: Received an invalid value for `reduction`: expected one of {REDUCTIONS} "
            f"(or 'sum_over_batch_size'); got {reduction!r}."
        )
    return reduction


def _predictions(fn, value, what, min_ndim):
    value = value if isinstance(value, Tensor) else as_tensor(value)
    if value.dtype.kind != "f":
        raise TypeError(f"{fn}: expected float {what}; got dtype {value.dtype}.")
    if value.ndim < min_ndim:
        layout = "(batch, ..., classes)" if min_ndim > 1 else "(batch, ...)"
        raise ValueError(f"{fn}: expected {what} of shape {layout}; got shape {value.shape}.")
    return value


def _constant(fn, value, like, what):
    """``value`` as a Tensor on ``like``'s device; Tensors pass through unchanged (tracing sees them)."""
    if not isinstance(value, Tensor):
        xp = backend.array_module(like.data)
        value = Tensor._from_array(xp.asarray(backend.to_device(value, like.device)), False)
    if value.dtype.kind not in "biuf":
        raise TypeError(f"{fn}: expected numeric {what}; got dtype {value.dtype}.")
    return value


def _strip_ones(shape):
    while shape and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def _weights(fn, weights, like):
    """The weights input as a 0- or 1-tuple of Tensors, checked against the batch size."""
    if weights is None:
        return ()
    weights = _constant(fn, weights, like, "weights")
    n = like.shape[0]
    if _strip_ones(weights.shape) not in ((), (n,)):
        raise ValueError(
            f"{fn}: expected weights broadcastable to the per-sample loss shape ({n},) (a scalar or one "
            f"weight per sample); got weights of shape {weights.shape}."
        )
    return (weights,)


def _elementwise(primitive, fn, labels, predictions, weights, reduction, what="predictions", **attrs):
    reduction = _check_reduction(fn, reduction)
    predictions = _predictions(fn, predictions, what, 1)
    labels = _constant(fn, labels, predictions, "labels")
    a, b = labels.shape, predictions.shape
    if a != b and a + (1,) != b and a != b + (1,):
        raise ValueError(
            f"{fn}: labels and {what} must have the same shape (up to a trailing axis of 1); "
            f"got labels of shape {a} and {what} of shape {b}."
        )
    return apply(primitive, (labels, predictions) + _weights(fn, weights, predictions), reduction=reduction, **attrs)


def _dense_classes(primitive, fn, labels, predictions, weights, reduction, what, **attrs):
    reduction = _check_reduction(fn, reduction)
    predictions = _predictions(fn, predictions, what, 2)
    labels = _constant(fn, labels, predictions, "labels")
    if labels.shape != predictions.shape:
        hint = ""
        if labels.shape in (predictions.shape[:-1], predictions.shape[:-1] + (1,)):
            hint = " For integer class labels use the sparse_ form of this loss."
        raise ValueError(
            f"{fn}: expected labels of the same shape as {what} (one-hot or probability rows); got labels of "
            f"shape {labels.shape} and {what} of shape {predictions.shape}.{hint}"
        )
    return apply(primitive, (labels, predictions) + _weights(fn, weights, predictions), reduction=reduction, **attrs)


def _sparse_classes(primitive, fn, labels, predictions, weights, reduction, what, **attrs):
    reduction = _check_reduction(fn, reduction)
    predictions = _predictions(fn, predictions, what, 2)
    labels = _constant(fn, labels, predictions, "labels")
    expected = predictions.shape[:-1]
    if labels.shape != expected and labels.shape != expected + (1,):
        raise ValueError(
            f"{fn}: expected integer labels of shape {expected} for {what} of shape {predictions.shape}; "
            f"got labels of shape {labels.shape}."
        )
    _check_class_range(fn, labels.data, predictions.shape[-1])
    return apply(primitive, (labels, predictions) + _weights(fn, weights, predictions), reduction=reduction, **attrs)


def _check_class_range(fn, labels, n_classes):
    xp = backend.array_module(labels)
    if labels.dtype.kind == "f":
        if not bool((labels == xp.floor(labels)).all()):
            raise ValueError(f"{fn}: expected integer class labels; got non-integer values.")
    elif labels.dtype.kind not in "iu":
        raise TypeError(f"{fn}: expected integer class labels; got dtype {labels.dtype}.")
    if labels.size == 0:
        return
    if labels.min() < 0 or labels.max() >= n_classes:
        bad = backend.to_numpy(labels[(labels < 0) | (labels >= n_classes)])
        values = numpy.unique(bad)[:10].tolist()
        raise ValueError(
            f"{fn}: labels must be class indices in the range [0, {n_classes}) for {n_classes} classes; "
            f"got out-of-range values {values}."
        )


# -- public functions ---------------------------------------------------------------------------
def mean_squared_error(labels, predictions, *, weights=None, reduction="mean"):
    """Squared error ``(predictions - labels) ** 2``, averaged per sample then reduced.

    >>> float(mean_squared_error([0.0, 1.0], as_tensor([1.0, 3.0])).item())
    2.5
    """
    return _elementwise(_SquaredError, "mean_squared_error", labels, predictions, weights, reduction)


def mean_absolute_error(labels, predictions, *, weights=None, reduction="mean"):
    """Absolute error ``|predictions - labels|``, averaged per sample then reduced.

    >>> float(mean_absolute_error([0.0, 1.0], as_tensor([1.0, 3.0])).item())
    1.5
    """
    return _elementwise(_AbsoluteError, "mean_absolute_error", labels, predictions, weights, reduction)


def huber(labels, predictions, delta=1.0, *, weights=None, reduction="mean"):
    """Huber loss of ``d = predictions - labels``: ``0.5 d**2`` where ``|d| <= delta``, else
    ``delta * (|d| - 0.5 delta)``.

    >>> float(huber([0.0, 0.0], as_tensor([0.5, 3.0])).item())
    1.3125
    """
    delta = float(delta)
    if not delta > 0:
        raise ValueError(f"huber: expected a positive `delta`; got delta={delta}.")
    return _elementwise(_Huber, "huber", labels, predictions, weights, reduction, delta=delta)


def sigmoid_cross_entropy(labels, logits, *, weights=None, reduction="mean"):
    """Binary cross-entropy from logits, ``max(x, 0) - x z + log1p(exp(-|x|))``: stable for any finite x.

    ``labels`` are 0/1 (or probabilities) of the logits' shape, up to a trailing axis of 1.

    >>> round(float(sigmoid_cross_entropy([1.0, 0.0], as_tensor([1e4, 1e4])).item()), 1)
    5000.0
    """
    return _elementwise(_SigmoidCrossEntropy, "sigmoid_cross_entropy", labels, logits, weights, reduction,
                        what="logits")


def softmax_cross_entropy(labels, logits, *, weights=None, reduction="mean"):
    """Cross-entropy of ``softmax(logits)`` (last axis = classes) against one-hot or probability ``labels``.

    Each label row must sum to 1 (the fused gradient ``softmax - labels`` assumes it, as TensorFlow's).

    >>> round(float(softmax_cross_entropy([[0.5, 0.5]], as_tensor([[1.0, 1.0]])).item()), 4)
    0.6931
    """
    return _dense_classes(_SoftmaxCrossEntropy, "softmax_cross_entropy", labels, logits, weights, reduction, "logits")


def sparse_softmax_cross_entropy(labels, logits, *, weights=None, reduction="mean"):
    """Cross-entropy of ``softmax(logits)`` against integer class ``labels`` in ``[0, n_classes)``.

    ``labels`` has the logits' shape without the class axis (a trailing axis of 1 is accepted).

    >>> round(float(sparse_softmax_cross_entropy([1], as_tensor([[1.0, 1.0]])).item()), 4)
    0.6931
    """
    return _sparse_classes(_SparseSoftmaxCrossEntropy, "sparse_softmax_cross_entropy", labels, logits, weights,
                           reduction, "logits")


def binary_crossentropy(labels, predictions, *, from_logits=False, weights=None, reduction="mean",
                        epsilon=EPSILON):
    """Keras's binary cross-entropy on probabilities (clipped to ``[epsilon, 1 - epsilon]``).

    With ``from_logits=True`` this is :func:`sigmoid_cross_entropy`.

    >>> round(float(binary_crossentropy([1.0, 0.0], as_tensor([0.8, 0.2])).item()), 4)
    0.2231
    """
    if from_logits:
        return sigmoid_cross_entropy(labels, predictions, weights=weights, reduction=reduction)
    return _elementwise(_BinaryCrossentropy, "binary_crossentropy", labels, predictions, weights, reduction,
                        epsilon=float(epsilon))


def categorical_crossentropy(labels, predictions, *, from_logits=False, weights=None, reduction="mean",
                             epsilon=EPSILON):
    """Keras's categorical cross-entropy on probability rows (renormalised, clipped, then logged).

    With ``from_logits=True`` this is :func:`softmax_cross_entropy`.

    >>> round(float(categorical_crossentropy([[0.0, 1.0]], as_tensor([[0.5, 0.5]])).item()), 4)
    0.6931
    """
    if from_logits:
        return softmax_cross_entropy(labels, predictions, weights=weights, reduction=reduction)
    return _dense_classes(_CategoricalCrossentropy, "categorical_crossentropy", labels, predictions, weights,
                          reduction, "predictions", epsilon=float(epsilon))


def sparse_categorical_crossentropy(labels, predictions, *, from_logits=False, weights=None, reduction="mean",
                                    epsilon=EPSILON):
    """Keras's sparse categorical cross-entropy: integer ``labels``, probability rows ``predictions``.

    With ``from_logits=True`` this is :func:`sparse_softmax_cross_entropy`.

    >>> round(float(sparse_categorical_crossentropy([1], as_tensor([[0.5, 0.5]])).item()), 4)
    0.6931
    """
    if from_logits:
        return sparse_softmax_cross_entropy(labels, predictions, weights=weights, reduction=reduction)
    return _sparse_classes(_SparseCategoricalCrossentropy, "sparse_categorical_crossentropy", labels, predictions,
                           weights, reduction, "predictions", epsilon=float(epsilon))


# -- Keras-style loss objects -------------------------------------------------------------------
class Loss(Serializable):
    """Base of the Keras-style losses: ``loss(y_true, y_pred, sample_weight=None)`` returns a Tensor.

    ``reduction`` is "mean" (= Keras "sum_over_batch_size"), "sum" or "none"; ``get_config()`` gives
    the constructor arguments, so ``type(loss).from_config(loss.get_config())`` rebuilds it.
    """

    registry = Registry("loss")
    function = None  # the functional form, called as function(y_true, y_pred, weights=, reduction=, **options)
    default_name = None  # None: the function's name

    def __init__(self, reduction="mean", name=None, **options):
        self.reduction = _check_reduction(type(self).__name__, reduction)
        self.name = (self.default_name or type(self).function.__name__) if name is None else name
        # The function's own arguments (delta, from_logits): attributes too, and part of the config.
        self._options = options
        vars(self).update(options)

    def __call__(self, y_true, y_pred, sample_weight=None):
        return type(self).function(y_true, y_pred, weights=sample_weight, reduction=self.reduction, **self._options)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, **self._options}


class MeanSquaredError(Loss):
    """Keras ``MeanSquaredError``: see :func:`mean_squared_error`.

    >>> round(float(MeanSquaredError()([0.0, 1.0], as_tensor([1.0, 3.0])).item()), 4)
    2.5
    """

    function = staticmethod(mean_squared_error)


class MeanAbsoluteError(Loss):
    """Keras ``MeanAbsoluteError``: see :func:`mean_absolute_error`."""

    function = staticmethod(mean_absolute_error)


class Huber(Loss):
    """Keras ``Huber(delta=1.0)``: see :func:`huber`."""

    function = staticmethod(huber)
    default_name = "huber_loss"

    def __init__(self, delta=1.0, reduction="mean", name=None):
        super().__init__(reduction, name, delta=float(delta))


class _Crossentropy(Loss):
    def __init__(self, from_logits=False, reduction="mean", name=None):
        super().__init__(reduction, name, from_logits=bool(from_logits))


class BinaryCrossentropy(_Crossentropy):
    """Keras ``BinaryCrossentropy``: probabilities, or logits with ``from_logits=True``.

    >>> round(float(BinaryCrossentropy(from_logits=True)([1.0], as_tensor([0.0])).item()), 4)
    0.6931
    """

    function = staticmethod(binary_crossentropy)


class CategoricalCrossentropy(_Crossentropy):
    """Keras ``CategoricalCrossentropy``: one-hot/probability labels; see :func:`categorical_crossentropy`."""

    function = staticmethod(categorical_crossentropy)


class SparseCategoricalCrossentropy(_Crossentropy):
    """Keras ``SparseCategoricalCrossentropy``: integer labels; see :func:`sparse_categorical_crossentropy`."""

    function = staticmethod(sparse_categorical_crossentropy)


Loss.registry.names.update(
    mse=MeanSquaredError, mean_squared_error=MeanSquaredError,
    mae=MeanAbsoluteError, mean_absolute_error=MeanAbsoluteError,
    huber=Huber, huber_loss=Huber,
    binary_crossentropy=BinaryCrossentropy,
    categorical_crossentropy=CategoricalCrossentropy,
    sparse_categorical_crossentropy=SparseCategoricalCrossentropy,
)


def get(identifier):
    """A loss object from a Keras name, a class name, a ``{"class_name", "config"}`` dict or a callable.

    Strings give a new object with default arguments (the cross-entropies expect probabilities);
    Loss objects and other callables are returned as they are; None gives None.

    >>> get("mse")
    MeanSquaredError(name='mean_squared_error', reduction='mean')
    >>> get({"class_name": "BinaryCrossentropy", "config": {"from_logits": True}}).from_logits
    True
    """
    return Loss.registry.resolve(
        identifier,
        "Could not interpret loss identifier: expected a string, dict, Loss or callable; got {identifier!r}.",
    )
