"""Prediction and the early-stopping validation pass: unpadded chunks, one forward for both, cheap input checks.

No timings here (see benchmarks/predict_bench.py): these tests pin down what makes prediction fast -
the network sees batches of the real number of rows - and that nothing was lost on the way.
"""
import warnings

import numpy
import pandas
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils.estimator_checks import check_methods_sample_order_invariance, check_methods_subset_invariance

from flowlearn.core import parallel
from flowlearn.estimators import (
    AutoEncoder, CNNClassifier, DNNClassifier, DNNRegressor, LinearClassifier, LinearRegressor,
)
from flowlearn.layers import Dense, Sequential

ALL = [LinearRegressor, LinearClassifier, DNNClassifier, DNNRegressor, AutoEncoder, CNNClassifier]
ids = [cls.__name__ for cls in ALL]
# float32 rounding of a few layers (on logits of a few units, near zero too): what separates a row's
# output alone from its output in a batch.
ROUNDING = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16.0)[:400], y[:400]


def small(cls, **params):
    sizes = {
        DNNClassifier: dict(hidden_units=(32, 16)),
        DNNRegressor: dict(hidden_units=(32, 16)),
        AutoEncoder: dict(hidden_units=(32, 8)),
        CNNClassifier: dict(conv_filters=(4,), dense_units=(16,)),
    }.get(cls, {})
    return cls(**{"epochs": 2, "n_iter_no_change": None, "batch_size": 64, "random_state": 0, **sizes, **params})


def fitted(cls, X, y, **params):
    model = small(cls, **params)
    return model.fit(X) if cls is AutoEncoder else model.fit(X, y)


def outputs(model, X):
    """Every prediction method of ``model`` on X, by name."""
    names = ["predict", "decision_function", "predict_proba", "predict_log_proba", "transform", "reconstruct",
             "score_samples"]
    return {name: getattr(model, name)(X) for name in names if hasattr(model, name)}


def replay_spy(network, record):
    """A stand-in for the ``run`` of ``network``'s traced replay plan that calls ``record(x)`` first."""
    original = network._inference_plan.graph.run

    def run(x):
        record(x)
        return original(x)

    return run


def spy_batches(model, X):
    """Record the number of rows each layer of the fitted ``model`` is called with, and those its traced
    replay (flowlearn/layers/inference.py), which runs the layers' ops without calling the layers, is run on."""
    seen = []
    model._forward(model._validate_input(X[:2]))  # traces the replay plan (on two rows) before the spying
    network = model._model
    network._inference_plan.graph.run = replay_spy(network, lambda x: seen.append((network.layers[0].name, len(x))))
    for layer in model._model.layers:
        original = layer.call

        def call(inputs, *args, _original=original, _name=layer.name, **kwargs):
            seen.append((_name, inputs.shape[0]))
            return _original(inputs, *args, **kwargs)

        layer.call = call
    return seen


# -- no padding ------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_every_layer_sees_the_real_number_of_rows(cls, digits):
    X, y = digits
    model = fitted(cls, X, y)
    seen = spy_batches(model, X)
    model.predict(X[:1])
    assert seen and {rows for _, rows in seen} == {1}  # one row is one row's work, never a padded batch
    seen.clear()
    model.predict(X[:7])
    assert {rows for _, rows in seen} == {7}


def test_more_rows_than_a_chunk_go_in_unpadded_chunks(digits):
    X, y = digits
    model = fitted(DNNClassifier, X, y)
    model._predict_batch_size = 64  # the smallest chunk the estimators use
    seen = spy_batches(model, X)
    model.predict(X[:150])
    first_layer = [rows for name, rows in seen if name == model._model.layers[0].name]
    assert first_layer == [64, 64, 22]


# -- results ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_a_row_predicts_alone_as_within_a_batch_to_float_rounding(cls, digits):
    X, y = digits
    model = fitted(cls, X, y)
    together = outputs(model, X)
    for index in (0, 1, 57, len(X) - 1):
        alone = outputs(model, X[index:index + 1])
        for name, values in together.items():
            if values.dtype.kind != "f":  # labels (or +-1) could flip only at a tie, which these rows are not near
                assert alone[name][0] == values[index], name
            else:
                numpy.testing.assert_allclose(alone[name][0], values[index], **ROUNDING, err_msg=name)
    order = numpy.random.default_rng(0).permutation(len(X))
    for name, values in outputs(model, X[order]).items():
        numpy.testing.assert_allclose(values, together[name][order], **ROUNDING, err_msg=name)


