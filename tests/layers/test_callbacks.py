"""Every callback, driven by the shared training loop on a stand-in model (the Sequential-level
behaviour, e.g. checkpoints that load back, is in test_sequential.py and test_saving.py)."""
import csv
import io
import math

import numpy
import pytest

import flowlearn.callbacks
from flowlearn.callbacks import (
    Callback, CSVLogger, EarlyStopping, History, LambdaCallback, LearningRateScheduler, ModelCheckpoint, ProgressBar,
    ReduceLROnPlateau, TerminateOnNaN,
)
from flowlearn.layers.training import run_training


class _Optimizer:
    def __init__(self, learning_rate=0.1):
        self.learning_rate = learning_rate


class _Model:
    """What callbacks use of a model: weights that change every epoch, save, optimizer, stop_training."""

    def __init__(self):
        self.weight = numpy.zeros(2)
        self.optimizer = _Optimizer()
        self.saved = []
        self.stop_training = False

    def get_weights(self):
        return [self.weight.copy()]

    def set_weights(self, weights):
        self.weight = weights[0].copy()

    def save(self, path):
        self.saved.append(path)
        with open(path, "w") as handle:
            handle.write(str(self.weight[0]))


def _fit(model, val_losses, callbacks, train_losses=None, batches_per_epoch=1, **kwargs):
    """Run the loop for len(val_losses) epochs; the model's weight is the epoch number after each epoch."""
    epochs = len(val_losses)
    train = iter(train_losses if train_losses is not None else [1.0] * (epochs * batches_per_epoch))
    state = {"epoch": -1}

    class EpochCounter(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            state["epoch"] = epoch

    def step(batch):
        model.weight[:] = state["epoch"]
        return {"loss": next(train)}

    def validate():
        return {"loss": val_losses[state["epoch"]], "accuracy": -val_losses[state["epoch"]]}

    return run_training(step, [(numpy.zeros(1),)] * batches_per_epoch, epochs=epochs, validate=validate,
                        model=model, callbacks=[EpochCounter()] + callbacks, **kwargs)


def test_flowlearn_callbacks_reexports_the_layers_package():
    from flowlearn.layers import callbacks as package

    for name in package.__all__:
        assert getattr(flowlearn.callbacks, name) is getattr(package, name)


def test_history_is_returned_and_left_on_the_model():
    model = _Model()
    history = _fit(model, [3.0, 2.0], [])
    assert isinstance(history, History) and model.history is history
    assert history.history == {"loss": [1.0, 1.0], "val_loss": [3.0, 2.0], "val_accuracy": [-3.0, -2.0]}


# -- EarlyStopping --------------------------------------------------------------------------------
def test_early_stopping_stops_after_patience_epochs_without_improvement():
    stop = EarlyStopping(monitor="val_loss", patience=2)
    history = _fit(_Model(), [5.0, 4.0, 4.5, 4.2, 1.0, 1.0], [stop])
    assert len(history.epoch) == 4 and stop.stopped_epoch == 3 and stop.best == 4.0 and stop.best_epoch == 1


def test_early_stopping_patience_zero_stops_at_first_non_improvement():
    stop = EarlyStopping(patience=0)
    history = _fit(_Model(), [5.0, 4.0, 4.0, 3.0], [stop])
    assert history.epoch == [0, 1, 2]


def test_early_stopping_min_delta_requires_a_large_enough_gain():
    stop = EarlyStopping(patience=1, min_delta=0.5)
    history = _fit(_Model(), [5.0, 4.8, 4.7, 1.0], [stop])
    assert history.epoch == [0, 1]


def test_early_stopping_auto_mode_maximises_accuracy():
    stop = EarlyStopping(monitor="val_accuracy", patience=1)
    assert stop.mode == "max"
    history = _fit(_Model(), [5.0, 4.0, 4.5, 1.0], [stop])  # val_accuracy = -val_loss: -5, -4, -4.5
    assert history.epoch == [0, 1, 2] and stop.best == -4.0


def test_early_stopping_restores_best_weights():
    model = _Model()
    stop = EarlyStopping(patience=2, restore_best_weights=True)
    _fit(model, [5.0, 3.0, 4.0, 4.0, 4.0], [stop])
    numpy.testing.assert_array_equal(model.weight, [1.0, 1.0])  # the weights after epoch 1 (best val_loss)


def test_early_stopping_without_restore_keeps_last_weights():
    model = _Model()
    _fit(model, [5.0, 3.0, 4.0, 4.0, 4.0], [EarlyStopping(patience=2)])
    numpy.testing.assert_array_equal(model.weight, [3.0, 3.0])


def test_early_stopping_warns_on_missing_monitor():
    with pytest.warns(RuntimeWarning, match=r"'val_nope' is not in the logs.*available.*'val_loss'"):
        history = _fit(_Model(), [1.0, 1.0], [EarlyStopping(monitor="val_nope")])
    assert len(history.epoch) == 2


@pytest.mark.parametrize("kwargs, match", [({"mode": "up"}, "`mode`.*'up'"), ({"patience": -1}, "`patience`")])
def test_early_stopping_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EarlyStopping(**kwargs)


# -- ModelCheckpoint ------------------------------------------------------------------------------
def test_model_checkpoint_formats_epoch_and_logs_into_the_path(tmp_path):
    model = _Model()
    pattern = str(tmp_path / "sub" / "m-{epoch:02d}-{val_loss:.1f}.flmodel")
    _fit(model, [3.0, 2.0], [ModelCheckpoint(pattern)])
    assert [p.split("/")[-1] for p in model.saved] == ["m-01-3.0.flmodel", "m-02-2.0.flmodel"]
    assert (tmp_path / "sub" / "m-02-2.0.flmodel").read_text() == "1.0"


def test_model_checkpoint_save_best_only(tmp_path):
    model = _Model()
    pattern = str(tmp_path / "m-{epoch}.flmodel")
    _fit(model, [3.0, 4.0, 2.0, 2.5], [ModelCheckpoint(pattern, monitor="val_loss", save_best_only=True)])
    assert [p.split("/")[-1] for p in model.saved] == ["m-1.flmodel", "m-3.flmodel"]


def test_model_checkpoint_save_best_only_max_mode(tmp_path):
    model = _Model()
    checkpoint = ModelCheckpoint(str(tmp_path / "best.flmodel"), monitor="val_accuracy", save_best_only=True)
    _fit(model, [3.0, 4.0, 2.0, 2.5], [checkpoint])
    assert len(model.saved) == 2 and checkpoint.best == -2.0
    assert (tmp_path / "best.flmodel").read_text() == "2.0"


def test_model_checkpoint_unknown_field_names_the_logs(tmp_path):
    with pytest.raises(KeyError, match=r"names 'val_auc'.*not in the epoch logs"):
        _fit(_Model(), [1.0], [ModelCheckpoint(str(tmp_path / "{val_auc}.flmodel"))])


# -- learning rate ---------------------------------------------------------------------------------
def test_learning_rate_scheduler_sets_rate_each_epoch_and_logs_it():
    model = _Model()
    seen = []
    schedule = LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch > 0 else lr)
    spy = LambdaCallback(on_train_batch_begin=lambda batch, logs: seen.append(model.optimizer.learning_rate))
    history = _fit(model, [1.0, 1.0, 1.0], [schedule, spy])
    assert seen == pytest.approx([0.1, 0.05, 0.025])
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.05, 0.025])


