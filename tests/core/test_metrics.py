import json
import math

import numpy
import pytest
from sklearn import metrics as skm

import flowlearn as fl
from flowlearn.core import metrics


def _batches(n, parts=3):
    """Uneven consecutive slices covering range(n)."""
    edges = numpy.linspace(0, n, parts + 1).astype(int)
    edges[1] -= 1
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]


def _streamed(metric, y_true, y_pred, weights=None):
    metric.reset_state()
    for part in _batches(len(y_true)):
        metric.update_state(y_true[part], y_pred[part], None if weights is None else weights[part])
    return metric.result()


@pytest.fixture
def classification(rng):
    n, k = 60, 4
    labels = rng.integers(0, k, n)
    scores = rng.dirichlet(numpy.ones(k), size=n)
    return labels, scores, rng.uniform(0.1, 3.0, n)


@pytest.fixture
def binary(rng):
    n = 80
    y = rng.integers(0, 2, n)
    # rounded scores: many ties, which AUC must count one half
    scores = numpy.round(numpy.clip(0.3 * y + rng.uniform(0, 0.7, n), 0, 1), 1)
    return y, scores, rng.uniform(0.1, 3.0, n)


# -- accuracy -----------------------------------------------------------------------------------
def test_accuracy_of_class_scores_matches_sklearn(classification):
    labels, scores, weights = classification
    predicted = scores.argmax(axis=1)
    expected = skm.accuracy_score(labels, predicted)
    weighted = skm.accuracy_score(labels, predicted, sample_weight=weights)
    assert 0.1 < expected < 0.9  # a test that could fail
    assert metrics.accuracy(labels, scores) == pytest.approx(expected)
    assert metrics.accuracy(labels, scores, sample_weight=weights) == pytest.approx(weighted)
    assert metrics.accuracy(numpy.eye(4)[labels], scores, weights) == pytest.approx(weighted)  # one-hot y_true
    assert metrics.accuracy(labels.reshape(-1, 1), scores, weights.reshape(-1, 1)) == pytest.approx(weighted)
    assert metrics.accuracy(labels, predicted) == pytest.approx(expected)  # integer predictions are labels


def test_accuracy_streams_over_batches(classification):
    labels, scores, weights = classification
    expected = skm.accuracy_score(labels, scores.argmax(axis=1), sample_weight=weights)
    metric = metrics.Accuracy()
    metric.update_state(labels[:5], scores[:5])  # forgotten by reset_state below
    assert _streamed(metric, labels, scores, weights) == pytest.approx(expected)
    metric.reset_state()
    assert metric.result() == 0.0


@pytest.mark.parametrize("column", [False, True])
def test_binary_accuracy_thresholds_scores(binary, column):
    y, scores, weights = binary
    expected = skm.accuracy_score(y, scores > 0.5, sample_weight=weights)
    pred = scores.reshape(-1, 1) if column else scores
    assert metrics.accuracy(y, pred, weights) == pytest.approx(expected)
    assert metrics.accuracy(y, pred, threshold=0.25) == pytest.approx(skm.accuracy_score(y, scores > 0.25))


def test_metrics_read_tensors_without_recording(classification):
    labels, scores, _ = classification
    pred = fl.tensor(scores, requires_grad=True)
    assert metrics.accuracy(fl.tensor(labels), pred) == pytest.approx(
        skm.accuracy_score(labels, scores.argmax(axis=1)))
    assert metrics.rmse(fl.tensor(scores), pred) == 0.0
    assert pred.grad is None and pred._node is None


# -- regression ---------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(50,), (50, 3)])
def test_rmse_and_mae_match_sklearn(shape, rng):
    y = rng.standard_normal(shape)
    pred = y + rng.standard_normal(shape)
    weights = rng.uniform(0.1, 3.0, shape[0])
    expected_mse = skm.mean_squared_error(y, pred, sample_weight=weights)
    expected_mae = skm.mean_absolute_error(y, pred, sample_weight=weights)
    assert metrics.rmse(y, pred, weights) == pytest.approx(math.sqrt(expected_mse))
    assert metrics.mae(y, pred, weights) == pytest.approx(expected_mae)
    assert metrics.rmse(y, pred) == pytest.approx(math.sqrt(skm.mean_squared_error(y, pred)))
    assert metrics.mae(y, pred) == pytest.approx(skm.mean_absolute_error(y, pred))
    assert _streamed(metrics.RootMeanSquaredError(), y, pred, weights) == pytest.approx(math.sqrt(expected_mse))
    assert _streamed(metrics.MeanAbsoluteError(), y, pred, weights) == pytest.approx(expected_mae)


