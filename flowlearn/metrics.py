"""``fl.metrics``: streaming metric ops for an Estimator's ``eval_metric_ops``, as ``tf.metrics`` wrote them.

Inside a model_fn, ``fl.metrics.accuracy(labels, predictions)`` does not compute anything yet: it
returns a :class:`MetricOp` holding which metric, its settings and this batch's inputs. The model_fn
runs once per batch, so the op of one call sees one batch; whoever runs the evaluation keeps one
streaming metric per key and feeds it every batch's op::

    def model_fn(features, labels, mode, params):
        ...
        return EstimatorSpec(mode, loss=loss, eval_metric_ops={
            "accuracy": fl.metrics.accuracy(labels, predicted_classes),
            "auc": fl.metrics.auc(labels, probabilities),
        })

The API an evaluation loop (the Estimator) uses, three calls::

    state = {}                                           # one per evaluate()
    for batch in batches:
        spec = model_fn(features, labels, ModeKeys.EVAL, params)
        for key, op in spec.eval_metric_ops.items():
            op = fl.metrics.as_metric_op(op, key)        # also accepts TF's (value, update) pairs
            if key not in state:
                state[key] = op.create_state()           # a flowlearn.core.metrics.Metric
            op.update(state[key])                        # adds this batch
    results = {key: metric.result() for key, metric in state.items()}   # floats

The streaming metrics are the core's (:mod:`flowlearn.core.metrics`): totals as Python floats, exact
AUC from the kept scores. ``weights`` are TensorFlow's per-sample weights (``sample_weight`` in the
core). Unpacking ``value, update_op = fl.metrics.accuracy(...)`` works as it did in TensorFlow (both
names are the op), and :meth:`MetricOp.batch_result` gives this batch's value alone, e.g. to log it.

Differences from ``tf.metrics``: predictions are read as the core reads them (:class:`~flowlearn.core.
metrics.Accuracy`: integer predictions are compared with the labels, float scores with a class axis
are arg-maxed, a float column is thresholded at 0.5; precision and recall count ``predictions >
0.5`` as positive, which is TensorFlow's cast to bool for 0/1 predictions); ``auc`` is the exact ROC
area rather than a 200-threshold approximation.
"""
from .core import metrics as core_metrics

__all__ = [
    "MetricOp", "as_metric_op", "accuracy", "mean", "root_mean_squared_error", "rmse", "mean_absolute_error",
    "mae", "auc", "precision", "recall",
]


class MetricOp:
    """One batch's contribution to a streaming metric: the metric's class, its settings, this batch's inputs.

    Parameters
    ----------
    kind : type
        A :class:`flowlearn.core.metrics.Metric` subclass.
    config : dict
        Its constructor arguments (``threshold=`` and the like; ``name``).
    inputs : tuple
        The positional arguments of ``update_state`` for this batch (labels, predictions; or values).
    weights : array-like, optional
        Per-sample weights.
    """

    __slots__ = ("kind", "config", "inputs", "weights")

    def __init__(self, kind, config, inputs, weights=None):
        self.kind = kind
        self.config = config
        self.inputs = inputs
        self.weights = weights

    def create_state(self):
        """A new, empty streaming metric of this op's kind and settings (keep one per eval_metric_ops key)."""
        return self.kind(**self.config)

    def update(self, metric):
        """Add this batch to ``metric`` (made by :meth:`create_state` of an op of the same kind)."""
        if type(metric) is not self.kind or metric.get_config() != self.create_state().get_config():
            raise ValueError(
                f"MetricOp.update: expected the state of a {self.kind.__name__} with {self.config}; got "
                f"{metric!r}. Did the model_fn return another metric under the same eval_metric_ops key?"
            )
        metric.update_state(*self.inputs, sample_weight=self.weights)

    def batch_result(self):
        """The metric of this batch alone, as a float."""
        metric = self.create_state()
        self.update(metric)
        return metric.result()

    # TensorFlow's metrics returned (value_op, update_op): let `value, update = fl.metrics.x(...)` work.
    def __iter__(self):
        return iter((self, self))

    def __len__(self):
        return 2

    def __repr__(self):
        return f"<MetricOp {self.kind.__name__} {self.config}>"


def as_metric_op(value, key=None):
    """``value`` as a :class:`MetricOp`: an op passes through, TensorFlow's ``(value_op, update_op)`` pair of
    ops gives its update op; anything else is a TypeError naming ``key`` (the eval_metric_ops entry)."""
    if isinstance(value, MetricOp):
        return value
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, MetricOp) for v in value):
        return value[1]
    where = "" if key is None else f"eval_metric_ops[{key!r}]: "
    raise TypeError(
        f"{where}expected a metric op from fl.metrics (e.g. fl.metrics.accuracy(labels, predictions)) or a "
        f"(value_op, update_op) pair of them; got {type(value).__name__}."
    )


def _op(kind, labels, predictions, weights, name, **config):
    if name is not None:
        config["name"] = name
    return MetricOp(kind, config, (labels, predictions), weights)


def accuracy(labels, predictions, weights=None, name=None):
    """Streaming accuracy: how often ``predictions`` (class ids, or scores, see the module notes) match ``labels``.

    >>> op = accuracy([1, 0, 2], [1, 0, 0])
    >>> round(op.batch_result(), 4)
    0.6667
    """
    return _op(core_metrics.Accuracy, labels, predictions, weights, name)


def mean(values, weights=None, name=None):
    """Streaming (weighted) mean of ``values``, e.g. a loss component to report per evaluation.

    >>> mean([1.0, 2.0, 6.0]).batch_result()
    3.0
    """
    config = {} if name is None else {"name": name}
    return MetricOp(core_metrics.Mean, config, (values,), weights)


def root_mean_squared_error(labels, predictions, weights=None, name=None):
    """Streaming root mean squared error over all elements (the square root is taken at the end).

    >>> round(root_mean_squared_error([0.0, 0.0], [3.0, 4.0]).batch_result() ** 2, 6)
    12.5
    """
    return _op(core_metrics.RootMeanSquaredError, labels, predictions, weights, name)


def mean_absolute_error(labels, predictions, weights=None, name=None):
    """Streaming mean absolute error over all elements."""
    return _op(core_metrics.MeanAbsoluteError, labels, predictions, weights, name)


def auc(labels, predictions, weights=None, name=None, curve="ROC"):
    """Streaming area under the ROC curve of scores ``predictions`` for binary ``labels`` (exact, not binned).

    Only ``curve="ROC"`` is available.
    """
    if curve != "ROC":
        raise ValueError(f"fl.metrics.auc: only curve='ROC' is available; got curve={curve!r}.")
    return _op(core_metrics.AUC, labels, predictions, weights, name)


def precision(labels, predictions, weights=None, name=None, threshold=0.5):
    """Streaming binary precision of ``predictions > threshold`` against ``labels > 0.5``."""
    return _op(core_metrics.Precision, labels, predictions, weights, name, threshold=threshold)


def recall(labels, predictions, weights=None, name=None, threshold=0.5):
    """Streaming binary recall of ``predictions > threshold`` against ``labels > 0.5``."""
    return _op(core_metrics.Recall, labels, predictions, weights, name, threshold=threshold)


# The short names of the core's functional forms.
rmse = root_mean_squared_error
mae = mean_absolute_error