@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_batch_invariance_checks_in_float64(cls, float64):
    # scikit-learn's checks ask rtol=1e-7, below float32 rounding (they are expected failures in
    # test_estimator_checks.py); in float64 the batch-size-dependent rounding is far below it.
    estimator = cls(random_state=0)
    check_methods_subset_invariance(cls.__name__, estimator)
    check_methods_sample_order_invariance(cls.__name__, estimator)


@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_chunked_prediction_equals_unchunked(cls, digits):
    X, y = digits
    model = fitted(cls, X, y)
    whole = outputs(model, X)  # 400 rows: one chunk
    model._predict_batch_size = 64
    assert model._prediction_rows() == 64 and len(X) > 2 * 64
    for name, values in outputs(model, X).items():
        numpy.testing.assert_allclose(values, whole[name], **ROUNDING, err_msg=name)
    rows = numpy.random.default_rng(1).permutation(len(X))[:150]  # the validation pass's gather of rows
    numpy.testing.assert_allclose(model._forward(X, rows), model._forward(X[rows]), **ROUNDING)


def test_no_rows_give_an_empty_output_of_the_right_shape(digits):
    X, y = digits
    model = fitted(AutoEncoder, X, y)  # its forward runs whole, or as encoder and decoder apart
    assert model._forward(X[:0]).shape == (0, X.shape[1])
    assert model._forward(X[:0], stop=model._n_encoder_layers).shape == (0, 8)
    assert model._forward(X, numpy.array([], dtype=numpy.intp)).shape == (0, X.shape[1])


@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_predict_leaves_the_input_unchanged(cls, digits):
    X, y = digits
    model = fitted(cls, X, y)
    for dtype in (numpy.float32, numpy.float64):
        data = X[:100].astype(dtype)  # float32 goes through without a copy: no layer may write into it
        before = data.copy()
        outputs(model, data)
        numpy.testing.assert_array_equal(data, before)


# -- early stopping --------------------------------------------------------------------------------
@pytest.mark.parametrize("weighted", [False, True])
def test_early_stopping_validates_through_the_prediction_forward(digits, weighted):
    X, y = digits
    weights = numpy.random.default_rng(0).uniform(0.5, 2.0, len(X)).astype(numpy.float32) if weighted else None
    model = small(DNNClassifier, early_stopping=True, validation_fraction=0.2, epochs=3)
    calls = []
    forward = type(model)._forward

    def spy(X, rows=None, start=0, stop=None):
        calls.append(rows)
        return forward(model, X, rows, start, stop)

    model._forward = spy
    model.fit(X, y, sample_weight=weights)
    assert len(calls) == 3 and all(rows is not None and len(rows) == 80 for rows in calls)
    rows = calls[-1]
    del model._forward
    # The logged score is accuracy_score's on the held-out rows, and the network saw them unpadded.
    expected = accuracy_score(y[rows], model.predict(X[rows]), sample_weight=None if weights is None else weights[rows])
    assert model.validation_scores_[-1] == pytest.approx(expected, rel=1e-9)
    seen = spy_batches(model, X)
    model._validation_score(X.astype(numpy.float32), numpy.searchsorted(model.classes_, y), None, rows)
    assert {count for _, count in seen} == {80}


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("hit", [True, False], ids=["constant-column-hit", "constant-column-missed"])
def test_the_regressors_validation_score_is_r2_score(weighted, hit):
    rng = numpy.random.default_rng(0)
    targets = rng.random((50, 3)).astype(numpy.float32)
    targets[:, 2] = 0.5  # a constant column: r2 is 1 where it is predicted exactly, else 0
    weights = rng.uniform(0.5, 2.0, 50).astype(numpy.float32) if weighted else None
    rows = numpy.sort(rng.permutation(50)[:20])
    predicted = targets[rows] + rng.normal(0, 0.2, (20, 3))
    predicted[:, 2] = 0.5 if hit else 0.4
    model = DNNRegressor()
    model._forward = lambda X, rows: predicted.copy()
    expected = r2_score(targets[rows], predicted, sample_weight=None if weights is None else weights[rows])
    assert model._validation_score(None, targets, weights, rows) == pytest.approx(expected, rel=1e-9)


