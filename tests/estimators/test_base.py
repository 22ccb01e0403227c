"""What every estimator shares: reproducibility, warm start, partial_fit, pickling, clone, bad input,
progress, memory, and device placement."""
import io
import pickle
import tracemalloc

import joblib
import numpy
import pandas
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError

from flowlearn.core import backend
from flowlearn.estimators import (
    AutoEncoder, CNNClassifier, DNNClassifier, DNNRegressor, LinearClassifier, LinearRegressor,
)
from tests.estimators._helpers import assert_loads_without_cupy, fit, small




@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16.0)[:600], y[:600]


def outputs(estimator, X):
    if isinstance(estimator, AutoEncoder):
        return estimator.score_samples(X)
    if hasattr(estimator, "predict_proba"):
        return estimator.predict_proba(X)
    return estimator.predict(X)


def weights(estimator):
    return estimator._model.get_weights()


ALL = [LinearRegressor, LinearClassifier, DNNClassifier, DNNRegressor, AutoEncoder, CNNClassifier]
CLASSIFIERS = [LinearClassifier, DNNClassifier, CNNClassifier]
ids = [cls.__name__ for cls in ALL]


# -- reproducibility, warm start, partial_fit ----------------------------------------------------
@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_random_state_gives_bit_identical_fits(cls, digits):
    X, y = digits
    first = fit(small(cls, random_state=7), X, y)
    second = fit(small(cls, random_state=7), X, y)
    other = fit(small(cls, random_state=8), X, y)
    assert all(numpy.array_equal(a, b) for a, b in zip(weights(first), weights(second)))
    assert first.loss_curve_ == second.loss_curve_
    assert not all(numpy.array_equal(a, b) for a, b in zip(weights(first), weights(other)))


@pytest.mark.parametrize("cls", [DNNClassifier, LinearRegressor, AutoEncoder], ids=lambda c: c.__name__)
def test_warm_start_continues_training(cls, digits):
    X, y = digits
    once = fit(small(cls, epochs=4, random_state=0), X, y)
    warm = small(cls, epochs=2, warm_start=True, random_state=0)
    fit(warm, X, y)
    fit(warm, X, y)
    # Two warm halves are the whole: same network, optimizer state and random streams carried on.
    assert warm.n_iter_ == 4 and len(warm.loss_curve_) == 4
    assert all(numpy.array_equal(a, b) for a, b in zip(weights(once), weights(warm)))
    assert warm.loss_curve_[-1] < warm.loss_curve_[0]


def test_fit_without_warm_start_starts_over(digits):
    X, y = digits
    model = small(DNNClassifier, random_state=0)
    first = weights(model.fit(X, y))
    assert all(numpy.array_equal(a, b) for a, b in zip(first, weights(model.fit(X, y))))
    assert model.n_iter_ == 3


def test_partial_fit_loop_reaches_the_accuracy_of_fit():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    train, test = slice(0, 1400), slice(1400, None)
    params = dict(hidden_units=(64,), learning_rate=0.005, random_state=0)
    fitted = DNNClassifier(epochs=20, n_iter_no_change=None, **params).fit(X[train], y[train])
    streamed = DNNClassifier(**params)
    classes = numpy.unique(y)
    for epoch in range(20):
        for chunk in numpy.array_split(numpy.arange(1400), 7):  # as dask-ml's Incremental feeds blocks
            streamed.partial_fit(X[chunk], y[chunk], classes=classes)
    assert streamed.n_iter_ == 20 * 7
    assert streamed.score(X[test], y[test]) >= fitted.score(X[test], y[test]) - 0.02
    assert fitted.score(X[test], y[test]) > 0.85


def test_partial_fit_regressor_matches_fit_quality(digits):
    X, _ = digits
    y = X @ numpy.linspace(-1, 1, X.shape[1])
    model = LinearRegressor(random_state=0)
    for _ in range(60):
        model.partial_fit(X, y)
    assert model.score(X, y) > 0.99


