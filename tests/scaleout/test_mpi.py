"""MPI data-parallel training under a real ``mpirun -np 2``: the 2-rank runs of Sequential.fit, a
scikit-learn estimator and the model_fn Estimator (global batch B) match one-process training with batch B
to float tolerance; the ranks end with identical weights; only rank 0 writes files; the CLI trains under
mpirun. The fast tests at the end run without MPI.

Skipped, with the reason shown, where ``mpirun`` or mpi4py is missing (.ci/run installs Open MPI).
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy
import pytest

import flowlearn as fl
from flowlearn.core import backend
from flowlearn.core.distribution import check_strategy, current_strategy, strategy_scope
from flowlearn.distributed import launched_ranks, shard_batch, shard_bounds
from flowlearn.layers import seeding
from flowlearn.layers.training import GradientStep

from . import _mpi_worker

REPO = Path(fl.__file__).resolve().parents[1]
WORKER = Path(_mpi_worker.__file__).resolve()
TIMEOUT = 240  # seconds for one mpirun; a loaded two-core machine takes ~10-40 s

MPI_MISSING = (
    "mpirun not found (install Open MPI: apt-get install openmpi-bin libopenmpi-dev)" if shutil.which("mpirun") is None
    else "mpi4py not installed (pip install 'flowlearn[mpi]')" if importlib.util.find_spec("mpi4py") is None
    else None
)
needs_mpi = pytest.mark.skipif(MPI_MISSING is not None, reason=MPI_MISSING or "")


def mpirun(args, cwd, ranks=2):
    """Run ``python args`` on ``ranks`` ranks with this checkout's flowlearn first on the path."""
    command = ["mpirun", "-np", str(ranks)]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-run-as-root")  # Open MPI refuses root without it (containers, CI)
    if (os.cpu_count() or 1) < ranks:
        command.append("--oversubscribe")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    result = subprocess.run(command + [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.returncode == 0, f"mpirun failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """The worker's results on 2 ranks: (out dir, [weights per rank], [logs per rank], [records per rank])."""
    if MPI_MISSING:
        pytest.skip(MPI_MISSING)
    out = tmp_path_factory.mktemp("mpi")
    mpirun([str(WORKER), str(out)], cwd=out)
    weights = [dict(numpy.load(out / f"rank{rank}.npz")) for rank in range(2)]
    records = [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(2)]
    return out, weights, [record["logs"] for record in records], records


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The same training in this process, with no strategy: (weights, logs)."""
    out = tmp_path_factory.mktemp("single")
    previous_floatx, previous_generators = fl.floatx(), dict(seeding._generators)
    fl.set_floatx("float64")
    try:
        return _mpi_worker.run_all(None, str(out))
    finally:
        fl.set_floatx(previous_floatx)
        seeding._generators.update(previous_generators)


@pytest.mark.slow
@needs_mpi
@pytest.mark.parametrize("trainer", sorted(_mpi_worker.TRAINERS))
def test_two_ranks_match_one_process_with_the_same_global_batch(two_ranks, one_process, trainer):
    _, weights, _, _ = two_ranks
    reference, _ = one_process
    names = sorted(name for name in reference if name.startswith(trainer + "|"))
    assert names and names == sorted(name for name in weights[0] if name.startswith(trainer + "|"))
    for name in names:
        numpy.testing.assert_allclose(weights[0][name], reference[name], rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.slow
@needs_mpi
def test_ranks_end_with_identical_weights_and_logs(two_ranks, one_process):
    _, weights, logs, _ = two_ranks
    assert sorted(weights[0]) == sorted(weights[1])
    for name in weights[0]:
        numpy.testing.assert_array_equal(weights[0][name], weights[1][name], err_msg=name)
    assert logs[0] == logs[1]
    # The logged loss and metrics are the global batch's: those of one process, val_ included.
    _, reference = one_process
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        numpy.testing.assert_allclose(logs[0]["seq"][key], reference["seq"][key], rtol=1e-9, err_msg=key)
    numpy.testing.assert_allclose(logs[0]["dnn"]["loss"], reference["dnn"]["loss"], rtol=1e-9)
    numpy.testing.assert_allclose(logs[0]["dnn"]["val_score"], reference["dnn"]["val_score"], rtol=1e-9)
    assert logs[0]["est"]["global_step"] == reference["est"]["global_step"] == 15  # ceil(70 / 16) * 3


@pytest.mark.slow
@needs_mpi
def test_only_rank_zero_writes_files_and_progress(two_ranks):
    out, _, _, _ = two_ranks
    assert (out / "seq_rank0.flmodel").exists() and not (out / "seq_rank1.flmodel").exists()
    written = sorted(os.listdir(out / "est_rank0"))
    assert "checkpoint" in written and "model.ckpt-15.npz" in written
    assert any(name.startswith("events.out.tfevents") for name in written)
    assert not (out / "est_rank1").exists()
    assert "Epoch 1/2" in (out / "stderr0.txt").read_text()
    assert "Epoch" not in (out / "stderr1.txt").read_text()


@pytest.mark.slow
@needs_mpi
def test_ranks_fed_different_data_stop_together(two_ranks):
    _, _, _, records = two_ranks
    # Each rank passed fit a different x: both raised the strategy's ValueError (none hung, none trained).
    assert [record["refused_different_data"] for record in records] == [True, True]


@pytest.mark.slow
@needs_mpi
def test_cli_train_under_mpirun(tmp_path):
    rng = numpy.random.default_rng(0)
    x = rng.normal(size=(120, 3))
    rows = ["a,b,c,label"] + [f"{a},{b},{c},{'yes' if a + b > 0 else 'no'}" for a, b, c in x]
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    options = ["--data", "data.csv", "--label", "label", "--estimator", "dnn-classifier", "--epochs", "3",
               "--hidden-units", "8", "--batch-size", "30", "--random-state", "0", "--optimizer", "sgd"]
    result = mpirun(["-m", "flowlearn", "train", *options, "--model-dir", "two"], cwd=tmp_path)
    assert result.stdout.count("on 2 MPI ranks") == 1 and result.stdout.count("saved:") == 1, result.stdout
    assert sorted(os.listdir(tmp_path / "two")) == ["estimator.flest", "training.json"]

    from flowlearn.cli import main
    from flowlearn.estimators import load

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["train", *options, "--model-dir", "one", "--distributed", "none"]) == 0
    finally:
        os.chdir(cwd)
    two, one = load(tmp_path / "two" / "estimator.flest"), load(tmp_path / "one" / "estimator.flest")
    assert two.strategy is None  # the saved estimator holds no handle on the finished run's processes
    for a, b in zip(two._model.get_weights(), one._model.get_weights()):
        numpy.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # float32, the CLI's dtype


@pytest.mark.gpu
@pytest.mark.slow
@needs_mpi
@pytest.mark.skipif(not backend.gpu_available(), reason="cupy sees no GPU")
def test_gpu_ranks_reduce_on_the_device(tmp_path):
    import cupy

    from flowlearn.distributed.nccl import nccl_module

    ranks = min(2, cupy.cuda.runtime.getDeviceCount())  # NCCL wants one GPU per rank
    mpirun([str(WORKER), str(tmp_path), "gpu"], cwd=tmp_path, ranks=ranks)
    info = json.loads((tmp_path / "gpu0.json").read_text())
    assert info["size"] == ranks and info["nccl"] == (nccl_module() is not None)
    weights = [dict(numpy.load(tmp_path / f"gpu{rank}.npz")) for rank in range(ranks)]
    reference = _mpi_worker.gpu_classifier(None)
    for name in reference:
        for rank_weights in weights:
            numpy.testing.assert_allclose(rank_weights[name], reference[name], rtol=1e-4, atol=1e-6, err_msg=name)


# -- without MPI ---------------------------------------------------------------------------------------
def test_shards_are_contiguous_in_rank_order_and_cover_the_batch():
    for n in (0, 1, 5, 16, 97):
        for size in (1, 2, 3, 8):
            bounds = [shard_bounds(n, size, rank) for rank in range(size)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(stop == start for (_, stop), (start, _) in zip(bounds, bounds[1:]))
            lengths = [stop - start for start, stop in bounds]
            assert max(lengths) - min(lengths) <= 1
    batch = ({"x": numpy.arange(10).reshape(5, 2), "k": numpy.ones(3)}, numpy.arange(5), None)
    parts = [shard_batch(batch, 5, *shard_bounds(5, 2, rank)) for rank in range(2)]
    numpy.testing.assert_array_equal(numpy.concatenate([p[0]["x"] for p in parts]), batch[0]["x"])
    numpy.testing.assert_array_equal(numpy.concatenate([p[1] for p in parts]), batch[1])
    assert parts[0][2] is None and parts[1][0]["k"] is batch[0]["k"]  # not a per-row item: unchanged


def test_launched_ranks_reads_the_launchers_environment():
    assert launched_ranks({}) == 1
    assert launched_ranks({"OMPI_COMM_WORLD_SIZE": "2"}) == 2
    assert launched_ranks({"PMI_SIZE": "4"}) == 4
    assert launched_ranks({"OMPI_COMM_WORLD_SIZE": "x"}) == 1


def test_missing_mpi4py_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # makes `from mpi4py import MPI` raise ImportError
    with pytest.raises(ImportError, match=r"flowlearn\[mpi\]"):
        fl.distributed.MPIStrategy()


def test_a_non_strategy_is_refused_with_the_argument_named():
    with pytest.raises(TypeError, match="`strategy`.*got str"):
        check_strategy("fit", "mpi")
    from flowlearn.estimators import RunConfig

    with pytest.raises(TypeError, match="train_distribute"):
        RunConfig(train_distribute=object())


def test_a_strategy_lacking_what_the_trainers_call_is_refused_up_front():
    # fit and Estimator.train call broadcast_generators first: its absence is a TypeError, not an AttributeError.
    partial = type("Partial", (), dict.fromkeys(("shard", "global_mean", "global_rows", "reduce_gradients",
                                                 "gather_rows", "broadcast_variables", "barrier", "is_chief")))
    with pytest.raises(TypeError, match="lacks broadcast_generators"):
        check_strategy("fit", partial())
    assert check_strategy("fit", _OneRank()) is not None  # the stand-in below offers everything


class _OneRank:
    """A stand-in strategy of one rank that is not the chief, recording what the loop asks of it."""

    is_chief, size, rank = False, 1, 1

    def __init__(self):
        self.calls = []
        self.global_rows = None

    def shard(self, batch, rows, weight):
        self.calls.append("shard")
        self.global_rows = rows
        return batch

    def global_mean(self, value):
        self.calls.append("global_mean")
        return value

    def reduce_gradients(self, params):
        self.calls.append(("reduce", len(params), sum(p.grad is not None for p in params)))

    def gather_rows(self, array):
        return array

    def broadcast_variables(self, variables):
        self.calls.append(("broadcast", len(list(variables))))

    def broadcast_generators(self, generators):
        self.calls.append("generators")

    def barrier(self):
        self.calls.append("barrier")


def test_the_loop_shards_reduces_every_update_and_keeps_writers_off_other_ranks(tmp_path):
    seeding.set_random_seed(0)
    model = fl.Sequential([fl.layers.Input((3,)), fl.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    strategy = _OneRank()
    checkpoint = fl.callbacks.ModelCheckpoint(str(tmp_path / "m.flmodel"), monitor="loss")
    model.fit(numpy.ones((10, 3)), numpy.zeros((10, 2)), batch_size=4, epochs=1, verbose=1,
              callbacks=[checkpoint], strategy=strategy)
    assert strategy.calls[:2] == ["generators", ("broadcast", 2)]
    assert strategy.calls[2:] == ["shard", "global_mean", ("reduce", 2, 2)] * 3 + ["barrier"]
    assert not (tmp_path / "m.flmodel").exists()  # a chief_only callback: not run off rank 0
    assert current_strategy() is None  # in force only around each step


def test_the_optimizer_reduces_only_inside_a_strategy_scope():
    w = fl.tensor([1.0, 2.0], requires_grad=True)
    strategy = _OneRank()
    optimizer = fl.core.optimizers.SGD(learning_rate=0.1)
    optimizer.minimize((w * w).sum(), [w])
    assert strategy.calls == []
    with strategy_scope(strategy):
        optimizer.minimize((w * w).sum(), [w])
    assert strategy.calls == [("reduce", 1, 1)]


def test_a_strategy_is_not_saved_with_an_estimator(tmp_path):
    from flowlearn.estimators import DNNRegressor, load

    rng = numpy.random.default_rng(0)
    model = DNNRegressor(hidden_units=(4,), epochs=2, random_state=0).fit(rng.normal(size=(20, 3)), rng.normal(size=20))
    model.strategy = _OneRank()  # set after fitting: saving must not try to store the handle
    model.save(tmp_path / "m.flest")
    assert load(tmp_path / "m.flest").strategy is None
    assert "strategy" in model.get_params() and model.__getstate__()["strategy"] is None


def test_gradient_step_under_a_strategy_logs_the_global_batch():
    seeding.set_random_seed(0)
    model = fl.Sequential([fl.layers.Input((2,)), fl.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    forward = model._make_forward()
    step = GradientStep(forward, model.optimizer, lambda: model.trainable_weights)

    class Halves(_OneRank):
        def global_mean(self, value):
            return 2.0 * value  # as if another rank had reported the same loss with the same share

    strategy = Halves()
    batch = (numpy.ones((4, 2), "float32"), numpy.zeros((4, 1), "float32"), None)
    local = float(model.evaluate(batch[0], batch[1], batch_size=4))  # this rank's loss on its shard
    strategy.shard(batch, 6, None)  # the global batch had 6 rows, of which this rank got 4
    with strategy_scope(strategy):
        logs = step(batch)
    assert logs["loss"] == pytest.approx(2.0 * local)  # the strategy's global value, not the shard's
    assert step.tracker._count == 6  # weighted by the global batch's rows in the epoch's running mean


class _Group:
    """What the ranks of an in-process stand-in for an MPI communicator share: a slot per rank and a barrier."""

    def __init__(self, size):
        self.size = size
        self.slots = [None] * size
        self.barrier = threading.Barrier(size, timeout=60)  # a broken protocol fails the test, never hangs it


class _ThreadComm:
    """The mpi4py calls MPIStrategy makes, for ranks that are threads of this process: every collective
    exchanges one value per rank through the group's slots. Sums run in rank order, so every rank gets the
    same bits, as MPI guarantees."""

    def __init__(self, group, rank):
        self.group, self.rank = group, rank

    def Get_rank(self):  # noqa: N802 (mpi4py's names)
        return self.rank

    def Get_size(self):  # noqa: N802
        return self.group.size

    def _exchange(self, value):
        self.group.slots[self.rank] = value
        self.group.barrier.wait()
        values = list(self.group.slots)
        self.group.barrier.wait()  # all have read before anyone writes the next value
        return values

    def Allreduce(self, _in_place, buffer, op=None):  # noqa: N802
        values = self._exchange(numpy.array(buffer, copy=True))
        buffer[...] = sum(values[1:], values[0])

    def allgather(self, value):
        return self._exchange(value)

    def bcast(self, value, root=0):
        return self._exchange(value)[root]

    def Bcast(self, buffer, root=0):  # noqa: N802
        buffer[...] = self._exchange(numpy.array(buffer, copy=True))[root]

    def Barrier(self):  # noqa: N802
        self._exchange(None)


def test_two_thread_ranks_match_one_process_without_mpi(monkeypatch, float64):
    # The strategy's arithmetic (sharding, weighting by sample-weight share, the flat allreduce, the global
    # loss, the broadcasts) with ranks as threads: the quick suite's check of what the mpirun tests show.
    from types import SimpleNamespace

    from flowlearn.distributed import mpi_strategy
    from flowlearn.estimators import DNNClassifier

    monkeypatch.setattr(mpi_strategy, "import_mpi", lambda owner: SimpleNamespace(IN_PLACE=None, SUM=None))
    rng = numpy.random.default_rng(1)
    x, y, w = rng.normal(size=(90, 4)), rng.integers(0, 3, 90), rng.uniform(0.5, 2.0, 90)

    def fit(strategy, random_state):
        model = DNNClassifier(hidden_units=(8,), epochs=3, batch_size=20, n_iter_no_change=None,
                              random_state=random_state, strategy=strategy)
        return model.fit(x, y, sample_weight=w)

    group, results, errors = _Group(2), [None, None], []

    def rank(r):
        try:
            # Rank 1 is seeded differently: it must take rank 0's weights and shuffling.
            results[r] = fit(fl.distributed.MPIStrategy(_ThreadComm(group, r)), 3 if r == 0 else 11)
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)
            group.barrier.abort()

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    reference = fit(None, 3)
    for ranked in results:
        numpy.testing.assert_allclose(ranked.loss_curve_, reference.loss_curve_, rtol=1e-10)
        for a, b in zip(ranked._model.get_weights(), reference._model.get_weights()):
            numpy.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_an_estimator_on_another_rank_writes_no_eval_summaries_and_no_export(tmp_path):
    # Every rank runs the user's script; only the chief writes model_dir's files and exports.
    pytest.importorskip("tensorboardX")
    from flowlearn.estimators import Estimator, EstimatorSpec, ModeKeys, RunConfig
    from flowlearn.io import build_raw_serving_input_receiver_fn, numpy_input_fn

    def model_fn(features, labels, mode):
        y = fl.layers.dense(features["x"], 1)
        if mode == ModeKeys.PREDICT:
            return EstimatorSpec(mode, predictions=y)
        loss = fl.core.losses.mean_squared_error(labels, y)
        return EstimatorSpec(mode, loss=loss, train_op=fl.train.GradientDescentOptimizer(0.1).minimize(
            loss, global_step=fl.train.get_global_step()))

    x = numpy.linspace(0, 1, 16, dtype="float32").reshape(8, 2)
    y = x.sum(axis=1, keepdims=True)
    receiver = build_raw_serving_input_receiver_fn({"x": ("float32", (2,))})
    outcomes = {}
    for chief in (True, False):
        strategy = _OneRank()
        strategy.is_chief = chief
        model_dir = tmp_path / ("chief" if chief else "other")
        est = Estimator(model_fn, str(model_dir), RunConfig(train_distribute=strategy, save_summary_steps=1))
        est.train(numpy_input_fn({"x": x}, y, batch_size=4, shuffle=False), steps=2)
        if not chief:
            est._save(2)  # the chief's checkpoint, as a shared model_dir would hold it
        est.evaluate(numpy_input_fn({"x": x}, y, batch_size=4, shuffle=False))
        outcomes[chief] = (os.path.isdir(model_dir / "eval"), est.export_saved_model(tmp_path / "exports", receiver))
    assert outcomes[True][0] and outcomes[True][1] is not None and os.path.isdir(outcomes[True][1])
    assert outcomes[False] == (False, None)


def test_an_estimator_refuses_a_strategy_lacking_what_training_calls():
    """scikit-learn's parameter check looks for two methods; fit names everything else missing up front."""
    from flowlearn.estimators import DNNRegressor

    class Partial:
        def shard(self, *args):
            return args

        def reduce_gradients(self, params):
            pass

    X, y = numpy.zeros((8, 2)), numpy.zeros(8)
    with pytest.raises(TypeError, match=r"DNNRegressor.fit: expected a data-parallel strategy.*got Partial "
                                        r"\(it lacks global_mean, global_rows"):
        DNNRegressor(strategy=Partial(), epochs=1).fit(X, y)
