"""flowlearn.io.tensorboard: event files written by SummaryWriter and fl.callbacks.TensorBoard, read back with
TensorBoard's own reader (EventAccumulator)."""
import os
import re
import subprocess
import sys
import textwrap

import numpy
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import flowlearn as fl
from flowlearn.io import tensorboard as tb
from flowlearn.io.tensorboard import SummaryWriter, TensorBoard


def _read(logdir):
    # size_guidance 0 keeps every event: the default samples scalars down to 10,000 and histograms to 500.
    accumulator = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def _scalars(accumulator, tag):
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


# -- SummaryWriter -----------------------------------------------------------------------------------------
def test_scalars_read_back_with_their_tags_steps_and_values(tmp_path, rng):
    values = rng.normal(size=7)
    steps = [0, 1, 5, 10, 11, 100, 1000]
    with SummaryWriter(tmp_path) as writer:
        for step, value in zip(steps, values):
            writer.add_scalar("loss", value, step)
            writer.add_scalar("metrics/rmse", numpy.float32(2 * value), step)
        writer.add_scalar("tensor_value", fl.tensor(numpy.array([3.5])), 0)
        # A global-step variable is a step as it is.
        writer.add_scalar("tensor_value", 4.5, fl.tensor(numpy.array(12, dtype=numpy.int64)))
    events = _read(tmp_path)
    assert sorted(events.Tags()["scalars"]) == ["loss", "metrics/rmse", "tensor_value"]
    loss = _scalars(events, "loss")
    assert [step for step, _ in loss] == steps
    # TensorBoard stores scalars as float32.
    numpy.testing.assert_array_equal([value for _, value in loss], values.astype(numpy.float32))
    numpy.testing.assert_array_equal([v for _, v in _scalars(events, "metrics/rmse")], (2 * values).astype(numpy.float32))
    assert _scalars(events, "tensor_value") == [(0, 3.5), (12, 4.5)]


def test_histogram_reads_back_with_the_counts_and_moments_of_the_values(tmp_path, rng):
    values = rng.normal(2.0, 3.0, size=(40, 25))
    with SummaryWriter(tmp_path) as writer:
        writer.add_histogram("dense/kernel", values, 3)
        writer.add_histogram("dense/kernel", fl.tensor(values.astype(numpy.float32) + 1), 4)
    events = _read(tmp_path)
    assert events.Tags()["histograms"] == ["dense/kernel"]
    first, second = events.Histograms("dense/kernel")
    assert (first.step, second.step) == (3, 4)
    histogram = first.histogram_value
    assert histogram.num == values.size
    assert histogram.min == pytest.approx(values.min())
    assert histogram.max == pytest.approx(values.max())
    assert histogram.sum == pytest.approx(values.sum())
    assert histogram.sum_squares == pytest.approx((values ** 2).sum())
    assert sum(histogram.bucket) == values.size
    assert second.histogram_value.sum == pytest.approx(values.sum() + values.size, rel=1e-5)


