"""The model_fn Estimator: train/evaluate/predict, model_dir checkpoints and resume, warm start, errors,
train_and_evaluate and its exporters. The worked examples are in test_estimator_examples.py."""
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy
import pytest

import flowlearn as fl
from flowlearn.core import losses
from flowlearn.estimators import (
    Estimator, EstimatorSpec, EvalSpec, Exporter, ModeKeys, RunConfig, TrainSpec, WarmStartSettings,
    train_and_evaluate,
)
from flowlearn.io import checkpoint


def batches_fn(x, y=None, batch_size=10, epochs=1, calls=None):
    """A deterministic input_fn (no shuffling): ``epochs`` passes over the rows in order, None repeats."""
    def input_fn():
        if calls is not None:
            calls.append(1)
        epoch = 0
        while epochs is None or epoch < epochs:
            for start in range(0, len(x), batch_size):
                yield {"x": x[start:start + batch_size]}, None if y is None else y[start:start + batch_size]
            epoch += 1
    return input_fn


def mlp_fn(features, labels, mode, params):
    h = fl.layers.dense(features["x"], params.get("units", 8), activation="relu")
    h = fl.layers.dropout(h, params.get("rate", 0.0), training=mode == ModeKeys.TRAIN)
    y = fl.layers.dense(h, 1)
    if mode == ModeKeys.PREDICT:
        return EstimatorSpec(mode, predictions={"y": y, "twice": y * 2.0})
    loss = losses.mean_squared_error(labels, y)
    if mode == ModeKeys.EVAL:
        return EstimatorSpec(mode, loss=loss, eval_metric_ops={"rmse": fl.metrics.rmse(labels, y)})
    train_op = fl.train.AdamOptimizer(params.get("learning_rate", 0.01)).minimize(
        loss, global_step=fl.train.get_global_step())
    return EstimatorSpec(mode, loss=loss, train_op=train_op)


@pytest.fixture
def data():
    rng = numpy.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype("float32")
    y = (x @ numpy.array([[1.0], [-2.0], [0.5]], dtype="float32") + 0.3).astype("float32")
    return x, y


def make(model_dir, params=None, seed=0, **config):
    config.setdefault("save_summary_steps", None)
    return Estimator(mlp_fn, model_dir=str(model_dir), config=RunConfig(tf_random_seed=seed, **config),
                     params=params or {})


# -- train: steps, max_steps, checkpoints --------------------------------------------------------------
def test_steps_add_to_the_global_step_and_max_steps_is_absolute(tmp_path, data):
    x, y = data
    est = make(tmp_path)
    est.train(batches_fn(x, y, epochs=None), steps=7)
    assert est.evaluate(batches_fn(x, y))["global_step"] == 7
    est.train(batches_fn(x, y, epochs=None), steps=5)
    assert checkpoint.checkpoint_step(est.latest_checkpoint()) == 12
    est.train(batches_fn(x, y, epochs=None), max_steps=20)
    assert checkpoint.checkpoint_step(est.latest_checkpoint()) == 20
    calls = []
    est.train(batches_fn(x, y, epochs=None, calls=calls), max_steps=15)  # reached already: returns at once
    assert calls == [] and checkpoint.checkpoint_step(est.latest_checkpoint()) == 20
    with pytest.raises(ValueError, match="at most one of `steps` and `max_steps`"):
        est.train(batches_fn(x, y), steps=1, max_steps=30)
    with pytest.raises(ValueError, match="`steps` to be a positive integer"):
        est.train(batches_fn(x, y), steps=0)
    with pytest.raises(ValueError, match="`max_steps` to be a positive integer; got max_steps='many'"):
        est.train(batches_fn(x, y), max_steps="many")


def test_training_ends_when_the_input_runs_out(tmp_path, data):
    x, y = data
    est = make(tmp_path)
    est.train(batches_fn(x, y, batch_size=10, epochs=2))  # 4 batches an epoch
    assert checkpoint.checkpoint_step(est.latest_checkpoint()) == 8