def test_learning_rate_scheduler_rejects_bad_schedule_output():
    with pytest.raises(ValueError, match="returned -1.0 for epoch 0"):
        _fit(_Model(), [1.0], [LearningRateScheduler(lambda epoch, lr: -1.0)])
    with pytest.raises(TypeError, match="`schedule`.*callable"):
        LearningRateScheduler(0.1)


def test_reduce_lr_on_plateau_reduces_after_patience_and_respects_min_lr():
    model = _Model()
    plateau = ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, min_lr=0.03)
    history = _fit(model, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], [plateau])
    # The logged rate is the one in effect during the epoch (as Keras logs it): 2 epochs without improvement ->
    # halve after epoch 2; again after epoch 4, 0.025 clipped at min_lr 0.03; then nothing lower to go to.
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.03, 0.03])
    assert model.optimizer.learning_rate == pytest.approx(0.03)


def test_reduce_lr_on_plateau_cooldown_and_improvement_reset():
    model = _Model()
    plateau = ReduceLROnPlateau(factor=0.1, patience=1, cooldown=2, min_delta=0.0)
    history = _fit(model, [5.0, 4.0, 4.0, 4.0, 4.0, 3.0], [plateau])
    # Reduced after epoch 2; epoch 3 is cooldown (not counted); epoch 4 counts again and reduces.
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.1, 0.1, 0.01, 0.01, 0.001])
    assert model.optimizer.learning_rate == pytest.approx(0.001)