def test_validation_inside_fit_leaves_blas_held_until_fit_ends(digits, monkeypatch):
    X, y = digits
    released = []
    release = parallel._blas.release
    monkeypatch.setattr(parallel._blas, "release", lambda: released.append(1) or release())
    small(DNNClassifier, early_stopping=True, epochs=3).fit(X, y)
    assert len(released) == 1  # at the end of fit; not after each epoch's validation pass
    small(DNNClassifier, epochs=1).fit(X, y).predict(X[:1])
    assert len(released) == 3  # fit and predict each end a stretch of work


def _lone_row_calls(model, X, choose, monkeypatch, calls=3):
    """``holding`` seen inside and after each of ``calls`` one-row predictions when the regime is ``choose``."""
    monkeypatch.setattr(parallel._blas, "last_threaded", float("-inf"))  # no mid-sized product ran lately
    monkeypatch.setattr(parallel.BlasThreadChoice, "_choose", lambda self: choose)
    inside, after = [], []
    model._forward(model._validate_input(X[:2]))  # traces the replay
    model._model._inference_plan.graph.run = replay_spy(model._model, lambda x: inside.append(parallel._blas.holding))
    for _ in range(calls):
        model.predict(X[:1])
        after.append(parallel._blas.holding)
    return inside, after


@pytest.fixture
def cnn_and_rows(digits):
    """A fitted CNNClassifier and its rows, where threadpoolctl can set BLAS's threads."""
    if not parallel._blas._lookup():
        pytest.skip("threadpoolctl finds no BLAS whose threads it can set")
    X, y = digits
    return fitted(CNNClassifier, X, y), X


def test_a_lone_row_on_one_blas_thread_keeps_the_hold_until_a_threaded_or_larger_call(cnn_and_rows, monkeypatch):
    model, X = cnn_and_rows
    inside, after = _lone_row_calls(model, X, False, monkeypatch)
    # Held through each call and kept between them: handing it back woke BLAS's spinning workers every call.
    assert inside == [True] * 3 and after == [True] * 3
    model.predict(X[:5])  # any other predict call ends with the hold handed back
    assert not parallel._blas.holding
    inside, after = _lone_row_calls(model, X, False, monkeypatch, calls=1)
    monkeypatch.setattr(parallel.BlasThreadChoice, "_choose", lambda self: True)
    model.predict(X[:1])  # a threaded one-row call hands the kept hold back first
    assert after == [True] and inside[-1] is False and not parallel._blas.holding


def test_a_lone_row_with_blas_threads_never_takes_the_hold(cnn_and_rows, monkeypatch):
    model, X = cnn_and_rows
    inside, after = _lone_row_calls(model, X, True, monkeypatch)
    assert inside == [False] * 3 and after == [False] * 3
    regimes = {}
    for choose in (True, False):
        monkeypatch.setattr(parallel.BlasThreadChoice, "_choose", lambda self, choose=choose: choose)
        regimes[choose] = model.predict_proba(X[:1])
    parallel.release_blas()
    numpy.testing.assert_allclose(regimes[True], regimes[False], **ROUNDING)  # timings differ, not results


def test_the_blas_thread_choice_measures_both_runs_the_cheaper_and_probes_the_other():
    choice = parallel.BlasThreadChoice()
    seconds = {True: 1.0, False: 3.0}  # threads three times as fast

    def run(calls):
        ran = []
        for _ in range(calls):
            threaded = choice._choose()
            choice._record(threaded, seconds[threaded])
            ran.append(threaded)
        return ran

    choice._record(True, 1000.0)  # the first call traces the replay: not counted

    block = choice.MEASURED + 1
    assert run(2 * block) == [True] * block + [False] * block  # both measured first, threads first, in runs
    settled = run(300)
    starts = [k for k in range(1, len(settled)) if not settled[k] and settled[k - 1]]
    # One-thread probes of PROBE_CALLS calls after 16 calls, then gaps of 32, 64, ... (up to PROBE_MAX).
    assert starts[:3] == [15, 15 + 3 + 31, 15 + 3 + 31 + 3 + 63]
    assert all(settled[k:k + choice.PROBE_CALLS] == [False] * choice.PROBE_CALLS for k in starts)
    assert settled.count(False) == choice.PROBE_CALLS * len(starts)  # threaded otherwise
    seconds[True] = 9.0  # the host got busy: threaded calls stall
    changed = run(400)
    assert changed[-100:].count(True) <= choice.PROBE_CALLS  # the next probe catches it: one thread from then on
    seconds[True] = 1.0  # and quiet again: a few probes of threads win it back
    assert run(4000)[-50:].count(True) >= 50 - choice.PROBE_CALLS


