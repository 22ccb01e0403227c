"""Prediction benchmark: flowlearn's estimators against scikit-learn's MLPClassifier, side by side.

Workloads (the prediction goals):
- one-row ``predict_proba`` and ``predict`` of a 64-128-64-10 network fitted on the 8x8 digits,
  DNNClassifier against MLPClassifier (goal: within 2x);
- ``predict`` of one 28x28 image by the default CNNClassifier (conv32-pool-conv64-pool-dense1024),
  fitted briefly on the bundled MNIST subset (goal: under 1 ms), side by side with PyTorch's same network
  holding the same weights, at batch 1 on as many threads (``torch.set_num_threads(THREADS)``,
  ``inference_mode``, the argmax taken in torch);
- ``predict`` of a whole held-out set (25% of digits, of breast cancer), DNNClassifier against
  MLPClassifier;
- seconds per epoch of ``fit`` with ``early_stopping=True`` against ``False``, flowlearn and
  scikit-learn alike (goal: the validation pass costs no more than the training forward it follows).
Each workload runs in its own process with BLAS on THREADS threads. Inside it, the two sides run in
interleaved rounds (flowlearn, scikit-learn, flowlearn, ...), each round the median of many calls,
and the report is the median over rounds, so a change of machine load weighs on both sides alike.

Run: ``python benchmarks/predict_bench.py`` (a few minutes on 2 quiet cores);
``python benchmarks/predict_bench.py --quick`` for a rough run of a few seconds per workload.
"""
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, main_or_worker, mnist, report, run_worker  # noqa: E402

THREADS = 2
HIDDEN = (128, 64)
QUICK = os.environ.get("PREDICT_BENCH_QUICK") == "1"  # set by main for --quick, read by the workers
ROUNDS = 3 if QUICK else 7
CALLS = 50 if QUICK else 400  # one-row calls per round
EPOCHS = 5 if QUICK else 20  # main prints these counts again: keep them in step