def test_reduce_lr_on_plateau_rejects_bad_factor():
    with pytest.raises(ValueError, match=r"`factor`.*\(0, 1\).*1.5"):
        ReduceLROnPlateau(factor=1.5)


# -- CSVLogger -------------------------------------------------------------------------------------
def _read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_csv_logger_writes_a_row_per_epoch(tmp_path):
    path = tmp_path / "log.csv"
    _fit(_Model(), [3.0, 2.0], [CSVLogger(path)])
    rows = _read_csv(path)
    assert rows[0] == ["epoch", "loss", "val_accuracy", "val_loss"]
    assert rows[1:] == [["0", "1.0", "-3.0", "3.0"], ["1", "1.0", "-2.0", "2.0"]]


def test_csv_logger_append_keeps_one_header_and_overwrite_starts_afresh(tmp_path):
    path = tmp_path / "log.csv"
    _fit(_Model(), [3.0], [CSVLogger(path)])
    _fit(_Model(), [2.0], [CSVLogger(path, append=True)])
    rows = _read_csv(path)
    assert [row[0] for row in rows] == ["epoch", "0", "0"] and rows[2][3] == "2.0"
    _fit(_Model(), [5.0], [CSVLogger(path, separator=";")])
    assert open(path).read().splitlines() == ["epoch;loss;val_accuracy;val_loss", "0;1.0;-5.0;5.0"]


# -- TerminateOnNaN, LambdaCallback, ProgressBar --------------------------------------------------
def test_terminate_on_nan_stops_quietly_when_fit_does_not_raise():
    model = _Model()
    history = _fit(model, [1.0] * 5, [TerminateOnNaN()], train_losses=[1.0, 1.0, math.nan, 1.0, 1.0],
                   terminate_on_nan=False)
    assert model.stop_training and len(history.epoch) == 3 and math.isnan(history.history["loss"][-1])


def test_lambda_callback_calls_the_given_functions():
    events = []
    callback = LambdaCallback(
        on_train_begin=lambda logs: events.append("begin"),
        on_epoch_end=lambda epoch, logs: events.append(("epoch", epoch, logs["val_loss"])),
        on_train_batch_end=lambda batch, logs: events.append(("batch", batch)),
        on_train_end=lambda logs: events.append("end"),
    )
    _fit(_Model(), [3.0, 2.0], [callback], batches_per_epoch=2, train_losses=[1.0] * 4)
    assert events == ["begin", ("batch", 0), ("batch", 1), ("epoch", 0, 3.0), ("batch", 0), ("batch", 1),
                      ("epoch", 1, 2.0), "end"]
    with pytest.raises(TypeError, match="`on_epoch_end`.*callable"):
        LambdaCallback(on_epoch_end=3)


def test_progress_bar_one_bar_per_epoch_with_logs():
    buffer = io.StringIO()
    _fit(_Model(), [3.0, 2.0], [ProgressBar(1, file=buffer)], batches_per_epoch=3, train_losses=[0.5] * 6,
         verbose=1)
    text = buffer.getvalue()
    assert text.count("Epoch 1/2") >= 1 and text.count("Epoch 2/2") >= 1
    assert "3/3" in text and "loss=0.5" in text and "val_loss=2" in text


def test_progress_bar_verbose_2_prints_one_line_per_epoch():
    buffer = io.StringIO()
    _fit(_Model(), [3.0, 2.0], [ProgressBar(2, file=buffer)], verbose=2)
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 2 and lines[1].startswith("Epoch 2/2 - loss: 1") and "val_loss: 2" in lines[1]