def test_partial_fit_class_errors(digits):
    X, y = digits
    model = small(DNNClassifier)
    with pytest.raises(ValueError, match="classes must be passed on the first call to partial_fit"):
        model.partial_fit(X, y)
    model.partial_fit(X[y < 5], y[y < 5], classes=numpy.arange(5))
    with pytest.raises(ValueError, match=r"y contains labels not in classes_ \[0, 1, 2, 3, 4\]: \[5, 6, 7, 8, 9\]"):
        model.partial_fit(X, y)
    with pytest.raises(ValueError, match="differs from the classes of the first call"):
        model.partial_fit(X[y < 5], y[y < 5], classes=numpy.arange(6))
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        small(DNNClassifier, early_stopping=True).partial_fit(X, y, classes=numpy.arange(10))


class _RecordingStrategy:
    """Stands in for an MPIStrategy of one rank up to the training loop: records the broadcast only."""

    def __init__(self):
        self.broadcasts = 0

    def shard(self, *args):
        raise AssertionError("training should not start")

    def reduce_gradients(self, *args):
        raise AssertionError("training should not start")

    def broadcast_generators(self, generators):
        self.broadcasts += 1


@pytest.mark.parametrize("strategy", [None, _RecordingStrategy()], ids=["alone", "with a strategy"])
def test_a_warm_start_refuses_a_y_with_another_number_of_outputs(digits, strategy):
    X, _ = digits
    y = X @ numpy.linspace(-1, 1, X.shape[1])
    model = small(DNNRegressor, warm_start=True).fit(X, y)
    model.set_params(strategy=strategy)
    with pytest.raises(ValueError, match=r"DNNRegressor was fitted with 1 output\(s\); y has 2"):
        model.fit(X, numpy.stack([y, y], axis=1))
    assert strategy is None or strategy.broadcasts == 0


def test_early_stopping_records_scores_and_keeps_the_best_epoch(digits):
    X, y = digits
    model = small(DNNClassifier, epochs=40, early_stopping=True, n_iter_no_change=3, random_state=0).fit(X, y)
    assert len(model.validation_scores_) == model.n_iter_ < 40
    assert model.history_["val_score"] == model.validation_scores_
    assert small(DNNClassifier).fit(X, y).validation_scores_ is None


# -- pickling and clone --------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_pickle_and_joblib_round_trip(cls, digits, tmp_path):
    X, y = digits
    model = fit(small(cls, random_state=0), X, y)
    expected = outputs(model, X)
    restored = pickle.loads(pickle.dumps(model))
    numpy.testing.assert_array_equal(outputs(restored, X), expected)
    joblib.dump(model, tmp_path / "model.joblib")
    numpy.testing.assert_array_equal(outputs(joblib.load(tmp_path / "model.joblib"), X), expected)


def test_unpickled_model_keeps_training_exactly_as_the_original(digits):
    X, y = digits
    original = small(DNNClassifier, random_state=0).fit(X, y)
    copy = pickle.loads(pickle.dumps(original))  # optimizer slots and random streams travel along
    original.partial_fit(X, y)
    copy.partial_fit(X, y)
    assert all(numpy.array_equal(a, b) for a, b in zip(weights(original), weights(copy)))


def test_pickle_holds_no_tensors_and_loads_without_cupy(digits, tmp_path):
    X, y = digits
    model = small(DNNClassifier, random_state=0).fit(X, y)
    # As saved on a GPU machine: the device parameter says "gpu"; the state is numpy arrays only.
    model.set_params(device="gpu")
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(model))
    assert_loads_without_cupy(model, X[:20], tmp_path, f"pickle.loads(open({str(path)!r}, 'rb').read())")


def test_clone_of_a_fitted_estimator_is_unfitted(digits):
    X, y = digits
    model = small(DNNClassifier, random_state=0).fit(X, y)
    fresh = clone(model)
    assert fresh.get_params() == model.get_params()
    with pytest.raises(NotFittedError):
        fresh.predict(X)


# -- input handling ------------------------------------------------------------------------------
def test_string_and_non_contiguous_labels(digits):
    X, y = digits
    labels = numpy.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    model = small(DNNClassifier, random_state=0).fit(X, labels[y])
    assert set(model.predict(X)) <= set(labels)
    assert list(model.classes_) == sorted(labels)
    binary = small(LinearClassifier, random_state=0, epochs=20).fit(X, numpy.where(y < 5, -3, 10))
    assert list(binary.classes_) == [-3, 10]
    assert binary.predict_proba(X).shape == (len(X), 2)
    assert binary.decision_function(X).shape == (len(X),)
    assert binary.score(X, numpy.where(y < 5, -3, 10)) > 0.8


