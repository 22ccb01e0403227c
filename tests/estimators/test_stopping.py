"""The estimators' stopping rule is scikit-learn's MLP rule, and its warning points at the user's line."""
import warnings

import numpy
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from flowlearn.estimators import CNNClassifier, DNNClassifier
from flowlearn.estimators._stopping import NoImprovementStopper
from flowlearn.layers.callbacks import EarlyStopping


class FakeModel:
    stop_training = False

    def __init__(self):
        self.epoch = None

    def get_weights(self):
        return [numpy.array([self.epoch])]


def replay_ours(curve, mode, tol, n_iter_no_change):
    """(epoch stopped at or None, best epoch) of NoImprovementStopper fed ``curve`` epoch by epoch."""
    model = FakeModel()
    stopper = NoImprovementStopper("value", mode, tol, n_iter_no_change, keep_best=True)
    stopper.set_model(model)
    stopper.on_train_begin()
    for epoch, value in enumerate(curve):
        model.epoch = epoch
        stopper.on_epoch_end(epoch, {"value": value})
        if model.stop_training:
            break
    best = None if stopper.best_weights is None else int(stopper.best_weights[0][0])
    return stopper.stopped_epoch, best


def replay_sklearn(curve, mode, tol, n_iter_no_change):
    """The same from scikit-learn's own bookkeeping (MLP's ``_update_no_improvement_count``), run on a
    bare MLPClassifier whose loss curve or validation scores are the synthetic ones."""
    mlp = MLPClassifier(tol=tol, n_iter_no_change=n_iter_no_change)
    mlp._no_improvement_count, mlp.best_loss_, mlp.loss_curve_ = 0, numpy.inf, []
    mlp.validation_scores_, mlp.best_validation_score_ = [], -numpy.inf
    mlp.coefs_, mlp.intercepts_ = [numpy.zeros(1)], [numpy.zeros(1)]
    scores = iter(curve)
    mlp._score = lambda X, y, sample_weight=None: next(scores)
    best = None
    for epoch, value in enumerate(curve):
        mlp.coefs_ = [numpy.array([float(epoch)])]
        mlp.loss_curve_.append(value)
        mlp._update_no_improvement_count(mode == "max", None, None, None)
        if mode == "max" and hasattr(mlp, "_best_coefs"):
            best = int(mlp._best_coefs[0][0])
        if mlp._no_improvement_count > mlp.n_iter_no_change:
            return epoch, best
    return None, best


def curves():
    rng = numpy.random.default_rng(0)
    epochs = numpy.arange(200)
    tol = 1e-4
    yield "falls by 0.3 tol per epoch", 1.0 - 0.3 * tol * epochs
    yield "falls by 3 tol per epoch", 1.0 - 3 * tol * epochs
    yield "digits-like decay", 0.05 + 2.0 * numpy.exp(-epochs / 12.0) + 1e-5 * rng.normal(size=200)
    yield "noisy plateau", 0.5 + 1e-3 * rng.normal(size=200)
    yield "random walk", 1.0 + numpy.cumsum(1e-4 * rng.normal(size=200))
    yield "bounce then slow fall", numpy.r_[[5.0, 3.0, 1.0, 4.0, 6.0], 2.0 - 1e-5 * numpy.arange(195)]
    yield "with NaN", numpy.r_[1.0 - 0.3 * tol * epochs[:30], numpy.nan, 0.9 - 0.3 * tol * epochs[:50]]
    yield "quantised steps of exactly tol", numpy.repeat(1.0 - tol * numpy.arange(40), 5)


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("n_iter_no_change", [1, 5, 10])
@pytest.mark.parametrize("name, curve", list(curves()), ids=[name for name, _ in curves()])
def test_the_rule_replays_scikit_learns_on_synthetic_curves(name, curve, n_iter_no_change, mode):
    values = curve if mode == "min" else -curve  # a falling loss, or the same as a rising score
    ours = replay_ours(values, mode, 1e-4, n_iter_no_change)
    theirs = replay_sklearn(values, mode, 1e-4, n_iter_no_change)
    assert ours[0] == theirs[0]
    if mode == "max":  # the best weights kept are those scikit-learn keeps
        assert ours[1] == theirs[1]


