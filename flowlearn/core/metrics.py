"""Streaming evaluation metrics, Keras style: ``update_state`` per batch, ``result()`` at the end.

Metrics read numpy/cupy arrays, Tensors or array-likes, never record gradients, and keep their
running totals as Python floats (AUC keeps the scores themselves, on the host). ``sample_weight``
is one weight per sample (shape ``(N,)`` or ``(N, 1)``), a scalar, or an array of the prediction's
shape. Every metric has a functional form that scores one pass: ``accuracy(y_true, y_pred)``.

>>> from flowlearn.core import metrics
>>> m = metrics.get("accuracy")
>>> m.update_state([0, 1], [[0.9, 0.1], [0.8, 0.2]])
>>> m.update_state([1], [[0.3, 0.7]])
>>> round(m.result(), 4)
0.6667
"""
import math

import numpy

from . import backend
from .serialization import Registry, Serializable
from .tensor import Tensor

__all__ = [
    "Metric", "Mean", "Accuracy", "RootMeanSquaredError", "MeanAbsoluteError", "AUC", "Precision", "Recall",
    "accuracy", "rmse", "mae", "auc", "precision", "recall", "get",
]


# -- input handling shared by every metric ---------------------------------------------------------
def _arrays(y_true, y_pred, sample_weight):
    """The raw arrays (gradients are never recorded), all on y_pred's device."""
    y_pred = y_pred.data if isinstance(y_pred, Tensor) else y_pred
    xp = backend.array_module(y_pred)
    device = backend.device_of(y_pred)

    def raw(value):
        value = value.data if isinstance(value, Tensor) else value
        return xp.asarray(backend.to_device(value, device))

    weights = None if sample_weight is None else raw(sample_weight).astype("float64")
    return xp, raw(y_true), xp.asarray(y_pred), weights


def _strip_ones(shape):
    while shape and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def _align(name, y_true, shape):
    """``y_true`` reshaped to ``shape`` where they differ only by trailing axes of 1."""
    if y_true.shape == shape:
        return y_true
    if _strip_ones(y_true.shape) != _strip_ones(shape):
        raise ValueError(
            f"{name}: y_true and y_pred shapes disagree: got y_true of shape {y_true.shape} where "
            f"{shape} was expected."
        )
    return y_true.reshape(shape)


def _broadcast_weights(name, xp, weights, shape):
    """Sample weights aligned on the leading (batch) axis and broadcast to ``shape``."""
    original = weights.shape
    while weights.ndim > len(shape) and weights.shape[-1] == 1:
        weights = weights.reshape(weights.shape[:-1])
    weights = weights.reshape(weights.shape + (1,) * (len(shape) - weights.ndim))
    try:
        return xp.broadcast_to(weights, shape)
    except ValueError:
        raise ValueError(
            f"{name}: sample_weight of shape {original} does not broadcast to the per-element shape {shape} "
            "(expected a scalar, one weight per sample, or y_pred's shape)."
        ) from None


# -- base classes -------------------------------------------------------------------------------
class Metric(Serializable):
    """Base of the streaming metrics: ``update_state``, ``result`` (a float), ``reset_state``.

    ``get_config()`` gives the constructor arguments (the name, and the threshold where there is one).
    """

    registry = Registry("metric")
    default_name = None

    def __init__(self, name=None):
        self.name = self.default_name if name is None else name
        self.reset_state()

    def update_state(self, y_true, y_pred, sample_weight=None):
        raise NotImplementedError

    def result(self):
        raise NotImplementedError

    def reset_state(self):
        raise NotImplementedError

    def __call__(self, y_true, y_pred, sample_weight=None):
        """Update with one batch and return the running result."""
        self.update_state(y_true, y_pred, sample_weight)
        return self.result()


class _MeanMetric(Metric):
    """Weighted mean of per-element values; subclasses give ``values(xp, y_true, y_pred)``."""

    def reset_state(self):
        self._total = 0.0
        self._count = 0.0

    def update_state(self, y_true, y_pred, sample_weight=None):
        xp, y_true, y_pred, weights = _arrays(y_true, y_pred, sample_weight)
        values = self.values(xp, y_true, y_pred)
        if weights is None:
            self._total += float(values.sum())
            self._count += values.size
        else:
            weights = _broadcast_weights(self.name, xp, weights, values.shape)
            self._total += float((values * weights).sum())
            self._count += float(weights.sum())

    def _mean(self):
        return self._total / self._count if self._count else 0.0

    def result(self):
        return self._mean()


class _ThresholdMixin:
    def __init__(self, threshold=0.5, name=None):
        self.threshold = float(threshold)
        super().__init__(name)