def test_checkpoints_every_n_steps_and_keep_checkpoint_max(tmp_path, data):
    x, y = data
    est = make(tmp_path, save_checkpoints_steps=3, keep_checkpoint_max=2)
    est.train(batches_fn(x, y, epochs=None), steps=10)
    kept = [checkpoint.checkpoint_step(path) for path in checkpoint.all_checkpoints(tmp_path)]
    assert kept == [9, 10]  # 3, 6, 9 and the final 10, pruned to the last two


def test_a_checkpoint_holds_variables_slots_global_step_and_rng_state(tmp_path, data):
    x, y = data
    est = make(tmp_path)
    est.train(batches_fn(x, y, epochs=None), steps=3)
    names = est.get_variable_names()
    assert {"dense/kernel", "dense_1/bias", "global_step", "dense/kernel/Adam/m", "dense/kernel/Adam/v",
            "Adam/iterations"} <= set(names)
    assert int(est.get_variable_value("global_step")) == 3
    assert int(est.get_variable_value("Adam/iterations")) == 3
    assert est.get_variable_value("dense/kernel").shape == (3, 8)
    _, metadata = checkpoint.load_checkpoint(est.latest_checkpoint())
    assert set(metadata["rng"]) == {"weights", "dropout"}
    with pytest.raises(ValueError, match="no variable named 'nope'"):
        est.get_variable_value("nope")


def test_resume_gives_the_same_result_as_uninterrupted_training(tmp_path, data):
    # Dropout draws from the Estimator's generator, whose state travels in the checkpoint; Adam's moments
    # and step count travel as slots. 4 batches an epoch: both runs see the same batches in the same order.
    x, y = data
    params = {"rate": 0.3}
    whole = make(tmp_path / "whole", params, seed=3)
    whole.train(batches_fn(x, y, epochs=None), steps=16)
    first = make(tmp_path / "split", params, seed=3)
    first.train(batches_fn(x, y, epochs=None), steps=8)
    second = make(tmp_path / "split", params, seed=3)  # a new Estimator on the same model_dir
    second.train(batches_fn(x, y, epochs=None), steps=8)
    a, _ = checkpoint.load_checkpoint(whole.latest_checkpoint())
    b, _ = checkpoint.load_checkpoint(second.latest_checkpoint())
    assert sorted(a) == sorted(b) and int(b["global_step"]) == 16
    for name in a:
        numpy.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_training_equals_the_model_fn_run_by_hand_bit_for_bit(tmp_path, data):
    """What train() adds per step (the scope entry, the lent generators, the loop, the batches' path, the
    global step) changes no number: weights, slots and step after 7 + 5 steps (two train calls, with
    dropout drawing from the Estimator's generator) are those of the model_fn called in a plain loop."""
    from flowlearn.layers import seeding

    x, y = data
    params = {"units": 16, "rate": 0.3}
    estimator = make(tmp_path, params=params, seed=3)
    estimator.train(batches_fn(x, y, epochs=None), steps=7)
    estimator.train(batches_fn(x, y, epochs=None), steps=5)

    weights, dropout = numpy.random.SeedSequence(3).spawn(2)
    store = fl.VariableStore()
    store._rng = numpy.random.default_rng(weights)
    store.create_global_step()
    saved = seeding._generators["dropout"]
    seeding._generators["dropout"] = numpy.random.default_rng(dropout)
    try:
        for steps in (7, 5):
            batches = batches_fn(x, y, epochs=None)()
            for _ in range(steps):
                features, labels = next(batches)
                with fl.variable_scope(store), fl.training_mode(True):
                    mlp_fn(features, labels, ModeKeys.TRAIN, params)
    finally:
        seeding._generators["dropout"] = saved
    expected = store.get_weights()
    expected.update(store.slots)
    got = estimator._state()
    assert sorted(got) == sorted(expected) and int(got["global_step"]) == 12
    for name, array in expected.items():
        numpy.testing.assert_array_equal(got[name], array, err_msg=name, strict=True)


