"""scikit-learn interface benchmark: DNNClassifier vs scikit-learn's MLPClassifier vs a PyTorch loop.

Workloads:
- fit of a 784-256-128-10 ReLU network on the 8,000 training rows of the bundled MNIST subset, Adam
  (learning rate 1e-3), batch 128, EPOCHS epochs, no L2, no early stopping, Glorot-uniform weights on
  every side; seconds per epoch and accuracy on the 2,000 test rows;
- predict on a 1,000,000 x 100 float32 array (400 MB) with a 100-256-128-10 network: seconds and the
  peak RSS above the input array, flowlearn against MLPClassifier.
Each side runs in its own process (fresh peak RSS, same BLAS threads); the fits run in ROUNDS
interleaved rounds and report the median.

Run: ``python benchmarks/sklearn_bench.py`` (about three minutes on 2 quiet cores).
"""
import json
import sys
import time
from pathlib import Path

import numpy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, main_or_worker, mnist, peak_rss_mb, report, run_worker  # noqa: E402

THREADS = 2
EPOCHS = 10
ROUNDS = 3
BATCH = 128
HIDDEN = (256, 128)
PREDICT_ROWS, PREDICT_FEATURES = 1_000_000, 100


def _timed_fit(fit, epochs):
    start = time.perf_counter()
    model = fit()
    return model, (time.perf_counter() - start) / epochs


def fit_flowlearn():
    from flowlearn.estimators import DNNClassifier

    x, y, x_test, y_test = mnist()
    model = DNNClassifier(hidden_units=HIDDEN, learning_rate=1e-3, batch_size=BATCH, epochs=EPOCHS,
                          n_iter_no_change=None, random_state=0)
    model, per_epoch = _timed_fit(lambda: model.fit(x, y), EPOCHS)
    return {"s_per_epoch": per_epoch, "accuracy": model.score(x_test, y_test)}


def fit_sklearn():
    from sklearn.neural_network import MLPClassifier

    x, y, x_test, y_test = mnist()
    model = MLPClassifier(hidden_layer_sizes=HIDDEN, solver="adam", learning_rate_init=1e-3, batch_size=BATCH,
                          max_iter=EPOCHS, alpha=0.0, tol=0.0, n_iter_no_change=EPOCHS + 1, random_state=0)
    model, per_epoch = _timed_fit(lambda: model.fit(x, y), EPOCHS)
    return {"s_per_epoch": per_epoch, "accuracy": model.score(x_test, y_test)}


