"""The shared training loop, tested on its own with tiny steps (no layers needed)."""
import io
import math

import numpy
import pytest

import flowlearn as fl
from flowlearn.layers.callbacks import Callback, CSVLogger, ProgressBar
from flowlearn.layers.training import (
    GradientStep, NonFiniteLossError, array_batches, batch_length, evaluate_batches, make_metric, run_training,
)


class _Recorder(Callback):
    def __init__(self):
        super().__init__()
        self.events = []

    def on_train_begin(self, logs=None):
        self.events.append(("train_begin",))

    def on_train_end(self, logs=None):
        self.events.append(("train_end", dict(logs)))

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(("epoch_begin", epoch))

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(("epoch_end", epoch, dict(logs)))

    def on_train_batch_begin(self, batch, logs=None):
        self.events.append(("batch_begin", batch))

    def on_train_batch_end(self, batch, logs=None):
        self.events.append(("batch_end", batch, dict(logs)))


class _PlainSGD:
    def __init__(self, learning_rate):
        self.learning_rate = learning_rate

    def step(self, parameters):
        for parameter in parameters:
            parameter.data -= self.learning_rate * parameter.grad


def _scalar_problem(target=3.0, lr=0.1):
    """Minimise (w - target)^2 over batches of targets: a GradientStep on one scalar weight."""
    w = fl.tensor(0.0, requires_grad=True)

    def forward(batch):
        (values,) = batch
        diff = w - float(values.mean())
        return diff * diff, values, values * 0.0 + w.item()

    return w, GradientStep(forward, _PlainSGD(lr), lambda: [w], metrics=[_mean_prediction])


def _mean_prediction(y_true, y_pred):
    return float(numpy.mean(y_pred))


def _loss_sequence_step(losses):
    """A train step returning the given per-batch losses in order."""
    values = iter(losses)
    return lambda batch: {"loss": next(values)}


def test_logs_are_sample_weighted_epoch_means_and_history_records_them():
    data = (numpy.zeros(5),)
    step = _loss_sequence_step([1.0, 2.0, 4.0, 10.0, 10.0, 10.0])  # batches of 2, 2, 1 per epoch
    recorder = _Recorder()
    history = run_training(step, lambda epoch: array_batches(data, 2), epochs=2, callbacks=[recorder])
    assert history.history["loss"] == pytest.approx([(2 + 4 + 4) / 5, 10.0])
    assert history.epoch == [0, 1]
    batch_logs = [event[2]["loss"] for event in recorder.events if event[0] == "batch_end"]
    assert batch_logs[:3] == pytest.approx([1.0, 1.5, 2.0])  # running means, as the progress bar shows


def test_hook_order_and_initial_epoch():
    recorder = _Recorder()
    run_training(_loss_sequence_step([1.0] * 4), [(numpy.zeros(3),)] * 2, epochs=3, initial_epoch=1,
                 callbacks=[recorder])
    names = [event[:2] if event[0] != "train_end" else event[:1] for event in recorder.events]
    assert names == [
        ("train_begin",),
        ("epoch_begin", 1), ("batch_begin", 0), ("batch_end", 0), ("batch_begin", 1), ("batch_end", 1), ("epoch_end", 1),
        ("epoch_begin", 2), ("batch_begin", 0), ("batch_end", 0), ("batch_begin", 1), ("batch_end", 1), ("epoch_end", 2),
        ("train_end",),
    ]
    assert recorder.events[-1][1] == {"loss": 1.0}