def test_text_reads_back_under_the_tag_given(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        writer.add_text("notes", "learning rate **0.01**", 0)
        writer.add_text("notes", "ünïcode", 7)
    events = _read(tmp_path)
    assert events.Tags()["tensors"] == ["notes"]
    texts = [(event.step, event.tensor_proto.string_val[0].decode("utf-8")) for event in events.Tensors("notes")]
    assert texts == [(0, "learning rate **0.01**"), (7, "ünïcode")]


def test_graph_of_a_traced_model_reads_back_node_by_node(tmp_path):
    model = fl.Sequential([fl.layers.Dense(4, activation="relu", input_shape=(3,)), fl.layers.Dense(2)])
    graph = fl.trace(lambda x: model(x, training=False), numpy.zeros((2, 3), numpy.float32), input_names=["x"])
    with SummaryWriter(tmp_path) as writer:
        writer.add_graph(graph)
    graph_def = _read(tmp_path).Graph()
    nodes = {node.name: node for node in graph_def.node}
    assert nodes["x"].op == "Placeholder"
    assert [d.size for d in nodes["x"].attr["_output_shapes"].list.shape[0].dim] == [-1, 3]
    for weight in model.weights:
        assert nodes[weight.name].op == "VariableV2"
    for node in graph.nodes:
        assert nodes[node["output"]].op == node["op"]
        assert list(nodes[node["output"]].input) == node["inputs"]
    assert list(nodes["output"].input) == graph.output_refs


def test_every_event_is_in_the_file_after_close(tmp_path):
    # A long flush interval: whatever is still buffered must be written by close().
    writer = SummaryWriter(tmp_path, flush_secs=3600)
    for step in range(503):
        writer.add_scalar("x", step, step)
    writer.add_histogram("h", numpy.arange(10.0), 503)
    writer.close()
    writer.close()  # closing twice is harmless
    events = _read(tmp_path)
    assert _scalars(events, "x") == [(step, float(step)) for step in range(503)]
    assert [event.step for event in events.Histograms("h")] == [503]


def test_flush_writes_queued_events_while_the_writer_stays_open(tmp_path):
    writer = SummaryWriter(tmp_path, flush_secs=3600)
    writer.add_scalar("x", 1.0, 0)
    writer.flush()
    assert _scalars(_read(tmp_path), "x") == [(0, 1.0)]
    writer.add_scalar("x", 2.0, 1)
    writer.close()
    assert _scalars(_read(tmp_path), "x") == [(0, 1.0), (1, 2.0)]


def test_events_of_a_writer_never_closed_are_on_disk_after_the_interpreter_exits(tmp_path):
    script = textwrap.dedent(f"""
        from flowlearn.io import SummaryWriter
        writer = SummaryWriter({str(tmp_path)!r}, flush_secs=3600)
        for step in range(50):
            writer.add_scalar("x", step, step)
        keep = [writer]  # still referenced at exit: written by the exit-time finalizer, not by garbage collection
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert _scalars(_read(tmp_path), "x") == [(step, float(step)) for step in range(50)]


def test_writers_on_one_folder_write_separate_files(tmp_path):
    # Event file names carry seconds: without the pid and count, the second would truncate the first.
    with SummaryWriter(tmp_path) as first, SummaryWriter(tmp_path) as second:
        first.add_scalar("x", 1.0, 0)
        second.add_scalar("x", 2.0, 1)
    assert first.path != second.path
    assert len(os.listdir(tmp_path)) == 2
    assert _scalars(_read(tmp_path), "x") == [(0, 1.0), (1, 2.0)]


def test_bad_arguments_raise_errors_naming_them(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        with pytest.raises(ValueError, match="`step`.*integer >= 0.*-1"):
            writer.add_scalar("x", 1.0, -1)
        with pytest.raises(ValueError, match="`step`.*1.5"):
            writer.add_scalar("x", 1.0, 1.5)
        with pytest.raises(ValueError, match="`step`.*integer"):
            writer.add_scalar("x", 1.0, numpy.array([1.5]))
        with pytest.raises(ValueError, match="`value` to be one real number.*shape \\(2,\\)"):
            writer.add_scalar("x", [1.0, 2.0], 0)
        with pytest.raises(ValueError, match="`tag`.*non-empty string"):
            writer.add_scalar("", 1.0, 0)
        with pytest.raises(ValueError, match="add_histogram\\('h'\\).*empty"):
            writer.add_histogram("h", numpy.zeros(0), 0)
        with pytest.raises(ValueError, match="add_histogram\\('h'\\).*1 NaN or infinite value\\(s\\) of 3"):
            writer.add_histogram("h", [1.0, numpy.nan, 2.0], 0)
        with pytest.raises(ValueError, match="`text` to be a str"):
            writer.add_text("t", 3, 0)
        with pytest.raises(ValueError, match="flowlearn.Graph"):
            writer.add_graph("not a graph")
        with pytest.raises(ValueError, match="`flush_secs`"):
            SummaryWriter(tmp_path, flush_secs=-1)
    with pytest.raises(ValueError, match="closed"):
        writer.add_scalar("x", 1.0, 0)


def test_missing_extra_raises_an_import_error_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # `import tensorboardX` now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'flowlearn\[tensorboard\]'"):
        SummaryWriter(tmp_path)
    callback = TensorBoard(tmp_path)
    with pytest.raises(ImportError, match=r"pip install 'flowlearn\[tensorboard\]'"):
        callback.on_train_begin()


def test_flowlearn_imports_and_fit_fails_clearly_without_tensorboardx(tmp_path):
    # In a fresh interpreter: the import of flowlearn (and its io and callbacks) must not need the extra;
    # fit with the callback fails before training with the ImportError naming it.
    script = textwrap.dedent(f"""
        import sys
        sys.modules["tensorboardX"] = None
        import numpy
        import flowlearn as fl
        import flowlearn.io
        model = fl.Sequential([fl.layers.Dense(1, input_shape=(2,))])
        model.compile("sgd", "mse")
        try:
            model.fit(numpy.ones((4, 2)), numpy.ones(4), verbose=0, callbacks=[fl.callbacks.TensorBoard({str(tmp_path)!r})])
        except ImportError as error:
            print("ImportError:", error)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "ImportError: " in result.stdout and "pip install 'flowlearn[tensorboard]'" in result.stdout


# -- the fit callback --------------------------------------------------------------------------------------
def _model(seed=0):
    fl.layers.set_random_seed(seed)
    model = fl.Sequential([fl.layers.Dense(8, activation="relu", input_shape=(3,)), fl.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _data(rng, n=120):
    x = rng.normal(size=(n, 3)).astype(numpy.float32)
    return x, (x[:, 0] + 0.3 * x[:, 1] > 0).astype(numpy.int64)


def test_callback_writes_train_and_validation_scalars_equal_to_the_history(tmp_path, rng):
    x, y = _data(rng)
    model = _model()
    history = model.fit(x, y, epochs=4, batch_size=16, validation_split=0.25, verbose=0,
                        callbacks=[fl.callbacks.TensorBoard(tmp_path)])
    train, validation = _read(tmp_path / "train"), _read(tmp_path / "validation")
    assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate", "epoch_steps_per_second"} <= set(train.Tags()["scalars"])
    assert sorted(validation.Tags()["scalars"]) == ["epoch_accuracy", "epoch_loss"]
    for events, prefix in ((train, ""), (validation, "val_")):
        for name in ("loss", "accuracy"):
            written = _scalars(events, f"epoch_{name}")
            assert [step for step, _ in written] == history.epoch == [0, 1, 2, 3]
            numpy.testing.assert_array_equal(
                [value for _, value in written], numpy.float32(history.history[prefix + name])
            )
    assert not train.Tags()["histograms"]  # histogram_freq=0 writes none


def test_callback_without_validation_writes_no_validation_run(tmp_path, rng):
    x, y = _data(rng)
    _model().fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[TensorBoard(tmp_path)])
    assert sorted(os.listdir(tmp_path)) == ["train"]


def test_callback_logs_the_learning_rate_each_epoch_used_and_steps_per_second(tmp_path, rng):
    x, y = _data(rng)
    schedule = fl.callbacks.LearningRateScheduler(lambda epoch, rate: 0.1 / (epoch + 1))
    # The schedule comes after TensorBoard in the list: the rate is still read after the schedule set it.
    _model().fit(x, y, epochs=3, batch_size=30, verbose=0, callbacks=[TensorBoard(tmp_path), schedule])
    train = _read(tmp_path / "train")
    rates = _scalars(train, "epoch_learning_rate")
    assert [step for step, _ in rates] == [0, 1, 2]
    numpy.testing.assert_allclose([value for _, value in rates], [0.1, 0.05, 0.1 / 3], rtol=1e-6)
    speeds = [value for _, value in _scalars(train, "epoch_steps_per_second")]
    assert len(speeds) == 3 and all(speed > 0 for speed in speeds)


def test_callback_histograms_every_histogram_freq_epochs_follow_the_weights(tmp_path, rng):
    x, y = _data(rng)
    model = _model()
    model.fit(x, y, epochs=5, batch_size=32, verbose=0, callbacks=[TensorBoard(tmp_path, histogram_freq=2)])
    train = _read(tmp_path / "train")
    assert sorted(train.Tags()["histograms"]) == sorted(weight.name for weight in model.weights)
    for weight in model.weights:
        written = train.Histograms(weight.name)
        assert [event.step for event in written] == [0, 2, 4]
    # The last histogram is of the final weights.
    kernel = fl.core.backend.to_numpy(model.weights[0].data)
    last = train.Histograms(model.weights[0].name)[-1].histogram_value
    assert last.num == kernel.size
    assert last.sum == pytest.approx(float(kernel.sum()), rel=1e-5, abs=1e-6)


def test_callback_skips_histograms_of_non_finite_weights_with_a_warning(tmp_path, rng):
    x, y = _data(rng)
    model = _model()

    def spoil(epoch, logs):
        if epoch == 1:
            model.weights[0].data[0, 0] = numpy.nan  # as a run with terminate_on_nan=False may leave them

    callbacks = [fl.callbacks.LambdaCallback(on_epoch_end=spoil), TensorBoard(tmp_path, histogram_freq=1)]
    kernel, bias = model.weights[0].name, model.weights[1].name
    with pytest.warns(RuntimeWarning, match=re.escape(f"no histogram at epoch 1 for {[kernel]}")):
        model.fit(x, y, epochs=2, batch_size=60, verbose=0, callbacks=callbacks)
    train = _read(tmp_path / "train")
    assert [event.step for event in train.Histograms(kernel)] == [0]
    assert [event.step for event in train.Histograms(bias)] == [0, 1]
    assert [step for step, _ in _scalars(train, "epoch_loss")] == [0, 1]


def test_callback_batch_values_every_update_freq_batches(tmp_path, rng):
    x, y = _data(rng, n=100)  # batch 20: 5 batches an epoch, 10 in all
    callback = TensorBoard(tmp_path, update_freq=3)
    model = _model()
    model.fit(x, y, epochs=2, batch_size=20, verbose=0, shuffle=False, callbacks=[callback])
    losses = _scalars(_read(tmp_path / "train"), "batch_loss")
    assert [step for step, _ in losses] == [3, 6, 9]
    # A second fit with the same callback goes on counting batches rather than overwriting the steps.
    model.fit(x, y, epochs=1, batch_size=20, verbose=0, callbacks=[callback])
    assert [step for step, _ in _scalars(_read(tmp_path / "train"), "batch_loss")] == [3, 6, 9, 12, 15]


def test_callback_update_freq_batch_logs_every_batch_running_value(tmp_path, rng):
    x, y = _data(rng, n=60)
    losses = []
    record = fl.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: losses.append(logs["loss"]))
    _model().fit(x, y, epochs=1, batch_size=20, verbose=0, callbacks=[TensorBoard(tmp_path, update_freq="batch"), record])
    written = _scalars(_read(tmp_path / "train"), "batch_loss")
    assert [step for step, _ in written] == [1, 2, 3]
    numpy.testing.assert_array_equal([value for _, value in written], numpy.float32(losses))


def test_callback_write_graph_writes_the_traced_model(tmp_path, rng):
    x, y = _data(rng)
    _model().fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[TensorBoard(tmp_path, write_graph=True)])
    graph_def = _read(tmp_path / "train").Graph()
    ops = [node.op for node in graph_def.node]
    assert ops.count("Placeholder") == 1 and ops.count("VariableV2") == 4
    assert {"matmul", "relu", "softmax"} <= set(ops)


def test_callback_write_graph_traces_an_embedding_model_on_integer_ids(tmp_path, rng):
    model = fl.Sequential([fl.layers.Embedding(10, 4, input_shape=(5,)), fl.layers.Flatten(), fl.layers.Dense(1)])
    model.compile("adam", "mse")
    model.fit(rng.integers(0, 10, (20, 5)), numpy.zeros(20), epochs=1, verbose=0,
              callbacks=[TensorBoard(tmp_path, write_graph=True)])
    nodes = {node.name: node for node in _read(tmp_path / "train").Graph().node}
    assert nodes["input"].attr["dtype"].s == b"int64"
    assert [d.size for d in nodes["input"].attr["_output_shapes"].list.shape[0].dim] == [-1, 5]


def test_callback_closes_its_files_when_training_fails(tmp_path, rng):
    x, y = _data(rng)

    def fail(epoch, logs):
        if epoch == 2:
            raise RuntimeError("stop here")

    callback = TensorBoard(tmp_path, flush_secs=3600)
    with pytest.raises(RuntimeError, match="stop here"):
        _model().fit(x, y, epochs=5, batch_size=32, verbose=0,
                     callbacks=[callback, fl.callbacks.LambdaCallback(on_epoch_begin=fail)])
    assert callback._writers == {}
    assert [step for step, _ in _scalars(_read(tmp_path / "train"), "epoch_loss")] == [0, 1]


def test_callback_arguments_are_checked():
    with pytest.raises(ValueError, match="`update_freq`.*'epoch', 'batch' or a positive integer.*'step'"):
        TensorBoard("logs", update_freq="step")
    with pytest.raises(ValueError, match="`update_freq`"):
        TensorBoard("logs", update_freq=0)
    with pytest.raises(ValueError, match="`histogram_freq`.*-1"):
        TensorBoard("logs", histogram_freq=-1)


def test_writer_and_callback_are_exported_where_users_look():
    assert fl.callbacks.TensorBoard is tb.TensorBoard
    assert fl.io.SummaryWriter is SummaryWriter
    assert "TensorBoard" in fl.callbacks.__all__


def test_event_files_sort_in_creation_order_past_nine_writers(tmp_path):
    # TensorBoard reads a folder's event files in name order; the tenth writer must sort after the ninth.
    writers = [SummaryWriter(tmp_path) for _ in range(12)]
    for writer in writers:
        writer.close()
    assert sorted(w.path for w in writers) == [w.path for w in writers]