# -- the metrics --------------------------------------------------------------------------------
class Accuracy(_ThresholdMixin, _MeanMetric):
    """Fraction of correct predictions, read from ``y_pred`` as follows.

    * float scores with a class axis (last axis > 1): the class is the argmax; ``y_true`` is class
      labels, or one-hot rows (argmax taken too) when it has ``y_pred``'s shape;
    * float ``y_pred`` of shape ``(N,)`` or ``(N, 1)``: binary, positive where ``y_pred > threshold``;
    * integer or boolean ``y_pred``: labels, compared with ``y_true`` as they are.

    Float 1-D predictions are always scores: pass class labels as integers.

    >>> Accuracy()([1, 0, 1], [0.9, 0.2, 0.4])
    0.6666666666666666
    """

    default_name = "accuracy"

    def values(self, xp, y_true, y_pred):
        if y_pred.dtype.kind == "f" and y_pred.ndim >= 2 and y_pred.shape[-1] > 1:
            predicted = y_pred.argmax(axis=-1)
            if y_true.shape == y_pred.shape:
                return y_true.argmax(axis=-1) == predicted
            return _align(self.name, y_true, predicted.shape) == predicted
        if y_pred.dtype.kind == "f":
            y_pred = y_pred > self.threshold
        return _align(self.name, y_true, y_pred.shape) == y_pred


class Mean(_MeanMetric):
    """(Weighted) mean of every value seen: ``update_state(values, sample_weight=None)``.

    >>> m = Mean()
    >>> m.update_state([1.0, 2.0])
    >>> m.update_state([6.0])
    >>> m.result()
    3.0
    """

    default_name = "mean"

    def update_state(self, values, sample_weight=None):
        super().update_state(values, values, sample_weight)

    def values(self, xp, y_true, y_pred):
        return y_pred.astype("float64")

    def __call__(self, values, sample_weight=None):
        """Update with one batch of values and return the running mean."""
        self.update_state(values, sample_weight)
        return self.result()


class RootMeanSquaredError(_MeanMetric):
    """Square root of the (weighted) mean squared error over all elements.

    >>> RootMeanSquaredError()([0.0, 0.0], [3.0, 4.0])  # sqrt((9 + 16) / 2)
    3.5355339059327378
    """

    default_name = "root_mean_squared_error"

    def values(self, xp, y_true, y_pred):
        diff = y_pred.astype("float64") - _align(self.name, y_true, y_pred.shape)
        return diff * diff

    def result(self):
        return math.sqrt(self._mean())


class MeanAbsoluteError(_MeanMetric):
    """Mean absolute error over all elements.

    >>> MeanAbsoluteError()([0.0, 0.0], [3.0, -4.0])
    3.5
    """

    default_name = "mean_absolute_error"

    def values(self, xp, y_true, y_pred):
        return xp.abs(y_pred.astype("float64") - _align(self.name, y_true, y_pred.shape))


def _binary(name, xp, y_true, y_pred, weights):
    """Flat positive-class flags, scores and weights (or None); ``y_true`` is positive where > 0.5."""
    positive = _align(name, y_true, y_pred.shape) > 0.5
    if weights is not None:
        weights = _broadcast_weights(name, xp, weights, y_pred.shape).reshape(-1)
    return positive.reshape(-1), y_pred.reshape(-1), weights


class _Confusion(_ThresholdMixin, Metric):
    """Weighted true-positive, false-positive and false-negative counts of ``y_pred > threshold``.

    Binary: several columns are pooled (micro-averaged), as Keras does.
    """

    def reset_state(self):
        self._tp = self._fp = self._fn = 0.0

    def update_state(self, y_true, y_pred, sample_weight=None):
        xp, y_true, y_pred, weights = _arrays(y_true, y_pred, sample_weight)
        positive, scores, weights = _binary(self.name, xp, y_true, y_pred, weights)
        predicted = scores > self.threshold
        for attr, mask in (("_tp", positive & predicted), ("_fp", ~positive & predicted),
                           ("_fn", positive & ~predicted)):
            count = mask.sum() if weights is None else (mask * weights).sum()
            setattr(self, attr, getattr(self, attr) + float(count))

    @staticmethod
    def _ratio(hits, total):
        return hits / total if total else 0.0  # sklearn's zero_division=0


class Precision(_Confusion):
    """Precision ``tp / (tp + fp)`` of ``y_pred > threshold``; 0.0 when nothing is predicted positive.

    >>> Precision()([1, 0, 1], [0.9, 0.8, 0.1])
    0.5
    """

    default_name = "precision"

    def result(self):
        return self._ratio(self._tp, self._tp + self._fp)


class Recall(_Confusion):
    """Recall ``tp / (tp + fn)`` of ``y_pred > threshold``; 0.0 when there are no positives.

    >>> Recall()([1, 0, 1], [0.9, 0.8, 0.1])
    0.5
    """

    default_name = "recall"

    def result(self):
        return self._ratio(self._tp, self._tp + self._fn)