def test_with_summaries_and_step_logging_off_no_step_logger_runs(tmp_path, data, monkeypatch):
    """It would have nothing to do and still be called twice a step."""
    from flowlearn.estimators import estimator as estimator_module

    def refused(*args, **kwargs):
        raise AssertionError("a _StepLogger was created")

    x, y = data
    estimator = make(tmp_path, log_step_count_steps=None)
    monkeypatch.setattr(estimator_module, "_StepLogger", refused)
    estimator.train(batches_fn(x, y), steps=3)
    assert estimator.get_variable_value("global_step") == 3


def test_a_second_train_call_continues_from_memory_without_reloading(tmp_path, data, monkeypatch):
    x, y = data
    est = make(tmp_path)
    est.train(batches_fn(x, y, epochs=None), steps=4)
    loads = []
    original = checkpoint.load_checkpoint
    monkeypatch.setattr(checkpoint, "load_checkpoint", lambda path: loads.append(path) or original(path))
    est.train(batches_fn(x, y, epochs=None), steps=4)
    est.evaluate(batches_fn(x, y))
    list(est.predict(batches_fn(x[:3])))
    assert loads == []  # the weights in memory are the latest checkpoint's


def test_evaluate_and_predict_reload_when_another_estimator_trained_on(tmp_path, data):
    x, y = data
    reader = make(tmp_path)
    make(tmp_path).train(batches_fn(x, y, epochs=None), steps=4)
    assert reader.evaluate(batches_fn(x, y))["global_step"] == 4
    writer = make(tmp_path)
    writer.train(batches_fn(x, y, epochs=None), steps=6)
    assert reader.evaluate(batches_fn(x, y))["global_step"] == 10
    expected = numpy.concatenate([p["y"] for p in writer.predict(batches_fn(x[:5]), yield_single_examples=False)])
    got = numpy.stack([p["y"] for p in reader.predict(batches_fn(x[:5]))])
    numpy.testing.assert_array_equal(got, expected)


# -- evaluate ----------------------------------------------------------------------------------------
def test_evaluate_streams_the_loss_and_metrics_over_all_batches(tmp_path, data):
    x, y = data
    est = make(tmp_path)
    est.train(batches_fn(x, y, epochs=None), steps=5)
    # 40 rows in batches of 15: 15, 15, 10 - the loss mean is weighted by batch size, rmse is over all rows.
    result = est.evaluate(batches_fn(x, y, batch_size=15))
    predicted = numpy.concatenate([p["y"] for p in est.predict(batches_fn(x), yield_single_examples=False)])
    squared = (predicted - y) ** 2
    assert result["loss"] == pytest.approx(squared.mean(), rel=1e-5)
    assert result["rmse"] == pytest.approx(numpy.sqrt(squared.mean()), rel=1e-5)
    assert result["global_step"] == 5
    first_batch = est.evaluate(batches_fn(x, y, batch_size=15), steps=1)
    assert first_batch["loss"] == pytest.approx(squared[:15].mean(), rel=1e-5)


def test_evaluate_before_any_training_says_so(tmp_path, data):
    x, y = data
    with pytest.raises(ValueError, match="Could not find a trained model"):
        make(tmp_path).evaluate(batches_fn(x, y))
    with pytest.raises(ValueError, match="Could not find a trained model"):
        list(make(tmp_path).predict(batches_fn(x)))


