"""Busy-host benchmark: fits with BLAS's default thread count against ``OPENBLAS_NUM_THREADS=1``, on a
quiet host and next to one competing busy process, flowlearn side by side with scikit-learn's MLPClassifier.

Workloads:
- ``digits-dnn``: ``DNNClassifier(hidden_units=(128, 64), epochs=40)`` on scikit-learn's digits (1,797 x 64,
  batch 200): thousands of tiny products, the regime where waking BLAS's threads costs more than it saves;
- ``digits-mlp``: scikit-learn's ``MLPClassifier`` on the same network, data, batch and epochs;
- ``mnist-mlp``: one epoch of the op-core benchmark's hand-written 784-256-128-10 MLP loop (batch 128, 8,000
  rows, Adam): mid-sized products (25.7 M multiply-adds, split by flowlearn; 4.2 M, on one thread or BLAS's);
- ``mnist-mlp-fit``: the same network, data and batch through ``Sequential.fit`` (one epoch a fit);
- ``mnist-cnn``: the op-core benchmark's CNN training step (batch 100): large products that flowlearn splits;
- ``cnn-image``: 2,500 one-image ``predict`` calls in a row of ``CNNClassifier``'s default network (after 500 to
  warm up): products that cannot split over a batch, where each network times BLAS's threads against one
  (``flowlearn.core.parallel.BlasThreadChoice``).

Each (workload, thread setting) runs in a fresh process, ``--worker`` below; "1 thread" sets
``OPENBLAS_NUM_THREADS=1`` for that process (which also keeps flowlearn's own threads at one), "default"
removes every thread variable. "busy" runs one ``while True: pass`` process for the whole round. Rounds
interleave every cell, so a change in the host's state hits both sides of each ratio alike; the table shows
medians over rounds and, per cell, the spread of the rounds.

Run: ``python benchmarks/busy_host_bench.py [--rounds 3] [--only digits-dnn,mnist-cnn] [--compare DIR]``
(about three minutes with the defaults on 2 cores). ``--compare DIR`` runs the flowlearn workloads again
(two more columns) with the ``flowlearn`` package found in DIR first on the path (a copy of an older
version), so a change can be measured A/B in the same rounds.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, machine_line, main_or_worker, report  # noqa: E402

HIDDEN = (128, 64)
EPOCHS = 40
FITS = 2  # timed fits per process, after a 2-epoch warm-up fit
CNN_STEPS = 8
IMAGE_WARM_UP, IMAGE_CALLS = 500, 2500
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "FLOWLEARN_NUM_THREADS")


def _digits():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype("float32"), y


def _median_seconds(call, repeats, warm_up=None):
    (warm_up or call)()  # lazy imports, first-touch allocations, BLAS thread start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def digits_dnn():
    from flowlearn.estimators import DNNClassifier

    x, y = _digits()
    def fit(epochs):  # fixed work: no stop on a training-loss plateau
        return DNNClassifier(hidden_units=HIDDEN, epochs=epochs, n_iter_no_change=None, random_state=0).fit(x, y)

    return _median_seconds(lambda: fit(EPOCHS), FITS, warm_up=lambda: fit(2))


def digits_mlp():
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    x, y = _digits()
    warnings.simplefilter("ignore", ConvergenceWarning)

    def fit(epochs):
        return MLPClassifier(hidden_layer_sizes=HIDDEN, max_iter=epochs, tol=0.0, n_iter_no_change=epochs + 1,
                             random_state=0).fit(x, y)

    return _median_seconds(lambda: fit(EPOCHS), FITS, warm_up=lambda: fit(2))


def mnist_mlp():
    import core_bench

    return _median_seconds(core_bench.flowlearn_mlp(), 3)


def mnist_mlp_fit():
    import core_bench
    import flowlearn as fl
    from _common import mnist

    x, y, _, _ = mnist()
    model = fl.Sequential([fl.layers.Dense(256, activation="relu"), fl.layers.Dense(128, activation="relu"),
                           fl.layers.Dense(10)])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return _median_seconds(lambda: model.fit(x, y, batch_size=core_bench.BATCH_MLP, epochs=1, verbose=0), 3)


def mnist_cnn():
    import core_bench

    return _median_seconds(core_bench.flowlearn_cnn(), CNN_STEPS)


def cnn_image():
    """Seconds for IMAGE_CALLS one-image ``predict`` calls of the default CNNClassifier network, in a row, after
    IMAGE_WARM_UP calls (the first traces the replay; the one-row thread choice measures both regimes). The
    total, not a median: next to a busy process a few calls stall for a time slice, and that is the cost."""
    from _common import mnist
    from flowlearn.estimators import CNNClassifier

    x, y, x_test, _ = mnist(n_train=1000)
    model = CNNClassifier(epochs=1, batch_size=100, n_iter_no_change=None, random_state=0).fit(x.reshape(-1, 28, 28), y)
    image = x_test[:1].reshape(-1, 28, 28)
    for _ in range(IMAGE_WARM_UP):
        model.predict(image)
    start = time.perf_counter()
    for _ in range(IMAGE_CALLS):
        model.predict(image)
    return time.perf_counter() - start


WORKLOADS = {"digits-dnn": digits_dnn, "digits-mlp": digits_mlp, "mnist-mlp": mnist_mlp, "mnist-mlp-fit": mnist_mlp_fit,
             "mnist-cnn": mnist_cnn, "cnn-image": cnn_image}
FLOWLEARN_WORKLOADS = {"digits-dnn", "mnist-mlp", "mnist-mlp-fit", "mnist-cnn", "cnn-image"}


def worker(name):
    report(name, {"seconds": WORKLOADS[name]()})


def _environment(threads, flowlearn_path):
    env = {key: value for key, value in os.environ.items() if key not in THREAD_VARIABLES}
    if threads == "1 thread":
        env["OPENBLAS_NUM_THREADS"] = "1"
    if flowlearn_path:
        env["PYTHONPATH"] = os.pathsep.join([flowlearn_path, str(ROOT)])
    return env


def _run(name, threads, flowlearn_path=None):
    process = subprocess.run([sys.executable, __file__, "--worker", name], capture_output=True, text=True,
                             env=_environment(threads, flowlearn_path), timeout=900, cwd=str(ROOT))
    if process.returncode != 0:
        raise RuntimeError(f"worker {name} ({threads}) failed:\n{process.stderr[-3000:]}")
    return json.loads(process.stdout.strip().splitlines()[-1])["seconds"]


class _BusyProcess:
    """One process spinning on a core for as long as the block runs."""

    def __enter__(self):
        self.process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)  # let the scheduler see it
        return self

    def __exit__(self, *exc):
        self.process.kill()
        self.process.wait()


class _Quiet:
    """No competing process."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def _columns(compare):
    columns = [("default", None), ("1 thread", None)]
    if compare:
        columns += [("compare default", compare), ("compare 1 thread", compare)]
    return columns


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default=",".join(WORKLOADS), help="comma-separated workloads")
    parser.add_argument("--states", default="quiet,busy", help="comma-separated: quiet, busy")
    parser.add_argument("--compare", default=None, help="a directory holding another flowlearn package")
    args = parser.parse_args()
    names = args.only.split(",")
    states = args.states.split(",")
    times = {}  # (state, name, column) -> [seconds per round]
    for round_ in range(args.rounds):
        for state in states:
            with _BusyProcess() if state == "busy" else _Quiet():
                for name in names:
                    for column, path in _columns(args.compare):
                        if path and name not in FLOWLEARN_WORKLOADS:
                            continue
                        seconds = _run(name, column.replace("compare ", ""), path)
                        times.setdefault((state, name, column), []).append(seconds)
                        print(f"round {round_ + 1} {state:5} {name:10} {column:16} {seconds:8.3f} s", file=sys.stderr)
    print(machine_line())
    print(f"{args.rounds} interleaved rounds; medians in seconds (min-max over rounds); ratio = default / 1 thread; "
          "paired = median over rounds of each round's ratio (the two ran back to back: steadier on a host whose load "
          "changes between rounds)")
    header = f"{'host':6} {'workload':13} {'default':>22} {'1 thread':>22} {'ratio':>6} {'paired':>6}"
    if args.compare:
        header += f" {'compare default':>22} {'compare 1 thread':>22} {'ratio':>6} {'new/compare':>11}"
    print(header)
    for state in states:
        for name in names:
            cells = {column: times.get((state, name, column)) for column, _ in _columns(args.compare)}
            line = f"{state:6} {name:13} {_cell(cells['default'])} {_cell(cells['1 thread'])} "
            line += f"{_ratio(cells['default'], cells['1 thread'])} {_paired(cells['default'], cells['1 thread'])}"
            if args.compare and cells.get("compare default"):
                line += (f" {_cell(cells['compare default'])} {_cell(cells['compare 1 thread'])} "
                         f"{_ratio(cells['compare default'], cells['compare 1 thread'])} "
                         f"{_ratio(cells['default'], cells['compare default']):>11}")
            print(line)
    print(json.dumps({" | ".join(key): value for key, value in times.items()}))


def _cell(values):
    if not values:
        return f"{'-':>22}"
    return f"{statistics.median(values):8.3f} ({min(values):.3f}-{max(values):.3f})"


def _paired(a, b):
    if not a or not b:
        return f"{'-':>6}"
    return f"{statistics.median(x / y for x, y in zip(a, b)):6.2f}"


def _ratio(a, b):
    if not a or not b:
        return f"{'-':>6}"
    return f"{statistics.median(a) / statistics.median(b):6.2f}"


if __name__ == "__main__":
    main_or_worker(main, worker)