def test_dataframes_set_feature_names(digits):
    X, y = digits
    frame = pandas.DataFrame(X, columns=[f"pixel_{i}" for i in range(X.shape[1])])
    model = small(DNNClassifier, random_state=0).fit(frame, y)
    assert list(model.feature_names_in_) == list(frame.columns)
    with pytest.raises(ValueError, match="Feature names unseen at fit time"):
        model.predict(frame.rename(columns={"pixel_0": "other"}))


def with_value(X, value):
    X = X.copy()
    X[1, 5] = value
    return X


BAD_INPUTS = [
    (lambda X, y: (with_value(X, numpy.nan), y), "Input X contains NaN"),
    (lambda X, y: (with_value(X, numpy.inf), y), "Input X contains infinity"),
    (lambda X, y: (X[:, 0], y), "Expected 2D array, got 1D array instead"),
    (lambda X, y: (X[:0], y[:0]), r"Found array with 0 sample\(s\)"),
    (lambda X, y: (X.astype(str).astype(object) + "x", y), "could not convert string to float"),
]


@pytest.mark.parametrize("cls", ALL, ids=ids)
@pytest.mark.parametrize("make, message", BAD_INPUTS, ids=["nan", "inf", "1-D", "empty", "strings"])
def test_bad_training_input_raises_a_clear_error(cls, make, message, digits):
    X, y = make(*digits)
    with pytest.raises(ValueError, match=message):
        fit(small(cls), X, y)


@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_bad_prediction_input(cls, digits):
    X, y = digits
    with pytest.raises(NotFittedError, match="not fitted yet"):
        (cls().score_samples if cls is AutoEncoder else cls().predict)(X)
    model = fit(small(cls), X, y)
    with pytest.raises(ValueError, match="X has 63 features, but .* is expecting 64 features as input"):
        model.predict(X[:, 1:])
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array instead"):
        model.predict(X[0])
    with pytest.raises(ValueError, match="Input X contains NaN"):
        model.predict(numpy.full_like(X[:3], numpy.nan))


@pytest.mark.parametrize("cls", CLASSIFIERS, ids=lambda c: c.__name__)
def test_one_class_is_refused(cls, digits):
    X, _ = digits
    with pytest.raises(ValueError, match="needs samples of at least 2 classes; the data contains only one class: 3"):
        small(cls).fit(X, numpy.full(len(X), 3))


def test_continuous_labels_are_refused_by_classifiers(digits):
    X, _ = digits
    with pytest.raises(ValueError, match="Unknown label type"):
        small(DNNClassifier).fit(X, numpy.linspace(0, 1, len(X)))


def test_bad_parameters_name_the_parameter(digits):
    X, y = digits
    with pytest.raises(ValueError, match="The 'learning_rate' parameter of DNNClassifier must be a float in the range"):
        DNNClassifier(learning_rate=0).fit(X, y)
    with pytest.raises(ValueError, match="'hidden_units' parameter of DNNClassifier must be a sequence of positive"):
        DNNClassifier(hidden_units=(32, 0)).fit(X, y)
    with pytest.raises(ValueError, match="The 'optimizer' parameter of LinearRegressor must be a str among"):
        LinearRegressor(optimizer="lbfgs").fit(X, y)
    with pytest.raises(ValueError, match="The 'contamination' parameter of AutoEncoder must be"):
        AutoEncoder(contamination=0.7).fit(X)


def test_sample_weight_zero_rows_are_ignored(digits):
    import flowlearn as fl

    X, y = digits
    keep = numpy.arange(len(X)) % 3 != 0
    # In float64: the linear model centres X and y, so the intercept's gradient is 0 up to rounding, and
    # Adam scales that rounding noise (~1e-8 in float32, different for 600 or 400 rows) up to steps
    # near the learning rate; in float64 the noise is far below Adam's epsilon.
    previous = fl.floatx()
    fl.set_floatx("float64")
    try:
        weighted = small(LinearRegressor, batch_size=len(X), random_state=0).fit(X, y, sample_weight=keep * 1.0)
        dropped = small(LinearRegressor, batch_size=len(X), random_state=0).fit(X[keep], y[keep])
    finally:
        fl.set_floatx(previous)
    numpy.testing.assert_allclose(weighted.predict(X), dropped.predict(X), rtol=1e-4, atol=1e-4)