# -- predict -----------------------------------------------------------------------------------------
def test_predict_yields_examples_or_batches_and_filters_keys(tmp_path, data):
    x, y = data
    est = make(tmp_path)
    est.train(batches_fn(x, y, epochs=None), steps=2)
    rows = list(est.predict(batches_fn(x[:7], batch_size=3)))
    assert len(rows) == 7 and set(rows[0]) == {"y", "twice"} and rows[0]["y"].shape == (1,)
    numpy.testing.assert_allclose(rows[4]["twice"], 2 * rows[4]["y"])
    batches = list(est.predict(batches_fn(x[:7], batch_size=3), predict_keys="y", yield_single_examples=False))
    assert [set(b) for b in batches] == [{"y"}] * 3 and [len(b["y"]) for b in batches] == [3, 3, 1]
    with pytest.raises(ValueError, match="predict_keys"):
        list(est.predict(batches_fn(x[:3]), predict_keys=["nope"]))


def test_dropout_and_training_mode_follow_the_mode(tmp_path, data):
    x, y = data
    seen = []

    def model_fn(features, labels, mode):
        seen.append((mode, fl.is_training()))
        out = fl.layers.dense(features["x"], 1)
        if mode == ModeKeys.PREDICT:
            return EstimatorSpec(mode, predictions=fl.layers.dropout(out, 0.9, training=None))
        loss = losses.mean_squared_error(labels, out)
        op = fl.train.GradientDescentOptimizer(0.01).minimize(loss, global_step=fl.train.get_global_step())
        return EstimatorSpec(mode, loss=loss, train_op=op)

    est = Estimator(model_fn, str(tmp_path), RunConfig(save_summary_steps=None))
    est.train(batches_fn(x, y), steps=1)
    first = [p["predictions"] for p in est.predict(batches_fn(x[:4]))]
    second = [p["predictions"] for p in est.predict(batches_fn(x[:4]))]
    numpy.testing.assert_array_equal(first, second)  # no dropout outside training
    assert ("train", True) in seen and ("infer", False) in seen and ("train", False) not in seen


# -- warm start and mismatched checkpoints -----------------------------------------------------------
def test_warm_start_copies_the_matching_trainable_variables(tmp_path, data):
    x, y = data
    source = make(tmp_path / "source", seed=1)
    source.train(batches_fn(x, y, epochs=None), steps=5)
    warm = Estimator(mlp_fn, str(tmp_path / "warm"), RunConfig(tf_random_seed=2, save_summary_steps=None),
                     params={"learning_rate": 0.0},
                     warm_start_from=WarmStartSettings(str(tmp_path / "source"), vars_to_warm_start="dense/"))
    warm.train(batches_fn(x, y), steps=1)  # learning rate 0: the weights stay as they started
    for name in ("dense/kernel", "dense/bias"):
        numpy.testing.assert_array_equal(warm.get_variable_value(name), source.get_variable_value(name))
    assert not numpy.array_equal(warm.get_variable_value("dense_1/kernel"), source.get_variable_value("dense_1/kernel"))
    assert int(warm.get_variable_value("global_step")) == 1  # the global step starts afresh
    both = Estimator(mlp_fn, str(tmp_path / "both"), RunConfig(save_summary_steps=None), params={"learning_rate": 0.0},
                     warm_start_from=WarmStartSettings(str(tmp_path / "source"), ["dense/", "dense_1/"]))
    both.train(batches_fn(x, y), steps=1)
    numpy.testing.assert_array_equal(both.get_variable_value("dense_1/kernel"),
                                     source.get_variable_value("dense_1/kernel"))
    with pytest.raises(ValueError, match="vars_to_warm_start"):
        WarmStartSettings(str(tmp_path), "(")
    wider = Estimator(mlp_fn, str(tmp_path / "wider"), RunConfig(save_summary_steps=None), params={"units": 5},
                      warm_start_from=str(tmp_path / "source"))  # a model_dir: its latest checkpoint
    with pytest.raises(ValueError, match=r"mis-shaped: \['dense/bias: \(8,\) in the checkpoint, \(5,\)"):
        wider.train(batches_fn(x, y), steps=1)