class AUC(Metric):
    """Area under the ROC curve, exact: the scores are kept and sorted (ties count one half).

    Memory grows with the number of scores seen (9 bytes each, 17 with weights). Several columns are
    pooled (micro-averaged), as Keras does. The result is NaN until both classes have been seen.

    >>> AUC()([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """

    default_name = "auc"

    def reset_state(self):
        self._batches = []  # (positive flags, scores, weights or None) as host numpy arrays

    def update_state(self, y_true, y_pred, sample_weight=None):
        xp, y_true, y_pred, weights = _arrays(y_true, y_pred, sample_weight)
        positive, scores, weights = _binary(self.name, xp, y_true, y_pred, weights)
        self._batches.append((
            backend.to_numpy(positive), backend.to_numpy(scores).astype(numpy.float64),
            None if weights is None else backend.to_numpy(weights),
        ))

    def result(self):
        if not self._batches:
            return float("nan")
        positive = numpy.concatenate([b[0] for b in self._batches])
        scores = numpy.concatenate([b[1] for b in self._batches])
        weights = numpy.concatenate([numpy.ones(b[1].size) if b[2] is None else b[2] for b in self._batches])
        self._batches = [(positive, scores, weights)]  # later calls do not re-concatenate
        order = numpy.argsort(-scores, kind="stable")
        scores, positive, weights = scores[order], positive[order], weights[order]
        # one ROC point per distinct score: tied scores move tpr and fpr together (a diagonal step)
        ends = numpy.r_[numpy.flatnonzero(numpy.diff(scores)), scores.size - 1]
        tp = numpy.r_[0.0, numpy.cumsum(weights * positive)[ends]]
        fp = numpy.r_[0.0, numpy.cumsum(weights * ~positive)[ends]]
        if tp[-1] <= 0 or fp[-1] <= 0:
            return float("nan")
        return float((numpy.diff(fp) * (tp[1:] + tp[:-1])).sum() / (2 * tp[-1] * fp[-1]))


# -- functional forms and lookup -----------------------------------------------------------------
def _once(metric, y_true, y_pred, sample_weight):
    metric.update_state(y_true, y_pred, sample_weight)
    return metric.result()


def accuracy(y_true, y_pred, sample_weight=None, threshold=0.5):
    """Accuracy of one set of predictions (see :class:`Accuracy` for how ``y_pred`` is read).

    >>> accuracy([2, 0], [[0.1, 0.2, 0.7], [0.5, 0.4, 0.1]])
    1.0
    """
    return _once(Accuracy(threshold), y_true, y_pred, sample_weight)


def rmse(y_true, y_pred, sample_weight=None):
    """Root mean squared error: ``rmse([0, 0], [6, 8]) == sqrt(50)``."""
    return _once(RootMeanSquaredError(), y_true, y_pred, sample_weight)


def mae(y_true, y_pred, sample_weight=None):
    """Mean absolute error. ``mae([0, 0], [3, -4]) == 3.5``."""
    return _once(MeanAbsoluteError(), y_true, y_pred, sample_weight)


def auc(y_true, y_score, sample_weight=None):
    """Exact ROC AUC (NaN when only one class is present). ``auc([0, 1], [0.2, 0.9]) == 1.0``."""
    return _once(AUC(), y_true, y_score, sample_weight)


def precision(y_true, y_pred, sample_weight=None, threshold=0.5):
    """Binary precision of ``y_pred > threshold``."""
    return _once(Precision(threshold), y_true, y_pred, sample_weight)


def recall(y_true, y_pred, sample_weight=None, threshold=0.5):
    """Binary recall of ``y_pred > threshold``."""
    return _once(Recall(threshold), y_true, y_pred, sample_weight)


Metric.registry.names.update(
    accuracy=Accuracy, acc=Accuracy,
    rmse=RootMeanSquaredError, root_mean_squared_error=RootMeanSquaredError,
    mae=MeanAbsoluteError, mean_absolute_error=MeanAbsoluteError,
    auc=AUC, precision=Precision, recall=Recall, mean=Mean,
)


def get(identifier):
    """A new metric from a name ("accuracy"/"acc", "rmse", "mae", "auc", "precision", "recall"),
    named after that string; or from a ``{"class_name", "config"}`` dict. Metric objects and other
    callables are returned as they are.

    >>> get("acc")
    Accuracy(threshold=0.5, name='acc')
    """
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, str):
        return Metric.registry.find(identifier)(name=identifier)
    if isinstance(identifier, dict):
        return Metric.registry.from_dict(identifier)
    if callable(identifier):
        return identifier
    raise TypeError(f"Could not interpret metric identifier: expected a string, dict, Metric or callable; "
                    f"got {identifier!r}.")
