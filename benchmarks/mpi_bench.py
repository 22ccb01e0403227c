"""Data-parallel training over MPI ranks: samples/s of ``Sequential.fit(strategy=MPIStrategy())`` on 1 and 2
ranks, and what each step sends.

Workload: the MNIST MLP 784-256-128-10 (ReLU, softmax), Adam 1e-3, global batch 128, one epoch over the
8,000 training digits of the bundled subset (``flowlearn.io.datasets.load_mnist``), no metrics. Configurations, each
run in fresh processes, interleaved (A, B, C, A, B, C, ...) so that a busy machine slows all alike:

- ``plain``: one process, no MPI, BLAS limited to 1 thread (the per-rank compute);
- ``mpi1``: ``mpirun -np 1``, strategy on (what the strategy itself costs);
- ``mpi2``: ``mpirun -np 2``, 1 BLAS thread per rank, each rank 64 rows of every 128-row batch.

Every step allreduces one flat buffer of all the gradients: the parameter bytes (plus one float per
parameter tensor saying which ranks had a gradient) and one float64 for the loss. The script prints those
bytes, the time rank 0 spent inside the gradient allreduce during training (which includes waiting for the
other rank to finish its shard) and the median time of that Allreduce alone, with both ranks entering it
together.

Run: ``python benchmarks/mpi_bench.py`` (needs mpirun and mpi4py; about a minute on 2 cores).
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BATCH, EPOCH_ROWS, REPEATS = 128, 8000, 3


def _model():
    import flowlearn as fl

    fl.layers.set_random_seed(0)
    model = fl.Sequential([fl.layers.Input((784,)), fl.layers.Dense(256, activation="relu"),
                           fl.layers.Dense(128, activation="relu"), fl.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def worker(config):
    """One configuration: fit one epoch (after a warm-up epoch); prints a JSON line from rank 0."""
    import numpy
    from threadpoolctl import threadpool_limits

    import flowlearn as fl
    from flowlearn.io.datasets import load_mnist

    (x, y), _ = load_mnist()
    x = x.reshape(len(x), -1).astype(numpy.float32)[:EPOCH_ROWS] / 255.0
    y = y[:EPOCH_ROWS]
    strategy = None if config == "plain" else fl.distributed.MPIStrategy()
    reduce_seconds = []
    if strategy is not None:
        allreduce = strategy._allreduce_sum

        def timed(buffer):  # the gradient allreduce alone, on this rank
            start = time.perf_counter()
            allreduce(buffer)
            reduce_seconds.append(time.perf_counter() - start)

        strategy._allreduce_sum = timed
    model = _model()
    times = []
    with threadpool_limits(limits=1, user_api="blas"):
        for repeat in range(REPEATS + 1):  # the first epoch warms up (allocations, MPI connections)
            reduce_seconds.clear()
            start = time.perf_counter()
            model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, strategy=strategy)
            if repeat:
                times.append(time.perf_counter() - start)
    pure_ms = _pure_allreduce_ms(strategy, model) if strategy is not None else 0.0
    if strategy is None or strategy.is_chief:
        steps = -(-EPOCH_ROWS // BATCH)
        parameter_bytes = sum(w.data.nbytes for w in model.trainable_weights)
        print(json.dumps({
            "config": config, "ranks": 1 if strategy is None else strategy.size,
            "epoch_s": statistics.median(times), "samples_per_s": EPOCH_ROWS / statistics.median(times),
            "steps": steps, "parameter_bytes": parameter_bytes,
            "allreduce_bytes_per_step": parameter_bytes + 4 * len(model.trainable_weights),
            "allreduce_ms_per_step": 1000 * sum(reduce_seconds) / steps if reduce_seconds else 0.0,
            "pure_allreduce_ms": pure_ms,
        }))


def _pure_allreduce_ms(strategy, model, repeats=30):
    """Median ms of the step's Allreduce alone, every rank entering together (a barrier first): the cost of
    the communication without the wait for a slower rank that the in-training time includes."""
    import numpy

    from flowlearn.distributed import mpi_strategy

    size = sum(w.data.size for w in model.trainable_weights) + len(model.trainable_weights)
    buffer = numpy.ones(size, dtype=numpy.float32)
    MPI = mpi_strategy.import_mpi("mpi_bench")
    times = []
    for _ in range(repeats):
        strategy.barrier()
        start = time.perf_counter()
        strategy.comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _run(config):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    command = [sys.executable, __file__, "--worker", config]
    if config != "plain":
        launcher = ["mpirun", "-np", config[-1]]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            launcher.append("--allow-run-as-root")
        if _open_mpi():
            # A waiting rank spins on shared memory by default; on a machine with more busy processes than
            # cores that spinning takes the CPU from the rank being waited for. Yielding costs microseconds.
            launcher += ["--mca", "mpi_yield_when_idle", "1"]
        command = launcher + command
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"{config} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _open_mpi():
    result = subprocess.run(["mpirun", "--version"], capture_output=True, text=True, timeout=60)
    return "Open MPI" in result.stdout + result.stderr


def main(rounds=2):
    if shutil.which("mpirun") is None:
        sys.exit("mpi_bench: mpirun not found (apt-get install openmpi-bin libopenmpi-dev)")
    configs = ("plain", "mpi1", "mpi2")
    results = {config: [] for config in configs}
    for _ in range(rounds):
        for config in configs:
            results[config].append(_run(config))
    print(f"MNIST MLP 784-256-128-10, Adam, global batch {BATCH}, {EPOCH_ROWS} rows/epoch, 1 BLAS thread per "
          f"process, medians of {rounds} runs x {REPEATS} epochs, {os.cpu_count()} CPUs")
    for config in configs:
        runs = results[config]
        rate = statistics.median(run["samples_per_s"] for run in runs)
        reduce_ms = statistics.median(run["allreduce_ms_per_step"] for run in runs)
        pure_ms = statistics.median(run["pure_allreduce_ms"] for run in runs)
        print(f"  {config:6s} ranks={runs[0]['ranks']}  {rate:8.0f} samples/s  in-training allreduce (wait "
              f"included) {reduce_ms:.2f} ms/step  allreduce alone {pure_ms:.2f} ms")
    first = results["mpi2"][0]
    print(f"  per step: {first['allreduce_bytes_per_step']:,} bytes allreduced "
          f"({first['parameter_bytes'] / 1e6:.2f} MB of float32 parameters) + 8 bytes of loss")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(sys.argv[2])
    else:
        main()
