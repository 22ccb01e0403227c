"""What tests/scaleout/test_mpi.py runs on every rank under ``mpirun`` (and, with no strategy, in the test
process itself for the one-process reference): the three trainers on small data, in float64.

Usage: ``mpirun -np 2 python tests/scaleout/_mpi_worker.py OUT_DIR``. Each rank writes
``OUT_DIR/rank{r}.npz`` (final weights), ``OUT_DIR/rank{r}.json`` (histories) and its stderr to
``OUT_DIR/stderr{r}.txt``. Rank r > 0 seeds everything differently from rank 0, so the results match the
reference only if rank 0's weights and random streams really are broadcast.
"""
import json
import os
import sys

import numpy

import flowlearn as fl
from flowlearn.core import losses
from flowlearn.layers import seeding


def _seed(rank):
    return 7 + 1000 * rank


def sequential(strategy, out, rank=0):
    """Sequential.fit: 97 rows in global batches of 16 (the last batch has one row, so one rank's shard is
    empty), Adam, an accuracy metric, validation data, a ModelCheckpoint, a progress bar."""
    rng = numpy.random.default_rng(0)
    x, y = rng.normal(size=(97, 5)), rng.integers(0, 3, 97)
    seeding.set_random_seed(_seed(rank))
    # Named layers: the weights are compared by name with a run in the test process, whose automatic layer
    # names count every layer the other tests made before.
    model = fl.Sequential([fl.layers.Input((5,)), fl.layers.Dense(8, activation="relu", name="hidden"),
                           fl.layers.Dense(3, activation="softmax", name="out")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    checkpoint = fl.callbacks.ModelCheckpoint(os.path.join(out, f"seq_rank{rank}.flmodel"), monitor="loss")
    history = model.fit(x, y, batch_size=16, epochs=2, validation_data=(x[:20], y[:20]), callbacks=[checkpoint],
                        verbose=1 if strategy is not None else 0, strategy=strategy)
    return {w.name: w.numpy() for w in model.weights}, history.history


def dnn_classifier(strategy, out, rank=0):
    """DNNClassifier with sample weights (its loss is normalised by their sum) and early_stopping's held-out
    split (drawn from the estimator's random_state, None on the other ranks)."""
    from flowlearn.estimators import DNNClassifier

    rng = numpy.random.default_rng(1)
    x, y, w = rng.normal(size=(90, 4)), rng.integers(0, 3, 90), rng.uniform(0.5, 2.0, 90)
    clf = DNNClassifier(hidden_units=(8,), epochs=3, batch_size=20, early_stopping=True, n_iter_no_change=None,
                        random_state=3 if rank == 0 else None, strategy=strategy)
    clf.fit(x, y, sample_weight=w)
    return {f"w{i}": array for i, array in enumerate(clf._model.get_weights())}, clf.history_


def _model_fn(features, labels, mode):
    from flowlearn.estimators import EstimatorSpec, ModeKeys

    hidden = fl.layers.dense(features["x"], 6, activation="tanh")
    y = fl.layers.dense(hidden, 1)
    if mode == ModeKeys.PREDICT:
        return EstimatorSpec(mode, predictions={"y": y})
    loss = losses.mean_squared_error(labels, y)
    train_op = fl.train.AdamOptimizer(0.05).minimize(loss, global_step=fl.train.get_global_step())
    return EstimatorSpec(mode, loss=loss, train_op=train_op)


def estimator(strategy, out, rank=0):
    """The model_fn Estimator: unseeded, shuffled numpy_input_fn batches of 16 from 70 rows, 3 epochs,
    checkpoints and summaries into a model_dir of this rank's own (so that a file written by rank 1 would
    show)."""
    from flowlearn.estimators import Estimator, RunConfig
    from flowlearn.io import numpy_input_fn

    seeding.set_random_seed(_seed(rank))  # the unseeded input_fn below shuffles from this stream
    rng = numpy.random.default_rng(2)
    x = rng.normal(size=(70, 3))
    y = (x @ numpy.array([1.0, -2.0, 0.5]))[:, None] + 0.1
    config = RunConfig(tf_random_seed=_seed(rank), train_distribute=strategy, save_summary_steps=2,
                       save_checkpoints_steps=5)
    est = Estimator(_model_fn, model_dir=os.path.join(out, f"est_rank{rank}"), config=config)
    est.train(numpy_input_fn({"x": x}, y, batch_size=16, num_epochs=3, shuffle=True))
    return {v.name: v.numpy() for v in est._store.variables}, {"global_step": est._global_step()}


TRAINERS = {"seq": sequential, "dnn": dnn_classifier, "est": estimator}


def run_all(strategy, out, rank=0):
    """``(weights, logs)``: every trainer's final weights (keys ``trainer|name``) and histories."""
    weights, logs = {}, {}
    for key, trainer in TRAINERS.items():
        arrays, history = trainer(strategy, out, rank)
        weights.update({f"{key}|{name}": array for name, array in arrays.items()})
        logs[key] = history
    return weights, logs


def refuses_different_data(strategy, rank):
    """True when fit on data that differs between the ranks stops with the strategy's ValueError."""
    x = numpy.random.default_rng(rank).normal(size=(32, 5))  # a different x on every rank
    model = fl.Sequential([fl.layers.Input((5,)), fl.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    try:
        model.fit(x, numpy.zeros((32, 1)), batch_size=8, epochs=1, verbose=0, strategy=strategy)
    except ValueError as error:
        return "different first batches" in str(error)
    return False


def main(out):
    fl.set_floatx("float64")  # the parity checked is that of the arithmetic, not of float32 rounding
    strategy = fl.distributed.MPIStrategy()
    rank = strategy.rank
    sys.stderr = open(os.path.join(out, f"stderr{rank}.txt"), "w", encoding="utf-8")
    weights, logs = run_all(strategy, out, rank)
    numpy.savez(os.path.join(out, f"rank{rank}.npz"), **weights)
    with open(os.path.join(out, f"rank{rank}.json"), "w", encoding="utf-8") as file:
        json.dump({"logs": logs, "size": strategy.size,
                   "refused_different_data": refuses_different_data(strategy, rank)}, file)
    sys.stderr.close()


def gpu_classifier(strategy, rank=0):
    """DNNClassifier on the GPU (float32, SGD): weights as numpy arrays."""
    from flowlearn.estimators import DNNClassifier

    rng = numpy.random.default_rng(3)
    x, y = rng.normal(size=(64, 4)).astype("float32"), rng.integers(0, 2, 64)
    clf = DNNClassifier(hidden_units=(8,), epochs=3, batch_size=16, optimizer="sgd", learning_rate=0.1,
                        n_iter_no_change=None, random_state=3 if rank == 0 else None, device="gpu",
                        strategy=strategy)
    clf.fit(x, y)
    return {f"w{i}": array for i, array in enumerate(clf._model.get_weights())}


def gpu_main(out):
    """Each rank on its own GPU (rank % devices): the flat buffer is a cupy array, summed with NCCL where
    cupy has it. Writes ``gpu{rank}.npz`` and ``gpu{rank}.json`` (whether NCCL ran)."""
    import cupy

    strategy = fl.distributed.MPIStrategy()
    rank = strategy.rank
    cupy.cuda.Device(rank % cupy.cuda.runtime.getDeviceCount()).use()
    weights = gpu_classifier(strategy, rank)
    numpy.savez(os.path.join(out, f"gpu{rank}.npz"), **weights)
    with open(os.path.join(out, f"gpu{rank}.json"), "w", encoding="utf-8") as file:
        json.dump({"nccl": strategy._nccl._nccl is not None, "size": strategy.size}, file)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[2] == "gpu":
        gpu_main(sys.argv[1])
    else:
        main(sys.argv[1])