def test_regression_metrics_accept_a_column_against_a_vector(rng):
    y = rng.standard_normal(20)
    pred = rng.standard_normal((20, 1)).astype("float32")
    assert metrics.mae(y, pred) == pytest.approx(skm.mean_absolute_error(y, pred.ravel()), rel=1e-6)


# -- AUC, precision, recall ---------------------------------------------------------------------
def test_auc_matches_sklearn_with_ties_and_weights(binary):
    y, scores, weights = binary
    assert len(numpy.unique(scores)) < len(scores) / 4  # ties present
    assert metrics.auc(y, scores) == pytest.approx(skm.roc_auc_score(y, scores))
    expected = skm.roc_auc_score(y, scores, sample_weight=weights)
    assert metrics.auc(y, scores, weights) == pytest.approx(expected)
    metric = metrics.AUC()
    assert _streamed(metric, y, scores, weights) == pytest.approx(expected)
    assert metric.result() == pytest.approx(expected)  # result() may be called again
    assert _streamed(metric, y, scores.reshape(-1, 1)) == pytest.approx(skm.roc_auc_score(y, scores))


def test_auc_pools_columns_like_sklearn_micro(classification):
    labels, scores, _ = classification
    one_hot = numpy.eye(4)[labels]
    assert metrics.auc(one_hot, scores) == pytest.approx(skm.roc_auc_score(one_hot, scores, average="micro"))


def test_auc_is_nan_with_a_single_class():
    assert math.isnan(metrics.auc([1, 1, 1], [0.2, 0.5, 0.9]))
    assert math.isnan(metrics.AUC().result())


@pytest.mark.parametrize("threshold", [0.5, 0.35])
def test_precision_and_recall_match_sklearn(binary, threshold):
    y, scores, weights = binary
    predicted = scores > threshold
    for ours, cls, theirs in [(metrics.precision, metrics.Precision, skm.precision_score),
                              (metrics.recall, metrics.Recall, skm.recall_score)]:
        expected = theirs(y, predicted, sample_weight=weights)
        assert 0 < expected < 1
        assert ours(y, scores, weights, threshold=threshold) == pytest.approx(expected)
        assert ours(y, scores, threshold=threshold) == pytest.approx(theirs(y, predicted))
        assert _streamed(cls(threshold), y, scores, weights) == pytest.approx(expected)


def test_precision_and_recall_are_zero_when_undefined():
    assert metrics.precision([1, 0], [0.1, 0.2]) == 0.0  # nothing predicted positive
    assert metrics.recall([0, 0], [0.9, 0.2]) == 0.0  # no positives


# -- lookup, config, errors ---------------------------------------------------------------------
@pytest.mark.parametrize("name,cls", [
    ("accuracy", metrics.Accuracy), ("acc", metrics.Accuracy), ("rmse", metrics.RootMeanSquaredError),
    ("mae", metrics.MeanAbsoluteError), ("auc", metrics.AUC), ("precision", metrics.Precision),
    ("recall", metrics.Recall),
])
def test_get_builds_named_metrics_whose_config_round_trips(name, cls):
    metric = metrics.get(name)
    assert type(metric) is cls and metric.name == name
    config = metric.get_config()
    json.dumps(config)
    again = metrics.get({"class_name": cls.__name__, "config": config})
    assert type(again) is cls and again.get_config() == config
    assert metrics.get(metric) is metric


def test_get_rejects_unknown_names():
    with pytest.raises(ValueError, match=r"Unknown metric 'f1'; expected one of .*'accuracy'.*'recall'"):
        metrics.get("f1")
    with pytest.raises(TypeError, match="Could not interpret metric identifier"):
        metrics.get(3)


def test_mismatched_shapes_are_reported():
    with pytest.raises(ValueError, match=r"y_true of shape \(5,\) where \(4,\) was expected"):
        metrics.accuracy(numpy.zeros(5, dtype=int), numpy.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"sample_weight of shape \(3,\) does not broadcast .* \(4,\)"):
        metrics.mae(numpy.zeros(4), numpy.zeros(4), sample_weight=numpy.ones(3))