def test_a_checkpoint_of_another_model_is_refused_with_the_mismatch_named(tmp_path, data):
    x, y = data
    make(tmp_path).train(batches_fn(x, y, epochs=None), steps=2)
    other = make(tmp_path, params={"units": 5})
    with pytest.raises(ValueError, match=r"dense/kernel.*\(3, 8\).*\(3, 5\)"):
        other.train(batches_fn(x, y), steps=1)
    with pytest.raises(ValueError, match="does not match"):
        other.evaluate(batches_fn(x, y))


# -- errors ------------------------------------------------------------------------------------------
def test_model_fn_without_loss_in_train_or_predictions_in_predict_is_a_clear_error(tmp_path, data):
    x, y = data

    def no_loss(features, labels, mode):
        out = fl.layers.dense(features["x"], 1)
        return EstimatorSpec(mode, predictions=out)

    est = Estimator(no_loss, str(tmp_path / "a"))
    with pytest.raises(ValueError, match=r"model_fn .*no_loss.* in mode 'train'.*needs a `loss`"):
        est.train(batches_fn(x, y), steps=1)

    def no_predictions(features, labels, mode):
        out = fl.layers.dense(features["x"], 1)
        if mode == ModeKeys.PREDICT:
            return EstimatorSpec(mode)
        loss = losses.mean_squared_error(labels, out)
        op = fl.train.GradientDescentOptimizer(0.01).minimize(loss, global_step=fl.train.get_global_step())
        return EstimatorSpec(mode, loss=loss, train_op=op)

    est = Estimator(no_predictions, str(tmp_path / "b"))
    est.train(batches_fn(x, y), steps=1)
    with pytest.raises(ValueError, match=r"model_fn .*no_predictions.* in mode 'infer'.*needs `predictions`"):
        list(est.predict(batches_fn(x)))
    with pytest.raises(ValueError, match="needs a `train_op`"):
        EstimatorSpec(ModeKeys.TRAIN, loss=fl.tensor(1.0))


def test_a_wrong_mode_key_is_a_clear_error(tmp_path, data):
    x, y = data
    with pytest.raises(ValueError, match=r"ModeKeys.TRAIN \('train'\).*got mode='training'"):
        EstimatorSpec("training", loss=fl.tensor(1.0))

    def wrong_mode(features, labels, mode):
        out = fl.layers.dense(features["x"], 1)
        return EstimatorSpec(ModeKeys.PREDICT, predictions=out)

    est = Estimator(wrong_mode, str(tmp_path))
    with pytest.raises(ValueError, match="called in mode 'train' but returned an EstimatorSpec for mode 'infer'"):
        est.train(batches_fn(x, y), steps=1)


def test_an_input_fn_yielding_the_wrong_structure_is_a_clear_error(tmp_path, data):
    x, y = data
    est = make(tmp_path)
    with pytest.raises((ValueError, TypeError), match=r"\(features, labels\)"):
        est.train(lambda: iter([x, x]), steps=1)
    with pytest.raises((ValueError, TypeError), match=r"\(features, labels\)"):
        est.train(lambda: iter([(x, y, y)]), steps=1)
    with pytest.raises(TypeError, match="input_fn"):
        est.train([(x, y)], steps=1)


def test_constructor_checks(tmp_path):
    with pytest.raises(TypeError, match="model_fn"):
        Estimator("not a function")
    with pytest.raises(ValueError, match="no `params` argument"):
        Estimator(lambda features, labels, mode: None, params={"a": 1})
    with pytest.raises(ValueError, match="differ"):
        Estimator(mlp_fn, str(tmp_path / "a"), RunConfig(model_dir=str(tmp_path / "b")))
    est = Estimator(mlp_fn, params={"units": 3})
    assert os.path.isdir(est.model_dir) and est.config.model_dir == est.model_dir  # a temporary directory
    assert est.params == {"units": 3}
    with pytest.raises(ValueError, match="at most one of"):
        RunConfig(save_checkpoints_steps=10, save_checkpoints_secs=30)