def fit_torch():
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    x, y, x_test, y_test = mnist()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    sizes = (x.shape[1],) + HIDDEN + (10,)
    layers = [torch.nn.Linear(a, b) for a, b in zip(sizes, sizes[1:])]
    for layer in layers:  # Glorot uniform and zero biases, as the other two sides
        torch.nn.init.xavier_uniform_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
    model = torch.nn.Sequential(layers[0], torch.nn.ReLU(), layers[1], torch.nn.ReLU(), layers[2])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)

    def fit():
        for _ in range(EPOCHS):
            order = torch.randperm(len(xt), generator=generator)
            for start in range(0, len(xt), BATCH):
                rows = order[start:start + BATCH]
                loss = F.cross_entropy(model(xt[rows]), yt[rows])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        return model

    _, per_epoch = _timed_fit(fit, EPOCHS)
    with torch.no_grad():
        accuracy = float((model(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean())
    return {"s_per_epoch": per_epoch, "accuracy": accuracy}


def _predict_data():
    rng = numpy.random.default_rng(0)
    train = rng.random((2000, PREDICT_FEATURES), dtype=numpy.float32)
    labels = rng.integers(0, 10, 2000)
    big = rng.random((PREDICT_ROWS, PREDICT_FEATURES), dtype=numpy.float32)
    return train, labels, big


def _timed_predict(model, big):
    before = peak_rss_mb()
    start = time.perf_counter()
    model.predict(big)
    return {"predict_s": time.perf_counter() - start, "rss_before_mb": before, "peak_rss_mb": peak_rss_mb(),
            "input_mb": big.nbytes / 2**20}


def predict_flowlearn():
    from flowlearn.estimators import DNNClassifier

    train, labels, big = _predict_data()
    model = DNNClassifier(hidden_units=HIDDEN, epochs=1, n_iter_no_change=None, random_state=0).fit(train, labels)
    return _timed_predict(model, big)


def predict_sklearn():
    from sklearn.neural_network import MLPClassifier

    train, labels, big = _predict_data()
    model = MLPClassifier(hidden_layer_sizes=HIDDEN, max_iter=1, random_state=0).fit(train, labels)
    return _timed_predict(model, big)


FIT_WORKERS = {"fit-flowlearn": fit_flowlearn, "fit-sklearn": fit_sklearn, "fit-torch": fit_torch}
PREDICT_WORKERS = {"predict-flowlearn": predict_flowlearn, "predict-sklearn": predict_sklearn}
WORKERS = {**FIT_WORKERS, **PREDICT_WORKERS}


def worker(name):
    import warnings

    from threadpoolctl import threadpool_limits

    warnings.simplefilter("ignore")  # ConvergenceWarning of the fixed-epoch fits
    with threadpool_limits(limits=THREADS):
        result = WORKERS[name]()
    report(name, result)


def _median_round(runs):
    """The run with the median time (its accuracy comes along), and all the times."""
    ordered = sorted(runs, key=lambda run: run["s_per_epoch"])
    return {**ordered[len(ordered) // 2], "all_s_per_epoch": [run["s_per_epoch"] for run in runs]}


def main():
    # Fits run in interleaved rounds (flowlearn, sklearn, torch, flowlearn, ...) and report the median,
    # so a change of machine load during the run weighs on every side alike.
    rounds = [{name: run_worker(__file__, name) for name in FIT_WORKERS} for _ in range(ROUNDS)]
    results = {name: _median_round([r[name] for r in rounds]) for name in FIT_WORKERS}
    results.update({name: run_worker(__file__, name) for name in PREDICT_WORKERS})
    print(machine_line())
    fl, sk, pt = results["fit-flowlearn"], results["fit-sklearn"], results["fit-torch"]
    print(f"MNIST subset, 784-256-128-10, Adam 1e-3, batch {BATCH}, {EPOCHS} epochs, median of {ROUNDS} rounds")
    print(f"{'':28} {'flowlearn':>10} {'sklearn MLP':>12} {'pytorch':>10}")
    print(f"{'fit s/epoch':28} {fl['s_per_epoch']:10.3f} {sk['s_per_epoch']:12.3f} {pt['s_per_epoch']:10.3f}")
    print(f"{'test accuracy':28} {fl['accuracy']:10.4f} {sk['accuracy']:12.4f} {pt['accuracy']:10.4f}")
    print(f"speed-up vs MLPClassifier: {sk['s_per_epoch'] / fl['s_per_epoch']:.2f}x; "
          f"time vs PyTorch: {fl['s_per_epoch'] / pt['s_per_epoch']:.2f}x")
    pf, ps = results["predict-flowlearn"], results["predict-sklearn"]
    print(f"predict {PREDICT_ROWS:,} x {PREDICT_FEATURES} float32 ({pf['input_mb']:.0f} MB), 100-256-128-10")
    for label, r in (("flowlearn", pf), ("sklearn MLP", ps)):
        print(f"  {label:12} {r['predict_s']:6.2f} s, peak RSS {r['peak_rss_mb']:7.0f} MB "
              f"(+{r['peak_rss_mb'] - r['rss_before_mb']:.0f} MB over the process with the input loaded)")
    print(json.dumps(results))


if __name__ == "__main__":
    main_or_worker(main, worker)
