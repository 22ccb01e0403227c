"""fl.metrics: MetricOps streamed over batches equal scikit-learn's metric of the concatenated batches."""
import numpy
import pytest
from sklearn import metrics as skm

import flowlearn as fl

RNG = numpy.random.default_rng(0)
N, SIZES = 103, (40, 40, 23)  # a short last batch, as an input_fn gives
LABELS = RNG.integers(0, 2, N)
SCORES = numpy.clip(LABELS * 0.3 + RNG.random(N) * 0.7, 0, 1).astype("float32")
CLASSES = RNG.integers(0, 4, N)
PREDICTED = numpy.where(RNG.random(N) < 0.6, CLASSES, RNG.integers(0, 4, N))
TARGET = RNG.standard_normal(N).astype("float32")
ESTIMATE = (TARGET + RNG.standard_normal(N) * 0.5).astype("float32")
WEIGHTS = RNG.random(N)
# sklearn would average float32 inputs in float32; the streaming metrics keep float64 totals
T64, E64 = TARGET.astype("float64"), ESTIMATE.astype("float64")


def _stream(make, *arrays, weights=None):
    """What an evaluation loop does: one op per batch (one model_fn run), one state per key."""
    state = None
    start = 0
    for size in SIZES:
        part = [fl.tensor(a[start:start + size]) for a in arrays]
        w = None if weights is None else weights[start:start + size]
        op = fl.metrics.as_metric_op(make(*part, weights=w), "key")
        if state is None:
            state = op.create_state()
        op.update(state)
        start += size
    return state.result()


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("make, arrays, reference", [
    (fl.metrics.accuracy, (CLASSES, PREDICTED), lambda w: skm.accuracy_score(CLASSES, PREDICTED, sample_weight=w)),
    (fl.metrics.root_mean_squared_error, (TARGET, ESTIMATE),
     lambda w: numpy.sqrt(skm.mean_squared_error(T64, E64, sample_weight=w))),
    (fl.metrics.rmse, (TARGET, ESTIMATE), lambda w: numpy.sqrt(skm.mean_squared_error(T64, E64, sample_weight=w))),
    (fl.metrics.mean_absolute_error, (TARGET, ESTIMATE),
     lambda w: skm.mean_absolute_error(T64, E64, sample_weight=w)),
    (fl.metrics.auc, (LABELS, SCORES), lambda w: skm.roc_auc_score(LABELS, SCORES, sample_weight=w)),
    (fl.metrics.precision, (LABELS, (SCORES > 0.5).astype("int64")),
     lambda w: skm.precision_score(LABELS, SCORES > 0.5, sample_weight=w)),
    (fl.metrics.recall, (LABELS, (SCORES > 0.5).astype("int64")),
     lambda w: skm.recall_score(LABELS, SCORES > 0.5, sample_weight=w)),
    (fl.metrics.mean, (ESTIMATE,), lambda w: numpy.average(E64, weights=w)),
], ids=["accuracy", "root_mean_squared_error", "rmse", "mean_absolute_error", "auc", "precision", "recall", "mean"])
def test_streaming_equals_sklearn_on_the_concatenation(make, arrays, reference, weighted):
    weights = WEIGHTS if weighted else None
    got = _stream(make, *arrays, weights=weights)
    assert got == pytest.approx(reference(weights), rel=1e-9, abs=1e-12)
    # and not merely the last batch's value
    last = make(*(a[-SIZES[-1]:] for a in arrays), weights=None if weights is None else weights[-SIZES[-1]:])
    assert last.batch_result() != pytest.approx(got, rel=1e-9)


def test_tensorflow_style_pairs_and_names():
    value, update = fl.metrics.accuracy(CLASSES, PREDICTED)
    assert value is update
    assert fl.metrics.as_metric_op((value, update)) is update
    op = fl.metrics.precision(LABELS, SCORES, threshold=0.7, name="p70")
    state = op.create_state()
    assert state.name == "p70" and state.threshold == 0.7
    op.update(state)
    assert state.result() == pytest.approx(skm.precision_score(LABELS, SCORES > 0.7))
    assert "Precision" in repr(op)


def test_mismatched_state_and_bad_entries_are_clear_errors():
    state = fl.metrics.accuracy(CLASSES, PREDICTED).create_state()
    with pytest.raises(ValueError, match=r"expected the state of a RootMeanSquaredError.*another metric under the "
                                         r"same eval_metric_ops key"):
        fl.metrics.rmse(TARGET, ESTIMATE).update(state)
    p50 = fl.metrics.precision(LABELS, SCORES).create_state()
    with pytest.raises(ValueError, match="expected the state of a Precision"):
        fl.metrics.precision(LABELS, SCORES, threshold=0.7).update(p50)
    with pytest.raises(TypeError, match=r"eval_metric_ops\['acc'\]: expected a metric op from fl.metrics.*got float"):
        fl.metrics.as_metric_op(0.5, "acc")
    with pytest.raises(ValueError, match="only curve='ROC'"):
        fl.metrics.auc(LABELS, SCORES, curve="PR")