def test_a_nan_loss_stops_training_and_the_model_dir_keeps_the_last_good_checkpoint(tmp_path, data):
    x, y = data
    est = make(tmp_path, params={"learning_rate": 0.01})
    est.train(batches_fn(x, y, epochs=None), steps=3)
    bad = y.copy()
    bad[5] = numpy.nan
    with pytest.raises(FloatingPointError, match="loss became nan"):
        est.train(batches_fn(x, bad), steps=2)
    assert checkpoint.checkpoint_step(est.latest_checkpoint()) == 3
    assert est.evaluate(batches_fn(x, y))["global_step"] == 3  # reloaded from the checkpoint


# -- hooks, summaries ----------------------------------------------------------------------------------
def test_hooks_are_callbacks_that_can_stop_training(tmp_path, data):
    x, y = data

    class StopAt(fl.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if logs["global_step"] >= 4:
                self.model.stop_training = True

    est = make(tmp_path)
    est.train(batches_fn(x, y, epochs=None), steps=100, hooks=[StopAt()])
    assert checkpoint.checkpoint_step(est.latest_checkpoint()) == 4
    with pytest.raises(TypeError, match="hooks"):
        est.train(batches_fn(x, y), hooks=[object()])


def test_training_without_the_tensorboard_extra_logs_once_and_writes_no_events(tmp_path, data, monkeypatch, caplog):
    from flowlearn.estimators import estimator as estimator_module
    from flowlearn.io import tensorboard

    class Missing:
        def __init__(self, logdir):
            raise ImportError("tensorboard writer needs pip install 'flowlearn[tensorboard]'")

    monkeypatch.setattr(tensorboard, "SummaryWriter", Missing)
    monkeypatch.setattr(estimator_module, "_warned_no_tensorboard", set())
    x, y = data
    est = make(tmp_path, save_summary_steps=1)
    with caplog.at_level(logging.INFO, logger="flowlearn.estimators"):
        est.train(batches_fn(x, y), steps=2)
        est.train(batches_fn(x, y), steps=2)
    messages = [r.getMessage() for r in caplog.records if "no TensorBoard summaries" in r.getMessage()]
    assert len(messages) == 1
    assert not [name for name in os.listdir(tmp_path) if name.startswith("events")]


# -- train_and_evaluate ------------------------------------------------------------------------------
class RecordingExporter(Exporter):
    def __init__(self):
        super().__init__("recording")
        self.calls = []

    def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
        self.calls.append((export_path, checkpoint.checkpoint_step(checkpoint_path), eval_result["global_step"],
                           is_the_final_export))
        return export_path


def _train_and_evaluate_recording(tmp_path, data, save_checkpoints_steps, max_steps, as_list=False, **eval_spec):
    """train_and_evaluate with a RecordingExporter (alone or in a list): (estimator, exporter, result, exports)."""
    x, y = data
    est = make(tmp_path, save_checkpoints_steps=save_checkpoints_steps)
    exporter = RecordingExporter()
    result, exports = train_and_evaluate(
        est, TrainSpec(batches_fn(x, y, epochs=None), max_steps=max_steps),
        EvalSpec(batches_fn(x, y), exporters=[exporter] if as_list else exporter, start_delay_secs=0, **eval_spec))
    return est, exporter, result, exports


def test_train_and_evaluate_evaluates_checkpoints_and_calls_the_exporters(tmp_path, data):
    _, exporter, result, exports = _train_and_evaluate_recording(tmp_path, data, 4, 12, as_list=True, steps=None,
                                                                   throttle_secs=0)
    assert result["global_step"] == 12
    path = os.path.join(str(tmp_path), "export", "recording")
    assert exporter.calls == [(path, 4, 4, False), (path, 8, 8, False), (path, 12, 12, True)]
    assert exports == [path] * 3


def test_train_and_evaluate_throttles_but_always_evaluates_the_final_checkpoint(tmp_path, data):
    x, y = data
    est, exporter, result, _ = _train_and_evaluate_recording(tmp_path, data, 2, 8, throttle_secs=3600)
    assert [call[1:] for call in exporter.calls] == [(2, 2, False), (8, 8, True)]
    assert result["global_step"] == 8
    with pytest.raises(TypeError, match="Exporter"):
        EvalSpec(batches_fn(x, y), exporters=[object()])
    with pytest.raises(NotImplementedError):
        Exporter("plain").export(est, "p", "c", {}, True)


# -- killed while writing checkpoints ----------------------------------------------------------------
_TRAINER = textwrap.dedent("""
    import sys, numpy
    sys.path.insert(0, {tests!r})
    from test_estimator import make, batches_fn
    rng = numpy.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype("float32")
    y = x.sum(axis=1, keepdims=True).astype("float32")
    est = make({model_dir!r}, save_checkpoints_steps=1, keep_checkpoint_max=2)
    print("ready", flush=True)
    est.train(batches_fn(x, y, epochs=None), steps=100000)
""")


def _kill_during_a_write(process, model_dir, rng):
    """SIGKILL ``process`` a random 0-1 ms after a checkpoint or index temporary appears in model_dir (after it
    has trained a little): the kill lands inside a write, or just after one, at a random point."""
    deadline = time.monotonic() + 30
    time.sleep(rng.uniform(0.2, 0.5))
    while time.monotonic() < deadline:
        try:
            if any(name.endswith(".tmp") for name in os.listdir(model_dir)):
                break
        except FileNotFoundError:  # no checkpoint yet
            pass
        time.sleep(0.0002)
    time.sleep(rng.uniform(0, 0.001))
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.mark.slow
def test_a_model_dir_always_resumes_after_the_trainer_is_killed_while_checkpointing(tmp_path, data):
    # The trainer saves a checkpoint every step; it is killed while one is being written, five times, and
    # after each kill a new Estimator must resume from the model_dir and train on.
    x, y = data
    model_dir = str(tmp_path / "run")
    script = tmp_path / "trainer.py"
    script.write_text(_TRAINER.format(tests=os.path.dirname(__file__), model_dir=model_dir))
    rng = numpy.random.default_rng(1)
    steps, mid_write = [], 0
    for _ in range(5):
        process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline().strip() == "ready"
        process.stdout.close()
        _kill_during_a_write(process, model_dir, rng)
        mid_write += any(name.endswith(".tmp") for name in os.listdir(model_dir))
        est = make(model_dir, save_checkpoints_steps=1, keep_checkpoint_max=2)
        before = checkpoint.checkpoint_step(est.latest_checkpoint()) if est.latest_checkpoint() else 0
        est.train(batches_fn(x, y, epochs=None), steps=1)
        after = checkpoint.checkpoint_step(est.latest_checkpoint())
        assert after == before + 1
        assert not [name for name in os.listdir(model_dir) if name.endswith(".tmp")]  # the dead writer's, removed
        steps.append(after)
    assert steps == sorted(steps) and steps[-1] > 5
    assert mid_write >= 1  # kills left half-written temporaries behind (2-5 of 5 in trial runs): inside writes


@pytest.fixture
def event_accumulator():
    """tensorboard's event reader, for the tests that read the Estimator's event files back."""
    pytest.importorskip("tensorboardX")
    return pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


@pytest.mark.slow  # importing tensorboardX (which imports torch where installed) takes seconds
def test_training_and_evaluation_write_tensorboard_scalars(tmp_path, data, event_accumulator):
    x, y = data
    est = make(tmp_path, save_summary_steps=2)
    est.train(batches_fn(x, y, epochs=None), steps=6)
    result = est.evaluate(batches_fn(x, y))

    def scalars(logdir):
        accumulator = event_accumulator.EventAccumulator(str(logdir), size_guidance={"scalars": 0})
        accumulator.Reload()
        return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}

    train = scalars(tmp_path)
    assert {"loss", "learning_rate", "global_step/sec"} <= set(train)
    assert [step for step, _ in train["loss"]] == [2, 4, 6]
    assert train["learning_rate"][0][1] == pytest.approx(0.01)
    evaluation = scalars(tmp_path / "eval")
    assert evaluation["loss"] == [(6, pytest.approx(result["loss"], rel=1e-6))]
    assert evaluation["rmse"] == [(6, pytest.approx(result["rmse"], rel=1e-6))]