def test_gradient_step_trains_and_clears_gradients():
    w, step = _scalar_problem(target=3.0)
    data = (numpy.full(8, 3.0),)
    history = run_training(step, lambda epoch: array_batches(data, 4), epochs=20)
    assert float(w.numpy()) == pytest.approx(3.0, abs=1e-3)
    assert w.grad is None
    assert history.history["_mean_prediction"][-1] == pytest.approx(3.0, abs=1e-2)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_stop_training_from_a_callback_ends_after_the_current_batch():
    class StopAtSecondBatch(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.stop_training = True

    class Model:
        stop_training = False

    model = Model()
    recorder = _Recorder()
    history = run_training(_loss_sequence_step([1.0] * 10), [(numpy.zeros(1),)] * 5, epochs=3, model=model,
                           callbacks=[StopAtSecondBatch(), recorder])
    assert [e[1] for e in recorder.events if e[0] == "batch_end"] == [0, 1]
    assert history.epoch == [0]  # the interrupted epoch still reports its logs
    assert model.stop_training is True


def test_validation_results_are_logged_with_val_prefix():
    calls = []

    def validate():
        calls.append(1)
        return {"loss": 0.5, "accuracy": 0.75}

    history = run_training(_loss_sequence_step([1.0] * 4), [(numpy.zeros(1),)] * 2, epochs=2, validate=validate)
    assert history.history["val_loss"] == [0.5, 0.5] and history.history["val_accuracy"] == [0.75, 0.75]
    assert len(calls) == 2


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nonfinite_loss_raises_and_keeps_weights_from_before_the_batch(bad):
    w = fl.tensor(1.0, requires_grad=True)
    losses = iter([1.0, 1.0, bad])

    def forward(batch):
        value = next(losses)
        return w * value, None, None

    recorder = _Recorder()
    step = GradientStep(forward, _PlainSGD(0.25), lambda: [w])
    with pytest.raises(NonFiniteLossError, match=rf"became {bad} at epoch 2, batch 1.*weights from before"):
        run_training(step, [(numpy.zeros(1),)] * 2, epochs=3, callbacks=[recorder])
    assert float(w.numpy()) == pytest.approx(0.5)  # two good updates of -0.25, the bad one not applied
    assert not any(event[0] == "train_end" for event in recorder.events)


def test_terminate_on_nan_false_applies_updates_and_continues():
    w = fl.tensor(1.0, requires_grad=True)

    def forward(batch):
        return w * math.nan, None, None

    step = GradientStep(forward, _PlainSGD(0.25), lambda: [w], skip_nonfinite=False)
    history = run_training(step, [(numpy.zeros(1),)] * 2, epochs=2, terminate_on_nan=False)
    assert len(history.history["loss"]) == 2 and math.isnan(history.history["loss"][0])
    assert math.isnan(float(w.numpy()))


def test_errors_close_callback_resources(tmp_path):
    logger = CSVLogger(tmp_path / "log.csv")

    def step(batch):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_training(step, [(numpy.zeros(1),)], epochs=1, callbacks=[logger])
    assert logger._file is None


def test_one_shot_iterator_continues_across_epochs_and_ends_when_exhausted():
    stream = iter([(numpy.full(1, float(i)),) for i in range(5)])
    seen = []

    def step(batch):
        seen.append(float(batch[0][0]))
        return {"loss": 0.0}

    history = run_training(step, stream, epochs=10, steps_per_epoch=2)
    assert seen == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert history.epoch == [0, 1, 2]  # epoch 3 got no batch: training ended


def test_steps_per_epoch_limits_a_reiterable():
    seen = []
    run_training(lambda b: seen.append(1) or {"loss": 0.0}, [(numpy.zeros(1),)] * 5, epochs=2, steps_per_epoch=3)
    assert len(seen) == 6


@pytest.mark.parametrize("argument, value", [("epochs", -1), ("initial_epoch", 1.5), ("steps_per_epoch", 0)])
def test_bad_loop_arguments(argument, value):
    with pytest.raises(ValueError, match=f"`{argument}`.*got {value}"):
        run_training(lambda b: {"loss": 0.0}, [], **{argument: value})


def test_array_batches_shuffle_permutes_indices_and_covers_every_row_once(rng):
    x = numpy.arange(23 * 2).reshape(23, 2)
    y = numpy.arange(23)
    batches = list(array_batches((x, y, None), 5, shuffle=True, rng=rng))
    assert [len(b[0]) for b in batches] == [5, 5, 5, 5, 3]
    rows = numpy.concatenate([b[1] for b in batches])
    assert sorted(rows.tolist()) == list(range(23)) and rows.tolist() != list(range(23))
    for bx, by, none in batches:
        numpy.testing.assert_array_equal(bx[:, 0], by * 2)  # rows stay paired
        assert none is None
    numpy.testing.assert_array_equal(x[:, 0], numpy.arange(0, 46, 2))  # the data itself untouched


def test_array_batches_without_shuffle_are_views():
    x = numpy.arange(10.0)
    batches = list(array_batches((x,), 4))
    assert all(numpy.shares_memory(b[0], x) for b in batches)
    assert [b[0].tolist() for b in batches][-1] == [8.0, 9.0]


@pytest.mark.parametrize("batch_size", [0, 2.5, -3])
def test_array_batches_rejects_bad_batch_size(batch_size):
    with pytest.raises(ValueError, match=f"`batch_size`.*got {batch_size}"):
        list(array_batches((numpy.zeros(4),), batch_size))


def test_batch_length_of_various_batches():
    assert batch_length(numpy.zeros((3, 2))) == 3
    assert batch_length((None, numpy.zeros(4))) == 4
    assert batch_length({"a": numpy.zeros(5)}) == 5


def test_verbose_adds_a_progress_bar_only_when_asked():
    seen = []

    class Spy(Callback):
        def set_params(self, params):
            seen.append(params)

    run_training(lambda b: {"loss": 1.0}, [(numpy.zeros(1),)] * 3, epochs=2, verbose=0, callbacks=[Spy()])
    assert seen[-1] == {"epochs": 2, "steps": 3, "verbose": 0}
    buffer = io.StringIO()
    run_training(lambda b: {"loss": 1.0}, [(numpy.zeros(1),)] * 3, epochs=2, callbacks=[ProgressBar(1, file=buffer)],
                 verbose=1)
    text = buffer.getvalue()
    assert "Epoch 1/2" in text and "Epoch 2/2" in text and "loss=1" in text


def test_gradient_step_logs_running_loss_and_streaming_metrics_reset_each_epoch():
    w = fl.tensor(0.0, requires_grad=True)

    def forward(batch):
        x, y = batch
        return w * 0.0 + float(x.sum()), y, x  # loss: the batch's sum; predictions: x itself

    step = GradientStep(forward, _PlainSGD(0.0), lambda: [w], metrics=["mae"])
    data = (numpy.array([1.0, 1.0, 4.0]), numpy.array([1.0, 1.0, 1.0]))
    history = run_training(step, lambda epoch: array_batches(data, 2), epochs=2)
    # loss: batch sums 2 (2 rows) and 4 (1 row) -> (2*2 + 4*1) / 3; mae streams over all rows: (0+0+3)/3
    assert history.history["loss"] == pytest.approx([8 / 3, 8 / 3])
    assert history.history["mae"] == pytest.approx([1.0, 1.0])


def test_evaluate_batches_runs_without_graph_in_inference_mode():
    seen = []
    w = fl.tensor(2.0, requires_grad=True)

    def forward(batch):
        (x,) = batch
        seen.append((fl.is_grad_enabled(), fl.is_training()))
        return w * float(x.sum()), x, x

    logs = evaluate_batches(forward, array_batches((numpy.array([1.0, 2.0, 3.0]),), 2), metrics=["mae"])
    assert logs == pytest.approx({"loss": (2 * 3 * 2 + 2 * 3 * 1) / 3, "mae": 0.0})
    assert seen == [(False, False), (False, False)]
    with pytest.raises(ValueError, match="at least one batch"):
        evaluate_batches(forward, [])


def test_make_metric_copies_metric_objects_and_wraps_functions():
    from flowlearn.core import metrics

    original = metrics.Accuracy(threshold=0.3, name="acc3")
    copy = make_metric(original)
    assert copy is not original and copy.name == "acc3" and copy.threshold == 0.3
    assert make_metric("acc").name == "acc"
    wrapped = make_metric(_mean_prediction)
    wrapped.update_state(None, numpy.array([1.0, 3.0]))
    wrapped.update_state(None, numpy.array([5.0]))
    assert wrapped.name == "_mean_prediction" and wrapped.result() == pytest.approx((2 * 2 + 5) / 3)
    with pytest.raises(TypeError, match="`metrics`.*got 3"):
        make_metric(3)