# -- input checks ----------------------------------------------------------------------------------
def test_the_short_input_path_keeps_scikit_learn_checks_and_errors(digits):
    X, y = digits
    with pytest.raises(NotFittedError, match="not fitted yet"):
        DNNClassifier().predict(X)
    model = fitted(DNNClassifier, X, y)
    expected = model.predict_proba(X[:20])
    for other in (X[:20].astype(numpy.float32), X[:20].astype(numpy.float16), numpy.asfortranarray(X[:20]),
                  X[:20].tolist(), (X[:20] * 16).astype(numpy.int64) / 16):
        numpy.testing.assert_allclose(model.predict_proba(other), expected, rtol=1e-3, atol=1e-6)
    numpy.testing.assert_allclose(model.predict_proba(X[:40:2]), model.predict_proba(X[:40][::2].copy()), **ROUNDING)
    for bad, message in ((numpy.inf, "Input X contains infinity"), (numpy.nan, "Input X contains NaN")):
        row = X[:2].copy()
        row[1, 5] = bad
        with pytest.raises(ValueError, match=message):
            model.predict(row)
    with pytest.raises(ValueError, match="Found array with 0 sample"):
        model.predict(X[:0])
    with pytest.raises(ValueError, match="X has 63 features"):
        model.predict(X[:1, 1:])
    huge = numpy.full((2, X.shape[1]), 3e38, dtype=numpy.float32)  # finite, though its sum overflows
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the check itself warns of nothing
        assert model._validate_input(huge) is huge


def test_feature_names_are_still_checked(digits):
    X, y = digits
    frame = pandas.DataFrame(X, columns=[f"pixel_{i}" for i in range(X.shape[1])])
    model = small(DNNClassifier).fit(frame, y)
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        model.predict(X[:1])
    plain = small(DNNClassifier).fit(X, y)
    with pytest.warns(UserWarning, match="X has feature names"):
        plain.predict(frame.iloc[:1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict(frame.iloc[:1])


# -- devices and Sequential ------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_predict_on_each_device(cls, device, digits):
    X, y = digits
    model = fitted(cls, X, y, device=device)
    model._predict_batch_size = 64
    for name, values in outputs(model, X[:150]).items():
        assert isinstance(values, numpy.ndarray) and len(values) == 150, name
        numpy.testing.assert_allclose(outputs(model, X[:1])[name][0], values[0], rtol=1e-4, atol=1e-6, err_msg=name)


def test_sequential_predict_runs_unpadded_batches():
    model = Sequential([Dense(3, input_shape=(4,))])
    seen = []
    x = numpy.random.default_rng(0).random((70, 4), dtype=numpy.float32)
    model.predict(x[:2])  # traces the replay plan
    model._inference_plan.graph.run = replay_spy(model, lambda rows: seen.append(rows.shape[0]))
    together = model.predict(x, batch_size=32)
    assert seen == [32, 32, 6]
    numpy.testing.assert_allclose(model.predict(x[:1]), together[:1], **ROUNDING)


def test_one_row_predictions_from_several_threads_at_once_agree_with_one_thread(digits):
    """Threads predicting single rows with one model share its BLAS thread choice: same answers, no error."""
    from concurrent.futures import ThreadPoolExecutor

    X, y = digits
    model = fitted(DNNClassifier, X, y)
    expected = model.predict_proba(X[:40])
    with ThreadPoolExecutor(4) as pool:
        rows = list(pool.map(lambda i: model.predict_proba(X[i:i + 1])[0], range(40)))
    parallel.release_blas()
    numpy.testing.assert_allclose(numpy.array(rows), expected, **ROUNDING)
    choice = model._model._blas_thread_choice
    assert sum(choice._counted.values()) == 40 - 1 and choice._burst >= 0