@pytest.mark.slow  # importing tensorboardX (which imports torch where installed) takes seconds
def test_training_writes_the_inference_graph_once(tmp_path, data, event_accumulator):
    x, y = data
    est = make(tmp_path, save_summary_steps=2)
    est.train(batches_fn(x, y, epochs=None), steps=4)
    est.train(batches_fn(x, y, epochs=None), steps=4)  # a second train() of the same Estimator: no second graph
    accumulator = event_accumulator.EventAccumulator(str(tmp_path))
    accumulator.Reload()
    graph_def = accumulator.Graph()
    nodes = {node.name: node for node in graph_def.node}
    # mlp_fn's PREDICT branch: its feature input by name, both layers' variables, and its two prediction outputs.
    assert "x" in nodes and nodes["x"].op == "Placeholder"
    assert {"dense/kernel", "dense_1/kernel"} <= set(nodes)
    assert {"y", "twice"} <= set(nodes)
    assert any(node.op == "matmul" for node in graph_def.node)
    files = [name for name in os.listdir(tmp_path) if name.startswith("events.out")]
    graphs = 0
    from tensorboard.backend.event_processing import event_file_loader
    for name in files:
        for event in event_file_loader.EventFileLoader(str(tmp_path / name)).Load():
            graphs += event.HasField("graph_def")
    assert graphs == 1
    # Training is unchanged by the picture: the same steps without summaries give the same weights.
    plain = make(tmp_path / "plain")
    plain.train(batches_fn(x, y, epochs=None), steps=8)
    numpy.testing.assert_array_equal(plain.get_variable_value("dense/kernel"), est.get_variable_value("dense/kernel"))