def test_optimizer_instance_is_copied_not_trained(digits):
    from flowlearn.core import optimizers

    X, y = digits
    given = optimizers.SGD(learning_rate=0.5, momentum=0.9)
    model = small(DNNClassifier, optimizer=given, learning_rate=0.05, random_state=0).fit(X, y)
    assert given.iterations == 0 and model._optimizer is not given
    assert isinstance(model._optimizer, optimizers.SGD) and model._optimizer.learning_rate == 0.05


@pytest.mark.parametrize("cls, default", [(DNNClassifier, 0.001), (LinearRegressor, 0.02)],
                         ids=["DNNClassifier", "LinearRegressor"])
def test_an_optimizer_instance_trains_at_its_own_learning_rate(cls, default, digits):
    from flowlearn.core import optimizers

    X, y = digits
    given = optimizers.SGD(learning_rate=0.5)
    own = small(cls, optimizer=given, epochs=1, random_state=0).fit(X, y)
    assert own._optimizer.learning_rate == 0.5 and given.learning_rate == 0.5
    # By name and without learning_rate, the estimator's documented default step applies.
    assert small(cls, optimizer="sgd", epochs=1).fit(X, y)._optimizer.learning_rate == default
    assert f"else {default}." in " ".join(cls.__doc__.split())
    # The step really is the instance's: one SGD epoch at 0.5 moves the weights far more than at the default.
    start = small(cls, optimizer="sgd", epochs=1, batch_size=len(X), random_state=0, learning_rate=1e-9).fit(X, y)
    fast = small(cls, optimizer=optimizers.SGD(learning_rate=0.5), epochs=1, batch_size=len(X), random_state=0).fit(X, y)
    slow = small(cls, optimizer="sgd", epochs=1, batch_size=len(X), random_state=0).fit(X, y)
    moved = [sum(numpy.abs(a - b).sum() for a, b in zip(weights(m), weights(start))) for m in (fast, slow)]
    assert moved[0] == pytest.approx(moved[1] * 0.5 / default, rel=1e-3)


def test_non_finite_loss_keeps_weights_and_batch_norm_statistics(digits, monkeypatch):
    from flowlearn.layers.training import NonFiniteLossError

    X, y = digits
    model = small(DNNClassifier, batch_norm=True, random_state=0).fit(X, y)
    before = weights(model)
    statistics = [w.name for w in model._model.non_trainable_weights]
    assert any(name.endswith("moving_mean") for name in statistics)
    # The forward pass runs (updating the moving statistics in training mode) before the loss is seen.
    monkeypatch.setattr(model, "_batch_loss", lambda outputs, targets, weights: outputs.sum() * float("nan"))
    with pytest.raises(NonFiniteLossError, match="loss became nan"):
        model.partial_fit(X + 3.0, y)
    after = weights(model)
    for weight, old, new in zip(model._model.weights, before, after):
        numpy.testing.assert_array_equal(new, old, err_msg=weight.name)


# -- progress, memory, device --------------------------------------------------------------------
def test_verbose_shows_a_progress_bar_per_epoch(digits, capsys):
    X, y = digits
    small(DNNClassifier, verbose=1, epochs=2, early_stopping=True).fit(X, y)
    err = capsys.readouterr().err
    assert "Epoch 1/2" in err and "Epoch 2/2" in err and "val_score" in err
    small(DNNClassifier, verbose=0).fit(X, y)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("dtype, copies", [(numpy.float32, 0), (numpy.float64, 1)])
def test_fit_copies_the_training_set_at_most_once(dtype, copies):
    rng = numpy.random.default_rng(0)
    X = rng.random((50000, 20)).astype(dtype)
    y = X[:, 0] * 2
    as_float32 = X.size * 4
    tracemalloc.start()
    DNNRegressor(hidden_units=(8,), epochs=1, early_stopping=True, n_iter_no_change=None, random_state=0).fit(X, y)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # Everything but the float32 copy (targets, index permutations, batches) is well under half of it.
    assert copies * as_float32 <= peak < (copies + 0.5) * as_float32


