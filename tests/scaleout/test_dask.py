"""Dask: dask_input_fn streams partitions to the trainers; the estimators under dask-ml's Incremental and
adaptive searches, and GridSearchCV on a real distributed.LocalCluster through joblib's dask backend.

Tests that need no cluster compute on dask's synchronous scheduler, in this process, so that what is computed
can be counted; the others share one LocalCluster of two worker processes on loopback (module fixture).
"""
import weakref

import numpy
import pandas
import pytest

dask = pytest.importorskip("dask", reason="dask is not installed (pip install 'flowlearn[dask]'): the Dask "
                                          "scale-out tests need dask, distributed and dask-ml")
distributed = pytest.importorskip("distributed", reason="distributed is not installed (pip install 'flowlearn[dask]')")
dask_ml = pytest.importorskip("dask_ml", reason="dask-ml is not installed (pip install 'flowlearn[dask]')")

import dask.array as da  # noqa: E402 - after the skips above
import dask.dataframe as dd  # noqa: E402
import joblib  # noqa: E402
from dask_ml.model_selection import HyperbandSearchCV, IncrementalSearchCV  # noqa: E402
from dask_ml.wrappers import Incremental  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

import flowlearn as fl  # noqa: E402
from flowlearn.core import losses, optimizers  # noqa: E402
from flowlearn.estimators import (AutoEncoder, CNNClassifier, DNNClassifier, DNNRegressor, Estimator,  # noqa: E402
                                  EstimatorSpec, LinearClassifier, LinearRegressor, ModeKeys, RunConfig,
                                  patch_dask_ml_searches)
from flowlearn.io import dask_input_fn  # noqa: E402
from flowlearn.layers import Dense, Input  # noqa: E402
from flowlearn.layers.data_adapter import UNKNOWN  # noqa: E402


@pytest.fixture
def local():
    """Compute on dask's synchronous scheduler in this process, even while the module's cluster is up."""
    with dask.config.set(scheduler="sync"):
        yield