def test_a_loss_falling_by_less_than_tol_each_epoch_stops_here_but_not_under_keras_rule():
    curve = 1.0 - 0.3e-4 * numpy.arange(200)
    assert replay_ours(curve, "min", 1e-4, 10)[0] == 11
    # Keras's EarlyStopping, which the estimators used before: its reference only moves by whole
    # min_delta steps, so this curve resets its patience forever.
    keras = EarlyStopping(monitor="loss", min_delta=1e-4, patience=10)
    model = FakeModel()
    keras.set_model(model)
    keras.on_train_begin()
    for epoch, value in enumerate(curve):
        keras.on_epoch_end(epoch, {"loss": value})
    assert not model.stop_training


def test_dnn_classifier_defaults_stop_on_digits_without_warning():
    X, y = load_digits(return_X_y=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = DNNClassifier(random_state=0).fit(X, y)
    assert model.n_iter_ < model.epochs
    assert not [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    # It stopped where the rule says, replayed on the loss curve the fit recorded.
    assert replay_ours(model.loss_curve_, "min", model.tol, model.n_iter_no_change)[0] == model.n_iter_ - 1


def test_no_warning_when_the_rule_cannot_fire():
    X, y = load_digits(return_X_y=True)
    small = dict(conv_filters=(2,), dense_units=(8,), batch_size=100, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        CNNClassifier(**small).fit(X[:200] / 16, y[:200])  # the defaults: epochs=10, n_iter_no_change=10
        DNNClassifier(hidden_units=(8,), epochs=11, n_iter_no_change=10).fit(X[:200], y[:200])
    assert not [w for w in caught if issubclass(w.category, ConvergenceWarning)]


def test_the_warning_points_at_the_callers_line():
    X, y = load_digits(return_X_y=True)
    X, y = X[:300] / 16, y[:300]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DNNClassifier(hidden_units=(16,), epochs=3, n_iter_no_change=1, random_state=0).fit(X, y)
        make_pipeline(StandardScaler(), DNNClassifier(hidden_units=(16,), epochs=3, n_iter_no_change=1,
                                                      random_state=0)).fit(X, y)
    found = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert len(found) == 2
    assert all(w.filename == __file__ for w in found), [(w.filename, w.lineno) for w in found]
    assert "trained all epochs=3" in str(found[0].message)


def test_decays_cut_the_step_on_each_plateau_then_stop_and_restore_it():
    from flowlearn.core import optimizers

    optimizer = optimizers.Adam(learning_rate=0.02)
    model = FakeModel()
    stopper = NoImprovementStopper("loss", "min", 1e-4, 3, optimizer=optimizer, decays=2)
    stopper.set_model(model)
    stopper.on_train_begin()
    rates = []
    for epoch in range(100):
        stopper.on_epoch_end(epoch, {"loss": 1.0})  # a flat curve: every epoch after the first is a plateau
        rates.append(optimizer.learning_rate)
        if model.stop_training:
            break
    # Epoch 0 sets the best; then each run of 4 epochs without improvement (more than n_iter_no_change=3)
    # ends a plateau: two cuts by 5, then the stop.
    assert rates[3] == 0.02 and rates[4] == pytest.approx(0.004) and rates[8] == pytest.approx(0.0008)
    assert stopper.stopped_epoch == 12
    stopper.on_train_end()
    assert optimizer.learning_rate == 0.02


def test_linear_models_use_the_decays_and_keep_their_rate_for_warm_starts():
    from flowlearn.estimators import LinearRegressor

    rng = numpy.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = X @ [1.0, -1.0, 0.5] + rng.normal(size=300)
    model = LinearRegressor(random_state=0).fit(X, y)
    assert model.n_iter_ < model.epochs
    assert model._optimizer.learning_rate == 0.02