@pytest.mark.slow  # importing tensorboardX (which imports torch where installed) takes seconds
def test_a_model_fn_that_cannot_be_traced_trains_with_a_warning_and_no_graph(tmp_path, data):
    pytest.importorskip("tensorboardX")
    x, y = data

    def untraceable_fn(features, labels, mode, params):
        if mode == ModeKeys.PREDICT:  # say, a Python library call the tracer cannot follow
            raise RuntimeError("no tracing here")
        return mlp_fn(features, labels, mode, params)

    est = Estimator(untraceable_fn, str(tmp_path), RunConfig(save_summary_steps=1, tf_random_seed=0))
    with pytest.warns(RuntimeWarning, match=r"could not be traced in PREDICT mode, so TensorBoard gets no graph "
                                            r"\(RuntimeError: no tracing here\)"):
        est.train(batches_fn(x, y, epochs=None), steps=2)
    assert checkpoint.checkpoint_step(est.latest_checkpoint()) == 2


@pytest.mark.slow  # importing tensorboardX (which imports torch where installed) takes seconds
def test_weight_histograms_every_save_histogram_steps(tmp_path, data, event_accumulator):
    x, y = data
    est = make(tmp_path, save_summary_steps=2, save_histogram_steps=3)
    est.train(batches_fn(x, y, epochs=None), steps=6)
    accumulator = event_accumulator.EventAccumulator(str(tmp_path), size_guidance={"histograms": 0})
    accumulator.Reload()
    names = ["dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias"]  # mlp_fn's trainable variables
    assert names and set(accumulator.Tags()["histograms"]) == set(names)
    for name in names:
        events = accumulator.Histograms(name)
        assert [e.step for e in events] == [3, 6]
        last = est.get_variable_value(name)  # the step-6 checkpoint holds what the step-6 histogram saw
        assert events[-1].histogram_value.num == last.size
        assert events[-1].histogram_value.sum == pytest.approx(float(last.sum()), rel=1e-5, abs=1e-6)