def _median_call(function, calls, *args):
    """Median seconds of ``calls`` calls of ``function(*args)`` (after one warm-up call)."""
    function(*args)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        function(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _interleaved(sides, calls, *args):
    """{side: median over ROUNDS of the per-round median} for ``sides`` = {name: function}, taking turns."""
    per_round = {name: [] for name in sides}
    for _ in range(ROUNDS):
        for name, function in sides.items():
            per_round[name].append(_median_call(function, calls, *args))
    return {name: statistics.median(times) for name, times in per_round.items()}


def _split(name):
    from sklearn.datasets import load_breast_cancer, load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = {"digits": load_digits, "breast_cancer": load_breast_cancer}[name](return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    scaler = StandardScaler().fit(x_train)
    return scaler.transform(x_train), scaler.transform(x_test), y_train, y_test


def _fit_flowlearn(x, y, **common):
    from flowlearn.estimators import DNNClassifier

    return DNNClassifier(hidden_units=HIDDEN, epochs=EPOCHS, n_iter_no_change=None, random_state=0, **common).fit(x, y)


def _fit_sklearn(x, y, **common):
    """MLPClassifier with the same shape and budget: all EPOCHS epochs (no stopping rule), Adam, batch 200."""
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(hidden_layer_sizes=HIDDEN, max_iter=EPOCHS, tol=0.0, n_iter_no_change=EPOCHS + 1,
                         random_state=0, **common).fit(x, y)


def one_row():
    x_train, x_test, y_train, _ = _split("digits")
    flowlearn, sklearn = _fit_flowlearn(x_train, y_train), _fit_sklearn(x_train, y_train)
    row = x_test[:1]
    return {method: _interleaved({"flowlearn": getattr(flowlearn, method), "sklearn": getattr(sklearn, method)},
                                 CALLS, row)
            for method in ("predict_proba", "predict")}


def _torch_twin(model):
    """``predict(images)`` of PyTorch's copy of a fitted default CNNClassifier (its weights, NCHW), or
    None without torch. The copy's convolutions pad 2 on each side (5x5 "same") and its dense layer reads
    the flattened image in (channel, row, column) order, so its kernel's rows are permuted to match."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(THREADS)
    layers = {layer.name: [w.numpy() for w in layer.weights] for layer in model._model.layers if layer.weights}
    (k0, b0), (k1, b1), (w2, b2), (w3, b3) = (layers[name] for name in ("conv_0", "conv_1", "dense_0", "output"))
    side, channels = 7, k1.shape[3]
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, k0.shape[3], 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(k0.shape[3], channels, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(side * side * channels, w2.shape[1]), torch.nn.ReLU(),
        torch.nn.Linear(w2.shape[1], w3.shape[1])).eval()
    dense = w2.reshape(side, side, channels, -1).transpose(2, 0, 1, 3).reshape(side * side * channels, -1)
    with torch.no_grad():
        for module, (kernel, bias) in zip((net[0], net[3], net[7], net[9]),
                                          ((k0.transpose(3, 2, 0, 1), b0), (k1.transpose(3, 2, 0, 1), b1),
                                           (dense.T, b2), (w3.T, b3))):
            module.weight.copy_(torch.from_numpy(numpy.ascontiguousarray(kernel)))
            module.bias.copy_(torch.from_numpy(bias))
    classes = model.classes_

    def predict(images):
        with torch.inference_mode():
            return classes[net(torch.from_numpy(images).reshape(-1, 1, 28, 28)).argmax(1).numpy()]

    return predict


def cnn_image():
    from flowlearn.estimators import CNNClassifier

    x, y, x_test, _ = mnist(n_train=1000)
    model = CNNClassifier(epochs=1, batch_size=100, n_iter_no_change=None, random_state=0)
    model.fit(x.reshape(-1, 28, 28), y)
    images = x_test.reshape(-1, 28, 28)
    image = images[:1]
    sides = {"flowlearn": model.predict}
    twin = _torch_twin(model)
    if twin is not None:
        sides["torch"] = twin
    one_image = _interleaved(sides, CALLS // 2, image)
    agree = None if twin is None else float(numpy.mean(twin(images[:500]) == model.predict(images[:500])))
    return {"one_image_s": one_image["flowlearn"], "torch_one_image_s": one_image.get("torch"),
            "torch_agrees": agree,
            "test_set_s": _median_call(model.predict, 1 if QUICK else 3, images), "test_rows": len(images)}


def test_set():
    result = {}
    for name in ("digits", "breast_cancer"):
        x_train, x_test, y_train, _ = _split(name)
        flowlearn, sklearn = _fit_flowlearn(x_train, y_train), _fit_sklearn(x_train, y_train)
        result[name] = {**_interleaved({"flowlearn": flowlearn.predict, "sklearn": sklearn.predict}, CALLS // 10,
                                       x_test),
                        "rows": len(x_test)}
    return result


def epochs():
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    warnings.simplefilter("ignore", ConvergenceWarning)
    result = {}
    for name in ("digits", "breast_cancer"):
        x_train, _, y_train, _ = _split(name)
        times = {}
        _fit_flowlearn(x_train, y_train, early_stopping=True)  # warm-up
        for _ in range(ROUNDS):
            for side, fit in (("flowlearn", _fit_flowlearn), ("sklearn", _fit_sklearn)):
                for early in (False, True):
                    start = time.perf_counter()
                    fit(x_train, y_train, early_stopping=early)
                    times.setdefault(f"{side}_{'early' if early else 'plain'}_s", []).append(
                        (time.perf_counter() - start) / EPOCHS)
        result[name] = {key: statistics.median(values) for key, values in times.items()}
    return result


WORKERS = {"one-row": one_row, "cnn-image": cnn_image, "test-set": test_set, "epochs": epochs}


def worker(name):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=THREADS):
        result = WORKERS[name]()
    report(name, result)


def main():
    if "--quick" in sys.argv:
        os.environ["PREDICT_BENCH_QUICK"] = "1"  # the workers read it
    results = {name: run_worker(__file__, name) for name in WORKERS}
    print(machine_line())
    quick = os.environ.get("PREDICT_BENCH_QUICK") == "1"
    print(f"BLAS on {THREADS} threads; medians over {3 if quick else 7} interleaved rounds"
          f"{' (--quick: rough numbers)' if quick else ''}")
    row = results["one-row"]
    print(f"one row of digits, 64-{HIDDEN[0]}-{HIDDEN[1]}-10      {'flowlearn':>10} {'sklearn MLP':>12} {'ratio':>7}")
    for method in ("predict_proba", "predict"):
        fl, sk = row[method]["flowlearn"], row[method]["sklearn"]
        print(f"  {method:36} {fl * 1e6:8.1f} us {sk * 1e6:9.1f} us {fl / sk:6.2f}x   (goal <= 2x)")
    cnn = results["cnn-image"]
    print(f"CNNClassifier (default network), one 28x28 image: {cnn['one_image_s'] * 1e3:.3f} ms (goal < 1 ms); "
          f"{cnn['test_rows']:,} images: {cnn['test_set_s']:.2f} s")
    if cnn["torch_one_image_s"] is not None:
        print(f"  PyTorch, the same network and weights, one image on {THREADS} threads: "
              f"{cnn['torch_one_image_s'] * 1e3:.3f} ms ({cnn['one_image_s'] / cnn['torch_one_image_s']:.2f}x); "
              f"same class for {cnn['torch_agrees']:.1%} of 500 test images")
    print("whole held-out set (25%), predict                  flowlearn  sklearn MLP   ratio")
    for name in ("digits", "breast_cancer"):
        r = results["test-set"][name]
        fl, sk = r["flowlearn"], r["sklearn"]
        print(f"  {name:13} {r['rows']:4} rows {'':21} {fl * 1e3:7.2f} ms {sk * 1e3:8.2f} ms {fl / sk:6.2f}x")
    print(f"fit time per epoch ({5 if quick else 20} epochs, 64-{HIDDEN[0]}-{HIDDEN[1]}-out), "
          "early_stopping False -> True (ratio)")
    for name in ("digits", "breast_cancer"):
        r = results["epochs"][name]
        fl = r["flowlearn_early_s"] / r["flowlearn_plain_s"]
        sk = r["sklearn_early_s"] / r["sklearn_plain_s"]
        print(f"  {name:13} flowlearn {r['flowlearn_plain_s'] * 1e3:6.2f} -> {r['flowlearn_early_s'] * 1e3:6.2f} ms "
              f"({fl:.2f}x)   sklearn MLP {r['sklearn_plain_s'] * 1e3:6.2f} -> {r['sklearn_early_s'] * 1e3:6.2f} ms "
              f"({sk:.2f}x)")
    print(json.dumps(results))


if __name__ == "__main__":
    main_or_worker(main, worker)