@pytest.fixture(scope="module")
def client():
    """A real two-process cluster on loopback, closed (workers and all) when the module's tests are done."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as cluster:
        with distributed.Client(cluster, timeout=60) as client:
            # Each worker imports flowlearn once, here (seconds on a busy machine), not inside the first test.
            client.run(__import__("importlib").import_module, "flowlearn.estimators")
            yield client


def _data(n=120, features=3, seed=0):
    rng = numpy.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    return x, numpy.arange(n)


def _rows(batches):
    return numpy.concatenate([labels for _, labels in batches]).tolist()


# -- dask_input_fn: batches ------------------------------------------------------------------------------
def test_exported_from_flowlearn_io():
    from flowlearn.io import dask as module
    assert fl.io.dask_input_fn is dask_input_fn is module.dask_input_fn


def test_unshuffled_array_batches_equal_numpy_input_fns_across_uneven_partitions(local):
    x, y = _data(50)
    # Row chunks of 7 (and the columns split too): batches of 4 must run across the partitions' edges.
    streamed = dask_input_fn(da.from_array(x, chunks=(7, 2)), da.from_array(y, chunks=7), batch_size=4,
                             num_epochs=2, shuffle=False)
    expected = list(fl.io.numpy_input_fn(x, y, batch_size=4, num_epochs=2, shuffle=False)())
    batches = streamed()
    got = list(batches)
    assert batches.cardinality() == len(expected) == len(got) == 26
    for (features, labels), (want_features, want_labels) in zip(got, expected):
        numpy.testing.assert_array_equal(features, want_features)
        numpy.testing.assert_array_equal(labels, want_labels)


def test_dataframe_gives_dict_features_as_pandas_input_fn(local):
    x, y = _data(30)
    frame = pandas.DataFrame({"a": x[:, 0], "b": x[:, 1], "target": y})
    streamed = dask_input_fn(dd.from_pandas(frame, npartitions=4), label="target", batch_size=8, shuffle=False)
    expected = list(fl.io.pandas_input_fn(frame, target_column="target", batch_size=8, shuffle=False)())
    got = list(streamed())
    assert streamed().cardinality() == UNKNOWN  # partition sizes of a DataFrame are not known before reading
    assert len(got) == len(expected) == 4
    for (features, labels), (want_features, want_labels) in zip(got, expected):
        assert sorted(features) == ["a", "b"]
        for name in features:
            numpy.testing.assert_array_equal(features[name], want_features[name])
        numpy.testing.assert_array_equal(labels, want_labels)
    listed = next(iter(dask_input_fn(dd.from_pandas(frame, npartitions=2), label=["target"], shuffle=False)()))
    assert sorted(listed[0]) == ["a", "b"] and sorted(listed[1]) == ["target"]


def test_shuffle_takes_every_row_once_per_epoch_in_new_orders_reproducibly(local):
    x, y = _data(90)
    data, labels = da.from_array(x, chunks=(15, 3)), da.from_array(y, chunks=15)
    input_fn = dask_input_fn(data, labels, batch_size=8, num_epochs=2, shuffle=True, seed=3, shuffle_buffer_size=20)
    batches = list(input_fn())
    rows = _rows(batches)
    first, second = rows[:90], rows[90:]
    assert sorted(first) == sorted(second) == list(range(90))
    assert first != second and first != list(range(90))
    for features, row_labels in batches:  # rows stay whole through the shuffle buffer
        numpy.testing.assert_array_equal(features, x[row_labels])
    assert _rows(input_fn()) == rows  # the same seed: the same orders
    assert _rows(dask_input_fn(data, labels, batch_size=8, num_epochs=2, seed=4)()) != rows
    # The partition order is shuffled too: with a buffer of one row, the first row's partition is drawn.
    firsts = {_rows(dask_input_fn(data, labels, batch_size=90, seed=seed, shuffle_buffer_size=1)())[0] // 15
              for seed in range(8)}
    assert len(firsts) > 1


class _Blocks:
    """A dask array whose blocks are made in this process, counting those made and those still alive."""

    def __init__(self, n_blocks, rows, columns=4):
        self.made, self.alive = [], set()
        self.peak = 0
        parts = [da.from_delayed(dask.delayed(self._make)(index, rows, columns), (rows, columns), numpy.float32)
                 for index in range(n_blocks)]
        self.array = da.concatenate(parts)
        self.labels = da.arange(n_blocks * rows, chunks=rows)

    def _make(self, index, rows, columns):
        block = numpy.full((rows, columns), index, numpy.float32)
        self.made.append(index)
        self.alive.add(index)
        weakref.finalize(block, self.alive.discard, index)
        return block


@pytest.mark.parametrize("prefetch", [0, 1, 2])
def test_partitions_are_computed_one_at_a_time_and_released(local, prefetch):
    blocks = _Blocks(n_blocks=12, rows=40)
    # A shuffle buffer smaller than a partition: the first partition alone fills it and gives the first batch.
    input_fn = dask_input_fn(blocks.array, blocks.labels, batch_size=8, shuffle=True, seed=0,
                             shuffle_buffer_size=30, prefetch=prefetch)
    iterator = iter(input_fn())
    next(iterator)
    # The first batch needs the first partition; besides it only the read-ahead (prefetch waiting, one computing).
    assert len(blocks.made) <= (1 if prefetch == 0 else prefetch + 2)
    peak, seen = 0, 1
    for _ in iterator:
        peak = max(peak, len(blocks.alive))
        seen += 1
    # The whole array is 12 partitions; at no point are more than the one being batched, the prefetched ones
    # waiting and the one being computed held (without prefetch: the current one, and the next as it arrives).
    assert sorted(blocks.made) == list(range(12))
    assert peak <= prefetch + 2
    assert seen == 480 // 8
    assert not blocks.alive


def test_abandoning_an_iteration_leaves_no_thread(local):
    import threading
    blocks = _Blocks(n_blocks=6, rows=10)
    iterator = iter(dask_input_fn(blocks.array, blocks.labels, batch_size=4, shuffle=False, prefetch=2)())
    next(iterator)
    iterator.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("flowlearn-dask")]
    # The stated bound, prefetch + 2: the partition batched, 2 waiting and the one the thread was computing when
    # the iteration stopped (it was <= 3, which failed whenever the thread had started the 4th before close).
    assert len(blocks.made) <= 2 + 2


def test_reads_several_csv_files_through_dd_read_csv(local, tmp_path):
    rng = numpy.random.default_rng(1)
    frames = []
    for part in range(3):
        frame = pandas.DataFrame({"x0": rng.normal(size=25), "x1": rng.normal(size=25),
                                  "label": numpy.arange(25) + 25 * part})
        frame.to_csv(tmp_path / f"part-{part}.csv", index=False)
        frames.append(frame)
    whole = pandas.concat(frames, ignore_index=True)
    data = dd.read_csv(str(tmp_path / "part-*.csv"))
    input_fn = dask_input_fn(data, label="label", batch_size=10, shuffle=False)
    assert input_fn.n_partitions == 3
    batches = list(input_fn())
    assert _rows(batches) == list(range(75))
    numpy.testing.assert_allclose(numpy.concatenate([f["x1"] for f, _ in batches]), whole["x1"].to_numpy())
    shuffled = _rows(dask_input_fn(data, label="label", batch_size=10, num_epochs=3, seed=0)())
    assert len(shuffled) == 225 and sorted(shuffled) == sorted(list(range(75)) * 3)


@pytest.mark.skipif(not hasattr(pandas.DataFrame, "to_parquet") or not __import__("importlib").util.find_spec(
    "pyarrow"), reason="pyarrow is not installed: no Parquet files to read")
def test_reads_parquet(local, tmp_path):
    x, y = _data(40)
    for part in range(2):
        rows = slice(20 * part, 20 * part + 20)
        pandas.DataFrame({"a": x[rows, 0], "label": y[rows]}).to_parquet(tmp_path / f"part-{part}.parquet")
    input_fn = dask_input_fn(dd.read_parquet(str(tmp_path)), label="label", batch_size=16, shuffle=False)
    assert _rows(input_fn()) == list(range(40))


def test_errors_name_the_argument(local):
    x, y = _data(20)
    data, labels = da.from_array(x, chunks=5), da.from_array(y, chunks=5)
    with pytest.raises(TypeError, match="expected `data` as a dask Array or a dask DataFrame; got .*ndarray"):
        dask_input_fn(x, labels)
    with pytest.raises(TypeError, match="expected `label` as a dask array"):
        dask_input_fn(data, y)
    with pytest.raises(ValueError, match="`label` must have the rows of `data`"):
        dask_input_fn(data, da.from_array(y[:10], chunks=5))
    frame = dd.from_pandas(pandas.DataFrame({"a": x[:, 0], "t": y}), npartitions=2)
    with pytest.raises(ValueError, match=r"`label` must name columns of data; \['nope'\]"):
        dask_input_fn(frame, label="nope")
    with pytest.raises(ValueError, match="no feature columns left"):
        dask_input_fn(frame[["t"]], label="t")
    with pytest.raises(ValueError, match="expected a non-negative integer. Received: prefetch=-1"):
        dask_input_fn(data, labels, prefetch=-1)
    with pytest.raises(ValueError, match="Received: shuffle_buffer_size=0"):
        dask_input_fn(data, labels, shuffle_buffer_size=0)
    with pytest.raises(ValueError, match="Received: batch_size=0"):
        dask_input_fn(data, labels, batch_size=0)
    # Rechunked labels with the same rows are aligned to the data's partitions, not refused.
    aligned = dask_input_fn(data, da.from_array(y, chunks=4), batch_size=20, shuffle=False)
    assert _rows(aligned()) == list(range(20))


def test_a_missing_dask_is_an_import_error_naming_the_extra(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "dask", None)
    with pytest.raises(ImportError, match=r"pip install 'flowlearn\[dask\]'"):
        dask_input_fn(object())


# -- dask_input_fn feeding the trainers ------------------------------------------------------------------
def _regression(n=96):
    rng = numpy.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype("float32")
    y = (x @ numpy.array([[1.0], [-2.0], [0.5]], dtype="float32") + 0.3).astype("float32")
    return x, y


def _sequential():
    fl.layers.set_random_seed(0)
    model = fl.Sequential([Input((3,)), Dense(8, activation="tanh"), Dense(1)])
    model.compile(optimizers.Adam(learning_rate=0.01), "mse")
    return model


def test_sequential_fit_on_dask_input_fn_equals_numpy_input_fn(local):
    x, y = _regression()
    streamed, expected = _sequential(), _sequential()
    got = streamed.fit(dask_input_fn(da.from_array(x, chunks=25), da.from_array(y, chunks=25), batch_size=16,
                                     shuffle=False), epochs=3, verbose=0).history["loss"]
    want = expected.fit(fl.io.numpy_input_fn(x, y, batch_size=16, shuffle=False), epochs=3, verbose=0).history["loss"]
    numpy.testing.assert_allclose(got, want, rtol=1e-6)
    for a, b in zip(streamed.get_weights(), expected.get_weights()):
        numpy.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def _model_fn(features, labels, mode):
    hidden = fl.layers.dense(features, 8, activation="tanh")
    output = fl.layers.dense(hidden, 1)
    if mode == ModeKeys.PREDICT:
        return EstimatorSpec(mode, predictions={"y": output})
    loss = losses.mean_squared_error(labels, output)
    train_op = fl.train.AdamOptimizer(0.01).minimize(loss, global_step=fl.train.get_global_step())
    return EstimatorSpec(mode, loss=loss, train_op=train_op)


def test_estimator_train_on_dask_input_fn_equals_numpy_input_fn(local, tmp_path):
    x, y = _regression()

    def trained(input_fn, where):
        estimator = Estimator(_model_fn, model_dir=str(tmp_path / where),
                              config=RunConfig(tf_random_seed=0, save_summary_steps=None, log_step_count_steps=None))
        estimator.train(input_fn)
        return estimator

    streamed = trained(dask_input_fn(da.from_array(x, chunks=30), da.from_array(y, chunks=30), batch_size=16,
                                     num_epochs=2, shuffle=False), "dask")
    expected = trained(fl.io.numpy_input_fn(x, y, batch_size=16, num_epochs=2, shuffle=False), "numpy")
    names = expected.get_variable_names()
    assert streamed.get_variable_names() == names and "global_step" in names
    for name in names:
        numpy.testing.assert_allclose(streamed.get_variable_value(name), expected.get_variable_value(name),
                                      rtol=1e-5, atol=1e-7)
    assert expected.get_variable_value("global_step") == 12


# -- the estimators on a cluster -------------------------------------------------------------------------
def _classification(n=240, classes=2, seed=0):
    rng = numpy.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = numpy.digitize(x[:, 0] + 0.5 * x[:, 1], [-0.5, 0.5][:classes - 1])
    return x, y


INCREMENTAL_CASES = [
    pytest.param(DNNClassifier(hidden_units=(8,), random_state=0), "binary", id="DNNClassifier"),
    pytest.param(DNNClassifier(hidden_units=(8,), random_state=0), "three", id="DNNClassifier-3-classes"),
    pytest.param(LinearClassifier(random_state=0), "three", id="LinearClassifier"),
    pytest.param(CNNClassifier(conv_filters=(2,), dense_units=(4,), dropout=0.0, random_state=0), "binary",
                 id="CNNClassifier"),
    pytest.param(DNNRegressor(hidden_units=(8,), random_state=0), "regression", id="DNNRegressor"),
    pytest.param(LinearRegressor(random_state=0), "regression", id="LinearRegressor"),
    pytest.param(AutoEncoder(hidden_units=(2,), random_state=0), None, id="AutoEncoder"),
]


@pytest.mark.slow
@pytest.mark.parametrize("estimator, task", INCREMENTAL_CASES)
def test_incremental_equals_local_partial_fit_over_the_same_blocks(client, estimator, task):
    x, y = _classification(classes=3 if task == "three" else 2)
    if task == "regression":
        y = (x @ numpy.array([1.0, -2.0, 0.5, 0.0]) + 3.0).astype("float64")
    elif task is None:
        y = None
    kwargs = {"classes": numpy.unique(y)} if task in ("binary", "three") else {}
    local = clone(estimator)
    for epoch in range(2):
        for first in range(0, len(x), 60):  # the blocks of the dask array below, in order
            local.partial_fit(x[first:first + 60], None if y is None else y[first:first + 60], **kwargs)
    wrapped = Incremental(clone(estimator), shuffle_blocks=False)
    data = da.from_array(x, chunks=(60, 4))
    labels = None if y is None else da.from_array(y, chunks=60)
    for epoch in range(2):
        wrapped.partial_fit(data, labels, **kwargs)  # every block's call gets `classes`, as dask-ml passes it
    remote = wrapped.estimator_
    assert remote.n_iter_ == local.n_iter_ == 8
    numpy.testing.assert_allclose(remote.loss_curve_, local.loss_curve_, rtol=1e-6)
    outputs = "decision_function" if task in ("binary", "three") else "predict" if y is not None else "score_samples"
    numpy.testing.assert_allclose(getattr(remote, outputs)(x), getattr(local, outputs)(x), rtol=1e-5, atol=1e-6)
    # Prediction over the blocks of a dask array, on the cluster, gives the local model's predictions.
    numpy.testing.assert_array_equal(wrapped.predict(data).compute(), local.predict(x))


@pytest.mark.slow
@pytest.mark.parametrize("estimator, search", [
    pytest.param(DNNClassifier(hidden_units=(8,), random_state=0), IncrementalSearchCV, id="DNNClassifier-Incremental"),
    pytest.param(DNNClassifier(hidden_units=(8,), random_state=0), HyperbandSearchCV, id="DNNClassifier-Hyperband"),
    pytest.param(DNNRegressor(hidden_units=(8,), random_state=0), HyperbandSearchCV, id="DNNRegressor-Hyperband"),
    pytest.param(AutoEncoder(hidden_units=(2,), random_state=0), IncrementalSearchCV, id="AutoEncoder-Incremental"),
    pytest.param(LinearClassifier(random_state=0), HyperbandSearchCV, id="LinearClassifier-Hyperband"),
    pytest.param(LinearRegressor(random_state=0), IncrementalSearchCV, id="LinearRegressor-Incremental"),
    pytest.param(CNNClassifier(conv_filters=(2,), dense_units=(4,), dropout=0.0, random_state=0), IncrementalSearchCV,
                 id="CNNClassifier-Incremental"),
])
def test_adaptive_searches_run_end_to_end(client, estimator, search):
    assert patch_dask_ml_searches()
    x, y = _classification(n=400)
    kwargs = {"classes": [0, 1]}
    if isinstance(estimator, (DNNRegressor, LinearRegressor)):
        y, kwargs = (x @ numpy.array([1.0, -2.0, 0.5, 0.0])).astype("float64"), {}
    elif isinstance(estimator, AutoEncoder):
        # dask-ml's searches split X and y together and need a y; the AutoEncoder ignores it.
        y, kwargs = numpy.zeros(len(x)), {}
    options = {"n_initial_parameters": 3, "decay_rate": None} if search is IncrementalSearchCV else {}
    found = search(estimator, {"learning_rate": [1e-4, 3e-3, 3e-2]}, max_iter=4, random_state=0, **options)
    found.fit(da.from_array(x, chunks=(100, 4)), da.from_array(y, chunks=100), **kwargs)
    assert found.best_params_["learning_rate"] in (1e-4, 3e-3, 3e-2)
    assert len(found.cv_results_["params"]) >= 3
    assert numpy.isfinite(found.best_score_)
    # The best model is a fitted flowlearn estimator that took partial_fit calls on the cluster.
    assert type(found.best_estimator_) is type(estimator) and found.best_estimator_.n_iter_ >= 1
    if not isinstance(estimator, AutoEncoder):
        best = max(found.cv_results_["test_score"])
        assert found.best_score_ == best
    if isinstance(estimator, (DNNClassifier, DNNRegressor)):
        # The highest learning rate learns the most in a few passes; the smallest barely moves. (The linear
        # models and the tiny CNN are end-to-end cases only: on these rows their scores tie or favour 1e-4.)
        assert found.best_params_["learning_rate"] != 1e-4


def test_patch_dask_ml_searches_is_idempotent():
    from dask_ml.model_selection import _incremental
    first = patch_dask_ml_searches()
    module = _incremental.dask
    assert patch_dask_ml_searches() == first and _incremental.dask is module


@pytest.mark.slow
def test_grid_search_on_the_cluster_equals_the_local_run(client):
    x, y = _classification(n=150)
    grid = {"learning_rate": [1e-3, 3e-2], "hidden_units": [(4,), (8,)]}
    local = GridSearchCV(DNNClassifier(epochs=4, random_state=0), grid, cv=3).fit(x, y)
    with joblib.parallel_backend("dask"), distributed.get_task_stream(client) as stream:
        remote = GridSearchCV(DNNClassifier(epochs=4, random_state=0), grid, cv=3, n_jobs=-1).fit(x, y)
    # The 4 x 3 fits ran as tasks on the cluster's worker processes, not here.
    workers = {task["worker"] for task in stream.data}
    assert workers and workers <= set(client.scheduler_info()["workers"])
    assert remote.best_params_ == local.best_params_
    numpy.testing.assert_allclose(remote.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"],
                                  rtol=1e-6)
    numpy.testing.assert_allclose(remote.predict_proba(x), local.predict_proba(x), rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_dask_input_fn_streams_csv_partitions_from_the_cluster_into_fit(client, tmp_path):
    x, y = _regression(90)
    for part in range(3):
        rows = slice(30 * part, 30 * part + 30)
        pandas.DataFrame({"x0": x[rows, 0], "x1": x[rows, 1], "x2": x[rows, 2], "y": y[rows, 0]}).to_csv(
            tmp_path / f"part-{part}.csv", index=False)
    frame = dd.read_csv(str(tmp_path / "part-*.csv"))
    input_fn = dask_input_fn(frame, label="y", batch_size=15, shuffle=False)
    got = list(input_fn())  # the partitions are read by the workers and gathered here one at a time
    assert len(got) == 6
    numpy.testing.assert_allclose(numpy.concatenate([f["x1"] for f, _ in got]), x[:, 1], rtol=1e-6)
    numpy.testing.assert_allclose(numpy.concatenate([labels for _, labels in got]), y[:, 0], rtol=1e-6)


def test_autoencoder_takes_partial_fit_and_scores_for_incremental_and_searches():
    # dask-ml's Incremental calls partial_fit(block, None) and the searches score with estimator.score.
    x, _ = _classification(n=80)
    blocks = AutoEncoder(hidden_units=(2,), random_state=0)
    for first in range(0, 80, 40):
        assert blocks.partial_fit(x[first:first + 40]) is blocks
    assert blocks.n_iter_ == 2 and numpy.isfinite(blocks.offset_)
    whole = AutoEncoder(hidden_units=(2,), random_state=0, epochs=1, n_iter_no_change=None).fit(x)
    assert whole.n_iter_ == 1
    numpy.testing.assert_allclose(blocks.score(x), blocks.score_samples(x).mean(), rtol=1e-12)
    weights = numpy.r_[numpy.ones(40), numpy.zeros(40)]
    numpy.testing.assert_allclose(blocks.score(x, sample_weight=weights), blocks.score_samples(x[:40]).mean(),
                                  rtol=1e-12)
    # More partial_fit calls reconstruct better: a higher score, which is what a search maximises.
    before = blocks.score(x)
    for _ in range(10):
        blocks.partial_fit(x)
    assert blocks.score(x) > before


def test_incremental_over_a_dataframe_with_feature_columns(local):
    # A dask DataFrame's partitions reach partial_fit as pandas DataFrames, which feature columns read by
    # name. dask infers predict's output type by predicting made-up rows, which a vocabulary refuses, so
    # predict_meta states it.
    from flowlearn import feature_column as fc
    rng = numpy.random.default_rng(0)
    frame = pandas.DataFrame({"a": rng.normal(size=120), "b": rng.normal(size=120),
                              "c": rng.choice(["x", "y"], size=120)})
    frame["t"] = ((frame["a"] > 0) ^ (frame["c"] == "y")).astype(int)
    columns = [fc.numeric_column("a"), fc.numeric_column("b"),
               fc.indicator_column(fc.categorical_column_with_vocabulary_list("c", ["x", "y"]))]
    parts = dd.from_pandas(frame, npartitions=3)
    features = ["a", "b", "c"]
    model = DNNClassifier(hidden_units=(4,), feature_columns=columns, random_state=0)
    wrapped = Incremental(clone(model), shuffle_blocks=False, predict_meta=numpy.array([], dtype=int))
    wrapped.fit(parts[features], parts["t"], classes=[0, 1])
    local_model = clone(model)
    for index in range(parts.npartitions):
        part = parts.partitions[index].compute()
        local_model.partial_fit(part[features], part["t"], classes=[0, 1])
    numpy.testing.assert_allclose(wrapped.estimator_.decision_function(frame[features]),
                                  local_model.decision_function(frame[features]), rtol=1e-5, atol=1e-6)
    numpy.testing.assert_array_equal(wrapped.predict(parts[features]).compute(), local_model.predict(frame[features]))


def test_arrays_of_unknown_chunk_sizes_pair_block_by_block(local):
    x, y = _data(30)
    frame = dd.from_pandas(pandas.DataFrame({"a": x[:, 0], "b": x[:, 1], "t": y}), npartitions=3)
    data, labels = frame[["a", "b"]].to_dask_array(), frame["t"].to_dask_array()  # no lengths: sizes unknown
    input_fn = dask_input_fn(data, labels, batch_size=7, shuffle=False)
    assert input_fn().cardinality() == UNKNOWN
    batches = list(input_fn())
    assert _rows(batches) == list(range(30))
    numpy.testing.assert_array_equal(numpy.concatenate([f for f, _ in batches]), x[:, :2])
    shorter = frame[frame["t"] % 10 != 0]["t"].to_dask_array()  # same number of blocks, fewer rows in each
    with pytest.raises(ValueError, match="a partition of `data` has 10 rows and the matching partition of `label` 9"):
        list(dask_input_fn(data, shorter, shuffle=False)())