def test_predict_works_in_bounded_memory():
    rng = numpy.random.default_rng(0)
    model = DNNRegressor(hidden_units=(8,), epochs=1, n_iter_no_change=None, random_state=0)
    model.fit(rng.random((500, 50)), rng.random(500))
    X = rng.random((200000, 50), dtype=numpy.float32)  # 40 MB
    tracemalloc.start()
    predictions = model.predict(X)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert predictions.shape == (200000,)
    assert peak < X.nbytes / 4  # the float64 output and temporaries of its size: no copy of X


@pytest.mark.gpu
@pytest.mark.skipif(not backend.gpu_available(), reason="no GPU: cupy is not installed or sees no CUDA device")
def test_gpu_fit_pickles_to_a_cpu_model(digits):
    X, y = digits
    gpu = small(DNNClassifier, random_state=0, device="gpu").fit(X, y)
    cpu = small(DNNClassifier, random_state=0).fit(X, y)
    assert gpu._model.device == "gpu"
    numpy.testing.assert_allclose(gpu.predict_proba(X), cpu.predict_proba(X), rtol=1e-3, atol=1e-4)
    buffer = io.BytesIO()
    joblib.dump(gpu, buffer)
    state = pickle.dumps(gpu.__getstate__())
    assert b"cupy" not in state
    buffer.seek(0)
    numpy.testing.assert_array_equal(joblib.load(buffer).predict_proba(X), gpu.predict_proba(X))


# -- messages name flowlearn's arguments -----------------------------------------------------------
@pytest.mark.parametrize("class_weight, words", [
    ({5: 2.0}, "expected labels among classes_ [0, 1, 2] as its keys; [5] are not classes of y"),
    ({1: -1.0}, "expected finite weights >= 0; got {1: -1.0}"),
    ({1: float("nan")}, "expected finite weights >= 0"),
])
def test_a_bad_class_weight_names_the_argument(class_weight, words, digits):
    X, y = digits
    with pytest.raises(ValueError) as info:
        small(DNNClassifier, class_weight=class_weight).fit(X, y % 3)
    assert "`class_weight`" in str(info.value) and words in str(info.value)
    assert f"Received: class_weight={class_weight!r}" in str(info.value)


def test_a_class_weight_dict_works_on_a_partial_fit_batch_missing_classes(digits):
    X, y = digits
    y = y % 3
    model = small(DNNClassifier, class_weight={1: 2.0}).partial_fit(X, y, classes=[0, 1, 2])
    only_zeros = y == 0
    model.partial_fit(X[only_zeros], y[only_zeros])  # scikit-learn's helper refused a dict naming absent classes
    assert model.n_iter_ == 2


@pytest.mark.parametrize("make_y, words", [
    (lambda n: numpy.r_[numpy.zeros(n - 1), 1], "needs at least 2 rows per class; class(es) [1.0] have 1"),
    (lambda n: numpy.arange(n) % 20, "validation_fraction=0.1 of the 40 rows (4), and both parts need a row of each"),
])
def test_early_stopping_on_a_tiny_class_names_the_argument(make_y, words, digits):
    X, _ = digits
    y = make_y(40)
    with pytest.raises(ValueError) as info:
        small(DNNClassifier, early_stopping=True).fit(X[:40], y)
    assert "early_stopping=True" in str(info.value) and words in str(info.value)


def test_divergence_advice_names_what_an_estimator_accepts(digits):
    from flowlearn.layers.training import NonFiniteLossError

    X, y = digits
    with pytest.raises(NonFiniteLossError) as info, numpy.errstate(all="ignore"):
        small(DNNRegressor, optimizer="sgd", learning_rate=1e6).fit(X * 1e10, y)
    message = str(info.value)
    assert "terminate_on_nan" not in message  # the estimators have no such argument
    assert message.startswith("DNNRegressor: the training loss became")
    assert "Lower `learning_rate` (the optimizer steps at 1000000.0)" in message