def test_progress_bar_silent_with_verbose_0(capsys):
    buffer = io.StringIO()
    _fit(_Model(), [3.0], [ProgressBar(0, file=buffer)])
    _fit(_Model(), [3.0], [], verbose=0)
    assert buffer.getvalue() == ""
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    with pytest.raises(ValueError, match="`verbose`.*got 3"):
        ProgressBar(3)


def test_callback_list_rejects_non_callbacks():
    with pytest.raises(TypeError, match="expected Callback instances; got function"):
        _fit(_Model(), [1.0], [lambda: None])


# -- with a real model -------------------------------------------------------------------------------
def _real_model(learning_rate=0.05):
    import flowlearn as fl
    from flowlearn.core import optimizers
    from flowlearn.layers import Dense, Input

    fl.layers.set_random_seed(0)
    model = fl.Sequential([Input((3,)), Dense(8, activation="relu"), Dense(2, activation="softmax")])
    model.compile(optimizers.Adam(learning_rate=learning_rate), "sparse_categorical_crossentropy", ["accuracy"])
    rng = numpy.random.default_rng(0)
    x = rng.normal(size=(60, 3)).astype(numpy.float32)
    y = (x[:, 0] > 0).astype(int)
    return model, x, y


def test_model_checkpoint_files_load_back_as_the_best_model(tmp_path):
    import flowlearn as fl

    model, x, y = _real_model()
    best = {}

    class Remember(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs["val_loss"] < best.get("val_loss", numpy.inf):
                best.update(val_loss=logs["val_loss"], weights=self.model.get_weights())

    path = tmp_path / "best.flmodel"
    model.fit(x, y, epochs=4, verbose=0, validation_split=0.25,
              callbacks=[Remember(), ModelCheckpoint(path, save_best_only=True)])
    restored = fl.load_model(path)
    for got, want in zip(restored.get_weights(), best["weights"]):
        numpy.testing.assert_array_equal(got, want)


def test_early_stopping_restores_the_real_models_best_weights():
    model, x, y = _real_model(learning_rate=0.5)
    snapshots = []
    keep = LambdaCallback(on_epoch_end=lambda epoch, logs: snapshots.append((logs["loss"], model.get_weights())))
    stop = EarlyStopping(monitor="loss", patience=1, restore_best_weights=True, min_delta=10.0)
    history = model.fit(x, y, epochs=10, verbose=0, callbacks=[keep, stop])
    # min_delta=10 means no epoch after the first counts as an improvement: stop after epoch 2, restore epoch 1.
    assert history.epoch == [0, 1] and stop.best_epoch == 0
    for got, want in zip(model.get_weights(), snapshots[0][1]):
        numpy.testing.assert_array_equal(got, want)


def test_learning_rate_callbacks_drive_a_real_optimizer():
    from flowlearn.core.optimizers import schedules

    model, x, y = _real_model()
    history = model.fit(x, y, epochs=3, verbose=0,
                        callbacks=[LearningRateScheduler(lambda epoch, lr: 0.1 / (epoch + 1))])
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.05, 0.1 / 3])
    assert model.optimizer.learning_rate == pytest.approx(0.1 / 3)

    model, x, y = _real_model()
    model.optimizer.learning_rate = schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
    history = model.fit(x, y, epochs=2, batch_size=60, verbose=0,
                        callbacks=[ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=100.0)])
    # The schedule's current rate is what the callbacks read (0.1 * 0.5 ** steps taken).
    assert history.history["learning_rate"] == pytest.approx([0.05, 0.025])
    assert model.optimizer.learning_rate == pytest.approx(0.0125)


def test_csv_logger_with_a_real_model(tmp_path):
    model, x, y = _real_model()
    model.fit(x, y, epochs=2, verbose=0, validation_split=0.5, callbacks=[CSVLogger(tmp_path / "log.csv")])
    rows = _read_csv(tmp_path / "log.csv")
    assert rows[0] == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"] and len(rows) == 3
